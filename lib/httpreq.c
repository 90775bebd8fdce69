/* Reading an HTTP/1 GET request. */
#include "httpreq.h"

#include <string.h>

enum httpreq httpreq_parse(const char *p, size_t n, const char **path, size_t *pathlen)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4), *lf_end = memmem(p, n, "\n\n", 2);

    if (!end || (lf_end && lf_end < end))
        end = lf_end;
    if (!end)
        return memchr(p, '\0', n) ? HTTPREQ_BAD : HTTPREQ_MORE;
    if (memchr(p, '\0', (size_t)(end - p)))
        return HTTPREQ_BAD;
    /* the request line ends at the first LF, the blank line's at the latest */
    const char *eol = memchr(p, '\n', (size_t)(end - p) + 2);
    size_t line = (size_t)(eol - p);
    if (line && p[line - 1] == '\r')
        line--;
    /* "GET <path> HTTP/1.x" */
    if (line < 4 + 9 || memcmp(p, "GET ", 4) != 0 ||
        memcmp(p + line - 9, " HTTP/1.", 8) != 0 || p[line - 1] < '0' || p[line - 1] > '9')
        return HTTPREQ_BAD;
    size_t l = 0;
    while (4 + l < line - 9 && p[4 + l] != ' ' && p[4 + l] != '?')
        l++;
    *path = p + 4;
    *pathlen = l;
    return HTTPREQ_GET;
}
