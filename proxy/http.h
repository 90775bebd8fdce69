/* [admin] metrics_listen: GET /metrics (Prometheus) and GET /healthz. */
#ifndef SIDECAR_HTTP_H
#define SIDECAR_HTTP_H

#include <stddef.h>

#include "sidecar.h"

/* Listen when metrics_listen is set; -1 with the reason in err. */
int http_start(struct sidecar *sc, char *err, size_t errlen);
void http_stop(struct sidecar *sc);
/* Reload in two steps: bind spec (NULL: off, *fd = -1), which may fail
 * with nothing changed; then serve on fd instead of the old socket
 * (requests under way there finish). */
int http_bind(const char *spec, int *fd, char *err, size_t errlen);
void http_install(struct sidecar *sc, int fd, const char *spec);

#endif
