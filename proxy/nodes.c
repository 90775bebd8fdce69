/* The node set. Without sentinels it is what proxy.ini names, and the
 * master never changes. With them it follows their view: nodes they list
 * are added, nodes nobody lists any more are dropped, and a master they
 * name is used once its own ROLE says master. From the moment they name
 * another node until that ROLE comes back there is no master: nothing new
 * goes to the old one, whose links are closed at once, and requests for
 * the master are held (up to failover_wait). */
#include "nodes.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "client.h"

static void on_commands(void *arg, const struct health_command *v, int n)
{
    struct sidecar *sc = ((struct node *)arg)->sc;
    int added = 0;

    if (sc->commands_loaded)
        return;
    if (n < 0) {
        log_warn("master's COMMAND reply did not parse; using the compiled-in table");
        return;
    }
    for (int i = 0; i < n; i++)
        added += command_table_learn(&sc->cmds, v[i].name, v[i].len, v[i].flags);
    sc->commands_loaded = 1;
    log_info("command table: %d commands learnt from the master", added);
    /* The reply was big and short-lived: give its heap pages back. */
    malloc_trim(0);
}

static void count_replicas(struct sidecar *sc)
{
    sc->nreplicas = sc->nnodes - (sc->master != NULL);
}

/* A node deposed or dropped takes its retired twins along (the same
 * address, left by a reload with their leases kept): those leases must
 * not go on writing to it. Freed at the next retire tick. */
static void evacuate_retired_twins(struct sidecar *sc, const char *addr, const char *why)
{
    struct node *n;

    TAILQ_FOREACH(n, &sc->retiring, tqe)
        if (strcmp(n->pool->cfg.name, addr) == 0) {
            pool_evacuate(n->pool, why);
            n->keep_leases = 0;
        }
}

/* The master changes (n may be NULL: none for now). Held requests go to a
 * new one first, then, when the old one was deposed (evacuate), its
 * requests that never ran follow them, so each client's order holds; a
 * reload lets them finish where they are instead. */
static void set_master(struct sidecar *sc, struct node *n, const char *why, int evacuate)
{
    struct node *old = sc->master;
    ev_tstamp now = ev_now(sc->loop);

    if (old == n)
        return;
    sc->master = n;
    sc->switched_at = now;
    memset(&sc->topo, 0, sizeof sc->topo);     /* offsets of another node */
    count_replicas(sc);
    if (n) {
        sc->candidate = NULL;
        sc->master_confirmed_at = n->health.role_at;
        sc->no_master_why[0] = '\0';
        if (old || sc->st.master_switches || sc->nheld)
            log_warn("master is now %s (%s)", n->pool->cfg.name, why);
        else
            log_info("master is %s (%s)", n->pool->cfg.name, why);
        /* a reload's new master is no failover */
        sc->st.master_switches += (old != NULL || sc->switched_once) && evacuate;
        sc->switched_once = 1;
        client_resend_held(sc);
    } else {
        snprintf(sc->no_master_why, sizeof sc->no_master_why, "%s", why);
        log_warn("no master until one is confirmed: %s; requests for it wait up to "
                 "failover_wait (%gs)", why, sc->cfg->failover_wait);
    }
    if (old && evacuate) {
        pool_evacuate(old->pool, why);
        evacuate_retired_twins(sc, old->pool->cfg.name, why);
    }
}

static void on_node_health(void *arg, int up, const char *why)
{
    struct node *n = arg;

    pool_set_down(n->pool, !up, why);
    if (n == n->sc->master && !up && n->sc->sentinels)
        health_sentinels_poll_soon(n->sc->sentinels);
}

/* Each ROLE reply. The master's offsets measure replica lag; with
 * sentinels, its role is checked every time, and a candidate becomes
 * the master on the first ROLE sent after the sentinels named it. */
static void on_node_role(void *arg)
{
    struct node *n = arg;
    struct sidecar *sc = n->sc;
    const struct checker *h = &n->health;
    int says_master = strcmp(h->role, "master") == 0;
    char why[200];

    if (n == sc->master) {
        if (!says_master && sc->sentinels) {
            snprintf(why, sizeof why, "%s reports role %s", n->pool->cfg.name, h->role);
            set_master(sc, NULL, why, 1);
            sc->candidate = n;          /* until the sentinels say otherwise */
            sc->candidate_since = ev_now(sc->loop);
            sc->candidate_named = 0;
            health_sentinels_poll_soon(sc->sentinels);
            return;
        }
        health_record_master(&sc->topo, h->role_at, h->offset);
        sc->master_confirmed_at = h->role_at;
        if (sc->nheld && h->role_at > sc->last_hold_at + 0.1)   /* not in a tight loop */
            client_resend_held(sc);
        return;
    }
    /* The configured master, with sentinels, only while none of them answers:
     * a deposed master woken from a pause says master too. */
    if (n == sc->candidate && says_master && h->role_at >= sc->candidate_since &&
        (!sc->sentinels || sc->candidate_named || health_sentinels_none_answer(sc->sentinels))) {
        snprintf(why, sizeof why, "%s confirmed by ROLE", !sc->sentinels ? "configured," :
                 sc->candidate_named ? "named by the sentinels," :
                 "configured (no sentinel answers),");
        set_master(sc, n, why, 1);
        health_record_master(&sc->topo, h->role_at, h->offset);
    }
}

static struct node *find(struct sidecar *sc, const char *addr)
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
        .queue_timeout = sc->sentinels ? cfg->failover_wait : cfg->connect_timeout,
        .reply_timeout = cfg->reply_timeout,
        .database = cfg->database,
        .username = cfg->username,
        .password = cfg->upstream_password,
        .retry_reads = cfg->retry_reads,
        .max_leased = cfg->max_leased,
        .validate_after = cfg->validate_after,
        .ping_timeout = cfg->ping_timeout,
        .ping_interval = cfg->ping_interval,
        .max_link_age = cfg->max_link_age,
        .tcp_keepalive = (int)cfg->tcp_keepalive,
        .tcp_user_timeout_ms = (int)(cfg->tcp_user_timeout * 1000),
    };
    *hc = (struct checker_config){
        .interval = cfg->check_interval,
        .down_after = cfg->down_after,
        .username = cfg->username,
        .password = cfg->upstream_password,
    };
}

static void on_lease_ready(void *who, struct link *l, void *arg)
{
    (void)who;
    (void)l;
    (void)arg;
}

/* A node's pool of links and its health checker. */
static struct node *add(struct sidecar *sc, const char *addr, int master, char *err,
                        size_t errlen)
{
    static const struct pool_callbacks cb = {
        .on_reply = client_on_reply, .on_unrun = client_on_unrun,
        .on_stream = client_on_stream, .on_lease_lost = client_lease_lost,
        .on_lease_ready = on_lease_ready,
    };
    struct pool_callbacks pcb = cb;
    struct pool_config pc;
    struct checker_config hc;
    char why[200];
    struct node *n;

    nodes_configs(sc, &pc, &hc);
    hc.fetch_commands = master && !sc->commands_loaded;
    pcb.arg = sc;
    snprintf(pc.name, sizeof pc.name, "%s", addr);
    snprintf(hc.name, sizeof hc.name, "%s", addr);
    if (net_resolve(addr, &pc.addr, why, sizeof why) < 0 || health_config_addr(&hc, addr) < 0) {
        snprintf(err, errlen, "%s: %s", addr, why);
        return NULL;
    }
    if (!(n = calloc(1, sizeof *n)) ||
        !(n->pool = pool_new(sc->loop, &pc, &sc->cache, &pcb))) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->sc = sc;
    health_start(&n->health, sc->loop, &hc, on_node_health, n);
    n->health.on_role = on_node_role;
    n->health.on_commands = on_commands;
    TAILQ_INSERT_TAIL(&sc->nodes, n, tqe);
    sc->nnodes++;
    count_replicas(sc);
    return n;
}

static void free_node(struct node *n)
{
    health_stop(&n->health);
    pool_free(n->pool);
    free(n);
}

/* Reads on it go elsewhere first (handed back unrun). */
static void drop(struct sidecar *sc, struct node *n, const char *why)
{
    log_info("node %s dropped: %s", n->pool->cfg.name, why);
    pool_evacuate(n->pool, why);
    evacuate_retired_twins(sc, n->pool->cfg.name, why);
    TAILQ_REMOVE(&sc->nodes, n, tqe);
    sc->nnodes--;
    count_replicas(sc);
    free_node(n);
}

static struct node *find_or_add(struct sidecar *sc, const char *addr, int master)
{
    struct node *n = find(sc, addr);
    char err[300];

    if (!n && (n = add(sc, addr, master, err, sizeof err)) != NULL)
        log_info("node %s added (listed by the sentinels)", addr);
    else if (!n)
        log_warn("node %s cannot be added: %s", addr, err);
    return n;
}

/* Every sentinel that answers names v's master, at v's epoch. */
static int all_agree(const struct sidecar *sc, const struct sentinel_report *v)
{
    for (int k = 0; k < sc->sentinels->n; k++) {
        const struct sentinel *s = &sc->sentinels->s[k];
        if (s->active && s->up && (s->rep.epoch != v->epoch || strcmp(s->rep.master, v->master)))
            return 0;
    }
    return 1;
}

/* The sentinels' view (of the one with the highest config epoch). */
static void on_view(void *arg, const struct sentinel_report *v, const char *from)
{
    struct sidecar *sc = arg;
    struct node *n, *next, *m;
    char why[300];

    if (v->epoch < sc->view_epoch) {
        if (!all_agree(sc, v)) {
            log_debug("sentinel %s: view of epoch %lld ignored (seen %lld)", from, v->epoch,
                      sc->view_epoch);
            return;
        }
        log_warn("every sentinel that answers now reports config epoch %lld (was %lld: "
                 "redeployed or reset?); following them", v->epoch, sc->view_epoch);
    }
    sc->view_epoch = v->epoch;
    if (!(m = find_or_add(sc, v->master, 1)))
        return;
    for (int i = 0; i < v->nreplicas; i++)
        find_or_add(sc, v->replicas[i], 0);
    /* Gone is what no sentinel that answers lists: mid-failover, the one
     * in charge may briefly list neither the old master nor its replicas. */
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        n->listed = 0;
    for (int k = 0; k < sc->sentinels->n; k++) {
        const struct sentinel *s = &sc->sentinels->s[k];
        if (!s->active || !s->up)
            continue;
        if ((n = find(sc, s->rep.master)) != NULL)
            n->listed = 1;
        for (int i = 0; i < s->rep.nreplicas; i++)
            if ((n = find(sc, s->rep.replicas[i])) != NULL)
                n->listed = 1;
    }
    if (m != sc->master) {
        snprintf(why, sizeof why, "sentinel %s names %s master (epoch %lld)", from, v->master,
                 v->epoch);
        if (sc->master)
            set_master(sc, NULL, why, 1);
        if (sc->candidate != m) {
            log_info("%s: confirming with ROLE", why);
            sc->candidate = m;
            sc->candidate_since = ev_now(sc->loop);
            snprintf(sc->no_master_why, sizeof sc->no_master_why, "%s, not confirmed by "
                     "its ROLE yet", why);
        }
        sc->candidate_named = 1;
        health_sample_soon(&m->health, 0);
        /* An upstream user without the right to run ROLE (ACL) leaves the
         * sentinels' word as the only one. */
        if (m->health.role_refused) {
            log_warn("%s: taken unconfirmed, ROLE is not permitted to the proxy's user",
                     why);
            set_master(sc, m, "named by the sentinels; ROLE not permitted", 1);
        }
    }
    for (n = TAILQ_FIRST(&sc->nodes); n; n = next) {
        next = TAILQ_NEXT(n, tqe);
        if (!n->listed && n != sc->master && n != sc->candidate)
            drop(sc, n, "no sentinel lists it any more");
    }
}

void nodes_refresh(struct sidecar *sc)
{
    if (sc->sentinels)
        health_sentinels_poll_soon(sc->sentinels);
    if (sc->master)
        health_sample_soon(&sc->master->health, 0);
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
        struct pool *p = n->pool;
        /* Waiting for a node that is gone or down helps nobody. */
        pool_evacuate_unready(p, "its node was retired by a reload");
        unsigned inflight = pool_inflight(p);
        int held = pool_leases_held(p), late = now >= n->retire_at;
        if (late && (inflight || (held && !n->keep_leases)))
            log_warn("node %s retiring: its deadline passed with %u requests in flight and "
                     "%d leases held: %s", p->cfg.name, inflight, held,
                     n->keep_leases ? "handing back the requests, leases stay"
                                    : "handing back the requests, closing the leases");
        if (late && inflight) {
            pool_evacuate_shared(p, "its node was retired by a reload");
            inflight = 0;
        }
        if (!inflight)
            pool_close_shared(p);        /* idempotent */
        busy |= inflight != 0;
        deadlines |= held && !n->keep_leases;
        if (inflight || (held && (n->keep_leases || !late)))
            continue;                    /* leases: until their holders let go */
        if (held)
            pool_evacuate(p, "its node was removed by a reload");
        log_info("node %s: retired links closed", p->cfg.name);
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
static void retire(struct sidecar *sc, struct node *n)
{
    const struct config *cfg = sc->cfg;

    if (n == sc->candidate)
        sc->candidate = NULL;
    health_stop(&n->health);
    pool_retire(n->pool);
    sc->retiring_busy |= pool_inflight(n->pool) != 0;
    n->retire_at = ev_now(sc->loop) + (cfg->shutdown_timeout > cfg->reply_timeout
                                       ? cfg->shutdown_timeout : cfg->reply_timeout);
    TAILQ_INSERT_TAIL(&sc->retiring, n, tqe);
    sc->retire_w.repeat = 0.1;
    ev_timer_again(sc->loop, &sc->retire_w);
    log_info("node %s retiring: no new requests; %u in flight and %d leases finish there",
             n->pool->cfg.name, pool_inflight(n->pool), pool_leases_held(n->pool));
}

/* On success sc->sentinels is the new set (the caller stops the old). */
static int start_sentinels(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;
    struct sentinel_config sentc = {
        .addrs = (const char *const *)cfg->sentinels.v,
        .naddrs = cfg->sentinels.n,
        .master_name = cfg->master_name,
        .password = cfg->sentinel_password,
        .interval = cfg->check_interval,
    };

    struct sentinels *ss = malloc(sizeof *ss);

    if (!ss) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (health_sentinels_start(ss, sc->loop, &sentc, on_view, sc, err, errlen) < 0) {
        free(ss);
        return -1;
    }
    sc->sentinels = ss;
    sc->view_epoch = 0;
    return 0;
}

static void stop_sentinels(struct sentinels *ss)
{
    if (!ss)
        return;
    health_sentinels_stop(ss);
    free(ss);
}

/* Without sentinels: the configured master and replicas, each node kept
 * when its address stays, added when new, retired when gone. (`listed`,
 * the sentinels' mark, says here: named by the configuration.) */
static void reconcile_static(struct sidecar *sc, struct node_list *gone)
{
    const struct config *cfg = sc->cfg;
    char err[300];
    struct node *m, *n, *next;

    if (!cfg->master) {              /* sentinels configured, but not started */
        log_error("reload: no sentinel set and no master: keeping the node set");
        return;
    }
    if (!(m = find(sc, cfg->master)) && !(m = add(sc, cfg->master, 1, err, sizeof err))) {
        log_error("reload: master %s cannot be added (%s): keeping %s", cfg->master, err,
                  sc->master ? sc->master->pool->cfg.name : "none");
        return;
    }
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        n->listed = n == m;
    for (int i = 0; i < cfg->replicas.n; i++) {
        if (!(n = find(sc, cfg->replicas.v[i])) &&
            !(n = add(sc, cfg->replicas.v[i], 0, err, sizeof err)))
            log_error("reload: replica %s cannot be added: %s", cfg->replicas.v[i], err);
        else
            n->listed = 1;
    }
    for (n = TAILQ_FIRST(&sc->nodes); n; n = next) {
        next = TAILQ_NEXT(n, tqe);
        if (!n->listed) {
            TAILQ_REMOVE(&sc->nodes, n, tqe);
            sc->nnodes--;
            TAILQ_INSERT_TAIL(gone, n, tqe);
        }
    }
    if (m != sc->master)
        set_master(sc, m, "the reloaded configuration", 0);
}

/* With sentinels: the same nodes on new links; the master stays master. */
static void rebuild_followed(struct sidecar *sc, struct node_list *gone)
{
    char err[300];
    struct node *o;

    TAILQ_FOREACH(o, gone, tqe) {
        struct node *n = add(sc, o->pool->cfg.name, o == sc->master, err, sizeof err);
        if (!n) {
            log_error("reload: node %s cannot be added again: %s", o->pool->cfg.name, err);
            continue;
        }
        n->listed = o->listed;
        if (o == sc->candidate) {
            sc->candidate = n;
        } else if (o == sc->master) {
            ev_tstamp confirmed = sc->master_confirmed_at;
            set_master(sc, n, "the reloaded configuration", 0);
            sc->master_confirmed_at = confirmed;
        }
    }
}

void nodes_reconfigure(struct sidecar *sc, const struct config *old)
{
    const struct config *nc = sc->cfg;
    struct node_list gone = TAILQ_HEAD_INITIALIZER(gone);
    char err[300];
    struct node *n;

    /* What the links were opened with changed: every node gets new ones.
     * (New credentials need none: links made from now on use them.) */
    if (config_links_changed(old, nc)) {
        while ((n = TAILQ_FIRST(&sc->nodes)) != NULL) {
            TAILQ_REMOVE(&sc->nodes, n, tqe);
            TAILQ_INSERT_TAIL(&gone, n, tqe);
        }
        sc->nnodes = 0;
    }
    if (config_sentinels_changed(old, nc)) {
        struct sentinels *prev = sc->sentinels;
        sc->sentinels = NULL;
        if (nc->sentinels.n && start_sentinels(sc, err, sizeof err) < 0) {
            log_error("reload: new sentinels cannot be started (%s): keeping the old", err);
            sc->sentinels = prev;
        } else {
            stop_sentinels(prev);
            if (sc->sentinels)
                log_info("reload: following sentinels %s... for %s", nc->sentinels.v[0],
                         nc->master_name);
        }
    }
    if (!sc->sentinels)
        reconcile_static(sc, &gone);
    else if (!TAILQ_EMPTY(&gone))
        rebuild_followed(sc, &gone);
    while ((n = TAILQ_FIRST(&gone)) != NULL) {
        TAILQ_REMOVE(&gone, n, tqe);
        if (n == sc->master) {           /* its replacement could not be made */
            TAILQ_INSERT_TAIL(&sc->nodes, n, tqe);
            sc->nnodes++;
            continue;
        }
        retire(sc, n);
    }
    /* Leases stay as long as their address is in use, whichever reload
     * retired them (a later one may drop or bring back the address). */
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        n->keep_leases = find(sc, n->pool->cfg.name) != NULL;
    count_replicas(sc);
}

static void on_held_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    client_expire_held(w->data);
}

int nodes_start(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;
    struct node *n;

    TAILQ_INIT(&sc->nodes);
    TAILQ_INIT(&sc->retiring);
    TAILQ_INIT(&sc->held);
    ev_init(&sc->retire_w, on_retire_tick);
    sc->retire_w.repeat = 0.1;
    sc->retire_w.data = sc;
    ev_init(&sc->held_w, on_held_tick);
    sc->held_w.repeat = 0.05;
    sc->held_w.data = sc;
    if (cfg->sentinels.n) {
        if (start_sentinels(sc, err, errlen) < 0)
            return -1;
        snprintf(sc->no_master_why, sizeof sc->no_master_why,
                 "no sentinel has named the master yet");
    }
    /* With sentinels, the configured nodes are a fallback: the master is
     * used only if no sentinel answers (and its ROLE says master), and the
     * sentinels' view, once it comes, replaces the lot. */
    if (cfg->master) {
        if (!(n = add(sc, cfg->master, 1, err, errlen)))
            return -1;
        if (sc->sentinels) {
            sc->candidate = n;
            sc->candidate_since = ev_now(sc->loop);
        } else {
            set_master(sc, n, "configured", 1);
        }
    }
    for (int i = 0; i < cfg->replicas.n; i++)
        if (!add(sc, cfg->replicas.v[i], 0, err, errlen))
            return -1;
    return 0;
}

void nodes_stop(struct sidecar *sc)
{
    struct node *n;

    stop_sentinels(sc->sentinels);
    sc->sentinels = NULL;
    ev_timer_stop(sc->loop, &sc->held_w);
    ev_timer_stop(sc->loop, &sc->retire_w);
    while ((n = TAILQ_FIRST(&sc->retiring)) != NULL) {
        TAILQ_REMOVE(&sc->retiring, n, tqe);
        free_node(n);
    }
    sc->master = sc->candidate = NULL;
    while ((n = TAILQ_FIRST(&sc->nodes)) != NULL) {
        TAILQ_REMOVE(&sc->nodes, n, tqe);
        free_node(n);
    }
    sc->nnodes = sc->nreplicas = 0;
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

void nodes_report(const struct sidecar *sc, struct buf *b)
{
    ev_tstamp now = ev_now(sc->loop);
    const struct node *n;
    int i = 0;

    buf_appendf(b, "# Topology\r\nsource:%s\r\nmaster:%s\r\n",
                sc->sentinels ? "sentinel" : "static",
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
        const char *use = n == sc->master ? "master" : n == sc->candidate ? "candidate" :
                          !p->down && health_replica_eligible(&sc->topo, h, sc->cfg->replica_max_lag,
                                                              now, why, sizeof why)
                          ? "replica" : "none";
        buf_appendf(b, "node%d:addr=%s,use=%s,state=%s,role=%s,master_link=%s,offset=%lld,"
                    "lag=%.1f,not_eligible=%s,links=%d,links_ready=%d,links_resp3_ready=%d,links_validating=%d,"
                    "leases=%d,inflight=%u,requests=%llu,version=%s\r\n",
                    i++, p->cfg.name, use, p->down ? "down" : "up",
                    h->role[0] ? h->role : "unknown", h->link[0] ? h->link : "-", h->offset,
                    n == sc->master ? 0.0 : health_replica_lag(&sc->topo, h->offset, now),
                    strcmp(use, "replica") && n != sc->master ? why : "-",
                    p->cfg.connections, pool_ready_links(p, 0), pool_ready_links(p, 1),
                    pool_validating_links(p), pool_leases(p),
                    pool_inflight(p), (unsigned long long)p->st.requests_sent,
                    h->version[0] ? h->version : "unknown");
    }
    i = 0;
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        buf_appendf(b, "retiring%d:addr=%s,inflight=%u,leases_held=%d,deadline_in=%.1f,"
                    "leases_kept=%d\r\n", i++, n->pool->cfg.name, pool_inflight(n->pool),
                    pool_leases_held(n->pool), n->retire_at > now ? n->retire_at - now : 0.0,
                    n->keep_leases);
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
                    "last_error=%s\r\n",
                    i++, s->addr, s->up ? "up" : "down", s->subscribed, s->configured,
                    s->rep.master[0] ? s->rep.master : "-", s->rep.epoch, s->rep.master_down,
                    s->rep.nreplicas, s->rep.npeers, (unsigned long long)s->events,
                    s->answered_at ? now - s->answered_at : -1.0,
                    s->last_err[0] ? s->last_err : "-");
    }
}
