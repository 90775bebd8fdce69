/* redis-sidecar: command line, config, signals, and the loop. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "client.h"
#include "hold.h"
#include "http.h"
#include "listener.h"
#include "master.h"
#include "nodes.h"
#include "cluster.h"
#include "pause.h"
#include "reload.h"
#include "request.h"
#include "sidecar.h"
#include "slowlog.h"
#include "users.h"

static const char usage[] =
    "Usage: redis-sidecar -c FILE [--check] [--replace-admin-socket]\n"
    "       redis-sidecar --version | --help\n"
    "\n"
    "A Redis proxy for localhost: apps connect to it as to Redis; it shares a\n"
    "few upstream connections among them.\n"
    "\n"
    "  -c, --config FILE  proxy.ini to use (see the annotated example)\n"
    "  --check            validate FILE, print what is wrong, and exit\n"
    "  --replace-admin-socket  take over an [admin] socket another process still\n"
    "                     serves (a restart: the old one is about to drain)\n"
    "  -v, --version      print the version\n"
    "  -h, --help         this text\n"
    "\n"
    "Signals: SIGINT and SIGTERM drain (no new connections or requests, every\n"
    "request in flight answered, exit within [proxy] shutdown_timeout); a second\n"
    "one stops at once. SIGHUP reads the configuration again.\n";

/* One app connection costs one descriptor: take all the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_info("file descriptor limit %llu", (unsigned long long)rl.rlim_cur);
}

/* SIGHUP (systemctl reload): proxy.ini again; see reload.c. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    char msg[600];
    (void)loop;
    (void)revents;
    log_info("signal %d: reloading %s", w->signum, ((struct sidecar *)w->data)->cfg_path);
    reload_config(w->data, msg, sizeof msg);
}

/* The first SIGTERM/SIGINT drains: no new connections, no new requests
 * (they get "-ERR proxy is shutting down" after earlier replies), every
 * request in flight gets its reply. A second one stops at once. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    if (sc->draining || sc->cfg->shutdown_timeout <= 0) {
        log_info("signal %d: stopping now", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    log_info("signal %d: draining %u clients (up to shutdown_timeout %gs; "
             "a second signal stops at once)", w->signum, sc->nclients,
             sc->cfg->shutdown_timeout);
    pause_drain(sc);
}

/* Runs after every callback of an iteration, before the loop waits:
 * higher priority than the pools' flush, so requests a resumed client
 * hands to a link still go out in this iteration. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    request_flush_all(w->data);
}

/* The loop's time, once per iteration, right after the poll and before
 * any callback: the request path reads sc->now instead of calling ev_now(). */
static void on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    ((struct sidecar *)w->data)->now = ev_now(loop);
}

static void on_idle_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    client_sweep(w->data);
    buf_spare_trim();                /* large blocks not reused since the last sweep */
}

static int start_nodes(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;

    nodes_init(sc);
    users_init(sc);
    hold_start(sc);
    TAILQ_INIT(&sc->resume_waiters);
    if ((cfg->cluster.n ? cluster_start(sc, err, errlen) : master_start(sc, err, errlen)) < 0)
        return -1;
    ev_init(&sc->idle_w, on_idle_sweep);      /* a reload may change its period */
    sc->idle_w.data = sc;
    double t = client_sweep_period(cfg);
    ev_timer_set(&sc->idle_w, t, t);
    ev_timer_start(sc->loop, &sc->idle_w);
    return 0;
}

/* *cfgp (heap) may be replaced by a reload: the caller frees what it
 * points to on return. */
/* Admin rights come from the admin socket, [admin] allow or the admin
 * password; with none of them set, no client has them. Until 0.2 every
 * loopback client was an admin by default: say so, once. */
static void warn_no_admin(const struct config *cfg)
{
    if (!cfg->admin_socket && !cfg->admin_allow.n && !cfg->admin_password)
        log_warn("no client can run PROXY commands: set [admin] socket (e.g. "
                 "/run/redis-sidecar/admin.sock), [admin] allow or [admin] password. "
                 "Loopback clients are no longer admins by default");
}

static int run(struct config **cfgp, const char *path, int replace_admin_socket)
{
    struct config *cfg = *cfgp;
    struct sidecar sc;
    char err[300];

    memset(&sc, 0, sizeof sc);
    sc.loop = ev_default_loop(EVFLAG_AUTO);
    sc.cfg = cfg;
    sc.cfg_path = path;
    sc.cache.max_free = 4096;
    sc.req_limits.max_bulk = (long long)cfg->max_query_buffer < RESP_MAX_BULK
                             ? (long long)cfg->max_query_buffer : RESP_MAX_BULK;
    sc.started = ev_now(sc.loop);
    sc.rbuf = malloc(SIDECAR_RBUF);
    sc.on_accept = request_accept;
    sc.replace_admin_socket = replace_admin_socket;
    warn_no_admin(cfg);
    command_table_init(&sc.cmds);
    if (iptable_init(&sc.ips) < 0 || apps_init(&sc.apps) < 0 ||
        slowlog_configure(&sc) < 0) {
        log_error("out of memory");
        return 1;
    }
    TAILQ_INIT(&sc.clients);
    TAILQ_INIT(&sc.closed);

    signal(SIGPIPE, SIG_IGN);
    /* Buffers over 256 KB get their own mapping, given back to the system
     * when freed: a client closed at a 64 MB output limit leaves nothing
     * behind. (Left to itself, glibc raises this threshold after the first
     * large free, and later large buffers stay in the heap.) */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    raise_nofile();
    /* Before the first connection can come: a SIGHUP sent as soon as the
     * port answers must reload, not kill (its default action). The loop
     * handles them once it runs. */
    ev_signal_init(&sc.sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&sc.sig_term, on_stop_signal, SIGTERM);
    sc.sig_int.data = sc.sig_term.data = &sc;
    ev_signal_init(&sc.sig_hup, on_hup, SIGHUP);
    sc.sig_hup.data = &sc;
    ev_signal_start(sc.loop, &sc.sig_hup);
    ev_signal_start(sc.loop, &sc.sig_int);
    ev_signal_start(sc.loop, &sc.sig_term);
    if (nodes_tls_load(cfg, &sc.tls, err, sizeof err) < 0 ||
        listener_start_all(&sc, err, sizeof err) < 0 || http_start(&sc, err, sizeof err) < 0 ||
        start_nodes(&sc, err, sizeof err) < 0) {
        log_error("%s", err);
        return 1;
    }
    sc.now = ev_now(sc.loop);
    ev_check_init(&sc.now_w, on_check);
    sc.now_w.data = &sc;
    ev_set_priority(&sc.now_w, EV_MAXPRI);
    ev_check_start(sc.loop, &sc.now_w);
    ev_prepare_init(&sc.flush_w, on_prepare);
    sc.flush_w.data = &sc;
    ev_set_priority(&sc.flush_w, EV_MAXPRI);
    ev_prepare_start(sc.loop, &sc.flush_w);
    if (cfg->cluster.n)
        log_info("redis-sidecar %s: a Redis Cluster, slot map from %d seed(s), %d links per node",
                 SIDECAR_VERSION, cfg->cluster.n, cfg->connections);
    else if (cfg->sentinels.n)
        log_info("redis-sidecar %s: master \"%s\" from %d sentinels, %d links per node",
                 SIDECAR_VERSION, cfg->master_name, cfg->sentinels.n, cfg->connections);
    else
        log_info("redis-sidecar %s: master %s, %d replicas, %d links per node", SIDECAR_VERSION,
                 cfg->master, cfg->replicas.n, cfg->connections);

    ev_run(sc.loop, 0);

    listener_stop_all(&sc);
    http_stop(&sc);
    ev_timer_stop(sc.loop, &sc.idle_w);
    client_close_all(&sc);
    pause_stop(&sc);
    master_stop(&sc);
    cluster_stop(&sc);
    hold_stop(&sc);
    nodes_stop(&sc);
    users_stop(&sc);
    tls_ctx_unref(sc.tls);
    req_cache_clear(&sc.cache);
    iptable_free(&sc.ips);
    apps_free(&sc.apps);
    command_table_free(&sc.cmds);
    buf_cache_clear(&sc.bufs);
    free(sc.dirty.v);
    free(sc.readable.v);
    free(sc.rbuf);
    buf_free(&sc.inline_req);
    buf_free(&sc.scratch);
    ev_prepare_stop(sc.loop, &sc.flush_w);
    ev_check_stop(sc.loop, &sc.now_w);
    ev_loop_destroy(sc.loop);
    log_info("stopped");
    *cfgp = sc.cfg;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0, replace_admin_socket = 0;

    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--check")) {
            check = 1;
        } else if (!strcmp(argv[i], "--replace-admin-socket")) {
            replace_admin_socket = 1;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--version")) {
            printf("redis-sidecar %s\n", SIDECAR_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "redis-sidecar: unknown argument \"%s\"\n\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "redis-sidecar: -c FILE is required\n\n%s", usage);
        return 2;
    }

    struct config *cfg = malloc(sizeof *cfg);
    char err[400];
    if (!cfg)
        return 1;
    config_defaults(cfg);
    int rc = config_load(cfg, path, err, sizeof err) < 0 ? 1 : 0;
    if (!rc && check) {                  /* the TLS files too: a reload would read them */
        struct tls_ctx *tls;
        rc = nodes_tls_load(cfg, &tls, err, sizeof err) < 0 ? 1 : 0;
        tls_ctx_unref(tls);
    }
    if (rc)
        fprintf(stderr, "%s\n", err);
    else if (check)
        printf("%s: OK\n", path);
    if (!rc && !check) {
        log_set_level(cfg->log_level);
        rc = run(&cfg, path, replace_admin_socket);
    }
    config_free(cfg);
    free(cfg);
    return rc;
}
