/* App ACL users: the table, their pools on each node, and their end. */
#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/invariant.h"
#include "../lib/log.h"
#include "client.h"
#include "nodes.h"

static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int users_is_upstream(const struct sidecar *sc, const char *name, size_t nl)
{
    const char *own = sc->cfg->username ? sc->cfg->username : "default";

    return strlen(own) == nl && memcmp(own, name, nl) == 0;
}

/* u's pool on node n: the node's settings, u's credentials. */
static struct pool *open_pool(struct sidecar *sc, struct user *u, struct node *n)
{
    struct pool_config pc;
    struct checker_config hc;
    struct pool_callbacks cb = n->pool->cb;

    nodes_configs(sc, &pc, &hc);
    memcpy(pc.name, n->pool->cfg.name, sizeof pc.name);
    pc.addr = n->pool->cfg.addr;
    pc.tls_resume = &n->tls_resume;
    pc.tls_stats = &n->tls_stats;
    pc.username = u->name;
    pc.password = u->pass;
    pc.auth_final = 1;
    pc.readonly = n->pool->cfg.readonly;
    pc.owner_tag = u->idx + 1;
    cb.on_auth_refused = users_on_auth_refused;
    struct pool *p = pool_new(sc->loop, &pc, &sc->cache, &cb);
    if (p && sc->resp3_seen)
        pool_open_resp3(p);              /* on failure, RESP3 reads skip it */
    return p;
}

/* A user's pool on n goes; its counters stay in the node's (they only
 * ever grow: a counter that fell would look like a restart). */
static void close_pool(struct node *n, int idx)
{
    if (n->upool[idx])
        pool_stats_add(&n->users_gone, &n->upool[idx]->st);
    pool_free(n->upool[idx]);
    n->upool[idx] = NULL;
}

static void free_user(struct sidecar *sc, struct user *u)
{
    struct node *n;

    TAILQ_FOREACH(n, &sc->nodes, tqe)
        close_pool(n, u->idx);
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        close_pool(n, u->idx);
    sc->users[u->idx] = NULL;
    sc->nusers--;
    while (sc->users_hi > 0 && !sc->users[sc->users_hi - 1])
        sc->users_hi--;
    free(u->name);
    free(u->pass);
    free(u);
}

/* Nothing of u's is on its way anywhere. */
static int user_idle(const struct sidecar *sc, const struct user *u)
{
    const struct node *n;
    const struct pool *p;

    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if ((p = n->upool[u->idx]) && (pool_inflight(p) || pool_leases_held(p)))
            return 0;
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        if ((p = n->upool[u->idx]) && (pool_inflight(p) || pool_leases_held(p)))
            return 0;
    return 1;
}

/* Users no app uses close their pools: at once when Redis never accepted
 * them (a wrong password must not hold a slot of max_users) or refused
 * them since, after user_idle_timeout otherwise. */
/* The counts kept beside the table (nusers, each user's clients) match
 * it and the client list: asserted, in make asan's build. */
static void check_counts(const struct sidecar *sc)
{
    const struct client *c;
    int n = 0;

    for (int i = 0; i < USERS_MAX; i++) {
        const struct user *u = sc->users[i];
        unsigned k = 0;
        assert(!u || (u->idx == i && i < sc->users_hi));
        if (!u)
            continue;
        n++;
        TAILQ_FOREACH(c, &sc->clients, tqe)
            k += c->x && c->x->user == u;
        assert(k == u->clients);
    }
    assert(n == sc->nusers);
}

static void on_users_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    ev_tstamp now = ev_now(loop);
    (void)revents;

    if (CHECKS)
        check_counts(sc);
    for (int i = 0; i < sc->users_hi; i++) {
        struct user *u = sc->users[i];
        if (!u || u->clients ||
            (u->verified && !u->refused && now - u->idle_since < sc->cfg->user_idle_timeout) ||
            !user_idle(sc, u))
            continue;
        log_info("user %s: no app used it for %.0fs, its links close", u->name,
                 now - u->idle_since);
        free_user(sc, u);
    }
    if (!sc->nusers)
        ev_timer_stop(loop, w);
}

static void tick_soon(struct sidecar *sc)
{
    double t = sc->cfg->user_idle_timeout / 4;

    sc->users_w.repeat = t < 0.1 ? 0.1 : t > 1 ? 1 : t;
    if (!ev_is_active(&sc->users_w))
        ev_timer_again(sc->loop, &sc->users_w);
}

struct user *users_get(struct sidecar *sc, const char *name, size_t nl, const char *pass,
                       size_t pl, char *err, size_t errlen)
{
    struct user *u;
    int free_idx = -1;

    for (int i = 0; i < sc->users_hi; i++) {
        u = sc->users[i];
        if (!u) {
            if (free_idx < 0)
                free_idx = i;
            continue;
        }
        /* One Redis has not accepted yet is only this password's: a wrong
         * guess must not take a right one down with it. */
        if (u->refused || strlen(u->name) != nl || memcmp(u->name, name, nl) != 0 ||
            (!u->verified && (strlen(u->pass) != pl || memcmp(u->pass, pass, pl) != 0)))
            continue;
        /* a master its AUTH has not reached yet (a failover, a reload) */
        if (!sc->master->upool[u->idx] && !(sc->master->upool[u->idx] = open_pool(sc, u, sc->master))) {
            snprintf(err, errlen, "ERR proxy out of memory");
            return NULL;
        }
        return u;
    }
    if (sc->nusers >= sc->cfg->max_users) {
        sc->st.err_max_users++;
        snprintf(err, errlen, "ERR redis-sidecar has pools for max_users (%d) ACL users "
                 "already; user '%.*s' cannot be used until one of them is idle for "
                 "user_idle_timeout", sc->cfg->max_users, (int)(nl > 64 ? 64 : nl), name);
        return NULL;
    }
    if (free_idx < 0)
        free_idx = sc->users_hi;
    if (!(u = calloc(1, sizeof *u)) || !(u->name = dup_n(name, nl)) ||
        !(u->pass = dup_n(pass, pl))) {
        if (u)
            free(u->name);
        free(u);
        snprintf(err, errlen, "ERR proxy out of memory");
        return NULL;
    }
    u->idx = free_idx;
    u->idle_since = ev_now(sc->loop);
    if (!(sc->master->upool[u->idx] = open_pool(sc, u, sc->master))) {
        free(u->name);
        free(u->pass);
        free(u);
        snprintf(err, errlen, "ERR proxy out of memory");
        return NULL;
    }
    sc->users[u->idx] = u;
    sc->nusers++;
    if (sc->users_hi <= u->idx)
        sc->users_hi = u->idx + 1;
    tick_soon(sc);
    return u;
}

static void repass(struct pool *p, const char *pass)
{
    if (p) {
        struct pool_config pc = p->cfg;
        pc.password = pass;
        pool_configure(p, &pc);
    }
}

int users_accepted(struct sidecar *sc, struct user *u, const char *pass, size_t pl)
{
    struct node *n;

    u->auths++;
    if (strlen(u->pass) != pl || memcmp(u->pass, pass, pl) != 0) {
        char *old = u->pass, *now = dup_n(pass, pl);
        if (!now)
            return -1;
        u->pass = now;
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            repass(n->upool[u->idx], now);
        TAILQ_FOREACH(n, &sc->retiring, tqe)
            repass(n->upool[u->idx], now);
        free(old);
    }
    if (!u->verified) {
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            if (!n->upool[u->idx] && !(n->upool[u->idx] = open_pool(sc, u, n)))
                return -1;
        u->verified = 1;
        log_info("user %s: Redis accepted its AUTH; its links open on %d nodes", u->name,
                 sc->nnodes);
    }
    return 0;
}

void users_set(struct client *c, struct user *u)
{
    struct client_ext *x = c->x;
    struct user *was = x ? x->user : NULL;

    if (was == u || (!x && !(x = client_ext(c))))
        return;
    if (was && --was->clients == 0)
        was->idle_since = ev_now(client_sc(c)->loop);
    x->user = u;
    if (u)
        u->clients++;
}

int users_node_added(struct sidecar *sc, struct node *n)
{
    for (int i = 0; i < sc->users_hi; i++) {
        struct user *u = sc->users[i];
        if (u && u->verified && !u->refused && !(n->upool[i] = open_pool(sc, u, n)))
            return -1;
    }
    return 0;
}

void users_node_freed(struct node *n)
{
    for (int i = 0; i < USERS_MAX; i++)
        close_pool(n, i);
}

void users_reconfigure(struct sidecar *sc)
{
    struct pool_config pc;
    struct checker_config hc;
    struct node *n;
    struct pool *p;

    nodes_configs(sc, &pc, &hc);
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        for (int i = 0; i < sc->users_hi; i++)
            if ((p = n->upool[i]) != NULL) {
                struct pool_config up = pc;
                up.username = p->cfg.username;
                up.password = p->cfg.password;
                up.auth_final = 1;
                up.owner_tag = p->cfg.owner_tag;
                pool_configure(p, &up);
            }
    if (sc->nusers)
        tick_soon(sc);
}

/* Redis no longer takes the password u's links reconnect with (it was
 * changed): its pools end, every request on them answered with Redis's
 * error, and its apps are closed once that is sent, so that their
 * client libraries authenticate again. A later AUTH as u starts afresh. */
void users_on_auth_refused(struct pool *p, const char *reply, size_t n, void *arg)
{
    struct sidecar *sc = arg;
    struct user *u = p->cfg.owner_tag > 0 ? sc->users[p->cfg.owner_tag - 1] : NULL;
    struct client *c, *next;
    struct node *nd;

    if (!u || u->refused)
        return;
    if (!u->verified) {                  /* a wrong password in its first AUTH */
        u->refused = 1;
        tick_soon(sc);
        return;
    }
    u->refused = 1;
    sc->st.users_refused++;
    log_warn("user %s: Redis refuses its password now (%.*s); closing its %u app "
             "connections", u->name, (int)strcspn(reply + 1, "\r"), reply + 1, u->clients);
    TAILQ_FOREACH(nd, &sc->nodes, tqe)
        if (nd->upool[u->idx] && nd->upool[u->idx] != p)
            pool_auth_refused(nd->upool[u->idx], reply, n);
    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (c->x && c->x->user == u)
            client_close_after_replies(c, "its ACL user's password was refused");
    }
    tick_soon(sc);
}

void users_report(const struct sidecar *sc, struct buf *b)
{
    buf_appendf(b, "\r\n# Users\r\nusers:%d\r\nmax_users:%d\r\n", sc->nusers, sc->cfg->max_users);
    for (int i = 0; i < sc->users_hi; i++) {
        const struct user *u = sc->users[i];
        const struct node *n;
        int ready = 0, leases = 0;
        unsigned inflight = 0;
        unsigned long long sent = 0;
        if (!u)
            continue;
        TAILQ_FOREACH(n, &sc->nodes, tqe) {
            const struct pool *p = n->upool[i];
            if (!p)
                continue;
            ready += pool_ready_links(p, 0) + pool_ready_links(p, 1);
            leases += pool_leases(p);
            inflight += pool_inflight(p);
            sent += p->st.requests_sent;
        }
        buf_appendf(b, "user%d:name=%s,state=%s,clients=%u,links_ready=%d,leases=%d,"
                    "inflight=%u,requests=%llu,auths=%llu,auth_failures=%llu\r\n",
                    i, u->name, u->refused ? "refused" : u->verified ? "accepted" : "checking",
                    u->clients, ready, leases, inflight, sent, (unsigned long long)u->auths,
                    (unsigned long long)u->auth_failures);
    }
}

void users_init(struct sidecar *sc)
{
    ev_init(&sc->users_w, on_users_tick);
    sc->users_w.data = sc;
}

void users_stop(struct sidecar *sc)
{
    ev_timer_stop(sc->loop, &sc->users_w);
    for (int i = 0; i < sc->users_hi; i++)
        if (sc->users[i])
            free_user(sc, sc->users[i]);
}
