/* Request routing: answered here, refused, forwarded on the client's own
 * shared link to the master or to a replica (reads), or on a lease when
 * the client holds server-side state (transactions, blocking calls,
 * another database, pub/sub). */
#include "router.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "client.h"

/* XREAD and XREADGROUP block only when given BLOCK, among the options
 * before STREAMS (after it come key names, which may be called "block"). */
static int has_block_arg(const char *frame, size_t len)
{
    size_t pos = 0, n;
    const char *a;

    while (resp_next_arg(frame, len, &pos, &a, &n)) {
        if (n == 7 && strncasecmp(a, "streams", 7) == 0)
            return 0;
        if (n == 5 && strncasecmp(a, "block", 5) == 0)
            return 1;
    }
    return 0;
}

static int needs_auth(const struct client *c, const struct command *cmd)
{
    return !c->authed && !(cmd && (cmd->local == LOCAL_AUTH ||
                                   cmd->local == LOCAL_HELLO ||
                                   cmd->local == LOCAL_QUIT));
}

/* Read-your-writes: the offset a replica must have reached to serve this
 * client's reads (0: any), or -1 when only the master will do: a write
 * still in flight, its covering offset not sampled yet, or inside the
 * window. */
static long long ryw_floor(struct client *c)
{
    struct sidecar *sc = c->sc;
    ev_tstamp now = ev_now(sc->loop);

    struct client_ext *x = c->x;

    if (sc->cfg->read_your_writes == RYW_OFF || !x)
        return 0;
    if (x->writes_pending)
        return -1;
    if (x->wrote_at == 0)
        return 0;
    /* Written on a master since replaced: whatever of it survived is in
     * the new master's first offset sampled after the switch. */
    if (x->wrote_at < sc->switched_at) {
        x->wrote_at = sc->switched_at;
        x->wrote_offset = -1;
    }
    if (sc->cfg->read_your_writes == RYW_WINDOW)
        return now - x->wrote_at < sc->cfg->ryw_window ? -1 : 0;
    if (x->wrote_offset < 0)
        x->wrote_offset = health_master_offset_after(&sc->topo, x->wrote_at);
    if (x->wrote_offset < 0 && sc->master)
        health_sample_soon(&sc->master->health, 0.1);
    return x->wrote_offset;
}

/* The eligible replica, at or past `floor`, with the fewest requests in
 * flight; among equals, the one sent the fewest so far, so that light
 * traffic spreads too. */
static struct node *pick_replica(struct client *c, long long floor)
{
    struct sidecar *sc = c->sc;
    ev_tstamp now = ev_now(sc->loop);
    struct node *best = NULL, *n;
    unsigned best_load = 0;
    char why[96];

    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        struct link *l;
        if (n == sc->master || n->pool->down ||
            !(l = pool_link_for(n->pool, c->id, c->resp3)) || !link_is_ready(l) ||
            !health_replica_eligible(&sc->topo, &n->health, sc->cfg->replica_max_lag,
                                     now, why, sizeof why))
            continue;
        if (n->health.offset < floor) {
            health_sample_soon(&n->health, 0.05);   /* it may have caught up since */
            continue;
        }
        unsigned load = pool_inflight(n->pool);
        if (!best || load < best_load ||
            (load == best_load && n->pool->st.requests_sent < best->pool->st.requests_sent)) {
            best = n;
            best_load = load;
        }
    }
    return best;
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

static int forward(struct client *c, const char *frame, size_t len, unsigned flags)
{
    struct sidecar *sc = c->sc;
    struct node *n = sc->master;

    if (__builtin_expect(sc->retiring_busy, 0) && c->inflight && behind_retiring(c))
        return ROUTE_LATER;

    /* A write waits for the client's reads on replicas: one of them may
     * still have to be re-sent to the master, and must run before it. */
    if (!(flags & REQ_READONLY) && c->x && c->x->replica_reads)
        return ROUTE_LATER;
    if (!(flags & REQ_READONLY)) {
        /* Only worth tracking when reads may go elsewhere. */
        if (sc->nreplicas && sc->cfg->read_your_writes != RYW_OFF)
            flags |= REQ_WRITE;
    } else if (sc->cfg->read_from != READ_MASTER) {
        long long floor = ryw_floor(c);
        struct node *r = floor < 0 ? NULL : pick_replica(c, floor);
        if (r) {
            n = r;
            flags |= REQ_REROUTE;
            sc->st.reads_to_replicas++;
        } else if (floor != 0) {       /* its own write: the master has it */
            sc->st.reads_ryw_master++;
        } else if (sc->cfg->read_from == READ_REPLICA) {
            sc->st.err_no_replica++;
            client_reply_error(c, "ERR no replica can serve reads now (read_from = replica)");
            return ROUTE_DONE;
        }
    }
    /* With sentinels a master that is down is waited for (failover_wait):
     * they may be about to replace it. Its requests queue on its links or,
     * while there is no master or the client has requests held, are held. */
    if (!sc->sentinels || n != sc->master) {
        if (n->pool->down) {
            sc->st.err_node_down++;
            client_reply_error(c, "ERR upstream %s is down (%s)", n->pool->cfg.name,
                               n->pool->down_reason);
            return ROUTE_DONE;
        }
    } else if (!n || (c->x && c->x->held)) {
        client_forward(c, NULL, frame, len, flags);
        return ROUTE_DONE;
    }
    struct link *l = pool_link_for(n->pool, c->id, c->resp3);
    if (!l) {
        client_reply_error(c, "ERR proxy out of memory");
        return ROUTE_DONE;
    }
    client_forward(c, l, frame, len, flags);
    return ROUTE_DONE;
}

/* SELECT of another database holds state; while leased, every SELECT
 * goes to the lease so that its database is known. */
static int select_needs_lease(struct client *c, const char *frame, const struct resp_frame *fr,
                              long long *db, int *db_ok)
{
    size_t pos = 0, n;
    const char *a;

    *db = c->sc->cfg->database;
    *db_ok = fr->argc == 2 && resp_next_arg(frame, fr->len, &pos, &a, &n) &&
             resp_next_arg(frame, fr->len, &pos, &a, &n) && resp_parse_ll(a, n, db) == 0;
    if (!*db_ok)
        return c->lease != NULL;      /* a bad SELECT: redis's own error, if leased */
    return c->lease != NULL || *db != c->sc->cfg->database;
}

/* Track what a request leaves on its lease, so the lease goes back to the
 * pool as soon as nothing is held. Sent, not answered, is what counts: a
 * refused MULTI keeps nothing, but counting it only keeps the lease a
 * little longer, never too short. */
static void note_lease_state(struct client *c, const struct command *cmd, long long db,
                             int db_ok)
{
    int other = db != c->sc->cfg->database;

    switch (cmd ? cmd->state : STATE_NONE) {
    case STATE_MULTI:
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
        break;
    case STATE_NONE:
    case STATE_SCRIPT:
    case STATE_WAIT:
        break;
    }
}

/* A lease for c, or NULL: then either c waits (lease_wait set, for at most
 * connect_timeout) or, the wait over, it got the error. */
static void lease_wait_end(struct client *c)
{
    if (c->lease_wait) {
        c->lease_wait = 0;
        c->sc->lease_waiters--;
    }
}

/* With sentinels, no master (or one that is down) is waited for up to
 * failover_wait; otherwise a lease is waited for up to connect_timeout. */
static struct link *take_lease(struct client *c)
{
    struct sidecar *sc = c->sc;
    ev_tstamp now = ev_now(sc->loop);
    struct node *m = sc->master;
    int no_master = !m || (sc->sentinels && m->pool->down);
    struct link *l = no_master ? NULL : pool_lease(m->pool, c, c->resp3);

    if (l) {
        lease_wait_end(c);
        return l;
    }
    if (!client_ext(c)) {
        lease_wait_end(c);
        client_reply_error(c, "ERR proxy out of memory");
        return NULL;
    }
    if (!c->lease_wait) {
        c->lease_wait = 1;
        c->x->lease_deadline = now + (no_master ? sc->cfg->failover_wait : sc->cfg->connect_timeout);
        sc->lease_waiters++;
        return NULL;
    }
    if (now < c->x->lease_deadline)
        return NULL;
    lease_wait_end(c);
    if (no_master)
        client_reply_error(c, "ERR no master confirmed within failover_wait (%gs): %s",
                           sc->cfg->failover_wait, m ? m->pool->down_reason : sc->no_master_why);
    else if (m->pool->lease_failure[0])
        client_reply_error(c, "ERR cannot open a dedicated connection to %s: %s",
                           m->pool->cfg.name, m->pool->lease_failure);
    else
        client_reply_error(c, "ERR no dedicated connection free for this command "
                           "(max_leased %d reached)", sc->cfg->max_leased);
    return NULL;
}

/* WAIT counts the writes made on its own connection, and this client's
 * went out on shared links: a PUBLISH (replicated, answer dropped) first
 * brings the lease's replication offset past them all. */
static void wait_covers_earlier_writes(struct client *c)
{
    static const char publish[] = "*3\r\n$7\r\nPUBLISH\r\n$22\r\n__redis-sidecar__:wait\r\n$0\r\n\r\n";

    link_send_unowned(c->lease, publish, sizeof publish - 1);
}

/* Everything of a client holding a lease goes through it, in order. */
static int lease_forward(struct client *c, const struct command *cmd, const char *frame,
                         const struct resp_frame *fr, long long db, int db_ok)
{
    struct sidecar *sc = c->sc;

    if (!c->lease) {
        if (c->inflight)
            return ROUTE_LATER;       /* earlier requests first, on their links */
        if (!sc->sentinels && sc->master->pool->down) {
            lease_wait_end(c);
            sc->st.err_node_down++;
            client_reply_error(c, "ERR upstream %s is down (%s)", sc->master->pool->cfg.name,
                               sc->master->pool->down_reason);
            return ROUTE_DONE;
        }
        if (!(c->lease = take_lease(c)))
            return c->lease_wait ? ROUTE_WAIT_LEASE : ROUTE_DONE;
    }
    note_lease_state(c, cmd, db, db_ok);
    if (cmd && cmd->state == STATE_WAIT)
        wait_covers_earlier_writes(c);
    unsigned flags = REQ_LEASED;
    if (cmd && (cmd->flags & CMD_BLOCKING))
        flags |= REQ_NOTIMEOUT;
    if (sc->nreplicas && sc->cfg->read_your_writes != RYW_OFF &&
        !(cmd && (cmd->flags & CMD_READONLY)))
        flags |= REQ_WRITE;
    client_forward(c, c->lease, frame, fr->len, flags);
    return ROUTE_DONE;
}

/* CLIENT TRACKING, CACHING and REPLY change what a connection gets back
 * (invalidations, no replies at all): only a streaming lease can carry
 * that without losing the request/reply match. */
static int client_needs_stream(const char *frame, const struct resp_frame *fr)
{
    static const char *const subs[] = {"tracking", "caching", "reply"};
    size_t pos = 0, n;
    const char *a;

    if (fr->argc < 2 || !resp_next_arg(frame, fr->len, &pos, &a, &n) ||
        !resp_next_arg(frame, fr->len, &pos, &a, &n))
        return 0;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (n == strlen(subs[i]) && strncasecmp(a, subs[i], n) == 0)
            return 1;
    return 0;
}

/* The script cache is per node: SCRIPT LOAD goes to every replica too
 * (their replies are dropped), so that EVALSHA_RO finds the script there.
 * The client gets the master's reply. */
static void script_load_everywhere(struct client *c, const char *frame, const struct resp_frame *fr)
{
    struct sidecar *sc = c->sc;
    struct node *node;
    size_t pos = 0, n;
    const char *a;

    if (fr->argc < 3 || !resp_next_arg(frame, fr->len, &pos, &a, &n) ||
        !resp_next_arg(frame, fr->len, &pos, &a, &n) || n != 4 || strncasecmp(a, "load", 4) != 0)
        return;
    TAILQ_FOREACH(node, &sc->nodes, tqe) {
        if (node == sc->master)
            continue;
        /* on the link the client's EVALSHA_RO will take, so it runs first */
        struct link *l = pool_link_for(node->pool, c->id, c->resp3);
        if (l)
            link_send_unowned(l, frame, fr->len);
    }
}

/* Pub/sub: the lease turns into a stream, every frame from it goes to the
 * client as it comes, and stays one for the rest of the connection (normal
 * commands work there too, after the last UNSUBSCRIBE). */
static int stream_forward(struct client *c, const char *frame, size_t len)
{
    struct sidecar *sc = c->sc;

    if (!c->stream) {
        if (c->inflight)
            return ROUTE_LATER;
        if (!c->lease && !(c->lease = take_lease(c)))
            return c->lease_wait ? ROUTE_WAIT_LEASE : ROUTE_DONE;
        c->stream = 1;
        pool_lease_stream(c->lease);
    }
    if (link_stream_send(c->lease, frame, len) < 0)
        client_close(c, "out of memory");
    else {
        sc->st.forwarded++;
        sc->st.requests_by[TALLY(CLASS_STATEFUL, DEST_MASTER)]++;
    }
    return ROUTE_DONE;
}

int router_dispatch(struct client *c, const char *frame, const struct resp_frame *fr)
{
    struct sidecar *sc = c->sc;
    const char *name = frame + fr->name_off;
    int nl = fr->name_len > 40 ? 40 : (int)fr->name_len;
    const struct command *cmd = command_lookup(&sc->cmds, name, fr->name_len);
    long long db = sc->cfg->database;
    int db_ok = 0;

    c->last_cmd = cmd;
    /* Draining: what is under way finishes (a transaction may reach its
     * EXEC), nothing new starts. */
    if (sc->draining && !client_holds_state(c) &&
        !(cmd && cmd->local == LOCAL_QUIT)) {
        client_reply_error(c, "ERR proxy is shutting down");
        return ROUTE_DONE;
    }
    /* PROXY PAUSE: the client is not read until PROXY RESUME (its
     * request stays in its buffer), so the usual limits bound the wait. */
    if (sc->requests_paused && !(cmd && (cmd->local == LOCAL_PROXY || cmd->local == LOCAL_QUIT)))
        return ROUTE_WAIT_PAUSE;
    if (needs_auth(c, cmd)) {
        sc->st.err_auth++;
        client_reply_error(c, "NOAUTH Authentication required.");
        return ROUTE_DONE;
    }
    if (cmd && cmd->local == LOCAL_CLIENT && client_needs_stream(frame, fr))
        return stream_forward(c, frame, fr->len);
    /* A streaming lease is the client's own connection: everything goes
     * there, in order, but for QUIT, PROXY and what is never allowed. */
    if (c->stream && !(cmd && (cmd->local == LOCAL_QUIT || cmd->local == LOCAL_PROXY ||
                               cmd->local == LOCAL_HELLO || (cmd->flags & CMD_REFUSED))))
        return stream_forward(c, frame, fr->len);
    if (cmd && cmd->local == LOCAL_SELECT && select_needs_lease(c, frame, fr, &db, &db_ok))
        return lease_forward(c, cmd, frame, fr, db, db_ok);
    /* HELLO may change the protocol, and with it the links the client's
     * next requests take: those in flight on the others finish first. */
    if (cmd && cmd->local == LOCAL_HELLO && c->inflight)
        return ROUTE_LATER;
    if (cmd && (cmd->flags & CMD_LOCAL)) {
        admin_local(c, cmd, frame, fr);
        return ROUTE_DONE;
    }
    if (cmd && (cmd->flags & CMD_REFUSED)) {
        sc->st.err_refused++;
        client_reply_error(c, "ERR '%.*s' is not allowed through redis-sidecar "
                           "(it acts on the server's connections or replication)",
                           nl, name);
        return ROUTE_DONE;
    }
    if (cmd && (cmd->flags & CMD_NOT_YET)) {
        sc->st.err_unsupported++;
        client_reply_error(c, "ERR '%.*s' is not supported by redis-sidecar yet "
                           "(it needs a dedicated server connection)", nl, name);
        return ROUTE_DONE;
    }
    if (cmd && (cmd->flags & CMD_STREAM))
        return stream_forward(c, frame, fr->len);
    if (c->lease || (cmd && (cmd->flags & CMD_LEASE)) ||
        (cmd && (cmd->flags & CMD_MAYBLOCK) && has_block_arg(frame, fr->len)))
        return lease_forward(c, cmd, frame, fr, db, db_ok);
    unsigned flags = cmd && (cmd->flags & CMD_READONLY) ? REQ_READONLY : 0;
    if (!(flags & REQ_READONLY) && c->x && c->x->replica_reads)
        return ROUTE_LATER;              /* before SCRIPT LOAD fans out, too */
    if (cmd && cmd->state == STATE_SCRIPT)
        script_load_everywhere(c, frame, fr);
    return forward(c, frame, fr->len, flags);
}
