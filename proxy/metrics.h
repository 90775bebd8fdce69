/* The Prometheus text exposition of the proxy's counters (GET /metrics). */
#ifndef SIDECAR_METRICS_H
#define SIDECAR_METRICS_H

#include "../lib/buf.h"
#include "sidecar.h"

void metrics_render(const struct sidecar *sc, struct buf *b);

#endif
