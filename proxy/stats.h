/* PROXY INFO: the proxy's counters in redis's INFO format. */
#ifndef SIDECAR_STATS_H
#define SIDECAR_STATS_H

#include "sidecar.h"

/* The text into *out (an empty buffer the caller frees). */
void stats_info(const struct sidecar *sc, struct buf *out);

#endif
