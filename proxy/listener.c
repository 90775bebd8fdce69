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
        sc->on_accept(sc, fd, &peer, e, admin);
    }
}

static void listener_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct listener *li = w->data;
    (void)revents;
    ev_io_start(loop, &li->io);
}

/* Bind one address; the watchers are set up by watch(). */
static int open_one(struct listener *li, struct sidecar *sc, const char *spec, char *err,
                    size_t errlen)
{
    struct net_addr a;
    struct stat st;
    char why[200];

    memset(li, 0, sizeof *li);
    if (net_resolve(spec, &a, why, sizeof why) < 0 ||
        (li->fd = net_listen(&a, 1024, why, sizeof why)) < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, why);
        return -1;
    }
    li->sc = sc;
    snprintf(li->spec, sizeof li->spec, "%s", spec);
    if (strncmp(li->spec, "unix:", 5) == 0 && stat(li->spec + 5, &st) == 0)
        li->unix_ino = st.st_ino;
    return 0;
}

/* (Re)start its watchers where li now lives. */
static void watch(struct listener *li)
{
    ev_io_init(&li->io, listener_accept, li->fd, EV_READ);
    ev_timer_init(&li->pause, listener_resume, 0.1, 0);
    li->io.data = li->pause.data = li;
    ev_io_start(li->sc->loop, &li->io);
}

static void close_one(struct listener *li)
{
    struct stat st;

    ev_io_stop(li->sc->loop, &li->io);
    ev_timer_stop(li->sc->loop, &li->pause);
    close(li->fd);
    /* the socket file goes only if it is still ours, not a newer process's */
    if (strncmp(li->spec, "unix:", 5) == 0 && stat(li->spec + 5, &st) == 0 &&
        st.st_ino == li->unix_ino)
        unlink(li->spec + 5);
}

int listener_start_all(struct sidecar *sc, char *err, size_t errlen)
{
    return listener_reload(sc, &sc->cfg->listen, err, errlen);   /* from none */
}

int listener_reload(struct sidecar *sc, const struct addr_list *want, char *err, size_t errlen)
{
    struct listener *nl = calloc((size_t)want->n, sizeof *nl);
    int *from = calloc((size_t)want->n, sizeof *from);

    if (!nl || !from) {
        free(nl);
        free(from);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* New addresses first: if one cannot be bound, nothing changes. */
    for (int i = 0; i < want->n; i++) {
        from[i] = -1;
        for (int j = 0; j < sc->nlisteners; j++)
            if (strcmp(sc->listeners[j].spec, want->v[i]) == 0)
                from[i] = j;
        if (from[i] < 0 && open_one(&nl[i], sc, want->v[i], err, errlen) < 0) {
            for (int k = 0; k < i; k++)
                if (from[k] < 0)
                    close_one(&nl[k]);
            free(nl);
            free(from);
            return -1;
        }
    }
    for (int j = 0; j < sc->nlisteners; j++) {
        int wanted = 0;
        for (int i = 0; i < want->n; i++)
            wanted |= from[i] == j;
        if (!wanted) {
            log_info("stopped listening on %s (reload)", sc->listeners[j].spec);
            close_one(&sc->listeners[j]);
        }
    }
    /* The sockets that stay move to the new array: same fd, watchers
     * started again at their new address. */
    for (int i = 0; i < want->n; i++) {
        if (from[i] >= 0) {
            struct listener *old = &sc->listeners[from[i]];
            ev_io_stop(sc->loop, &old->io);
            ev_timer_stop(sc->loop, &old->pause);
            nl[i] = *old;
        } else {
            log_info("listening on %s", nl[i].spec);
        }
        watch(&nl[i]);
    }
    free(sc->listeners);
    free(from);
    sc->listeners = nl;
    sc->nlisteners = want->n;
    return 0;
}

void listener_stop_all(struct sidecar *sc)
{
    for (int i = 0; i < sc->nlisteners; i++)
        close_one(&sc->listeners[i]);
    free(sc->listeners);
    sc->listeners = NULL;
    sc->nlisteners = 0;
}
