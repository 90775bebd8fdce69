/* The links to one node. Links that got bytes during this loop iteration
 * are on the dirty list and written once, together, just before the loop
 * waits again: that is what turns many clients' requests into one write. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"

const double pool_rtt_bounds[POOL_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

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
    while ((l = TAILQ_FIRST(&p->lease_dead)) != NULL) {
        TAILQ_REMOVE(&p->lease_dead, l, lease_tqe);
        buf_free(&l->out);
        free(l);
    }
}

static void pool_care_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pool *p = w->data;
    (void)revents;

    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            link_tend(&p->links[v][i], ev_now(loop));
}

struct pool *pool_new(struct ev_loop *loop, const struct pool_config *cfg,
                      struct req_cache *cache,
                      void (*on_reply)(struct req *r, const char *req, const char *p,
                                       size_t n, const char *err, void *arg),
                      void *arg)
{
    struct pool *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->links[0] = calloc((size_t)cfg->connections, sizeof *p->links[0]);
    if (!p->links[0]) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->cache = cache;
    p->on_reply = on_reply;
    p->arg = arg;
    p->seed = (unsigned)getpid() ^ (unsigned)(ev_time() * 1000);
    TAILQ_INIT(&p->dirty);
    TAILQ_INIT(&p->leases);
    TAILQ_INIT(&p->lease_idle);
    TAILQ_INIT(&p->lease_dead);
    ev_prepare_init(&p->flush_w, pool_flush_cb);
    p->flush_w.data = p;
    ev_prepare_start(loop, &p->flush_w);
    double tick = 1.0;
    if (cfg->ping_interval > 0 && cfg->ping_interval / 4 < tick)
        tick = cfg->ping_interval / 4 < 0.05 ? 0.05 : cfg->ping_interval / 4;
    ev_timer_init(&p->care_w, pool_care_cb, tick, tick);
    p->care_w.data = p;
    ev_timer_start(loop, &p->care_w);
    for (int i = 0; i < cfg->connections; i++) {
        link_init(&p->links[0][i], p, i, 0);
        link_start(&p->links[0][i]);
    }
    return p;
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
    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            link_stop(&p->links[v][i]);
    TAILQ_INIT(&p->dirty);          /* nothing is written any more */
    while ((l = TAILQ_FIRST(&p->leases)) != NULL) {
        TAILQ_REMOVE(&p->leases, l, all_tqe);
        link_stop(l);
        free(l);
    }
    while ((l = TAILQ_FIRST(&p->lease_dead)) != NULL) {
        TAILQ_REMOVE(&p->lease_dead, l, lease_tqe);
        buf_free(&l->out);
        free(l);
    }
    ev_prepare_stop(p->loop, &p->flush_w);
    ev_timer_stop(p->loop, &p->care_w);
    free(p->links[0]);
    free(p->links[1]);
    free(p);
}

struct link *pool_link_resp3(struct pool *p, uint64_t key)
{
    if (!open_resp3(p))
        return NULL;
    return &p->links[1][key % (uint64_t)p->cfg.connections];
}

void pool_mark_dirty(struct pool *p, struct link *l)
{
    if (!l->dirty) {
        l->dirty = 1;
        TAILQ_INSERT_TAIL(&p->dirty, l, dirty_tqe);
    }
}

int pool_ready_links(const struct pool *p)
{
    int n = 0;

    for (int i = 0; i < p->cfg.connections; i++)
        n += link_is_ready(&p->links[0][i]);
    return n;
}

int pool_ready_links_resp3(const struct pool *p)
{
    int n = 0;

    for (int i = 0; p->links[1] && i < p->cfg.connections; i++)
        n += link_is_ready(&p->links[1][i]);
    return n;
}

void pool_set_down(struct pool *p, int down, const char *why)
{
    p->down = down;
    for (int v = 0; v < 2; v++)
        for (int i = 0; !down && p->links[v] && i < p->cfg.connections; i++)
            link_retry_now(&p->links[v][i]);
    snprintf(p->down_reason, sizeof p->down_reason, "%s", why ? why : "");
}

void pool_evacuate_shared(struct pool *p, const char *why)
{
    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            link_evacuate(&p->links[v][i], why);
}

void pool_evacuate_unready(struct pool *p, const char *why)
{
    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            if (p->links[v][i].state != LINK_READY && p->links[v][i].nfifo)
                link_evacuate(&p->links[v][i], why);
}

void pool_close_shared(struct pool *p)
{
    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            link_stop(&p->links[v][i]);
}

void pool_evacuate(struct pool *p, const char *why)
{
    struct link *l;

    pool_evacuate_shared(p, why);
    while ((l = TAILQ_FIRST(&p->leases)) != NULL) {
        p->st.leases_closed++;
        link_evacuate(l, why);
    }
}

unsigned pool_inflight(const struct pool *p)
{
    unsigned n = 0;

    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            n += p->links[v][i].nfifo;
    return n;
}

int pool_open_links(const struct pool *p)
{
    int n = p->nleases;

    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            n += p->links[v][i].fd >= 0;
    return n;
}

int pool_leases_held(const struct pool *p)
{
    const struct link *l;
    int n = 0;

    TAILQ_FOREACH(l, &p->leases, all_tqe)
        n += l->lessee != NULL;
    return n;
}

/* An idle lease of the protocol, or one being reset (requests wait
 * behind its handshake). */
static struct link *idle_lease(struct pool *p, int resp3)
{
    struct link *l;

    TAILQ_FOREACH(l, &p->lease_idle, lease_tqe)
        if (l->resp3 == resp3)
            return l;
    TAILQ_FOREACH(l, &p->leases, all_tqe)
        if (l->returning && !l->lessee && l->resp3 == resp3)
            return l;
    return NULL;
}

struct link *pool_lease(struct pool *p, void *lessee, int resp3)
{
    struct link *l = idle_lease(p, resp3);

    /* An idle lease gone stale is replaced, not validated: a failed PING
     * there would cost the new holder its first command. */
    while (l && !l->returning && p->cfg.validate_after > 0 &&
           ev_now(p->loop) - l->last_rx > p->cfg.validate_after) {
        p->st.leases_closed++;
        link_stop(l);
        pool_lease_dead(p, l);
        l = idle_lease(p, resp3);
    }
    if (l && !l->returning) {
        TAILQ_REMOVE(&p->lease_idle, l, lease_tqe);
    } else if (!l) {
        struct link *other = TAILQ_FIRST(&p->lease_idle);   /* the other protocol's */
        if (p->nleases >= p->cfg.max_leased && other) {
            p->st.leases_closed++;
            link_stop(other);
            pool_lease_dead(p, other);
        }
        if (p->nleases >= p->cfg.max_leased) {
            p->st.leases_refused++;
            return NULL;
        }
        if (!(l = malloc(sizeof *l)))
            return NULL;
        link_init(l, p, 1000 + p->next_lease_idx++, resp3);
        l->lease = 1;
        p->nleases++;
        TAILQ_INSERT_TAIL(&p->leases, l, all_tqe);
        link_start(l);
        if (l->dead) {           /* the connect failed at once (no fds, say) */
            snprintf(p->lease_failure, sizeof p->lease_failure, "%s", l->last_err);
            return NULL;
        }
        p->lease_failure[0] = '\0';
    }
    l->lessee = lessee;
    p->st.leases_taken++;
    return l;
}

void pool_unlease(struct pool *p, struct link *l)
{
    if (l->dead)
        return;
    l->lessee = NULL;
    if (l->nfifo == 0 && l->state == LINK_READY && !l->stream) {
        p->st.leases_reset++;
        link_return(l);
        return;
    }
    /* Still busy (a blocking call may never answer): close it, and its
     * requests, orphans now, go with it. */
    log_debug("lease %s#%d closed: given back busy", p->cfg.name, l->idx);
    p->st.leases_closed++;
    link_stop(l);
    pool_lease_dead(p, l);
}

void pool_lease_idle(struct pool *p, struct link *l)
{
    TAILQ_INSERT_TAIL(&p->lease_idle, l, lease_tqe);
}

void pool_lease_dead(struct pool *p, struct link *l)
{
    void *lessee = l->lessee;

    if (l->dead)
        return;
    l->dead = 1;
    if (l->dirty) {
        TAILQ_REMOVE(&p->dirty, l, dirty_tqe);
        l->dirty = 0;
    }
    if (!l->lessee && !l->returning) {
        /* idle or just returned: it may sit on the idle list */
        struct link *i;
        TAILQ_FOREACH(i, &p->lease_idle, lease_tqe)
            if (i == l) {
                TAILQ_REMOVE(&p->lease_idle, l, lease_tqe);
                break;
            }
    }
    l->lessee = NULL;
    p->nleases--;
    TAILQ_REMOVE(&p->leases, l, all_tqe);
    TAILQ_INSERT_TAIL(&p->lease_dead, l, lease_tqe);
    if (lessee && p->on_lease_lost)
        p->on_lease_lost(lessee, p->arg);
}
