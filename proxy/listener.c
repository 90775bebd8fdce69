/* Accepting app connections. */
#include "listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "client.h"

#define ACCEPT_BATCH 256   /* per readiness event, so one busy listener cannot starve the loop */

static void refusal_counted(struct sidecar *sc, struct ipstat *e, enum refusal why,
                            const char *addr, const char *line)
{
    sc->st.refused[why]++;
    /* One line per address and reason when it starts, not one per connection. */
    if (e->refused[why]++ == 0)
        log_warn("client %s refused: %.*s; further refusals are counted in "
                 "PROXY CLIENTS", addr, (int)strlen(line) - 7, line + 5);
}

/* Caps and bans apply to every address, admins included; admins only get
 * [admin] reserved slots beyond max_connections. NULL admits; otherwise
 * the error line for the refused connection. */
static const char *admit(struct sidecar *sc, const struct ip *ip, int is_unix,
                         struct ipstat *e, int admin, char *line, size_t len)
{
    const struct config *cfg = sc->cfg;
    ev_tstamp now = ev_now(sc->loop);
    char a[64] = "unix";
    enum refusal why;
    double ban;

    if (!is_unix)
        ip_format(ip, a, sizeof a);
    if (!is_unix && (ban = iptable_banned_for(&sc->ips, ip, now)) > 0) {
        why = REFUSED_BANNED;
        snprintf(line, len, "-ERR client IP %s is banned for another %.0fs\r\n", a, ban + 0.5);
    } else if (!is_unix && (cidr_list_match(&cfg->deny, ip) ||
                            (cfg->allow.n && !cidr_list_match(&cfg->allow, ip)))) {
        why = REFUSED_DENIED;
        snprintf(line, len, "-ERR client IP %s is not allowed to connect\r\n", a);
    } else if ((int)sc->nclients >= cfg->max_connections + (admin ? cfg->admin_reserved : 0)) {
        why = REFUSED_MAX_CONN;
        snprintf(line, len, "-ERR max number of clients reached (limit %d)\r\n",
                 cfg->max_connections);
    } else if (!is_unix && cfg->max_connections_per_ip &&
               (int)e->current >= cfg->max_connections_per_ip) {
        why = REFUSED_PER_IP;
        snprintf(line, len, "-ERR max connections per client IP reached (%s, limit %d)\r\n",
                 a, cfg->max_connections_per_ip);
    } else {
        return NULL;
    }
    refusal_counted(sc, e, why, a, line);
    return line;
}

/* One clear line, then a close that does not turn into a reset: FIN after
 * the line, and what the client already sent is read away first. */
static void refuse(int fd, const char *line)
{
    char sink[4096];

    if (write(fd, line, strlen(line)) < 0) {
        /* nothing more to do: the close says it */
    }
    shutdown(fd, SHUT_WR);
    while (read(fd, sink, sizeof sink) > 0)
        ;
    close(fd);
}

static void listener_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *li = w->data;
    struct sidecar *sc = li->sc;
    (void)revents;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(li->fd, (struct sockaddr *)&peer, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* Out of descriptors, the connection stays queued and the
             * listener readable: stop watching it for a moment instead of
             * spinning. */
            if (errno == EMFILE || errno == ENFILE) {
                log_warn("listener %s: accept: %s; pausing accepts for 100ms",
                         li->spec, strerror(errno));
                ev_io_stop(loop, &li->io);
                ev_timer_set(&li->pause, 0.1, 0);
                ev_timer_start(loop, &li->pause);
            }
            return;
        }
        if (len == 0 || peer.ss_family == AF_UNSPEC)
            peer.ss_family = AF_UNIX;
        struct ip ip;
        int is_unix = ip_from_sockaddr((struct sockaddr *)&peer, &ip) < 0;
        struct ipstat *e = iptable_get(&sc->ips, &ip, ev_now(loop));
        if (!e) {
            refuse(fd, "-ERR proxy out of memory\r\n");
            continue;
        }
        e->last_seen = ev_now(loop);
        int admin = is_unix || cidr_list_match(&sc->cfg->admin_allow, &ip);
        char line[160];
        const char *no = admit(sc, &ip, is_unix, e, admin, line, sizeof line);
        if (no) {
            refuse(fd, no);
            continue;
        }
        e->accepted++;
        if (++e->current > e->peak)
            e->peak = e->current;
        client_new(sc, fd, &peer, e, admin);
    }
}

static void listener_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct listener *li = w->data;
    (void)revents;
    ev_io_start(loop, &li->io);
}

int listener_start_all(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;

    sc->listeners = calloc((size_t)cfg->listen.n, sizeof *sc->listeners);
    for (int i = 0; i < cfg->listen.n; i++) {
        struct listener *li = &sc->listeners[i];
        struct net_addr a;
        char why[200];

        if (net_resolve(cfg->listen.v[i], &a, why, sizeof why) < 0 ||
            (li->fd = net_listen(&a, 1024, why, sizeof why)) < 0) {
            snprintf(err, errlen, "listen %s: %s", cfg->listen.v[i], why);
            return -1;
        }
        li->sc = sc;
        snprintf(li->spec, sizeof li->spec, "%s", cfg->listen.v[i]);
        struct stat st;
        if (strncmp(li->spec, "unix:", 5) == 0 && stat(li->spec + 5, &st) == 0)
            li->unix_ino = st.st_ino;
        ev_io_init(&li->io, listener_accept, li->fd, EV_READ);
        ev_timer_init(&li->pause, listener_resume, 0.1, 0);
        li->io.data = li->pause.data = li;
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
        ev_timer_stop(sc->loop, &sc->listeners[i].pause);
        close(sc->listeners[i].fd);
        struct stat st;
        if (strncmp(sc->listeners[i].spec, "unix:", 5) == 0 &&
            stat(sc->listeners[i].spec + 5, &st) == 0 && st.st_ino == sc->listeners[i].unix_ino)
            unlink(sc->listeners[i].spec + 5);
    }
    free(sc->listeners);
    sc->listeners = NULL;
    sc->nlisteners = 0;
}
