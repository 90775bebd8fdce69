/* Request routing: answered here, refused, forwarded on the client's own
 * shared link to the master or to a replica (reads), held for a master,
 * or on a lease when the client holds server-side state (transactions,
 * blocking calls, another database, pub/sub). Only decided here: no
 * socket is opened or written. Besides the route it may ask a checker for
 * a fresher offset (read-your-writes) and remember the offset that covers
 * a client's write once known. */
#include "router.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "cluster.h"
#include "split.h"

static void error(struct route *rt, uint64_t *count, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), cold));

static void error(struct route *rt, uint64_t *count, const char *fmt, ...)
{
    va_list ap;

    rt->kind = ROUTE_ERROR;
    rt->count = count;
    va_start(ap, fmt);
    vsnprintf(rt->err, sizeof rt->err, fmt, ap);
    va_end(ap);
}

/* XREAD and XREADGROUP block only when given BLOCK, among the options
 * before STREAMS (after it come key names, and GROUP's two names, which
 * may be called "block" or "streams" too); 1 with *t its argument. */
static int block_arg(const char *frame, size_t len, const char **t, size_t *tn)
{
    size_t pos = 0, n;
    const char *a;

    resp_next_arg(frame, len, &pos, &a, &n);
    while (resp_next_arg(frame, len, &pos, &a, &n)) {
        if (n == 7 && strncasecmp(a, "streams", 7) == 0)
            return 0;
        if (n == 5 && strncasecmp(a, "group", 5) == 0) {
            if (!resp_next_arg(frame, len, &pos, &a, &n) ||
                !resp_next_arg(frame, len, &pos, &a, &n))
                return 0;
        } else if (n == 5 && strncasecmp(a, "block", 5) == 0) {
            return resp_next_arg(frame, len, &pos, t, tn);
        }
    }
    return 0;
}

static int has_block_arg(const char *frame, size_t len)
{
    const char *t;
    size_t tn;

    return block_arg(frame, len, &t, &tn);
}

/* How long a blocking call may wait for data, in seconds, read from its
 * arguments as redis reads them: the last one (BLPOP's seconds, WAIT's
 * milliseconds), the first (BLMPOP), XREAD's BLOCK, or DEBUG SLEEP's. INFINITY when it
 * may wait for ever (0) or the form is not known; 0 when it will not
 * block (redis answers a bad timeout at once). */
static float blocking_for(const struct command *cmd, const char *frame,
                          const struct resp_frame *fr)
{
    static const char *const last_s[] = {"blpop", "brpop", "brpoplpush", "blmove",
                                         "bzpopmin", "bzpopmax", NULL};
    const char *name = cmd->name, *a, *t = NULL;
    size_t pos = 0, n, tn = 0;
    int ms = 0, i = 0;      /* 1: milliseconds; -1: seconds, 0 not for ever (DEBUG SLEEP) */
    char num[32], *end;

    resp_next_arg(frame, fr->len, &pos, &a, &n);
    if (strcmp(name, "xread") == 0 || strcmp(name, "xreadgroup") == 0) {
        ms = 1;
        if (!block_arg(frame, fr->len, &t, &tn))
            return 0;
    } else if (strcmp(name, "debug") == 0) {
        /* DEBUG SLEEP n holds its caller n seconds, RELOAD and LOADAOF as
         * long as the data takes; the rest answer at once */
        if (!resp_next_arg(frame, fr->len, &pos, &a, &n))
            return 0;
        if ((n == 6 && strncasecmp(a, "reload", 6) == 0) ||
            (n == 7 && strncasecmp(a, "loadaof", 7) == 0))
            return INFINITY;
        if (!(n == 5 && strncasecmp(a, "sleep", 5) == 0) ||
            !resp_next_arg(frame, fr->len, &pos, &t, &tn))
            return 0;
        ms = -1;
    } else if (strcmp(name, "blmpop") == 0 || strcmp(name, "bzmpop") == 0) {
        resp_next_arg(frame, fr->len, &pos, &t, &tn);
    } else {
        ms = strcmp(name, "wait") == 0 || strcmp(name, "waitaof") == 0;
        while (!ms && last_s[i] && strcmp(name, last_s[i]) != 0)
            i++;
        if (!ms && !last_s[i])
            return INFINITY;
        while (resp_next_arg(frame, fr->len, &pos, &a, &n)) {
            t = a;
            tn = n;
        }
    }
    if (!t || tn == 0)
        return 0;
    if (tn >= sizeof num)
        return INFINITY;                 /* "000...060": wait, rather than cut it short */
    memcpy(num, t, tn);
    num[tn] = '\0';
    double v = strtod(num, &end);
    if (*end || !(v >= 0))
        return 0;
    if (ms > 0)
        v /= 1000;
    if (ms < 0 && v == 0)                /* DEBUG SLEEP 0 */
        return 0;
    if (v == 0 || v > 1e9)               /* for ever, or as good as (and no float overflow) */
        return INFINITY;
    return (float)v;
}

/* The n-th argument (0 = the command) is s, case-insensitively. */
static int arg_is(const char *frame, const struct resp_frame *fr, int i, const char *s)
{
    size_t n, sl = strlen(s);
    const char *a;

    return resp_arg(frame, fr, i, &a, &n) && n == sl && strncasecmp(a, s, n) == 0;
}

static int needs_auth(const struct client *c, const struct command *cmd)
{
    return !c->authed && !(cmd && (cmd->local == LOCAL_AUTH ||
                                   cmd->local == LOCAL_HELLO ||
                                   cmd->local == LOCAL_QUIT ||
                                   cmd->local == LOCAL_RESET));
}

/* Read-your-writes: the offset a replica of master m must have reached
 * to serve this client's reads (0: any), or -1 when only the master will
 * do: a write still in flight, its covering offset not sampled yet, or
 * inside the window. Remembers the covering offset once it is known. In
 * a cluster each shard's master has its offsets, and a write to any
 * shard counts for all of them (a little stricter than per shard, never
 * weaker). */
static long long ryw_floor(struct client *c, struct node *m)
{
    struct sidecar *sc = client_sc(c);
    struct client_ext *x = c->x;

    if (sc->cfg->read_your_writes == RYW_OFF || !x)
        return 0;
    if (x->writes_pending)
        return -1;
    if (x->wrote_at == 0)
        return 0;
    /* Written on a master since replaced: whatever of it survived is in
     * the new master's first offset sampled after the switch (a cluster's
     * shard masters keep offsets of their own: no switch time). */
    if (x->wrote_at < sc->switched_at) {
        x->wrote_at = sc->switched_at;
        x->wrote_offset = -1;
    }
    if (sc->cfg->read_your_writes == RYW_WINDOW)
        return ev_now(sc->loop) - x->wrote_at < sc->cfg->ryw_window ? -1 : 0;
    if (sc->cl) {                        /* per shard master: nothing to remember */
        long long o = m->topo ? health_master_offset_after(m->topo, x->wrote_at) : -1;
        if (o < 0)
            health_sample_soon(&m->health, 0.1);
        return o;
    }
    if (x->wrote_offset < 0)
        x->wrote_offset = health_master_offset_after(&sc->topo, x->wrote_at);
    if (x->wrote_offset < 0 && sc->master)
        health_sample_soon(&sc->master->health, 0.1);
    return x->wrote_offset;
}

/* The best replica so far, and its load. */
struct pick {
    struct node *best;
    unsigned     load;
};

/* Replica n, judged by its master's offsets t: taken if eligible, at or
 * past `floor`, with fewer requests in flight than the best so far (among
 * equals, sent fewer so far, so that light traffic spreads too). */
static void consider(struct client *c, struct node *n, const struct topology *t,
                     long long floor, struct pick *pk)
{
    struct sidecar *sc = client_sc(c);
    struct pool *p = client_pool(c, n);
    struct link *l;
    char why[96];

    if (n->pool->down || !p || !(l = pool_link_peek(p, c->id, c->resp3)) || !link_is_ready(l) ||
        !health_replica_eligible(t, &n->health, sc->cfg->replica_max_lag, ev_now(sc->loop),
                                 why, sizeof why))
        return;
    if (n->health.offset < floor) {
        health_sample_soon(&n->health, 0.05);   /* it may have caught up since */
        return;
    }
    unsigned load = pool_inflight(p);
    if (!pk->best || load < pk->load ||
        (load == pk->load && p->st.requests_sent < client_pool(c, pk->best)->st.requests_sent)) {
        pk->best = n;
        pk->load = load;
    }
}

/* The replica of master m (a cluster's: of its shard sh, whose master
 * has offsets whenever it has replicas) to read from, or NULL. */
static struct node *pick_replica(struct client *c, struct node *m, int sh, long long floor)
{
    struct sidecar *sc = client_sc(c);
    struct pick pk = {0};
    struct node *n;

    if (sc->cl) {
        struct node *const *v;
        int k = cluster_replicas(sc, sh, &v);
        for (int i = 0; i < k; i++)
            consider(c, v[i], m->topo, floor, &pk);
        return pk.best;
    }
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        if (n != m)
            consider(c, n, &sc->topo, floor, &pk);
    return pk.best;
}

/* A write is tracked (read-your-writes) only when reads may go elsewhere. */
static inline unsigned write_flag(const struct sidecar *sc, unsigned flags)
{
    if (!(flags & REQ_READONLY) && sc->nreplicas && sc->cfg->read_your_writes != RYW_OFF)
        flags |= REQ_WRITE;
    return flags;
}

/* A request of c's still on the shared links of a node a reload retired:
 * c's next ones go to other links, and must not overtake it. */
static int behind_retiring(const struct client *c)
{
    const struct req *r;

    TAILQ_FOREACH(r, &c->pending, owner_tqe)
        if (r->link && !link_is_lease(r->link) && r->link->pool->retiring)
            return 1;
    return 0;
}

/* A stateless request: to the master, or a read to a replica. The path
 * of nearly every request: kept inline, which the compiler stopped doing
 * on its own as router_route grew (about 30 instructions a request). */
static inline __attribute__((always_inline)) void shared(struct client *c, struct route *rt,
                                                         const char *frame,
                                                         const struct resp_frame *fr)
{
    struct sidecar *sc = client_sc(c);
    struct node *n = sc->master;
    unsigned flags = rt->flags;
    const char *why;
    int sh = -1;

    /* a cluster: the master of the slot of the first key */
    if (__builtin_expect(sc->cl != NULL, 0) &&
        !(n = cluster_route(sc, rt->cmd, frame, fr, &why, &sh))) {
        if (cluster_unserved_waits(sc)) {
            /* a moment of a failover: held as Redis's own CLUSTERDOWN is */
            rt->flags = write_flag(sc, flags);
            rt->kind = ROUTE_HOLD;
            return;
        }
        error(rt, &sc->st.err_node_down, "CLUSTERDOWN Hash slot not served (%s)", why);
        return;
    }
    if (__builtin_expect(sc->retiring_busy, 0) && c->inflight && behind_retiring(c)) {
        rt->kind = ROUTE_LATER;
        return;
    }
    if (!(flags & REQ_READONLY)) {
        flags = write_flag(sc, flags);
    } else if (sc->cfg->read_from != READ_MASTER &&
               !(sc->cl && c->x && c->x->nheld)) {    /* else held, for the master */
        long long floor = ryw_floor(c, n);
        struct node *r = floor < 0 ? NULL : pick_replica(c, n, sh, floor);
        if (r) {
            n = r;
            flags |= REQ_REROUTE;
            rt->count = &sc->st.reads_to_replicas;
        } else if (floor != 0) {       /* its own write: the master has it */
            rt->count = &sc->st.reads_ryw_master;
        } else if (sc->cfg->read_from == READ_REPLICA) {
            error(rt, &sc->st.err_no_replica,
                  "ERR no replica can serve reads now (read_from = replica)");
            return;
        }
    }
    rt->flags = flags;
    /* With sentinels a master that is down is waited for (failover_wait):
     * they may be about to replace it. Its requests queue on its links or,
     * while there is no master or the client has requests held, are held. */
    if (__builtin_expect(sc->cl != NULL, 0)) {
        /* a cluster's master that is down is waited for: the cluster may be
         * promoting its replica (failover_wait) */
        if (n->pool->down || (c->x && c->x->nheld)) {
            rt->kind = ROUTE_HOLD;
            return;
        }
    } else if (!sc->sentinels || n != sc->master) {
        if (n->pool->down) {
            error(rt, &sc->st.err_node_down, "ERR upstream %s is down (%s)", n->pool->cfg.name,
                  n->pool->down_reason);
            return;
        }
    } else if (!n || (c->x && c->x->nheld)) {
        rt->kind = ROUTE_HOLD;
        return;
    }
    /* A RESP3 client's set was opened on every node when it said HELLO 3. */
    struct pool *p = client_pool(c, n);
    if (!p || !(rt->link = pool_link_peek(p, c->id, c->resp3))) {
        error(rt, NULL, "ERR no %s link to %s (out of memory)", c->resp3 ? "RESP3" : "RESP2",
              n->pool->cfg.name);
        return;
    }
    /* A script may run past busy-reply-threshold: what comes behind it on
     * its link waits for it, where directly it would get BUSY. A client
     * with nothing in flight (its order cannot break) takes another. */
    if (__builtin_expect(rt->link->scripts != 0, 0) && !c->inflight)
        rt->link = pool_link_free_of_scripts(p, rt->link);
    rt->kind = ROUTE_SHARED;
    rt->node = n;
}

int router_reuse(const struct sidecar *sc, const struct link *l, unsigned flags)
{
    return !sc->cl && !sc->retiring_busy && !sc->clients_paused_until && !l->scripts &&
           (!(flags & REQ_READONLY) || sc->cfg->read_from == READ_MASTER);
}

/* A client without a lease that needs one (kind: LEASE or STREAM): its
 * earlier requests first; without sentinels a master that is down fails
 * at once; with them, no master (or one that is down) is waited for up to
 * failover_wait. */
static void needs_lease(struct client *c, struct route *rt, enum route_kind kind)
{
    struct sidecar *sc = client_sc(c);
    struct node *m = sc->master;
    const char *why;
    int sh;

    /* a cluster's: on the node of the first key (none: the default master) */
    if (sc->cl && !(m = cluster_route(sc, rt->cmd, rt->frame, rt->fr, &why, &sh)) &&
        !cluster_unserved_waits(sc)) {
        error(rt, &sc->st.err_node_down, "CLUSTERDOWN Hash slot not served (%s)", why);
        return;
    }
    rt->node = m;
    if (c->inflight) {
        rt->kind = ROUTE_LATER;
    } else if (!sc->sentinels && !sc->cl && m->pool->down) {
        error(rt, &sc->st.err_node_down, "ERR upstream %s is down (%s)", m->pool->cfg.name,
              m->pool->down_reason);
    } else if (m && !((sc->sentinels || sc->cl) && m->pool->down)) {
        rt->kind = kind;
    } else if (c->x && c->x->wait_deadline && ev_now(sc->loop) >= c->x->wait_deadline) {
        error(rt, NULL, "ERR no master confirmed within failover_wait (%gs): %s",
              sc->cfg->failover_wait, m ? m->pool->down_reason : sc->cl ? CLUSTER_UNSERVED
                                                                        : sc->no_master_why);
    } else {
        rt->kind = ROUTE_WAIT_MASTER;
    }
}

/* Everything of a client holding a lease goes through it, in order. */
static void lease(struct client *c, const struct command *cmd, const char *frame,
                  const struct resp_frame *fr, struct route *rt)
{
    struct sidecar *sc = client_sc(c);

    /* A cluster's transaction runs on the node of its first key, known
     * with the command after MULTI: MULTI waits for it. */
    if (__builtin_expect(client_sc(c)->cl != NULL, 0) && !c->lease && cmd &&
        cmd->state == STATE_MULTI) {
        rt->kind = ROUTE_MULTI_HERE;
        return;
    }
    rt->flags = REQ_LEASED;
    rt->block = 0;
    if (cmd && (cmd->flags & (CMD_BLOCKING | CMD_MAYBLOCK)) &&
        (rt->block = blocking_for(cmd, frame, fr)) > 0)
        rt->flags |= REQ_NOTIMEOUT;
    if (sc->nreplicas && sc->cfg->read_your_writes != RYW_OFF &&
        !(cmd && (cmd->flags & CMD_READONLY)))
        rt->flags |= REQ_WRITE;
    if (c->lease)
        rt->kind = ROUTE_LEASE;
    else
        needs_lease(c, rt, ROUTE_LEASE);
}

/* While an app's CLIENT PAUSE lasts, a request the server holds would
 * hold every other client's behind it on a shared link: each goes on a
 * lease of its own, as it would wait on its own connection directly
 * (while the pool has leases to spare). */
static int paused(const struct client *c)
{
    const struct sidecar *sc = client_sc(c);
    const struct pool *p = sc->master ? client_pool(c, sc->master) : NULL;

    return p && ev_now(sc->loop) < sc->clients_paused_until &&
           pool_leases(p) < p->cfg.max_leased;
}

static void stream(struct client *c, struct route *rt)
{
    if (c->stream)
        rt->kind = ROUTE_STREAM;
    else if (c->lease)
        rt->kind = c->inflight ? ROUTE_LATER : ROUTE_STREAM;
    else
        needs_lease(c, rt, ROUTE_STREAM);
}

/* SELECT of another database holds state; while leased, every SELECT
 * goes to the lease so that its database is known. */
static int select_needs_lease(struct client *c, const char *frame, const struct resp_frame *fr,
                              struct route *rt)
{
    size_t pos = 0, n;
    const char *a;

    rt->db = client_sc(c)->cfg->database;
    rt->db_ok = fr->argc == 2 && resp_next_arg(frame, fr->len, &pos, &a, &n) &&
                resp_next_arg(frame, fr->len, &pos, &a, &n) && resp_parse_ll(a, n, &rt->db) == 0;
    if (!rt->db_ok)
        return c->lease != NULL;      /* a bad SELECT: redis's own error, if leased */
    return c->lease != NULL || rt->db != client_sc(c)->cfg->database;
}

/* CLIENT TRACKING, CACHING and REPLY change what a connection gets back
 * (invalidations, no replies at all): only a streaming lease can carry
 * that without losing the request/reply match. */
static int client_needs_stream(const char *frame, const struct resp_frame *fr)
{
    return fr->argc >= 2 && (arg_is(frame, fr, 1, "tracking") || arg_is(frame, fr, 1, "caching") ||
                             arg_is(frame, fr, 1, "reply"));
}

/* Inside MULTI, sent or (a cluster's) not yet: a refusal fails the EXEC. */
static inline int in_transaction(const struct client *c)
{
    return c->in_multi || c->multi_deferred;
}

/* CLIENT KILL or UNBLOCK: they name app connections by their ids. */
static int kills_or_unblocks(const char *frame, const struct resp_frame *fr)
{
    return fr->argc >= 2 && (arg_is(frame, fr, 1, "kill") || arg_is(frame, fr, 1, "unblock"));
}

/* What the connection's state decides before the command's kind does. */
static int by_state(struct client *c, const struct command *cmd, const char *frame,
                    const struct resp_frame *fr, struct route *rt)
{
    struct sidecar *sc = client_sc(c);
    enum cmd_local local = cmd ? cmd->local : LOCAL_NONE;

    /* A cluster's MULTI not sent yet: EXEC or DISCARD of nothing is
     * answered here; any other command takes it along, to its node, but
     * those never sent inside any MULTI, refused by the checks below. */
    if (__builtin_expect(c->multi_deferred, 0) && local != LOCAL_QUIT && local != LOCAL_RESET &&
        local != LOCAL_PROXY && !(cmd && (cmd->flags & (CMD_REFUSED | CMD_NOT_YET))) &&
        !(local == LOCAL_CLIENT && kills_or_unblocks(frame, fr))) {
        if (cmd && cmd->state == STATE_END_MULTI)
            rt->kind = ROUTE_MULTI_HERE;
        else if (cmd && cmd->state == STATE_MULTI)
            error(rt, NULL, "ERR MULTI calls can not be nested");
        else if (cmd && cmd->state == STATE_WATCH)
            error(rt, NULL, "ERR WATCH inside MULTI is not allowed");
        else {
            lease(c, cmd, frame, fr, rt);
            rt->send_multi = 1;          /* if it fails here, the transaction does */
            rt->abort_multi = 1;
        }
        return 1;
    }
    /* Draining: what is under way finishes (a transaction may reach its
     * EXEC), nothing new starts. */
    if (sc->draining && !client_holds_state(c) && local != LOCAL_QUIT)
        error(rt, NULL, "ERR proxy is shutting down");
    /* PROXY PAUSE: the client is not read until PROXY RESUME (its
     * request stays in its buffer), so the usual limits bound the wait. */
    else if (sc->requests_paused && local != LOCAL_PROXY && local != LOCAL_QUIT)
        rt->kind = ROUTE_PAUSED;
    else if (needs_auth(c, cmd))
        error(rt, &sc->st.err_auth, "NOAUTH Authentication required.");
    else if (local == LOCAL_CLIENT && client_needs_stream(frame, fr))
        stream(c, rt);
    /* A stream that owes nothing: the proxy answers, in order */
    else if (local == LOCAL_CLIENT && c->stream && !c->in_multi && client_stream_settled(c) &&
             !(fr->argc >= 2 && (arg_is(frame, fr, 1, "getredir") ||
                                 arg_is(frame, fr, 1, "trackinginfo"))))
        rt->kind = ROUTE_LOCAL;
    /* Their ids are app connections': on a lease, redis would read them as
     * its own connections' (and kill whichever has that number). */
    else if (local == LOCAL_CLIENT && (in_transaction(c) || c->stream) &&
             kills_or_unblocks(frame, fr)) {
        error(rt, &sc->st.err_unsupported, "ERR CLIENT KILL and CLIENT UNBLOCK cannot run "
              "inside MULTI or on a subscribed connection through redis-sidecar");
        rt->abort_multi = in_transaction(c);
    }
    /* A streaming lease is the client's own connection: everything goes
     * there, in order, but for QUIT, PROXY and what is never allowed. */
    else if (c->stream && local != LOCAL_QUIT && local != LOCAL_PROXY &&
             (local != LOCAL_HELLO || fr->argc <= 2) &&
             local != LOCAL_RESET && !(cmd && (cmd->flags & CMD_REFUSED)))
        stream(c, rt);   /* HELLO [protover] too: the lease switches with redis's answer */
    else if (local == LOCAL_SELECT && select_needs_lease(c, frame, fr, rt))
        lease(c, cmd, frame, fr, rt);
    /* inside MULTI redis queues it, and answers at EXEC */
    else if (local == LOCAL_CLIENT && c->in_multi)
        lease(c, cmd, frame, fr, rt);
    /* HELLO may change the protocol, and with it the links the client's
     * next requests take: those in flight on the others finish first. */
    else if (local == LOCAL_HELLO && c->inflight)
        rt->kind = ROUTE_LATER;
    /* RESET answers after what the connection has in flight, as redis
     * would (on a lease: after the transaction's replies) */
    else if (local == LOCAL_RESET && c->inflight)
        rt->kind = ROUTE_LATER;
    else
        return 0;
    return 1;
}

void router_route(struct client *c, const char *frame, const struct resp_frame *fr,
                  struct route *rt)
{
    struct sidecar *sc = client_sc(c);
    const struct command *cmd = c->last_cmd;
    int nl = fr->name_len > 40 ? 40 : (int)fr->name_len;
    const char *name = frame + fr->name_off;

    rt->cmd = cmd;
    rt->frame = frame;
    rt->fr = fr;
    rt->count = NULL;
    rt->fanout = 0;
    rt->reuse = 0;
    rt->abort_multi = 0;
    rt->send_multi = 0;
    rt->flags = cmd && (cmd->flags & CMD_READONLY) ? REQ_READONLY : 0;
    if (__builtin_expect(!cmd || !(cmd->flags & ~(unsigned)(CMD_READONLY | CMD_FROM_SERVER)), 1) &&
        c->authed && !c->stream && !c->lease && !c->multi_deferred && !sc->draining &&
        !sc->requests_paused) {
        /* the common case, a plain read or write (compiled in or learnt
         * from COMMAND): none of the below applies */
        rt->reuse = cmd && cmd->state == 0;
    } else if (by_state(c, cmd, frame, fr, rt)) {
        return;
    } else if (cmd && (cmd->flags & CMD_LOCAL) && (cmd->local != LOCAL_CLUSTER || sc->cl)) {
        rt->kind = ROUTE_LOCAL;
        return;
    } else if (cmd && (cmd->flags & CMD_NO_MULTI) && c->in_multi) {
        lease(c, cmd, frame, fr, rt);     /* redis's own refusal, and EXECABORT */
        return;
    } else if (cmd && (cmd->flags & CMD_REFUSED)) {
        error(rt, &sc->st.err_refused, "ERR '%.*s' is not allowed through redis-sidecar "
              "(it acts on the server's connections or replication)", nl, name);
        rt->abort_multi = in_transaction(c);
        return;
    } else if (cmd && (cmd->flags & CMD_NOT_YET)) {
        error(rt, &sc->st.err_unsupported, "ERR '%.*s' is not supported by redis-sidecar yet "
              "(it needs a dedicated server connection)", nl, name);
        rt->abort_multi = in_transaction(c);
        return;
    } else if (cmd && (cmd->flags & CMD_STREAM)) {
        stream(c, rt);
        return;
    } else if (c->lease || (cmd && (cmd->flags & CMD_LEASE)) ||
               (cmd && (cmd->flags & CMD_MAYBLOCK) && has_block_arg(frame, fr->len))) {
        lease(c, cmd, frame, fr, rt);
        return;
    } else if (cmd && (cmd->flags & CMD_SCRIPT_RUN)) {
        rt->flags |= REQ_SCRIPT;          /* its link is avoided while it runs */
    }
    /* SCRIPT KILL and FUNCTION KILL go on a connection of their own: on
     * a shared link they could wait behind the very script they kill. */
    if (__builtin_expect(cmd && cmd->state >= STATE_SCRIPT, 0) && fr->argc == 2 &&
        (cmd->state == STATE_SCRIPT || cmd->state == STATE_FUNCTION) &&
        arg_is(frame, fr, 1, "kill")) {
        lease(c, cmd, frame, fr, rt);
        return;
    }
    /* A write waits for the client's reads on replicas: one of them may
     * still have to be re-sent to the master, and must run before it
     * (SCRIPT LOAD too, before it fans out). */
    if (!(rt->flags & REQ_READONLY) && c->x && c->x->replica_reads) {
        rt->kind = ROUTE_LATER;
        return;
    }
    /* a cluster's multi-key commands across slots, whole-keyspace ones */
    if (__builtin_expect(sc->cl != NULL, 0) &&
        (rt->split = split_kind(sc, cmd, frame, fr)) != SPLIT_NONE) {
        /* after the client's requests held for a failover: it must not pass them */
        rt->kind = c->x && c->x->nheld ? ROUTE_LATER : ROUTE_SPLIT;
        return;
    }
    rt->fanout = cmd && cmd->state == STATE_SCRIPT && fr->argc >= 3 &&
                 arg_is(frame, fr, 1, "load");
    if (__builtin_expect(sc->clients_paused_until != 0, 0) && !rt->fanout && paused(c)) {
        lease(c, cmd, frame, fr, rt);
        return;
    }
    shared(c, rt, frame, fr);
}
