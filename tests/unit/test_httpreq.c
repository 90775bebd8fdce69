/* The HTTP request reader of the metrics endpoint. */
#include <string.h>

#include "../../lib/httpreq.h"
#include "check.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static int get_is(const char *p, size_t n, const char *want)
{
    const char *path = NULL;
    size_t l = 0;

    return httpreq_parse(p, n, &path, &l) == HTTPREQ_GET && l == strlen(want) &&
           memcmp(path, want, l) == 0;
}

static enum httpreq parse(const char *p, size_t n)
{
    const char *path;
    size_t l;

    return httpreq_parse(p, n, &path, &l);
}

int main(void)
{
    CHECK(get_is(S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "/metrics"));
    CHECK(get_is(S("GET /healthz?x=1 HTTP/1.0\r\n\r\n"), "/healthz"));
    CHECK(get_is(S("GET /metrics HTTP/1.1\n\n"), "/metrics"));
    CHECK(get_is(S("GET / HTTP/1.1\r\n\r\n"), "/"));
    CHECK(get_is(S("GET  HTTP/1.1\r\n\r\n"), ""));
    /* Not complete until the blank line. */
    CHECK(parse(S("GET /metrics HTTP/1.1\r\n")) == HTTPREQ_MORE);
    CHECK(parse(S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r")) == HTTPREQ_MORE);
    CHECK(parse(S("")) == HTTPREQ_MORE);
    /* Anything but a GET with an HTTP/1 version on its request line. */
    CHECK(parse(S("POST /metrics HTTP/1.1\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /metrics\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /metrics HTTP/2.0\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /metrics HTTP/1.x\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /m\r\nX: HTTP/1.1\r\n\r\n")) == HTTPREQ_BAD);   /* version in a header */
    CHECK(parse(S("\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /m\0 HTTP/1.1\r\n\r\n")) == HTTPREQ_BAD);
    CHECK(parse(S("GET /m\0")) == HTTPREQ_BAD);                       /* a NUL: bad at once */
    CHECK_DONE();
}
