/* Listening sockets (TCP and unix) and accepting app connections. */
#ifndef SIDECAR_LISTENER_H
#define SIDECAR_LISTENER_H

#include <sys/types.h>
#include <stddef.h>

#include "sidecar.h"

struct listener {
    struct sidecar *sc;
    int             fd;
    ev_io           io;
    ev_timer        pause;        /* out of descriptors: accept again later */
    char            spec[128];
    int             admin;        /* the admin socket: its clients are admins */
    ino_t           unix_ino;     /* its socket file: removed at stop only if
                                   * no newer process has put its own there */
};

/* Bind every [proxy] listen address; -1 with the reason in err. */
int listener_start_all(struct sidecar *sc, char *err, size_t errlen);
void listener_stop_all(struct sidecar *sc);
/* Listen on cfg's addresses and admin socket (at start, and on reload).
 * New ones are bound first (all or nothing: -1 with the reason, and
 * nothing changed), then those no longer wanted are closed; the others
 * keep their socket and its queue. */
int listener_reload(struct sidecar *sc, const struct config *cfg, char *err, size_t errlen);

#endif
