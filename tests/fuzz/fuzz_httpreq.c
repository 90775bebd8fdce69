/* libFuzzer target: the metrics endpoint's request reader
 * (lib/httpreq.c).
 *
 * Input: the header of fuzz.h, then what an HTTP client sends, up to the
 * 8 KiB proxy/http.c reads at most. proxy/http.c parses everything read
 * so far after each read and acts on the first answer that is not
 * HTTPREQ_MORE: in the header's pieces, and byte by byte, that first
 * answer must be the whole input's, with the same path. */
#include <string.h>

#include "../../lib/httpreq.h"
#include "fuzz.h"

#define HTTP_MAX_REQUEST 8192      /* proxy/http.c's request buffer */
#define BYTEWISE_MAX     1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct answer {
    enum httpreq rc;
    size_t       path_off, path_len;
};

/* p[0..n) in a buffer of exactly n bytes, so that ASan sees a read past
 * what has arrived. */
static struct answer parse(const char *p, size_t n)
{
    char *b = malloc(n ? n : 1);
    const char *path = NULL;
    size_t len = 0;
    struct answer a = {0};

    if (!b)
        abort();
    memcpy(b, p, n);
    a.rc = httpreq_parse(b, n, &path, &len);
    FUZZ_REQUIRE(a.rc == HTTPREQ_MORE || a.rc == HTTPREQ_BAD || a.rc == HTTPREQ_GET,
                 "answer %d", a.rc);
    if (a.rc == HTTPREQ_GET) {
        FUZZ_REQUIRE(path == b + 4 && len + 4 <= n && memcmp(b, "GET ", 4) == 0,
                     "path at %td+%zu of %zu", path - b, len, n);
        FUZZ_REQUIRE(!memchr(path, ' ', len) && !memchr(path, '?', len) &&
                     !memchr(path, '\n', len), "path \"%.*s\"", (int)len, path);
        a.path_off = (size_t)(path - b);
        a.path_len = len;
    }
    free(b);
    return a;
}

static void same(const struct answer *whole, const struct answer *got, const char *how,
                 size_t at)
{
    FUZZ_REQUIRE(whole->rc == got->rc && whole->path_off == got->path_off &&
                 whole->path_len == got->path_len, "%s, at %zu: answer %d path %zu+%zu, "
                 "whole %d path %zu+%zu", how, at, got->rc, got->path_off, got->path_len,
                 whole->rc, whole->path_off, whole->path_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_cuts c;
    struct answer whole, a = {0};

    if (fuzz_header(&data, &size, &c) < 0 || size > HTTP_MAX_REQUEST)
        return 0;
    const char *p = (const char *)data;

    whole = parse(p, size);
    for (size_t i = 0; i < c.n; i++) {
        a = parse(p, c.end[i]);
        if (a.rc != HTTPREQ_MORE || i + 1 == c.n) {
            same(&whole, &a, "in pieces", c.end[i]);
            break;
        }
    }
    if (size > BYTEWISE_MAX)
        return 0;
    for (size_t k = 0; k <= size; k++) {
        a = parse(p, k);
        if (a.rc != HTTPREQ_MORE || k == size) {
            same(&whole, &a, "byte by byte", k);
            break;
        }
    }
    return 0;
}
