/* Requests, read to carried out. A GET from an app, end to end:
 * on_io() reads it into the loop's shared buffer; process() frames it
 * (lib/resp.c) and looks its command up; router_route() decides (say,
 * ROUTE_SHARED on the client's link to a replica); carry_out() acts:
 * forward() takes a reply slot at the tail of the client's FIFO and
 * link_send() appends the bytes to the link's output, written once for
 * every client at the end of the iteration (pool.c). The reply comes back
 * through upstream.c into client_answer(), which fills the slot; the
 * flush step below writes it to the app. */
#include "request.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/invariant.h"
#include "admin.h"
#include "client.h"
#include "clientcmd.h"
#include "stream.h"
#include "hold.h"
#include "lease.h"
#include "master.h"
#include "pause.h"
#include "router.h"
#include "session.h"
#include "slowlog.h"
#include "split.h"

#define CLIENT_READ_CHUNK  (16 * 1024)
#define CLIENT_READ_AHEAD  (4 * 1024 * 1024)

/* What a forwarded request was and where it went, from its flags: a
 * table, as this is paid on every request. */
#define TALLY_FLAGS (REQ_LEASED | REQ_READONLY | REQ_REROUTE)
static const unsigned char tally_by_flags[TALLY_FLAGS + 1] = {
    [0]                                        = TALLY(CLASS_WRITE, DEST_MASTER),
    [REQ_READONLY]                             = TALLY(CLASS_READ, DEST_MASTER),
    [REQ_READONLY | REQ_REROUTE]               = TALLY(CLASS_READ, DEST_REPLICA),
    [REQ_LEASED]                               = TALLY(CLASS_STATEFUL, DEST_MASTER),
    [REQ_LEASED | REQ_READONLY]                = TALLY(CLASS_STATEFUL, DEST_MASTER),
};

static void process_partial(struct client *c);

/* A slot for the request, with its tallies; NULL (answered with an
 * error) when out of memory. */
static struct req *upstream_slot(struct client *c, size_t n, unsigned flags)
{
    unsigned t = tally_by_flags[flags & TALLY_FLAGS];
    struct req *r;

    if (((flags & (REQ_WRITE | REQ_REROUTE)) && !client_ext(c)) ||
        !(r = client_slot(c, flags | t << REQ_TALLY_SHIFT))) {
        client_reply_error(c, "ERR proxy out of memory");
        return NULL;
    }
    c->inflight += n;
    if (flags & REQ_WRITE)
        c->x->writes_pending++;
    if (flags & REQ_REROUTE)
        c->x->replica_reads++;
    client_sc(c)->st.forwarded++;
    client_sc(c)->st.requests_by[t]++;
    return r;
}

/* Out of memory after the slot was taken: its answer is an error. */
static void slot_failed(struct client *c, struct req *r)
{
    c->inflight -= r->len;
    r->len = 0;
    if (r->flags & REQ_WRITE)
        c->x->writes_pending--;
    if (r->flags & REQ_REROUTE)
        c->x->replica_reads--;
    r->flags &= ~(unsigned)(REQ_WRITE | REQ_REROUTE | REQ_LEASED);
    client_answer(c, r, NULL, 0, "proxy out of memory");
}

/* A request this large that is all of the client's input buffer (it was
 * read there, a part at a time) goes to the link in that buffer, uncopied. */
#define FORWARD_WHOLE_BUF (64 * 1024)

static __attribute__((noinline)) int send_large(struct client *c, struct link *l,
                                                 struct req *r, const char *p, size_t n)
{
    struct buf *in = c->partial ? &c->partial->buf : NULL;
    int rc;

    if (in && p == buf_start(in) && n == buf_used(in) && (rc = link_send_buf(l, r, in)) <= 0)
        return rc;
    return link_send(l, r, p, n);
}

static inline int send_request(struct client *c, struct link *l, struct req *r, const char *p,
                               size_t n)
{
    if (__builtin_expect(n >= FORWARD_WHOLE_BUF, 0))
        return send_large(c, l, r, p, n);
    return link_send(l, r, p, n);
}

static inline __attribute__((always_inline)) struct req *forward(struct client *c, struct link *l,
                                                                  const char *p, size_t n,
                                                                  unsigned flags, float block)
{
    struct req *r = upstream_slot(c, n, flags);

    if (r)
        r->block = block;
    if (r && send_request(c, l, r, p, n) < 0) {
        r->len = n;
        slot_failed(c, r);
        return NULL;
    }
    return r;
}

struct req *request_forward(struct client *c, struct link *l, const char *p, size_t n,
                            unsigned flags)
{
    return forward(c, l, p, n, flags, 0);
}

static void hold(struct client *c, const char *p, size_t n, unsigned flags)
{
    struct req *r = upstream_slot(c, n, flags);

    if (!r)
        return;
    r->len = n;
    r->queued_at = ev_now(client_sc(c)->loop);
    if (hold_request(c, r, p, n) < 0)
        slot_failed(c, r);
}

/* The script cache is per node: SCRIPT LOAD goes to every replica too
 * (their replies are dropped), on the link the client's EVALSHA_RO will
 * take, so that it runs first there. The client gets the master's reply. */
static void fan_out(struct client *c, const char *frame, size_t len)
{
    struct sidecar *sc = client_sc(c);
    struct node *node;

    TAILQ_FOREACH(node, &sc->nodes, tqe) {
        struct pool *p = client_pool(c, node);
        struct link *l;
        if (node != sc->master && p && (l = pool_link_for(p, c->id, c->resp3)))
            link_send_unowned(l, frame, len);
    }
}

/* Pub/sub: the lease turns into a stream, every frame from it goes to the
 * client as it comes, and stays one for the rest of the connection
 * (normal commands work there too, after the last UNSUBSCRIBE). */
static void stream_forward(struct client *c, const char *frame, size_t len)
{
    struct sidecar *sc = client_sc(c);

    if (!c->stream) {
        c->stream = 1;
        pool_lease_stream(c->lease);
    }
    if (link_stream_send(c->lease, frame, len) < 0) {
        client_close(c, "out of memory");
        return;
    }
    sc->st.forwarded++;
    sc->st.requests_by[TALLY(CLASS_STATEFUL, DEST_MASTER)]++;
}

/* Not now: the request stays unread (in c->partial) until the client is
 * woken or its barrier lifts, and is routed afresh then. */
/* A command redis rejects before queueing flags the transaction open on
 * the lease: its EXEC gets EXECABORT, as if redis had refused the one
 * the sidecar did. */
static int multi_flag_aborted(struct link *lease)
{
    static const char bad[] = "*1\r\n$28\r\nsidecar-refused-this-command\r\n";

    return link_send_unowned(lease, bad, sizeof bad - 1);
}

static int stop(struct client *c)
{
    c->paused = 1;
    client_watch(c);
    return 0;
}

void request_barrier(struct client *c)
{
    c->barrier = 1;
    stop(c);
}

/* Every route but a plain one to a shared link (carry_out's own). */
__attribute__((noinline))
static int carry_out_routed(struct client *c, const char *frame, const struct resp_frame *fr,
                            struct route *rt)
{
    struct sidecar *sc = client_sc(c);

    switch (rt->kind) {
    case ROUTE_SHARED:
        if (rt->fanout)
            fan_out(c, frame, fr->len);
        forward(c, rt->link, frame, fr->len, rt->flags, 0);
        return 1;
    case ROUTE_LOCAL:
        if (rt->cmd->local == LOCAL_PROXY)
            admin_command(c, frame, fr);
        else
            session_command(c, rt->cmd, frame, fr);
        return 1;
    case ROUTE_ERROR:
        client_reply_error(c, "%s", rt->err);
        if (rt->abort_multi && c->multi_deferred)
            c->multi_aborted = 1;        /* nothing sent yet: EXEC answers it */
        else if (rt->abort_multi && c->lease)
            multi_flag_aborted(c->lease);
        break;
    case ROUTE_HOLD:
        if (rt->fanout)
            fan_out(c, frame, fr->len);
        hold(c, frame, fr->len, rt->flags);
        return 1;
    case ROUTE_LEASE:
    case ROUTE_STREAM:
        if (!c->lease) {
            int got = lease_take(c, rt->node);
            if (got == 0)
                return stop(c);
            if (got < 0) {
                if (rt->send_multi)
                    c->multi_aborted = 1;    /* its command failed: so does EXEC */
                break;
            }
        }
        if (rt->kind == ROUTE_STREAM) {
            size_t len = fr->len;
            stream_counted(c, rt->cmd, frame, fr);
            if (rt->cmd && rt->cmd->local == LOCAL_HELLO && stream_hello(c, frame, fr) < 0)
                break;
            if (rt->cmd && rt->cmd->local == LOCAL_CLIENT) {
                int k = stream_client_cmd(c, frame, fr, &sc->scratch);
                if (k < 0)
                    break;
                if (k > 0) {
                    frame = buf_start(&sc->scratch);
                    len = buf_used(&sc->scratch);
                }
            }
            stream_forward(c, frame, len);
            break;
        }
        if (__builtin_expect(rt->send_multi, 0)) {    /* the cluster's deferred MULTI */
            static const char multi[] = "*1\r\n$5\r\nMULTI\r\n";
            if (link_send_unowned(c->lease, multi, sizeof multi - 1) < 0) {
                c->multi_aborted = 1;
                client_reply_error(c, "ERR proxy out of memory");
                break;
            }
            if (c->multi_aborted)
                multi_flag_aborted(c->lease);
            c->multi_deferred = c->multi_aborted = 0;
            lease_note(c, command_lookup(&sc->cmds, "multi", 5), 0, 0);
        }
        lease_note(c, rt->cmd, rt->db, rt->db_ok);
        if (__builtin_expect(c->in_multi || (rt->cmd && rt->cmd->state == STATE_END_MULTI), 0))
            clientcmd_in_multi(c, rt->cmd, frame, fr);
        /* DEBUG SLEEP n blocks the whole server: its silence is no failure,
         * unless redis refuses it (clientcmd_quiet_answered) */
        if (__builtin_expect(rt->block > 0, 0) && isfinite(rt->block) && rt->cmd &&
            strcmp(rt->cmd->name, "debug") == 0) {
            master_paused(sc, rt->block > 86400 ? 86400 : rt->block, 0);
            rt->flags |= REQ_QUIET;
        }
        forward(c, c->lease, frame, fr->len, rt->flags, rt->block);
        /* It holds nothing once this one ran: the lease's RESET goes
         * now, in the same write, and it comes back with this reply. */
        if (c->lease && !client_holds_state(c))
            link_return_ahead(c->lease);
        break;
    case ROUTE_LATER:
        c->barrier = 1;
        return stop(c);
    case ROUTE_WAIT_MASTER:
        hold_wait_master(c);
        return stop(c);
    case ROUTE_PAUSED:
        pause_wait(c);
        return stop(c);
    case ROUTE_SPLIT:
        split_request(c, rt->split, frame, fr);
        return 1;
    case ROUTE_MULTI_HERE:
        if (rt->cmd->state == STATE_MULTI) {
            c->multi_deferred = 1;
            client_reply(c, "+OK\r\n", 5);
        } else {                         /* EXEC, DISCARD of a transaction of nothing */
            static const char abort[] = "-EXECABORT Transaction discarded because of previous "
                                        "errors.\r\n";
            int exec = strcmp(rt->cmd->name, "exec") == 0;
            if (exec && c->multi_aborted)
                client_reply(c, abort, sizeof abort - 1);
            else if (exec)
                client_reply(c, "*0\r\n", 4);
            else
                client_reply(c, "+OK\r\n", 5);
            c->multi_deferred = c->multi_aborted = 0;
        }
        return 1;
    }
    if (c->x)
        c->x->wait_deadline = 0;        /* whatever it waited for, it is over */
    return 1;
}

/* A request's route the router said the same command may take again
 * (route.reuse, router_reuse): its command, link and flags. */
struct memo {
    const struct command *cmd;
    struct link          *link;
    unsigned              flags;
};

/* 1: the request is done with; 0: the client stops reading here. The
 * common route is taken here, the rest out of line, so that it does not
 * pay for their stack frame. m: set to this route if it may be reused. */
static int carry_out(struct client *c, const char *frame, const struct resp_frame *fr,
                     struct memo *m)
{
    struct route rt;

    router_route(c, frame, fr, &rt);
    if (rt.count)
        (*rt.count)++;
    if (__builtin_expect(rt.kind == ROUTE_SHARED && !rt.fanout, 1)) {
        if (m && rt.reuse) {
            m->cmd = rt.cmd;
            m->link = rt.link;
            m->flags = rt.flags;
        }
        forward(c, rt.link, frame, fr->len, rt.flags, 0);
        return 1;
    }
    return carry_out_routed(c, frame, fr, &rt);
}

/* An inline request (a line, as telnet sends), rewritten as a multibulk
 * one; out of line: inlined, its buffers weighed on process()'s frame. */
__attribute__((noinline))
static int dispatch_inline(struct client *c, const char *line, size_t len)
{
    struct sidecar *sc = client_sc(c);
    struct resp_framer f;
    const char *err = NULL;

    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    buf_reset(&sc->inline_req);
    long long argc = resp_inline_to_multibulk(line, len, &sc->inline_req, &err);
    if (argc < 0) {
        client_protocol_error(c, err);
        return 1;
    }
    if (argc == 0)
        return 1;
    resp_framer_reset(&f);
    /* Rewritten, it meets the limits a multibulk request meets, and the
     * same error: never a request without a reply. */
    if (resp_frame_request(&f, buf_start(&sc->inline_req), buf_used(&sc->inline_req),
                           &sc->req_limits) != RESP_DONE) {
        client_protocol_error(c, f.err ? f.err : "Protocol error: bad inline request");
        return 1;
    }
    c->last_cmd = command_lookup(&sc->cmds, buf_start(&sc->inline_req) + f.fr.name_off,
                                 f.fr.name_len);
    int done = carry_out(c, buf_start(&sc->inline_req), &f.fr, NULL);
    if (done)                            /* once: a request kept whole comes back */
        slowlog_note(c, buf_start(&sc->inline_req), &f.fr);
    return done;
}

static size_t same_again(struct client *c, const char *p, size_t n, struct resp_framer *f,
                         const char *name, size_t len, const struct memo *m);

/* Back-pressure: replies pending, or request bytes still upstream, bound
 * what one connection can make the proxy hold. */
static inline int held_back(const struct client *c)
{
    const struct sidecar *sc = client_sc(c);

    return c->npending >= (unsigned)sc->cfg->max_pipeline ||
           c->inflight > sc->cfg->max_query_buffer;
}

/* Frame and carry out complete requests from p[0..n), up to the pipeline
 * cap; returns the bytes used. What is left is a partial request (the
 * framer holds its state) or requests held back. */
static size_t process(struct client *c, const char *p, size_t n, struct resp_framer *f)
{
    struct sidecar *sc = client_sc(c);
    size_t used = 0;

    while (!c->closed && !c->closing && used < n) {
        if (held_back(c)) {
            sc->st.pipeline_pauses++;
            stop(c);
            break;
        }
        int rc = resp_frame_request(f, p + used, n - used, &sc->req_limits);
        if (rc == RESP_MORE) {
            if (n - used > sc->cfg->max_query_buffer) {
                sc->st.err_query_buffer++;
                client_protocol_error(c, "Protocol error: query buffer over max_query_buffer");
            }
            break;
        }
        if (rc == RESP_ERR) {
            client_protocol_error(c, f->err);
            break;
        }
        const struct resp_frame *fr = &f->fr;
        struct memo m;
        int done = 1, more = fr->len < n - used;
        m.cmd = NULL;
        if (fr->is_inline) {
            done = dispatch_inline(c, p + used, fr->len);
        } else if (fr->argc > 0) {
            c->last_cmd = command_lookup_hot(&sc->cmds, p + used + fr->name_off, fr->name_len,
                                             fr->len - fr->name_off);
            if ((done = carry_out(c, p + used, fr, more ? &m : NULL)) != 0)
                slowlog_note(c, p + used, fr);   /* once: a request kept whole comes back */
        }
        if (!done)
            break;                       /* kept whole: the framer starts it afresh */
        sc->st.requests++;
        c->proc->app->requests++;
        used += fr->len;
        if (__builtin_expect(c->paused, 0))
            break;                       /* done, and what follows waits (request_barrier) */
        /* a pipeline of one command: the rest of its run in one go */
        if (more && m.cmd)
            used += same_again(c, p + used, n - used, f, p + used - fr->len + fr->name_off,
                               fr->name_len, &m);
    }
    return used;
}

/* After a request named name[0..len) (in the bytes just before p),
 * routed as m says: the requests that follow with the same name go the same way
 * (router_reuse), each in a slot of its own on the link, their bytes
 * copied there together (link_batch_add). Stops before the first request
 * that differs, is not all there, or meets back-pressure, which the
 * general loop then frames afresh; returns the bytes used. */
__attribute__((noinline))
static size_t same_again(struct client *c, const char *p, size_t n, struct resp_framer *f,
                         const char *name, size_t len, const struct memo *m)
{
    struct sidecar *sc = client_sc(c);
    size_t used = 0;
    struct link_batch batch = {0};
    uint64_t want;

    /* a name of 6 bytes or fewer and its CRLF: 8 bytes inside the frame */
    if (len > 6 || !router_reuse(sc, m->link, m->flags))
        return 0;
    want = command_raw_word(name, len);
    while (used < n && !c->closed && !c->closing && !held_back(c)) {
        int rc = resp_frame_request(f, p + used, n - used, &sc->req_limits);
        if (rc != RESP_DONE) {
            if (rc == RESP_ERR)
                resp_framer_reset(f);     /* the general loop meets it afresh */
            break;
        }
        const struct resp_frame *fr = &f->fr;
        if (fr->is_inline || fr->name_len != len ||
            command_raw_word(p + used + fr->name_off, len) != want)
            break;
        /* as the one before: the same way */
        c->last_cmd = m->cmd;
        struct req *r = upstream_slot(c, fr->len, m->flags);
        if (r && link_batch_add(&batch, m->link, r, p + used, fr->len) < 0) {
            r->len = fr->len;
            slot_failed(c, r);
        }
        slowlog_note(c, p + used, fr);
        sc->st.requests++;
        c->proc->app->requests++;
        used += fr->len;
    }
    link_batch_end(&batch);
    return used;
}

/* Input already waiting in c->partial: frame it, free it once used up. */
static void process_partial(struct client *c)
{
    struct client_input *in = c->partial;
    size_t had = buf_used(&in->buf);
    size_t used = process(c, buf_start(&in->buf), had, &in->fr);

    /* all used: its buffer may be a link's now (send_request) */
    if (c->closed || c->closing || used == had) {
        buf_free(&in->buf);
        free(in);
        c->partial = NULL;
    } else {
        buf_consume(&in->buf, used);
    }
}

/* Requests framed from the shared buffer; only a remainder is copied. */
static void process_shared(struct client *c, size_t n)
{
    struct sidecar *sc = client_sc(c);

    resp_framer_reset(&sc->rfr);
    size_t used = process(c, sc->rbuf, n, &sc->rfr);
    if (used == n || c->closed || c->closing)
        return;
    c->partial = calloc(1, sizeof *c->partial);
    if (!c->partial || buf_append(&c->partial->buf, sc->rbuf + used, n - used) < 0) {
        client_close(c, "out of memory");
        return;
    }
    c->partial->fr = sc->rfr;
}

static void client_read(struct client *c)
{
    struct sidecar *sc = client_sc(c);
    ssize_t n;

    if (c->partial) {
        /* room for the rest of the bulk being read, if the framer knows
         * it: one allocation and as few reads as the socket allows for a
         * large value (at most CLIENT_READ_AHEAD ahead of the bytes: a
         * header alone does not reserve a 512 MB value) */
        struct client_input *in = c->partial;
        long long rest = resp_known(&in->fr) - (long long)buf_used(&in->buf);
        size_t chunk = CLIENT_READ_CHUNK;
        if (rest > CLIENT_READ_CHUNK)
            chunk = rest < CLIENT_READ_AHEAD ? (size_t)rest : CLIENT_READ_AHEAD;
        n = buf_read_fd(&in->buf, c->io.fd, chunk);
    } else
        n = read(c->io.fd, sc->rbuf, SIDECAR_RBUF);
    if (n > 0) {
        c->last_active = sc->now;
        sc->st.bytes_in += (uint64_t)n;
        c->proc->app->bytes_in += (uint64_t)n;
        if (c->partial)
            process_partial(c);
        else
            process_shared(c, (size_t)n);
    } else if (n == 0) {
        client_close(c, "closed by the client");
    } else if (errno != EAGAIN && errno != EINTR) {
        client_close(c, strerror(errno));
    }
}

/* Input is read in the flush step, not here, so that clients are read in
 * the order their bytes came: libev runs the watchers of one poll last
 * ready first, so the set is read from its end. Requests from
 * different connections then reach Redis in the order they reached the
 * proxy, as they would directly (two blocked BRPOPLPUSH, say). */
static inline void mark_readable(struct client *c)
{
    if (!c->readable) {
        c->readable = 1;
        client_set_add(&client_sc(c)->readable, c);
    }
}

/* on_io's way for a client whose output waits (kept apart, so the common
 * read needs no stack frame). */
static __attribute__((noinline)) void on_io_write(struct client *c, int revents)
{
    client_mark_dirty(c);           /* the flush step writes it, once per iteration */
    if (revents & EV_READ)
        mark_readable(c);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = client_of_io(w);
    (void)loop;

    if (__builtin_expect(revents & EV_WRITE, 0))
        on_io_write(c, revents);
    else
        mark_readable(c);
}

void request_accept(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                    const struct origin *o, int admin)
{
    client_new(sc, fd, peer, o, admin, on_io);
}

/* A client whose bit is set but was not added to its set (growing the set
 * failed): NULL when there is none left. */
static struct client *lost_one(struct sidecar *sc, int readable)
{
    struct client *c;

    TAILQ_FOREACH(c, &sc->clients, tqe)
        if (readable ? c->readable : c->dirty)
            return c;
    return NULL;
}

static inline __attribute__((always_inline)) void read_one(struct client *c)
{
    c->readable = 0;
    if (!c->closed && !c->closing && !c->paused)
        client_read(c);
}

static inline __attribute__((always_inline)) void resume_and_write(struct sidecar *sc, struct client *c)
{
    c->dirty = 0;
    if (c->closed)
        return;
    if (CHECKS)
        client_check_counts(c);
    if (c->paused && c->wait == WAIT_NONE &&
        (c->barrier ? c->inflight == 0
                    : c->npending <= (unsigned)sc->cfg->max_pipeline / 2 &&
                      c->inflight <= sc->cfg->max_query_buffer / 2)) {
        c->paused = c->barrier = 0;
        client_watch(c);
        if (c->partial)
            process_partial(c);
    }
    if (!c->closed)
        client_write(c);
}

void request_flush_all(struct sidecar *sc)
{
    struct client_set *rs = &sc->readable, *ds = &sc->dirty;
    struct client *c;
    unsigned i, used = rs->n;

    /* last added first: libev ran the watchers last ready first */
    for (;;) {
        if (rs->n > 0)
            c = rs->v[--rs->n];
        else if (!rs->lost || (c = lost_one(sc, 1)) == NULL)
            break;
        if (CHECKS)
            assert(c->readable);          /* on it once: the bit goes with it */
        read_one(c);
    }
    rs->lost = 0;
    client_set_trim(rs, used);

    /* in the order they were added, those added meanwhile too */
    for (i = 0;;) {
        if (i < ds->n)
            c = ds->v[i++];
        else if (!ds->lost || (c = lost_one(sc, 0)) == NULL)
            break;
        if (CHECKS)
            assert(c->dirty);
        resume_and_write(sc, c);
    }
    ds->lost = 0;
    used = ds->n;
    ds->n = 0;
    client_set_trim(ds, used);
    client_free_closed(sc);
}
