/* An HTTP/1 request as the metrics endpoint reads it: complete once its
 * header block ends (a blank line); only GET is served. No I/O. */
#ifndef SIDECAR_HTTPREQ_H
#define SIDECAR_HTTPREQ_H

#include <stddef.h>

enum httpreq { HTTPREQ_MORE, HTTPREQ_BAD, HTTPREQ_GET };

/* The request in p[0..n): HTTPREQ_GET with its path (up to a '?' or the
 * space before the version) in *path and *pathlen; HTTPREQ_MORE until the
 * blank line; HTTPREQ_BAD for anything else (another method, no HTTP/1
 * version on the request line, a NUL byte). */
enum httpreq httpreq_parse(const char *p, size_t n, const char **path, size_t *pathlen);

#endif
