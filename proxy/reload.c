/* Re-reading proxy.ini while running (SIGHUP, PROXY RELOAD). The new file
 * is parsed whole and its new addresses bound or resolved first: if any of
 * that fails, nothing changes. Then the config struct is swapped (most
 * keys are read from sc->cfg where they are used), listeners and the HTTP
 * socket follow their addresses, and the node set follows the upstream
 * keys (nodes.c: retired nodes finish what is in flight). No app
 * connection is closed: a lowered cap applies to new connections. */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "client.h"
#include "cluster.h"
#include "http.h"
#include "listener.h"
#include "master.h"
#include "nodes.h"
#include "slowlog.h"
#include "users.h"

/* "key, key" of what changed among the keys that move sockets. */
static void note(char *out, size_t len, int changed, const char *key)
{
    size_t used = strlen(out);

    if (changed)
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", key);
}

static void refused(struct config *nc, char *msg, size_t msglen, const char *why)
{
    snprintf(msg, msglen, "%s", why);
    log_warn("reload refused, nothing changed: %s", msg);
    config_free(nc);
    free(nc);
}

int reload_config(struct sidecar *sc, char *msg, size_t msglen)
{
    struct config *nc = malloc(sizeof *nc), *old = sc->cfg;
    char moved[400] = "", err[400];
    int http_fd = -1, new_http;
    struct node *n;

    if (!nc) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    config_defaults(nc);
    if (config_load(nc, sc->cfg_path, err, sizeof err) < 0) {
        refused(nc, msg, msglen, err);
        return -1;
    }
    /* Everything that can fail, before anything changes (the file's
     * addresses were resolved by config_load). A draining proxy has
     * closed its listeners already and keeps them closed. The TLS files
     * are read again whether or not their names changed: rotated
     * certificates keep their paths. */
    if (config_cluster_changed(old, nc)) {
        refused(nc, msg, msglen, "upstream.cluster cannot change on a reload (restart the "
                "proxy to follow another cluster, or to leave or enter cluster mode)");
        return -1;
    }
    struct tls_ctx *tls;
    if (nodes_tls_load(nc, &tls, err, sizeof err) < 0) {
        refused(nc, msg, msglen, err);
        return -1;
    }
    new_http = !sc->draining && !config_same_str(old->metrics_listen, nc->metrics_listen);
    if (new_http && http_bind(nc->metrics_listen, &http_fd, err, sizeof err) < 0) {
        tls_ctx_unref(tls);
        refused(nc, msg, msglen, err);
        return -1;
    }
    int new_listen = !sc->draining && (!config_same_list(&old->listen, &nc->listen) ||
                                       !config_same_str(old->admin_socket, nc->admin_socket));
    if (new_listen && listener_reload(sc, nc, err, sizeof err) < 0) {
        if (http_fd >= 0)
            close(http_fd);
        tls_ctx_unref(tls);
        refused(nc, msg, msglen, err);
        return -1;
    }
    sc->cfg = nc;
    /* links, checks and sentinel connections opened from now on use the
     * new files; open ones keep theirs (each holds its context) */
    tls_ctx_unref(sc->tls);
    sc->tls = tls;
    if (new_http)
        http_install(sc, http_fd, nc->metrics_listen);
    log_set_level(nc->log_level);
    sc->req_limits.max_bulk = (long long)nc->max_query_buffer < RESP_MAX_BULK
                              ? (long long)nc->max_query_buffer : RESP_MAX_BULK;
    if (!sc->cl)                 /* a cluster's nodes come from its map, not the file */
        master_reconfigure(sc, old);
    else
        cluster_reconfigure(sc);
    if (sc->sentinels)
        health_sentinels_set_tls(sc->sentinels, nc->sentinel_tls ? sc->tls : NULL,
                                 nc->tls_server_name);
    note(moved, sizeof moved, !sc->draining && !config_same_list(&old->listen, &nc->listen),
         "proxy.listen");
    note(moved, sizeof moved, !sc->draining && !config_same_str(old->admin_socket,
                                                              nc->admin_socket), "admin.socket");
    note(moved, sizeof moved, new_http, "admin.metrics_listen");
    /* with sentinels, master and replicas are only a fallback at start */
    note(moved, sizeof moved, !sc->sentinels && config_nodes_changed(old, nc), "upstream nodes");
    note(moved, sizeof moved, config_sentinels_changed(old, nc), "sentinels");
    note(moved, sizeof moved, config_links_changed(old, nc), "upstream links");
    /* The pools and checkers that stay keep pointers into the config. */
    struct pool_config pc;
    struct checker_config hc;
    nodes_configs(sc, &pc, &hc);
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        pool_configure(n->pool, &pc);
        health_configure(&n->health, &hc);
    }
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        pool_configure(n->pool, &pc);
    users_reconfigure(sc);
    if (slowlog_configure(sc) < 0)
        log_warn("reload: out of memory for a slowlog of %d entries; kept the old one",
                 nc->slowlog_max_len);
    if (sc->master)
        pool_keep_idle(sc->master->pool, nc->min_idle_leases);
    ev_timer_stop(sc->loop, &sc->idle_w);
    ev_timer_set(&sc->idle_w, client_sweep_period(nc), client_sweep_period(nc));
    ev_timer_start(sc->loop, &sc->idle_w);
    config_free(old);
    free(old);
    sc->st.reloads++;
    if (moved[0])
        snprintf(msg, msglen, "reloaded; changed in place: %s", moved);
    else
        snprintf(msg, msglen, "reloaded");
    log_info("%s: %s", sc->cfg_path, msg);
    return 0;
}
