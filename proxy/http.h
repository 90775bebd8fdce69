/* [admin] metrics_listen: the HTTP health probe (GET /healthz). */
#ifndef SIDECAR_HTTP_H
#define SIDECAR_HTTP_H

#include <stddef.h>

#include "sidecar.h"

/* Listen when metrics_listen is set; -1 with the reason in err. */
int http_start(struct sidecar *sc, char *err, size_t errlen);
void http_stop(struct sidecar *sc);

#endif
