/* Listening sockets (TCP and unix) and accepting app connections. */
#ifndef SIDECAR_LISTENER_H
#define SIDECAR_LISTENER_H

#include <stddef.h>

#include "sidecar.h"

struct listener {
    struct sidecar *sc;
    int             fd;
    ev_io           io;
    ev_timer        pause;        /* out of descriptors: accept again later */
    char            spec[128];
};

/* Bind every [proxy] listen address; -1 with the reason in err. */
int listener_start_all(struct sidecar *sc, char *err, size_t errlen);
void listener_stop_all(struct sidecar *sc);

#endif
