/* Leases, from the client's side: taking one, waiting for one, tracking
 * what it holds, losing it. */
#include "lease.h"

#include <stdlib.h>

#include "client.h"
#include "hold.h"

/* Between tries at a lease while the master does not answer: at first,
 * and at most (a quarter of the time waited so far, in between). */
#define LEASE_RETRY     0.1
#define LEASE_RETRY_MAX 1.0

int lease_take(struct client *c, struct node *n)
{
    struct sidecar *sc = client_sc(c);
    struct pool *p = client_pool(c, n);
    struct link *l = p ? pool_lease(p, c, c->resp3) : NULL;
    struct client_ext *x;

    if (!p) {
        client_reply_error(c, "ERR no links for user %s on %s (out of memory)",
                           c->x->user->name, n->pool->cfg.name);
        return -1;
    }
    if (l) {
        c->lease = l;
        return 1;
    }
    if (!(x = client_ext(c))) {
        client_reply_error(c, "ERR proxy out of memory");
        return -1;
    }
    if (!x->wait_deadline) {
        x->wait_deadline = ev_now(sc->loop) + sc->cfg->connect_timeout;
    } else if (ev_now(sc->loop) >= x->wait_deadline) {
        if (p->lease_failure[0])
            client_reply_error(c, "ERR cannot open a dedicated connection to %s: %s",
                               p->cfg.name, p->lease_failure);
        else
            client_reply_error(c, "ERR no dedicated connection free for this command "
                               "(max_leased %d reached)", sc->cfg->max_leased);
        return -1;
    }
    x->wait.deadline = x->wait_deadline;
    x->wait.resp3 = c->resp3;
    pool_lease_wait(p, &x->wait);
    c->wait = WAIT_LEASE;
    return 0;
}

/* WAIT counts the writes made on its own connection, and this client's
 * went out on shared links: a PUBLISH (replicated, answer dropped) first
 * brings the lease's replication offset past them all. */
static void cover_earlier_writes(struct client *c)
{
    static const char publish[] =
        "*3\r\n$7\r\nPUBLISH\r\n$22\r\n__redis-sidecar__:wait\r\n$0\r\n\r\n";

    link_send_unowned(c->lease, publish, sizeof publish - 1);
}

/* Sent, not answered, is what counts: a refused MULTI keeps nothing, but
 * counting it only keeps the lease a little longer, never too short. */
void lease_note(struct client *c, const struct command *cmd, long long db, int db_ok)
{
    int other = db != client_sc(c)->cfg->database;
    struct client_ext *x = client_ext(c);   /* for CLIENT LIST: NULL, it shows less */

    if (x && c->in_multi)
        x->multi++;
    switch (cmd ? cmd->state : STATE_NONE) {
    case STATE_MULTI:
        if (x && !c->in_multi)
            x->multi = 0;
        c->in_multi = 1;
        break;
    case STATE_END_MULTI:                /* without a MULTI, redis keeps a WATCH */
        if (c->in_multi)
            c->in_multi = c->watching = 0;
        break;
    case STATE_WATCH:
        c->watching = 1;
        break;
    case STATE_UNWATCH:                  /* inside MULTI it is only queued */
        if (!c->in_multi)
            c->watching = 0;
        break;
    case STATE_SELECT:                   /* queued in a MULTI: it may never run */
        if (db_ok)
            c->other_db = c->in_multi ? (c->other_db | other) : other;
        if (db_ok && x && !c->in_multi)
            x->db = (int)db;
        break;
    case STATE_WAIT:
        cover_earlier_writes(c);
        break;
    case STATE_NONE:
    case STATE_SCRIPT:
    case STATE_FUNCTION:
        break;
    }
}

/* Its lease died before any of its requests went out (the master killed,
 * restarting or loading): they are read again, and routed afresh, once
 * there may be a master to run them, the way plain requests wait (for
 * failover_wait with sentinels, connect_timeout without), trying again
 * every LEASE_RETRY or so while the master is not known to be down. 1 if so;
 * 0: they fail (the time is up, or something else of the client's is in
 * flight, whose order must hold). */
static int take_back(struct client *c, const struct link *lost)
{
    struct sidecar *sc = client_sc(c);
    struct client_ext *x = client_ext(c);
    ev_tstamp now = ev_now(sc->loop);
    double wait = sc->sentinels || sc->cl ? sc->cfg->failover_wait : sc->cfg->connect_timeout;
    const struct req *r;
    int seen = 0;

    if (!x || c->closing || c->wait != WAIT_NONE)
        return 0;
    TAILQ_FOREACH(r, &c->pending, owner_tqe) {
        if (r->link == lost)
            seen = 1;
        else if (seen || !(r->flags & REQ_DONE))
            return 0;
    }
    if (!x->retry_since || now - x->retry_last > wait)
        x->retry_since = now;
    x->retry_last = now;
    if (now - x->retry_since >= wait)
        return 0;
    if (c->partial)
        resp_framer_reset(&c->partial->fr);   /* bytes go in before its own */
    x->taken_back = 0;
    /* a cluster's MULTI was the sidecar's to send: it goes again with them */
    c->multi_deferred = sc->cl && c->in_multi;
    c->in_multi = c->watching = c->other_db = c->stream = 0;   /* noted, never run */
    x->wait_deadline = x->retry_since + wait;
    hold_wait_master(c);
    double retry = (now - x->retry_since) / 4;
    retry = retry < LEASE_RETRY ? LEASE_RETRY : retry > LEASE_RETRY_MAX ? LEASE_RETRY_MAX : retry;
    if (x->wait.deadline > now + retry)
        x->wait.deadline = now + retry;
    c->paused = 1;
    client_watch(c);
    return 1;
}

/* Bytes taken back into c's input, after those before them. */
static int put_back(struct client *c, const char *p, size_t n)
{
    if ((!c->partial && !(c->partial = calloc(1, sizeof *c->partial))) ||
        buf_insert(&c->partial->buf, c->x->taken_back, p, n) < 0) {
        client_close(c, "out of memory");
        return -1;
    }
    c->x->taken_back += n;
    return 0;
}

void lease_stream_unrun(void *lessee, const char *p, size_t n, void *arg)
{
    struct client *c = lessee;
    (void)arg;

    if (!c->closed)
        put_back(c, p, n);
}

void lease_unrun(struct client *c, struct req *r, const char *req)
{
    struct sidecar *sc = client_sc(c);

    if (c->closed || put_back(c, req, r->len) < 0)
        return;
    c->inflight -= r->len;
    if (r->flags & REQ_WRITE)
        c->x->writes_pending--;
    sc->st.requests--;                   /* counted again when routed again */
    c->proc->app->requests--;
    sc->st.forwarded--;
    sc->st.requests_by[(r->flags & REQ_TALLY_MASK) >> REQ_TALLY_SHIFT]--;
    TAILQ_REMOVE(&c->pending, r, owner_tqe);
    c->npending--;
    req_release(&sc->cache, r);
}

int lease_lost(void *lessee, int unrun, void *arg)
{
    struct client *c = lessee;
    (void)arg;

    struct link *l = c->lease;

    c->lease = NULL;
    if (unrun && take_back(c, l))
        return 1;
    /* Its subscriptions, transaction, WATCH or database went with the
     * connection: carrying on would run its next commands without them.
     * A closed connection is what its client library knows how to handle. */
    if (c->stream || c->in_multi || c->watching || c->other_db) {
        client_close(c, "its dedicated connection to the master was lost");
        return 0;
    }
    c->in_multi = c->watching = c->other_db = 0;
    return 0;
}

/* Its request is routed afresh by the flush step: with the lease, or,
 * without (deadline, or the node left), to an error or another node. */
void lease_ready(void *who, struct link *l, void *arg)
{
    struct client *c = who;
    (void)arg;

    c->wait = WAIT_NONE;
    if (l)
        c->lease = l;
    client_mark_dirty(c);
}
