/* Held requests and the clients waiting for a master. */
#include "hold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/invariant.h"
#include "client.h"
#include "cluster.h"
#include "split.h"

/* A request waiting for a master: its slot, and its bytes, kept here as
 * the link it came from may be gone. */
struct held {
    TAILQ_ENTRY(held) tqe;       /* sc->held */
    struct req       *r;         /* r->owner is NULL once its client left */
    size_t            len;
    char              bytes[];
};

/* The client a held request is for: its owner, or a split part's
 * (NULL once it left). */
static struct client *holder(const struct req *r)
{
    return r->flags & REQ_PART ? split_part_client(r) : r->owner;
}

/* A held request that will not be sent: its error (a part: to its split). */
static void fail(struct req *r, const char *why)
{
    if (r->flags & REQ_PART)
        split_part_answered(r, NULL, NULL, 0, why);
    else
        client_answer(r->owner, r, NULL, 0, why);
}

/* Off the list. It stays marked held until it is answered or sent: a
 * client closed meanwhile leaves it as an orphan, not freed. */
static void take_off(struct sidecar *sc, struct held *h)
{
    struct client *c = holder(h->r);

    TAILQ_REMOVE(&sc->held, h, tqe);
    sc->nheld--;
    if (c)
        c->x->nheld--;
}

/* Its entry freed; the request, back with its client (or its split), or
 * released if the client left. 1 if it has one. */
static int unpark(struct sidecar *sc, struct held *h)
{
    struct req *r = h->r;

    free(h);
    r->flags &= ~(unsigned)REQ_HELD;
    r->parked = NULL;
    if (r->owner)
        return 1;
    req_release(&sc->cache, r);
    return 0;
}

unsigned hold_parts_of(const struct sidecar *sc, const struct client *c)
{
    const struct held *h;
    unsigned n = 0;

    TAILQ_FOREACH(h, &sc->held, tqe)
        n += (h->r->flags & REQ_PART) && split_part_client(h->r) == c;
    return n;
}

/* The first held part of the split whose app request is `parent`, if
 * any: a request held before that split came must go before it. */
static struct held *first_part_held(struct sidecar *sc, const struct req *parent)
{
    struct held *h;

    TAILQ_FOREACH(h, &sc->held, tqe)
        if ((h->r->flags & REQ_PART) && split_part_parent(h->r) == parent)
            return h;
    return NULL;
}

int hold_request(struct client *c, struct req *r, const char *p, size_t n)
{
    struct sidecar *sc = client_sc(c);
    struct held *h;
    struct req *later;

    if (!client_ext(c) || !(h = malloc(sizeof *h + n)))
        return -1;
    memcpy(h->bytes, p, n);
    h->len = n;
    h->r = r;
    r->parked = h;
    r->len = n;
    r->link = NULL;
    r->flags |= REQ_HELD;
    if (!r->waiting_since)
        r->waiting_since = r->queued_at;
    /* Before any of the client's requests held already that came after it
     * (its refusal was read after theirs were held), so they go out in the
     * client's order; a split's part, after its app request's slot. */
    struct held *before = NULL;
    later = TAILQ_NEXT(r->flags & REQ_PART ? split_part_parent(r) : r, owner_tqe);
    for (; later && !before; later = TAILQ_NEXT(later, owner_tqe))
        before = later->flags & REQ_HELD ? later->parked
               : later->flags & REQ_DEFERRED ? first_part_held(sc, later) : NULL;
    if (before)
        TAILQ_INSERT_BEFORE(before, h, tqe);
    else
        TAILQ_INSERT_TAIL(&sc->held, h, tqe);
    sc->nheld++;
    c->x->nheld++;
    sc->st.held++;
    sc->last_hold_at = ev_now(sc->loop);
    if (!ev_is_active(&sc->held_w))
        ev_timer_again(sc->loop, &sc->held_w);
    return 0;
}

void hold_wait_master(struct client *c)
{
    struct sidecar *sc = client_sc(c);
    struct client_ext *x = client_ext(c);

    if (!x) {
        client_close(c, "out of memory");
        return;
    }
    if (!x->wait_deadline)
        x->wait_deadline = ev_now(sc->loop) + sc->cfg->failover_wait;
    x->wait.deadline = x->wait_deadline;
    TAILQ_INSERT_TAIL(&sc->master_waiters, &x->wait, tqe);
    c->wait = WAIT_MASTER;
    if (!ev_is_active(&sc->held_w))
        ev_timer_again(sc->loop, &sc->held_w);
}

static void wake(struct sidecar *sc, struct pool_waiter *w)
{
    struct client *c = w->who;

    TAILQ_REMOVE(&sc->master_waiters, w, tqe);
    c->wait = WAIT_NONE;
    client_mark_dirty(c);       /* routed afresh by the flush step */
}

/* A cluster's: each held request to the master of its slot now, if that
 * one is up; one that stays held keeps its client's later ones held too,
 * so each client's order holds. */
static void release_by_slot(struct sidecar *sc)
{
    struct held *h, *next;
    struct client *c;

    sc->hold_pass++;
    for (h = TAILQ_FIRST(&sc->held); h; h = next) {
        next = TAILQ_NEXT(h, tqe);
        struct req *r = h->r;
        if (!(c = holder(r))) {
            take_off(sc, h);
            if (unpark(sc, h))           /* its client left */
                fail(r, "its client left");
            continue;
        }
        struct node *n = c->x->hold_pass == sc->hold_pass ? NULL
                       : cluster_route_bytes(sc, h->bytes, h->len);
        /* a master the map names, up, and confirmed by its own ROLE */
        struct pool *p = n && !n->pool->down && strcmp(n->health.role, "master") == 0
                         ? client_pool(c, n) : NULL;
        struct link *l = p ? pool_link_for(p, c->id, c->resp3) : NULL;
        if (!l) {
            c->x->hold_pass = sc->hold_pass;
            continue;
        }
        take_off(sc, h);
        r->flags &= ~(unsigned)REQ_HELD;
        r->parked = NULL;
        if (link_send(l, r, h->bytes, h->len) < 0)
            fail(r, "proxy out of memory");
        free(h);
    }
}

void hold_master_ready(struct sidecar *sc)
{
    struct held *h;

    if (sc->cl)
        release_by_slot(sc);
    while (!sc->cl && sc->master && (h = TAILQ_FIRST(&sc->held)) != NULL) {
        struct req *r = h->r;
        struct client *c = r->owner;
        take_off(sc, h);
        if (c) {
            struct pool *p = client_pool(c, sc->master);
            struct link *l = p ? pool_link_for(p, c->id, c->resp3) : NULL;
            r->flags &= ~(unsigned)REQ_HELD;
            r->parked = NULL;
            if (!l || link_send(l, r, h->bytes, h->len) < 0)
                client_answer(c, r, NULL, 0, "proxy out of memory");
            free(h);
        } else {
            unpark(sc, h);               /* its client left */
        }
    }
    while (sc->master && !TAILQ_EMPTY(&sc->master_waiters))
        wake(sc, TAILQ_FIRST(&sc->master_waiters));
}

/* Held requests past failover_wait get an error; waiting clients past
 * theirs are woken to get theirs. */
static void expire(struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    struct held *h, *next;
    struct pool_waiter *w, *wnext;
    TAILQ_HEAD(, held) late = TAILQ_HEAD_INITIALIZER(late);
    char why[400];
    /* The expired ones are taken off first, then answered: an answer may
     * close its client, whose other held requests become orphans. */
    for (h = TAILQ_FIRST(&sc->held); h; h = next) {
        next = TAILQ_NEXT(h, tqe);
        if (holder(h->r) && now - h->r->waiting_since < sc->cfg->failover_wait)
            continue;
        take_off(sc, h);
        TAILQ_INSERT_TAIL(&late, h, tqe);
    }
    while ((h = TAILQ_FIRST(&late)) != NULL) {
        struct req *r = h->r;
        /* a cluster's: why its slot has no master now */
        const char *reason = sc->cl ? cluster_held_why(sc, h->bytes, h->len) : sc->no_master_why;
        snprintf(why, sizeof why, "no master confirmed within failover_wait (%gs): %.300s",
                 sc->cfg->failover_wait, reason[0] ? reason :
                 "the master keeps refusing requests as a replica or while loading");
        TAILQ_REMOVE(&late, h, tqe);
        if (unpark(sc, h)) {
            sc->st.held_failed++;
            fail(r, why);
        }
    }
    for (w = TAILQ_FIRST(&sc->master_waiters); w; w = wnext) {
        wnext = TAILQ_NEXT(w, tqe);
        if (now >= w->deadline)
            wake(sc, w);
    }
}

/* While requests wait, the master (or the node named to be it) is asked
 * often: the ROLE that says master sends them. */
static void on_held_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    expire(sc);
    if (CHECKS) {
        const struct held *h;
        unsigned n = 0;
        TAILQ_FOREACH(h, &sc->held, tqe)
            n++;
        assert(n == sc->nheld);
    }
    if (!sc->nheld && TAILQ_EMPTY(&sc->master_waiters))
        ev_timer_stop(loop, w);
    else if (sc->cl)
        cluster_node_down(sc);           /* the map again, soon: the promoted replica */
    else if (sc->master || sc->candidate)
        health_sample_soon(&(sc->master ? sc->master : sc->candidate)->health, 0.05);
}

void hold_start(struct sidecar *sc)
{
    TAILQ_INIT(&sc->held);
    TAILQ_INIT(&sc->master_waiters);
    ev_init(&sc->held_w, on_held_tick);
    sc->held_w.repeat = 0.05;
    sc->held_w.data = sc;
}

void hold_stop(struct sidecar *sc)
{
    struct held *h;

    ev_timer_stop(sc->loop, &sc->held_w);
    while ((h = TAILQ_FIRST(&sc->held)) != NULL) {
        struct req *r = h->r;
        take_off(sc, h);
        if (unpark(sc, h) && (r->flags & REQ_PART))
            fail(r, "the proxy is stopping");    /* its split is freed with it */
    }
}
