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

/* A refusal, counted where it belongs (the address's entry; the app's
 * too for the app's own caps and bans) and logged once per address or
 * app and reason, not once per connection. app: NULL before the peer
 * was looked up. */
static void refusal_counted(struct sidecar *sc, struct ipstat *e, struct app *app,
                            enum refusal why, const char *addr, const char *line)
{
    sc->st.refused[why]++;
    if (app) {
        e->refused[REFUSED_PER_APP]++;   /* the address only saw an app's rule */
        if (app->refused[why]++ == 0)
            log_warn("app %s refused: %.*s; further refusals are counted in PROXY APPS",
                     app->key, (int)strlen(line) - 7, line + 5);
    } else if (e->refused[why]++ == 0) {
        log_warn("client %s refused: %.*s; further refusals are counted in "
                 "PROXY CLIENTS", addr, (int)strlen(line) - 7, line + 5);
    }
}

/* The limits on addresses: caps and bans apply to every address, admins
 * included; admins only get [admin] reserved slots beyond max_connections.
 * NULL admits; otherwise the error line for the refused connection. */
static const char *admit_address(struct sidecar *sc, const struct ip *ip, int is_unix,
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
    refusal_counted(sc, e, NULL, why, a, line);
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

/* The admin socket admits the proxy's own user and root (the file's mode
 * says the same; this holds even if someone changes it): 1, or -1 with
 * the refusal line. */
static int admin_peer(int fd, char *line, size_t len)
{
    struct ucred cred;
    socklen_t cl = sizeof cred;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 &&
        (cred.uid == 0 || cred.uid == geteuid()))
        return 1;
    snprintf(line, len, "-ERR the admin socket admits only the proxy's own user and root\r\n");
    return -1;
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
        char line[200];
        int admin = li->admin ? admin_peer(fd, line, sizeof line)
                              : !is_unix && cidr_list_match(&sc->cfg->admin_allow, &ip);
        const char *no = admin < 0 ? line
                                   : admit_address(sc, &ip, is_unix, e, admin, line, sizeof line);
        if (admin < 0)
            refusal_counted(sc, e, NULL, REFUSED_DENIED, "admin socket", line);
        if (no) {
            refuse(fd, no);
            continue;
        }
        /* who it is, once: caps, views and reports go by its app. The
         * admin socket is the operator's way in: an app's cap or ban (its
         * uid's, say) never shuts it, as address caps spare unix peers. */
        struct peer_id id;
        struct app *app = apps_identify(sc, fd, &peer, len, &ip, is_unix, &id);
        enum refusal why;
        if (!li->admin && (no = apps_admit(sc, app, line, sizeof line, &why)) != NULL) {
            refusal_counted(sc, e, app, why, app->key, line);
            refuse(fd, no);
            continue;
        }
        e->accepted++;
        if (++e->current > e->peak)
            e->peak = e->current;
        struct origin o = {.ips = e, .proc = apps_attach(sc, app, &id), .peer_ino = id.ino};
        sc->on_accept(sc, fd, &peer, &o, admin);
    }
}

static void listener_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct listener *li = w->data;
    (void)revents;
    ev_io_start(loop, &li->io);
}

/* Bind one address; the watchers are set up by watch(). The admin socket
 * is made with mode 0600, and replaces a stale file but not one another
 * live process serves (unless told to: a restart's new process). */
static int open_one(struct listener *li, struct sidecar *sc, const char *spec, int admin,
                    char *err, size_t errlen)
{
    struct net_addr a;
    struct stat st;
    char why[200];

    memset(li, 0, sizeof *li);
    if (net_resolve(spec, &a, why, sizeof why) < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, why);
        return -1;
    }
    if (admin && !sc->replace_admin_socket && net_unix_live(&a)) {
        snprintf(err, errlen, "admin socket %s is served by another running process "
                 "(stop it, or start with --replace-admin-socket to take it over)", spec + 5);
        return -1;
    }
    mode_t mask = admin ? umask(0177) : 0;
    li->fd = net_listen(&a, admin ? 16 : 1024, why, sizeof why);
    if (admin)
        umask(mask);
    if (li->fd < 0) {
        snprintf(err, errlen, "%s %s: %s", admin ? "admin socket" : "listen", spec, why);
        return -1;
    }
    li->sc = sc;
    li->admin = admin;
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
    return listener_reload(sc, sc->cfg, err, errlen);   /* from none */
}

int listener_reload(struct sidecar *sc, const struct config *cfg, char *err, size_t errlen)
{
    int n = cfg->listen.n + (cfg->admin_socket != NULL);
    struct listener *nl = calloc((size_t)n, sizeof *nl);
    int *from = calloc((size_t)n, sizeof *from);
    char admin_spec[sizeof nl->spec];

    if (!nl || !from) {
        free(nl);
        free(from);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->admin_socket)
        snprintf(admin_spec, sizeof admin_spec, "unix:%s", cfg->admin_socket);
    /* New addresses first: if one cannot be bound, nothing changes. */
    for (int i = 0; i < n; i++) {
        int admin = i == cfg->listen.n;
        const char *spec = admin ? admin_spec : cfg->listen.v[i];
        from[i] = -1;
        for (int j = 0; j < sc->nlisteners; j++)
            if (strcmp(sc->listeners[j].spec, spec) == 0 && sc->listeners[j].admin == admin)
                from[i] = j;
        if (from[i] < 0 && open_one(&nl[i], sc, spec, admin, err, errlen) < 0) {
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
        for (int i = 0; i < n; i++)
            wanted |= from[i] == j;
        if (!wanted) {
            log_info("stopped listening on %s (reload)", sc->listeners[j].spec);
            close_one(&sc->listeners[j]);
        }
    }
    /* The sockets that stay move to the new array: same fd, watchers
     * started again at their new address. */
    for (int i = 0; i < n; i++) {
        if (from[i] >= 0) {
            struct listener *old = &sc->listeners[from[i]];
            ev_io_stop(sc->loop, &old->io);
            ev_timer_stop(sc->loop, &old->pause);
            nl[i] = *old;
        } else if (nl[i].admin) {
            log_info("admin socket on %s (mode 0600: this user and root)", nl[i].spec + 5);
        } else {
            log_info("listening on %s", nl[i].spec);
        }
        watch(&nl[i]);
    }
    free(sc->listeners);
    free(from);
    sc->listeners = nl;
    sc->nlisteners = n;
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
