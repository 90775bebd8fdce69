/* Which node is master. Without sentinels it is what proxy.ini names,
 * and it never changes. With them it follows their view: nodes they list
 * are added, nodes nobody lists any more are dropped, and a master they
 * name is used once its own ROLE says master. From the moment they name
 * another node until that ROLE comes back there is no master: nothing new
 * goes to the old one, whose links are closed at once, and requests for
 * the master are held (hold.c, up to failover_wait). */
#include "master.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "cluster.h"
#include "hold.h"
#include "nodes.h"

static void on_node_health(void *arg, int up, const char *why);
static void on_node_role(void *arg);

/* The COMMAND reply was big and short-lived (hiredis frees it once this
 * callback returns): its heap pages go back on the next loop iteration,
 * in one go, rather than piecemeal on the request path. */
static void trim(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    malloc_trim(0);
}

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
        added += command_table_learn(&sc->cmds, v[i].name, v[i].len, v[i].flags,
                                     v[i].first_key);
    sc->commands_loaded = 1;
    log_info("command table: %d commands learnt from the master", added);
    /* not ev_once: its allocation leaks if the loop stops first */
    ev_timer_init(&sc->trim_w, trim, 0, 0);
    ev_timer_start(sc->loop, &sc->trim_w);
}

/* Every node's checker reports here. */
static const struct checker_hooks hooks = {
    .on_change = on_node_health, .on_role = on_node_role, .on_commands = on_commands,
};

/* A node of the topology, watched by its checker (the first master's
 * also reads the command table). */
static struct node *add(struct sidecar *sc, const char *addr, int master, char *err,
                        size_t errlen)
{
    return nodes_add(sc, addr, &hooks, master && !sc->commands_loaded ? NODE_FETCH_COMMANDS : 0,
                     err, errlen);
}

struct node *master_add_node(struct sidecar *sc, const char *addr, int replica, char *err,
                             size_t errlen)
{
    return replica ? nodes_add(sc, addr, &hooks, NODE_READONLY, err, errlen)
                   : add(sc, addr, 1, err, errlen);
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
    /* leases ahead of need where they will be taken: the master's pool */
    if (old)
        pool_keep_idle(old->pool, 0);
    if (n)
        pool_keep_idle(n->pool, sc->cfg->min_idle_leases);
    memset(&sc->topo, 0, sizeof sc->topo);     /* offsets of another node */
    nodes_count(sc);
    if (n) {
        sc->candidate = NULL;
        sc->master_confirmed_at = n->health.role_at;
        sc->no_master_why[0] = '\0';
        if (old && strcmp(old->pool->cfg.name, n->pool->cfg.name) == 0)
            log_info("master %s on new links (%s)", n->pool->cfg.name, why);
        else if (old || sc->st.master_switches || sc->nheld)
            log_warn("master is now %s (%s)", n->pool->cfg.name, why);
        else
            log_info("master is %s (%s)", n->pool->cfg.name, why);
        /* a reload's new master is no failover */
        sc->st.master_switches += (old != NULL || sc->switched_once) && evacuate;
        sc->switched_once = 1;
        hold_master_ready(sc);
    } else {
        snprintf(sc->no_master_why, sizeof sc->no_master_why, "%s", why);
        log_warn("no master until one is confirmed: %s; requests for it wait up to "
                 "failover_wait (%gs)", why, sc->cfg->failover_wait);
    }
    if (old && evacuate) {
        nodes_evacuate(sc, old, why);
        nodes_evacuate_twins(sc, old->pool->cfg.name, why);
    }
}

static void on_node_health(void *arg, int up, const char *why)
{
    struct node *n = arg;
    struct sidecar *sc = n->sc;

    /* An app paused the server (CLIENT PAUSE): its unanswered checks are
     * that pause, not a failure; requests wait, as they would directly.
     * Its state is looked at again when the pause ends. */
    if (!up && n == sc->master && ev_now(sc->loop) < sc->server_paused_until) {
        log_info("master %s: health checks unanswered during a CLIENT PAUSE (%s): "
                 "not marked down", n->pool->cfg.name, why);
        return;
    }
    nodes_set_down(sc, n, !up, why);
    if (sc->cl) {
        if (!up)
            cluster_node_down(sc);       /* the cluster may be failing it over */
        else
            hold_master_ready(sc);       /* what waited for it */
        return;
    }
    if (n != n->sc->master || !n->sc->sentinels)
        return;
    if (!up)
        health_sentinels_poll_soon(n->sc->sentinels);
    else
        hold_master_ready(n->sc);        /* clients waiting for it to take a lease */
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

    if (sc->cl) {
        if (says_master && n->topo)      /* its replicas' lag is measured by these */
            health_record_master(n->topo, h->role_at, h->offset);
        if (says_master && (sc->nheld || !TAILQ_EMPTY(&sc->master_waiters)))
            hold_master_ready(sc);       /* a promoted replica confirmed: what waited goes */
        else if (!says_master && h->role[0] && (n->deposed_at || cluster_is_master(sc, n)))
            cluster_node_down(sc);       /* a shard master demoted: the map moved */
        return;
    }

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
            hold_master_ready(sc);
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

static struct node *find_or_add(struct sidecar *sc, const char *addr, int master)
{
    struct node *n = nodes_find(sc, addr);
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
        if ((n = nodes_find(sc, s->rep.master)) != NULL)
            n->listed = 1;
        for (int i = 0; i < s->rep.nreplicas; i++)
            if ((n = nodes_find(sc, s->rep.replicas[i])) != NULL)
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
            nodes_drop(sc, n, "no sentinel lists it any more");
    }
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
        .tls = cfg->sentinel_tls ? sc->tls : NULL,
        .tls_name = cfg->tls_server_name,
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
    if (!(m = nodes_find(sc, cfg->master)) && !(m = add(sc, cfg->master, 1, err, sizeof err))) {
        log_error("reload: master %s cannot be added (%s): keeping %s", cfg->master, err,
                  sc->master ? sc->master->pool->cfg.name : "none");
        return;
    }
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        n->listed = n == m;
    for (int i = 0; i < cfg->replicas.n; i++) {
        if (!(n = nodes_find(sc, cfg->replicas.v[i])) &&
            !(n = add(sc, cfg->replicas.v[i], 0, err, sizeof err)))
            log_error("reload: replica %s cannot be added: %s", cfg->replicas.v[i], err);
        else
            n->listed = 1;
    }
    for (n = TAILQ_FIRST(&sc->nodes); n; n = next) {
        next = TAILQ_NEXT(n, tqe);
        if (!n->listed) {
            nodes_unlist(sc, n);
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

void master_reconfigure(struct sidecar *sc, const struct config *old)
{
    const struct config *nc = sc->cfg;
    struct node_list gone = TAILQ_HEAD_INITIALIZER(gone);
    char err[300];
    struct node *n;

    /* What the links were opened with changed: every node gets new ones.
     * (New credentials need none: links made from now on use them.) */
    if (config_links_changed(old, nc)) {
        while ((n = TAILQ_FIRST(&sc->nodes)) != NULL) {
            nodes_unlist(sc, n);
            TAILQ_INSERT_TAIL(&gone, n, tqe);
        }
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
            nodes_relist(sc, n);
            continue;
        }
        nodes_retire(sc, n);
    }
    nodes_keep_leases(sc);
    nodes_count(sc);
}

static void on_pause_over(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    struct node *m = sc->master;
    (void)loop;
    (void)revents;

    sc->server_paused_until = sc->clients_paused_until = 0;
    if (m && m->health.down && !m->pool->down)
        on_node_health(m, 0, "health checks failing after the CLIENT PAUSE ended");
}

int master_start(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;
    struct node *n;

    ev_init(&sc->pause_over_w, on_pause_over);
    sc->pause_over_w.data = sc;
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

void master_paused(struct sidecar *sc, double seconds, int clients)
{
    ev_tstamp until = seconds > 0 ? ev_now(sc->loop) + seconds : 0;
    struct pool *p;
    struct node *n;

    if (until && until < sc->server_paused_until)
        return;                          /* a longer pause is under way: redis keeps it */

    sc->server_paused_until = until;
    if (clients || !until)
        sc->clients_paused_until = until;
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if (n == sc->master)
            NODE_FOREACH_POOL(sc, n, p)
                pool_quiet(p, until);
    ev_timer_stop(sc->loop, &sc->pause_over_w);
    if (!until) {                        /* over early: the checks say what is true */
        on_pause_over(sc->loop, &sc->pause_over_w, 0);
        return;
    }
    /* a second more: the checks that were held get their answers first */
    ev_timer_set(&sc->pause_over_w, seconds + 1, 0);
    ev_timer_start(sc->loop, &sc->pause_over_w);
}

void master_stop(struct sidecar *sc)
{
    ev_timer_stop(sc->loop, &sc->pause_over_w);
    stop_sentinels(sc->sentinels);
    sc->sentinels = NULL;
}
