/* The links to one node. Links that got bytes during this loop iteration
 * are on the dirty list and written once, together, just before the loop
 * waits again: that is what turns many clients' requests into one write.
 *
 * Leases live on one list per state (enum lease_state); lease_move() is
 * the one place a lease changes list. Clients waiting for a lease sit on
 * the wait list, oldest first, and are handed one as leases come back
 * (grant()), never found by a scan on a timer. */
#include "pool.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/invariant.h"
#include "../lib/log.h"

const double pool_rtt_bounds[POOL_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
unsigned char pool_rtt_below[POOL_RTT_E1 - POOL_RTT_E0 + 1];

void pool_rtt_init(void)
{
    for (int e = POOL_RTT_E0; e <= POOL_RTT_E1; e++) {
        unsigned char k = 0;
        while (k < POOL_RTT_BUCKETS && pool_rtt_bounds[k] < ldexp(1, e))
            k++;
        pool_rtt_below[e - POOL_RTT_E0] = k;
    }
}

static const char *const lease_state_name[LEASE_NSTATES] = {
    "shared", "held", "streaming", "returning", "idle", "dead",
};

#define FOREACH_SHARED(p, l)                                                        \
    for (int v_ = 0; v_ < 2; v_++)                                                  \
        for (int i_ = 0; (p)->links[v_] && i_ < (p)->cfg.connections; i_++)        \
            if (((l) = &(p)->links[v_][i_]) != NULL)

static void grant(struct pool *p);
static void wait_timer(struct pool *p);
static void stock(struct pool *p);

static void lease_move(struct pool *p, struct link *l, enum lease_state to, const char *why)
{
    if (l->lease != LEASE_NONE) {
        TAILQ_REMOVE(&p->lease_list[l->lease], l, lease_tqe);
        p->nlease[l->lease]--;
    }
    log_debug("lease %s#%d %s -> %s: %s", p->cfg.name, l->idx, lease_state_name[l->lease],
              lease_state_name[to], why);
    l->lease = to;
    TAILQ_INSERT_TAIL(&p->lease_list[to], l, lease_tqe);
    p->nlease[to]++;
    if (CHECKS) {
        for (int s = LEASE_HELD; s < LEASE_NSTATES; s++) {
            const struct link *k;
            int n = 0;
            TAILQ_FOREACH(k, &p->lease_list[s], lease_tqe)
                n++;
            assert(n == p->nlease[s]);
        }
    }
}

/* Closed for good; freed at the next flush. Its holder, if any, is told
 * by the caller. Room under max_leased goes to the next waiter. */
static void bury(struct pool *p, struct link *l, const char *why)
{
    if (l->dirty) {
        TAILQ_REMOVE(&p->dirty, l, dirty_tqe);
        l->dirty = 0;
    }
    l->lessee = NULL;
    lease_move(p, l, LEASE_DEAD, why);
    grant(p);
}

static void free_dead(struct pool *p)
{
    struct link *l;

    while ((l = TAILQ_FIRST(&p->lease_list[LEASE_DEAD])) != NULL) {
        TAILQ_REMOVE(&p->lease_list[LEASE_DEAD], l, lease_tqe);
        p->nlease[LEASE_DEAD]--;
        link_out_free(l);
        free(l);
    }
}

static void pool_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct pool *p = w->data;
    struct link *l;
    (void)loop;
    (void)revents;

    while ((l = TAILQ_FIRST(&p->dirty)) != NULL) {
        TAILQ_REMOVE(&p->dirty, l, dirty_tqe);
        l->dirty = 0;
        link_flush(l);
    }
    free_dead(p);
}

static void pool_care_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pool *p = w->data;
    struct link *l;
    (void)revents;

    FOREACH_SHARED(p, l)
        link_tend(l, ev_now(loop));
    if (!p->keep_idle)
        return;
    /* Leases kept ahead are pinged before a holder would find them stale. */
    TAILQ_FOREACH(l, &p->lease_list[LEASE_IDLE], lease_tqe)
        if (l->state == LINK_READY && p->cfg.validate_after > 0 && ev_now(loop) >= p->quiet_until &&
            ev_now(loop) - l->last_rx >= p->cfg.validate_after / 2)
            link_validate(l, "idle lease kept fresh");
    stock(p);
}

static void care_interval(struct pool *p)
{
    double tick = 1.0;

    if (p->cfg.ping_interval > 0 && p->cfg.ping_interval / 4 < tick)
        tick = p->cfg.ping_interval / 4 < 0.05 ? 0.05 : p->cfg.ping_interval / 4;
    if (p->keep_idle && p->cfg.validate_after > 0 && p->cfg.validate_after / 4 < tick)
        tick = p->cfg.validate_after / 4 < 0.05 ? 0.05 : p->cfg.validate_after / 4;
    if (p->care_w.repeat != tick) {
        p->care_w.repeat = tick;
        ev_timer_again(p->loop, &p->care_w);
    }
}

/* Waiters whose deadline passed go back to their owners. While new leases
 * fail at once (out of descriptors, say), the first in line tries again. */
static void pool_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pool *p = w->data;
    struct pool_waiter *pw, *next;
    (void)revents;

    if (p->lease_failure[0])
        grant(p);
    for (pw = TAILQ_FIRST(&p->waiters); pw; pw = next) {
        next = TAILQ_NEXT(pw, tqe);
        if (pw->deadline > ev_now(loop))
            continue;
        TAILQ_REMOVE(&p->waiters, pw, tqe);
        pw->on = NULL;
        p->cb.on_lease_ready(pw->who, NULL, p->cb.arg);
        next = TAILQ_FIRST(&p->waiters);     /* the callback may have changed the list */
    }
    ev_timer_stop(loop, w);
    wait_timer(p);
}

/* Armed for the first waiter's deadline, or sooner to retry a failing connect. */
static void wait_timer(struct pool *p)
{
    struct pool_waiter *pw = TAILQ_FIRST(&p->waiters);

    if (!pw || ev_is_active(&p->wait_w))
        return;
    double t = pw->deadline - ev_now(p->loop);
    if (p->lease_failure[0] && t > 0.05)
        t = 0.05;
    ev_timer_set(&p->wait_w, t > 0 ? t : 0, 0);
    ev_timer_start(p->loop, &p->wait_w);
}

void pool_stats_add(struct pool_stats *to, const struct pool_stats *from)
{
    uint64_t *t = &to->links_opened;
    const uint64_t *f = &from->links_opened;

    /* the uint64_t counters up to validation_wait, then the rest by name */
    for (size_t i = 0; i < offsetof(struct pool_stats, validation_wait) /
                           sizeof(uint64_t); i++)
        t[i] += f[i];
    to->validation_wait += from->validation_wait;
    for (int i = 0; i < LOST_NCAUSES; i++)
        to->lost[i] += from->lost[i];
    to->leases_taken += from->leases_taken;
    to->leases_refused += from->leases_refused;
    to->leases_reset += from->leases_reset;
    to->leases_closed += from->leases_closed;
    to->bytes_out += from->bytes_out;
    to->bytes_in += from->bytes_in;
    to->pushes_dropped += from->pushes_dropped;
    to->requests_unbuffered += from->requests_unbuffered;
    to->replies_streamed += from->replies_streamed;
    to->streams_dropped += from->streams_dropped;
    to->reconnects += from->reconnects;
    for (int i = 0; i <= POOL_RTT_BUCKETS; i++)
        to->rtt[i] += from->rtt[i];
    to->rtt_sum += from->rtt_sum;
}

struct pool *pool_new(struct ev_loop *loop, const struct pool_config *cfg,
                      struct req_cache *cache, const struct pool_callbacks *cb)
{
    struct pool *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    if (!pool_rtt_below[POOL_RTT_E1 - POOL_RTT_E0])
        pool_rtt_init();
    p->links[0] = calloc((size_t)cfg->connections, sizeof *p->links[0]);
    if (!p->links[0]) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->cfg = *cfg;
    int port;
    if (net_split_addr(cfg->name, p->host, sizeof p->host, &port) < 0)
        snprintf(p->host, sizeof p->host, "%.*s", (int)sizeof p->host - 1, cfg->name);
    if (p->cfg.tls)
        tls_ctx_ref(p->cfg.tls);
    p->cb = *cb;
    p->cache = cache;
    p->seed = (unsigned)getpid() ^ (unsigned)(ev_time() * 1000);
    TAILQ_INIT(&p->dirty);
    for (int s = 0; s < LEASE_NSTATES; s++)
        TAILQ_INIT(&p->lease_list[s]);
    TAILQ_INIT(&p->waiters);
    ev_prepare_init(&p->flush_w, pool_flush_cb);
    p->flush_w.data = p;
    ev_prepare_start(loop, &p->flush_w);
    ev_init(&p->care_w, pool_care_cb);
    p->care_w.data = p;
    care_interval(p);
    ev_init(&p->wait_w, pool_wait_cb);
    p->wait_w.data = p;
    for (int i = 0; i < cfg->connections; i++) {
        link_init(&p->links[0][i], p, i, 0);
        link_start(&p->links[0][i]);
    }
    return p;
}

void pool_configure(struct pool *p, const struct pool_config *cfg)
{
    int more_leases = cfg->max_leased > p->cfg.max_leased;
    struct pool_config keep = p->cfg;

    p->cfg = *cfg;
    if (p->cfg.tls)
        tls_ctx_ref(p->cfg.tls);
    tls_ctx_unref(keep.tls);
    p->cfg.tls_resume = keep.tls_resume;
    p->cfg.tls_stats = keep.tls_stats;
    memcpy(p->cfg.name, keep.name, sizeof p->cfg.name);
    p->cfg.addr = keep.addr;
    p->cfg.connections = keep.connections;
    p->cfg.database = keep.database;
    p->cfg.readonly = keep.readonly;
    care_interval(p);
    if (more_leases)
        grant(p);
}

/* Every waiter goes back to its owner, which decides again. */
static void release_waiters(struct pool *p)
{
    struct pool_waiter *pw;

    ev_timer_stop(p->loop, &p->wait_w);
    while ((pw = TAILQ_FIRST(&p->waiters)) != NULL) {
        TAILQ_REMOVE(&p->waiters, pw, tqe);
        pw->on = NULL;
        p->cb.on_lease_ready(pw->who, NULL, p->cb.arg);
    }
}

/* The RESP3 set, on the first RESP3 client: HELLO 3 opens each link. */
static struct link *open_resp3(struct pool *p)
{
    if (!(p->links[1] = calloc((size_t)p->cfg.connections, sizeof *p->links[1])))
        return NULL;
    log_info("node %s: opening %d RESP3 links for RESP3 clients", p->cfg.name,
             p->cfg.connections);
    for (int i = 0; i < p->cfg.connections; i++) {
        link_init(&p->links[1][i], p, 100 + i, 1);
        link_start(&p->links[1][i]);
    }
    return p->links[1];
}

void pool_free(struct pool *p)
{
    struct link *l;

    if (!p)
        return;
    release_waiters(p);
    FOREACH_SHARED(p, l)
        link_stop(l);
    TAILQ_INIT(&p->dirty);          /* nothing is written any more */
    for (int s = LEASE_HELD; s < LEASE_DEAD; s++)
        while ((l = TAILQ_FIRST(&p->lease_list[s])) != NULL) {
            link_stop(l);
            l->lessee = NULL;
            lease_move(p, l, LEASE_DEAD, "pool closed");
        }
    free_dead(p);
    ev_prepare_stop(p->loop, &p->flush_w);
    ev_timer_stop(p->loop, &p->care_w);
    free(p->links[0]);
    free(p->links[1]);
    tls_ctx_unref(p->cfg.tls);
    free(p);
}

struct link *pool_link_resp3(struct pool *p, uint64_t key)
{
    if (!open_resp3(p))
        return NULL;
    return &p->links[1][key % (uint64_t)p->cfg.connections];
}

struct link *pool_link_free_of_scripts(const struct pool *p, struct link *l)
{
    struct link *set = p->links[l->resp3];

    for (int i = 0; set && i < p->cfg.connections; i++)
        if (set[i].state == LINK_READY && !set[i].scripts)
            return &set[i];
    return l;
}

int pool_open_resp3(struct pool *p)
{
    return p->links[1] || open_resp3(p) ? 0 : -1;
}

void pool_mark_dirty(struct pool *p, struct link *l)
{
    if (!l->dirty) {
        l->dirty = 1;
        TAILQ_INSERT_TAIL(&p->dirty, l, dirty_tqe);
    }
}

int pool_ready_links(const struct pool *p, int resp3)
{
    int n = 0;

    for (int i = 0; p->links[resp3] && i < p->cfg.connections; i++)
        n += link_is_ready(&p->links[resp3][i]);
    return n;
}

int pool_validating_links(const struct pool *p)
{
    struct link *l;
    int n = 0;

    FOREACH_SHARED(p, l)
        n += l->validating;
    return n;
}

unsigned pool_inflight(const struct pool *p)
{
    struct link *l;
    unsigned n = 0;

    FOREACH_SHARED(p, l)
        n += l->nfifo;
    return n;
}

int pool_leases(const struct pool *p)
{
    return p->nlease[LEASE_HELD] + p->nlease[LEASE_STREAM] + p->nlease[LEASE_RETURNING] +
           p->nlease[LEASE_IDLE];
}

int pool_open_links(const struct pool *p)
{
    struct link *l;
    int n = pool_leases(p);

    FOREACH_SHARED(p, l)
        n += l->fd >= 0;
    return n;
}

void pool_set_down(struct pool *p, int down, const char *why)
{
    struct link *l;

    p->down = down;
    if (!down)
        FOREACH_SHARED(p, l)
            link_retry_now(l);
    snprintf(p->down_reason, sizeof p->down_reason, "%s", why ? why : "");
}

void pool_retire(struct pool *p)
{
    p->retiring = 1;
    release_waiters(p);
}

void pool_evacuate_shared(struct pool *p, const char *why)
{
    struct link *l;

    FOREACH_SHARED(p, l)
        link_evacuate(l, why);
}

void pool_evacuate_unready(struct pool *p, const char *why)
{
    struct link *l;

    FOREACH_SHARED(p, l)
        if (l->state != LINK_READY && l->nfifo)
            link_evacuate(l, why);
}

void pool_close_shared(struct pool *p)
{
    struct link *l;

    FOREACH_SHARED(p, l)
        link_stop(l);
}

void pool_auth_refused(struct pool *p, const char *reply, size_t n)
{
    struct link *l;
    char why[200];

    if (p->auth_refused[0])
        return;
    snprintf(p->auth_refused, sizeof p->auth_refused, "%.*s", (int)n, reply);
    snprintf(why, sizeof why, "user %s refused: %.*s", p->cfg.username ? p->cfg.username
             : "default", (int)strcspn(p->auth_refused + 1, "\r"), p->auth_refused + 1);
    log_warn("node %s: %s; its links close as they go down", p->cfg.name, why);
    release_waiters(p);
    /* What waits for a socket gets the refusal; a ready link is still
     * authenticated and finishes what it carries (its writes may have run),
     * but connects no more once it goes down. */
    FOREACH_SHARED(p, l)
        if (l->state != LINK_READY)
            link_fail_all(l, reply, n);
    for (int s = LEASE_HELD; s < LEASE_DEAD; s++) {
        struct link *next;
        for (l = TAILQ_FIRST(&p->lease_list[s]); l; l = next) {
            next = TAILQ_NEXT(l, lease_tqe);
            if (l->state == LINK_READY && s != LEASE_IDLE)
                continue;
            p->st.leases_closed++;
            link_evacuate(l, why);
            next = TAILQ_FIRST(&p->lease_list[s]);   /* the list changed */
        }
    }
    if (p->cb.on_auth_refused)
        p->cb.on_auth_refused(p, reply, n, p->cb.arg);
}

void pool_evacuate(struct pool *p, const char *why)
{
    struct link *l;

    release_waiters(p);
    pool_evacuate_shared(p, why);
    for (int s = LEASE_HELD; s < LEASE_DEAD; s++)
        while ((l = TAILQ_FIRST(&p->lease_list[s])) != NULL) {
            p->st.leases_closed++;
            link_evacuate(l, why);
        }
}

/* An idle lease of the protocol, or one being reset (requests wait behind
 * its handshake). An idle one gone stale is replaced, not validated: a
 * failed PING there would cost the new holder its first command. */
static struct link *reusable(struct pool *p, int resp3)
{
    struct link *l, *next;

    for (l = TAILQ_FIRST(&p->lease_list[LEASE_IDLE]); l; l = next) {
        next = TAILQ_NEXT(l, lease_tqe);
        if (l->resp3 != resp3)
            continue;
        if (p->cfg.validate_after > 0 && ev_now(p->loop) - l->last_rx > p->cfg.validate_after) {
            p->st.leases_closed++;
            link_stop(l);
            bury(p, l, "idle past validate_after");
            continue;
        }
        return l;
    }
    TAILQ_FOREACH(l, &p->lease_list[LEASE_RETURNING], lease_tqe)
        if (l->resp3 == resp3)
            return l;
    return NULL;
}

/* A lease for who, reused or new; NULL at max_leased or when the connect
 * failed at once (lease_failure says why). */
static struct link *take(struct pool *p, void *who, int resp3)
{
    if (p->auth_refused[0]) {
        snprintf(p->lease_failure, sizeof p->lease_failure, "%.*s",
                 (int)strcspn(p->auth_refused + 1, "\r"), p->auth_refused + 1);
        return NULL;
    }
    struct link *l = reusable(p, resp3);

    if (!l) {
        struct link *other = TAILQ_FIRST(&p->lease_list[LEASE_IDLE]);   /* the other protocol's */
        if (pool_leases(p) >= p->cfg.max_leased && other) {
            p->st.leases_closed++;
            link_stop(other);
            bury(p, other, "room for a lease of the other protocol");
        }
        if (pool_leases(p) >= p->cfg.max_leased) {
            p->st.leases_refused++;
            return NULL;
        }
        if (!(l = malloc(sizeof *l)))
            return NULL;
        link_init(l, p, 1000 + p->next_lease_idx++, resp3);
        lease_move(p, l, LEASE_HELD, "new");
        link_start(l);
        if (l->lease == LEASE_DEAD) {    /* the connect failed at once (no fds, say) */
            snprintf(p->lease_failure, sizeof p->lease_failure, "%s", l->last_err);
            return NULL;
        }
        p->lease_failure[0] = '\0';
        l->lessee = who;                 /* only now: a failed start tells no holder */
    } else {
        l->lessee = who;
        lease_move(p, l, LEASE_HELD, "taken");
    }
    p->st.leases_taken++;
    stock(p);
    return l;
}

/* New leases until keep_idle (RESP2) are idle or on their way there:
 * opened, handshaken (as a holder's would be), then idle. */
static void stock(struct pool *p)
{
    const struct link *k;
    int have = 0;

    if (!p->keep_idle || p->down || p->retiring || p->auth_refused[0])
        return;
    TAILQ_FOREACH(k, &p->lease_list[LEASE_IDLE], lease_tqe)
        have += !k->resp3;
    TAILQ_FOREACH(k, &p->lease_list[LEASE_RETURNING], lease_tqe)
        have += !k->resp3;
    while (have++ < p->keep_idle && pool_leases(p) < p->cfg.max_leased) {
        struct link *l = malloc(sizeof *l);
        if (!l)
            return;
        link_init(l, p, 1000 + p->next_lease_idx++, 0);
        lease_move(p, l, LEASE_RETURNING, "opened ahead of need");
        link_start(l);
        if (l->lease == LEASE_DEAD)      /* the connect failed at once */
            return;
    }
}

void pool_quiet(struct pool *p, ev_tstamp until)
{
    p->quiet_until = until;
}

void pool_keep_idle(struct pool *p, int n)
{
    p->keep_idle = n;
    care_interval(p);
    stock(p);
}

/* Leases that came back (or room under max_leased) go to the waiters,
 * oldest first. */
static void grant(struct pool *p)
{
    struct pool_waiter *pw;
    struct link *l;

    if (p->granting)
        return;
    p->granting = 1;
    while ((pw = TAILQ_FIRST(&p->waiters)) != NULL && (l = take(p, pw->who, pw->resp3))) {
        TAILQ_REMOVE(&p->waiters, pw, tqe);
        pw->on = NULL;
        p->cb.on_lease_ready(pw->who, l, p->cb.arg);
    }
    p->granting = 0;
    if (TAILQ_EMPTY(&p->waiters))
        ev_timer_stop(p->loop, &p->wait_w);
}

struct link *pool_lease(struct pool *p, void *who, int resp3)
{
    if (!TAILQ_EMPTY(&p->waiters))
        return NULL;                     /* earlier waiters first */
    return take(p, who, resp3);
}

void pool_lease_wait(struct pool *p, struct pool_waiter *w)
{
    w->on = p;
    TAILQ_INSERT_TAIL(&p->waiters, w, tqe);
    wait_timer(p);
}

void pool_lease_unwait(struct pool_waiter *w)
{
    struct pool *p = w->on;

    if (!p)
        return;
    TAILQ_REMOVE(&p->waiters, w, tqe);
    w->on = NULL;
    if (TAILQ_EMPTY(&p->waiters))
        ev_timer_stop(p->loop, &p->wait_w);
}

void pool_unlease(struct pool *p, struct link *l)
{
    if (l->lease == LEASE_DEAD)
        return;
    l->lessee = NULL;
    if (l->nfifo == l->ahead && l->state == LINK_READY && l->lease == LEASE_HELD) {
        p->st.leases_reset++;
        lease_move(p, l, LEASE_RETURNING, "given back");
        if (!l->ahead)
            link_return(l);              /* else its RESET is on its way already */
        return;
    }
    /* Still busy (a blocking call may never answer), or subscribed: close
     * it, and its requests, unowned now, go with it. */
    p->st.leases_closed++;
    link_stop(l);
    bury(p, l, l->lease == LEASE_STREAM ? "given back after pub/sub" : "given back busy");
}

void pool_lease_stream(struct link *l)
{
    if (l->lease == LEASE_HELD)
        lease_move(l->pool, l, LEASE_STREAM, "subscribed");
}

int pool_lease_protocol(struct link *l, int resp3)
{
    const char *hello = resp3 ? "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n" : "*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n";

    if (link_send_unowned(l, hello, strlen(hello)) < 0)
        return -1;
    l->resp3 = resp3;
    return 0;
}

void pool_lease_returned(struct pool *p, struct link *l)
{
    if (l->lease != LEASE_RETURNING)
        return;                          /* taken while it was being reset */
    lease_move(p, l, LEASE_IDLE, "reset");
    grant(p);
}

int pool_lease_lost(struct pool *p, struct link *l, const char *why, int unrun)
{
    void *lessee = l->lease == LEASE_HELD || l->lease == LEASE_STREAM ? l->lessee : NULL;

    if (l->lease == LEASE_DEAD)
        return 0;
    bury(p, l, why);
    return lessee ? p->cb.on_lease_lost(lessee, unrun, p->cb.arg) : 0;
}
