/* Live reload of proxy.ini: SIGHUP and PROXY RELOAD. */
#ifndef SIDECAR_RELOAD_H
#define SIDECAR_RELOAD_H

#include <stddef.h>

#include "sidecar.h"

/* 0 with what was done in msg ("reloaded", or which keys need a restart
 * and kept their running value); -1 with "file:line: reason", nothing
 * changed. */
int reload_config(struct sidecar *sc, char *msg, size_t msglen);

#endif
