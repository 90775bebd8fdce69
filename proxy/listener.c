/* Accepting app connections. */
#include "listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "client.h"

#define ACCEPT_BATCH 64   /* per readiness event, so one busy listener cannot starve the loop */

static void listener_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *li = w->data;
    (void)loop;
    (void)revents;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(li->fd, (struct sockaddr *)&peer, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_warn("listener %s: accept: %s", li->spec, strerror(errno));
            return;
        }
        if (len == 0 || peer.ss_family == AF_UNSPEC)
            peer.ss_family = AF_UNIX;
        client_new(li->sc, fd, &peer);
    }
}

int listener_start_all(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;

    sc->listeners = calloc((size_t)cfg->nlisten, sizeof *sc->listeners);
    for (int i = 0; i < cfg->nlisten; i++) {
        struct listener *li = &sc->listeners[i];
        struct net_addr a;
        char why[200];

        if (net_resolve(cfg->listen[i], &a, why, sizeof why) < 0 ||
            (li->fd = net_listen(&a, 1024, why, sizeof why)) < 0) {
            snprintf(err, errlen, "listen %s: %s", cfg->listen[i], why);
            return -1;
        }
        li->sc = sc;
        snprintf(li->spec, sizeof li->spec, "%s", cfg->listen[i]);
        ev_io_init(&li->io, listener_accept, li->fd, EV_READ);
        li->io.data = li;
        ev_io_start(sc->loop, &li->io);
        sc->nlisteners++;
        log_info("listening on %s", li->spec);
    }
    return 0;
}

void listener_stop_all(struct sidecar *sc)
{
    for (int i = 0; i < sc->nlisteners; i++) {
        ev_io_stop(sc->loop, &sc->listeners[i].io);
        close(sc->listeners[i].fd);
        if (strncmp(sc->listeners[i].spec, "unix:", 5) == 0)
            unlink(sc->listeners[i].spec + 5);
    }
    free(sc->listeners);
    sc->listeners = NULL;
    sc->nlisteners = 0;
}
