/* The node set: adding, finding, dropping and retiring nodes. */
#include "nodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/invariant.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "cluster.h"
#include "lease.h"
#include "upstream.h"
#include "users.h"

void nodes_count(struct sidecar *sc)
{
    if (CHECKS) {
        const struct node *n;
        int k = 0;
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            k++;
        assert(k == sc->nnodes);
    }
    /* a cluster's nodes are its shards' masters and, with read_from not
     * master, their replicas */
    int masters = sc->cl ? sc->cl->nshards : sc->master != NULL;
    sc->nreplicas = sc->nnodes > masters ? sc->nnodes - masters : 0;
}

/* A node deposed or dropped takes its retired twins along (the same
 * address, left by a reload with their leases kept): those leases must
 * not go on writing to it. Freed at the next retire tick. */
void nodes_evacuate_twins(struct sidecar *sc, const char *addr, const char *why)
{
    struct node *n;

    struct pool *p;

    TAILQ_FOREACH(n, &sc->retiring, tqe)
        if (strcmp(n->pool->cfg.name, addr) == 0) {
            NODE_FOREACH_POOL(sc, n, p)
                pool_evacuate(p, why);
            n->keep_leases = 0;
        }
}

struct node *nodes_find(struct sidecar *sc, const char *addr)
{
    struct net_addr a;
    char why[200];
    struct node *n;

    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if (strcmp(n->pool->cfg.name, addr) == 0)
            return n;
    if (net_resolve(addr, &a, why, sizeof why) < 0)
        return NULL;
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if (n->pool->cfg.addr.len == a.len && memcmp(&n->pool->cfg.addr.ss, &a.ss, a.len) == 0)
            return n;
    return NULL;
}

void nodes_configs(const struct sidecar *sc, struct pool_config *pc, struct checker_config *hc)
{
    const struct config *cfg = sc->cfg;

    *pc = (struct pool_config){
        .connections = cfg->connections,
        .connect_timeout = cfg->connect_timeout,
        .queue_timeout = sc->sentinels || sc->cl ? cfg->failover_wait : cfg->connect_timeout,
        .reply_timeout = cfg->reply_timeout,
        .database = cfg->database,
        .username = cfg->username,
        .password = cfg->upstream_password,
        .retry_reads = cfg->retry_reads,
        .max_leased = cfg->max_leased,
        .max_reply = cfg->max_output_buffer,
        .validate_after = cfg->validate_after,
        .ping_timeout = cfg->ping_timeout,
        .ping_interval = cfg->ping_interval,
        .max_link_age = cfg->max_link_age,
        .tcp_keepalive = (int)cfg->tcp_keepalive,
        .tcp_user_timeout_ms = (int)(cfg->tcp_user_timeout * 1000),
        .tls = cfg->tls ? sc->tls : NULL,
        .tls_name = cfg->tls_server_name,
    };
    *hc = (struct checker_config){
        .interval = cfg->check_interval,
        .down_after = cfg->down_after,
        .username = cfg->username,
        .password = cfg->upstream_password,
        .tls = cfg->tls ? sc->tls : NULL,
        .tls_name = cfg->tls_server_name,
    };
}

int nodes_tls_load(const struct config *cfg, struct tls_ctx **ctx, char *err, size_t errlen)
{
    const struct tls_settings ts = {
        .ca_file = cfg->tls_ca_file, .cert_file = cfg->tls_cert_file,
        .key_file = cfg->tls_key_file, .verify = (enum tls_verify)cfg->tls_verify,
    };

    *ctx = NULL;
    if (!config_uses_tls(cfg))
        return 0;
    if (!(*ctx = tls_ctx_new(&ts, err, errlen)))
        return -1;
    if (ts.verify == TLS_VERIFY_OFF)
        log_warn("upstream.tls_verify = off: Redis's certificates are not checked; anyone "
                 "on the path can read and change the traffic");
    return 0;
}

struct node *nodes_add(struct sidecar *sc, const char *addr, const struct checker_hooks *hooks,
                       unsigned flags, char *err, size_t errlen)
{
    const struct pool_callbacks cb = {
        .on_reply = upstream_on_reply, .on_reply_part = upstream_on_reply_part,
        .on_replies = upstream_on_replies, .run_exclude = UPSTREAM_RUN_EXCLUDE,
        .on_unrun = upstream_on_unrun,
        .on_stream = upstream_on_stream, .on_lease_lost = lease_lost,
        .on_stream_unrun = lease_stream_unrun,
        .on_lease_ready = lease_ready, .arg = sc,
    };
    struct pool_config pc;
    struct checker_config hc;
    char why[200];
    struct node *n;

    nodes_configs(sc, &pc, &hc);
    hc.fetch_commands = (flags & NODE_FETCH_COMMANDS) != 0;
    pc.readonly = (flags & NODE_READONLY) != 0;
    snprintf(pc.name, sizeof pc.name, "%s", addr);
    snprintf(hc.name, sizeof hc.name, "%s", addr);
    if (net_resolve(addr, &pc.addr, why, sizeof why) < 0 || health_config_addr(&hc, addr) < 0) {
        snprintf(err, errlen, "%s: %s", addr, why);
        return NULL;
    }
    if ((n = calloc(1, sizeof *n)) != NULL) {
        pc.tls_resume = hc.tls_resume = &n->tls_resume;
        pc.tls_stats = hc.tls_stats = &n->tls_stats;
    }
    if (!n || !(n->pool = pool_new(sc->loop, &pc, &sc->cache, &cb))) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->sc = sc;
    if (users_node_added(sc, n) < 0) {
        users_node_freed(n);
        pool_free(n->pool);
        free(n);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    health_start(&n->health, sc->loop, &hc, hooks, n);
    if (sc->resp3_seen)
        pool_open_resp3(n->pool);    /* on failure, RESP3 reads skip it */
    TAILQ_INSERT_TAIL(&sc->nodes, n, tqe);
    sc->nnodes++;
    nodes_count(sc);
    return n;
}

static void free_node(struct node *n)
{
    health_stop(&n->health);
    users_node_freed(n);
    pool_free(n->pool);
    tls_resume_clear(&n->tls_resume);
    free(n->topo);
    free(n);
}

unsigned nodes_inflight(const struct sidecar *sc, const struct node *n)
{
    const struct pool *p;
    unsigned k = 0;

    NODE_FOREACH_POOL(sc, n, p)
        k += pool_inflight(p);
    return k;
}

static int leases_held(const struct sidecar *sc, const struct node *n)
{
    const struct pool *p;
    int k = 0;

    NODE_FOREACH_POOL(sc, n, p)
        k += pool_leases_held(p);
    return k;
}

void nodes_evacuate(struct sidecar *sc, struct node *n, const char *why)
{
    struct pool *p;

    NODE_FOREACH_POOL(sc, n, p)
        pool_evacuate(p, why);
}

void nodes_set_down(struct sidecar *sc, struct node *n, int down, const char *why)
{
    struct pool *p;

    NODE_FOREACH_POOL(sc, n, p)
        pool_set_down(p, down, why);
}

void nodes_unlist(struct sidecar *sc, struct node *n)
{
    TAILQ_REMOVE(&sc->nodes, n, tqe);
    sc->nnodes--;
}

int nodes_open_resp3(struct sidecar *sc)
{
    struct node *n;
    struct pool *p;

    sc->resp3_seen = 1;
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        NODE_FOREACH_POOL(sc, n, p)
            if (pool_open_resp3(p) < 0)
                return -1;
    return 0;
}

void nodes_relist(struct sidecar *sc, struct node *n)
{
    TAILQ_INSERT_TAIL(&sc->nodes, n, tqe);
    sc->nnodes++;
}

void nodes_drop(struct sidecar *sc, struct node *n, const char *why)
{
    log_info("node %s dropped: %s", n->pool->cfg.name, why);
    nodes_evacuate(sc, n, why);
    nodes_evacuate_twins(sc, n->pool->cfg.name, why);
    nodes_unlist(sc, n);
    nodes_count(sc);
    free_node(n);
}

/* Retiring nodes (left by a reload) take no new request; each is freed
 * once nothing is in flight on it and no client holds a lease there. At
 * its deadline, what its shared links still hold is handed back by the
 * retry rule (requests not run go elsewhere, written writes get "may or
 * may not"); its leases are closed too when its address is gone, so
 * their holders (a subscriber, say) reconnect to the new node, and are
 * left to their holders when the address stays (new links for the same
 * node: a database or pool size change). */
static void on_retire_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    ev_tstamp now = ev_now(loop);
    struct node *n, *next;
    int busy = 0, deadlines = 0;
    (void)revents;

    for (n = TAILQ_FIRST(&sc->retiring); n; n = next) {
        next = TAILQ_NEXT(n, tqe);
        struct pool *p;
        /* Waiting for a node that is gone or down helps nobody. */
        NODE_FOREACH_POOL(sc, n, p)
            pool_evacuate_unready(p, "its node was retired by a reload");
        unsigned inflight = nodes_inflight(sc, n);
        int held = leases_held(sc, n), late = now >= n->retire_at;
        if (late && (inflight || (held && !n->keep_leases)))
            log_warn("node %s retiring: its deadline passed with %u requests in flight and "
                     "%d leases held: %s", n->pool->cfg.name, inflight, held,
                     n->keep_leases ? "handing back the requests, leases stay"
                                    : "handing back the requests, closing the leases");
        if (late && inflight) {
            NODE_FOREACH_POOL(sc, n, p)
                pool_evacuate_shared(p, "its node was retired by a reload");
            inflight = 0;
        }
        if (!inflight)
            NODE_FOREACH_POOL(sc, n, p)
                pool_close_shared(p);    /* idempotent */
        busy |= inflight != 0;
        deadlines |= held && !n->keep_leases;
        if (inflight || (held && (n->keep_leases || !late)))
            continue;                    /* leases: until their holders let go */
        if (held)
            nodes_evacuate(sc, n, "its node was removed by a reload");
        log_info("node %s: retired links closed", n->pool->cfg.name);
        TAILQ_REMOVE(&sc->retiring, n, tqe);
        free_node(n);
    }
    /* Requests are never added to a retiring pool: once clear, it stays so. */
    sc->retiring_busy = busy;
    /* Only kept leases left: their holders may stay for days. */
    w->repeat = busy || deadlines ? 0.1 : 1.0;
    if (TAILQ_EMPTY(&sc->retiring))
        ev_timer_stop(loop, w);
}

/* In-flight requests get shutdown_timeout, and at least reply_timeout. */
void nodes_retire(struct sidecar *sc, struct node *n)
{
    const struct config *cfg = sc->cfg;

    if (n == sc->candidate)
        sc->candidate = NULL;
    struct pool *p;

    health_stop(&n->health);
    NODE_FOREACH_POOL(sc, n, p)
        pool_retire(p);
    sc->retiring_busy |= nodes_inflight(sc, n) != 0;
    n->retire_at = ev_now(sc->loop) + (cfg->shutdown_timeout > cfg->reply_timeout
                                       ? cfg->shutdown_timeout : cfg->reply_timeout);
    TAILQ_INSERT_TAIL(&sc->retiring, n, tqe);
    sc->retire_w.repeat = 0.1;
    ev_timer_again(sc->loop, &sc->retire_w);
    log_info("node %s retiring: no new requests; %u in flight and %d leases finish there",
             n->pool->cfg.name, nodes_inflight(sc, n), leases_held(sc, n));
}

void nodes_keep_leases(struct sidecar *sc)
{
    struct node *n;

    /* whichever reload retired them: a later one may drop or bring back the address */
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        n->keep_leases = nodes_find(sc, n->pool->cfg.name) != NULL;
}

void nodes_init(struct sidecar *sc)
{
    TAILQ_INIT(&sc->nodes);
    TAILQ_INIT(&sc->retiring);
    ev_init(&sc->retire_w, on_retire_tick);
    sc->retire_w.repeat = 0.1;
    sc->retire_w.data = sc;
}

void nodes_stop(struct sidecar *sc)
{
    struct node *n;

    ev_timer_stop(sc->loop, &sc->retire_w);
    while ((n = TAILQ_FIRST(&sc->retiring)) != NULL) {
        TAILQ_REMOVE(&sc->retiring, n, tqe);
        free_node(n);
    }
    sc->master = sc->candidate = NULL;
    while ((n = TAILQ_FIRST(&sc->nodes)) != NULL) {
        nodes_unlist(sc, n);
        free_node(n);
    }
    sc->nreplicas = 0;
}

const char *nodes_version(const struct sidecar *sc)
{
    const struct node *n;

    if (sc->master && sc->master->health.version[0])
        return sc->master->health.version;
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if (n->health.version[0])
            return n->health.version;
    return "unknown";
}

int nodes_is_master(const struct sidecar *sc, const struct node *n)
{
    return n == sc->master || (sc->cl && cluster_is_master(sc, n));
}

const struct topology *nodes_topo(const struct sidecar *sc, const struct node *n)
{
    static const struct topology none;
    const struct topology *t = sc->cl ? cluster_master_topo(sc, n) : &sc->topo;

    return t ? t : &none;
}

void nodes_report(const struct sidecar *sc, struct buf *b)
{
    ev_tstamp now = ev_now(sc->loop);
    const struct node *n;
    int i = 0;

    buf_appendf(b, "# Topology\r\nsource:%s\r\nmaster:%s\r\n",
                sc->cl ? "cluster" : sc->sentinels ? "sentinel" : "static",
                sc->master ? sc->master->pool->cfg.name : "none");
    if (!sc->master)
        buf_appendf(b, "no_master_reason:%s\r\n", sc->no_master_why);
    if (sc->candidate)
        buf_appendf(b, "candidate:%s\r\n", sc->candidate->pool->cfg.name);
    buf_appendf(b, "master_switches:%llu\r\nrequests_held_now:%u\r\n\r\n# Nodes\r\n",
                (unsigned long long)sc->st.master_switches, sc->nheld);
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        const struct pool *p = n->pool;
        const struct checker *h = &n->health;
        char why[96] = "-";
        int master = nodes_is_master(sc, n);
        const char *use = master ? "master" : n == sc->candidate ? "candidate" :
                          !p->down && health_replica_eligible(nodes_topo(sc, n), h,
                                                              sc->cfg->replica_max_lag,
                                                              now, why, sizeof why)
                          ? "replica" : "none";
        buf_appendf(b, "node%d:addr=%s,use=%s,state=%s,role=%s,master_link=%s,offset=%lld,"
                    "lag=%.1f,not_eligible=%s,links=%d,links_ready=%d,links_resp3_ready=%d,links_validating=%d,"
                    "leases=%d,leases_idle=%d,inflight=%u,requests=%llu,version=%s,tls_full=%llu,"
                    "tls_resumed=%llu,tls_failed=%llu\r\n",
                    i++, p->cfg.name, use, p->down ? "down" : "up",
                    h->role[0] ? h->role : "unknown", h->link[0] ? h->link : "-", h->offset,
                    master ? 0.0 : health_replica_lag(nodes_topo(sc, n), h->offset, now),
                    strcmp(use, "replica") && !master ? why : "-",
                    p->cfg.connections, pool_ready_links(p, 0), pool_ready_links(p, 1),
                    pool_validating_links(p), pool_leases(p), p->nlease[LEASE_IDLE],
                    pool_inflight(p), (unsigned long long)p->st.requests_sent,
                    h->version[0] ? h->version : "unknown", n->tls_stats.full,
                    n->tls_stats.resumed, n->tls_stats.failed);
    }
    i = 0;
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        buf_appendf(b, "retiring%d:addr=%s,inflight=%u,leases_held=%d,deadline_in=%.1f,"
                    "leases_kept=%d\r\n", i++, n->pool->cfg.name, nodes_inflight(sc, n),
                    leases_held(sc, n), n->retire_at > now ? n->retire_at - now : 0.0,
                    n->keep_leases);
    users_report(sc, b);
    if (sc->cl)
        cluster_report(sc, b);
    if (!sc->sentinels)
        return;
    const struct sentinels *ss = sc->sentinels;
    buf_appendf(b, "\r\n# Sentinels\r\nmaster_name:%s\r\nsentinels_up:%d\r\n"
                "switch_master_events:%llu\r\nlast_event:%s\r\n", ss->master_name, ss->nup,
                (unsigned long long)ss->switches_seen, ss->last_event[0] ? ss->last_event : "-");
    i = 0;
    for (int k = 0; k < ss->n; k++) {
        const struct sentinel *s = &ss->s[k];
        if (!s->active)
            continue;
        buf_appendf(b, "sentinel%d:addr=%s,state=%s,subscribed=%d,configured=%d,master=%s,"
                    "epoch=%lld,master_down=%d,replicas=%d,sentinels=%d,events=%llu,answered_ago=%.1f,"
                    "tls_full=%llu,tls_resumed=%llu,tls_failed=%llu,last_error=%s\r\n",
                    i++, s->addr, s->up ? "up" : "down", s->subscribed, s->configured,
                    s->rep.master[0] ? s->rep.master : "-", s->rep.epoch, s->rep.master_down,
                    s->rep.nreplicas, s->rep.npeers, (unsigned long long)s->events,
                    s->answered_at ? now - s->answered_at : -1.0,
                    s->tls_stats.full, s->tls_stats.resumed, s->tls_stats.failed,
                    s->last_err[0] ? s->last_err : "-");
    }
}
