/* App connections. A client's replies leave in request order: a reply for
 * the oldest slot goes straight to the output buffer, one that overtakes
 * an earlier slot waits in its own slot. Output is written once per loop
 * iteration by client_flush_all(). */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "nodes.h"
#include "router.h"

#define CLIENT_READ_CHUNK  (16 * 1024)

static void client_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* The one watcher follows the client's state: read unless paused or
 * closing, write while output waits. Changing it costs a syscall, so it
 * changes only when the state does. */
static void update_watch(struct client *c)
{
    int want = (c->paused || c->closing || c->closed ? 0 : EV_READ) |
               (buf_used(&c->out) && !c->closed ? EV_WRITE : 0);

    if (want == (c->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&c->io) == (want != 0))
        return;
    ev_io_stop(c->sc->loop, &c->io);
    ev_io_set(&c->io, c->io.fd, want);
    if (want)
        ev_io_start(c->sc->loop, &c->io);
}

static void mark_dirty(struct client *c)
{
    if (!c->dirty && !c->closed) {
        c->dirty = 1;
        STAILQ_INSERT_TAIL(&c->sc->dirty, c, dirty_tqe);
    }
}

void client_new(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                struct ipstat *ips, int admin)
{
    struct client *c = calloc(1, sizeof *c);

    if (!c) {
        ips->current--;
        close(fd);
        return;
    }
    c->ips = ips;
    c->admin = admin != 0;
    c->sc = sc;
    c->id = ++sc->next_client_id;
    c->created = ev_now(sc->loop);
    c->authed = sc->cfg->password == NULL;
    c->is_unix = peer->ss_family == AF_UNIX;
    if (peer->ss_family == AF_INET)
        c->port = ntohs(((const struct sockaddr_in *)peer)->sin_port);
    else if (peer->ss_family == AF_INET6)
        c->port = ntohs(((const struct sockaddr_in6 *)peer)->sin6_port);
    TAILQ_INIT(&c->pending);
    c->last_active = c->created;
    if (peer->ss_family != AF_UNIX) {
        net_set_nodelay(fd);
        /* Reaps dead app sockets even when Redis has tcp-keepalive 0. */
        net_set_keepalive(fd, (int)sc->cfg->tcp_keepalive, 0);
    }
    ev_io_init(&c->io, client_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(sc->loop, &c->io);
    TAILQ_INSERT_TAIL(&sc->clients, c, tqe);
    sc->nclients++;
    sc->st.connections_received++;
    if (log_enabled(LOG_DEBUG)) {
        char a[64];
        log_debug("client %s id=%llu connected", client_addr(c, a, sizeof a),
                  (unsigned long long)c->id);
    }
}

struct client_ext *client_ext(struct client *c)
{
    if (!c->x && (c->x = calloc(1, sizeof *c->x)) != NULL)
        c->x->wrote_offset = -1;
    return c->x;
}

const char *client_addr(const struct client *c, char *out, size_t outlen)
{
    char ip[64];

    if (c->is_unix) {
        snprintf(out, outlen, "unix");
        return out;
    }
    ip_format(&c->ips->ip, ip, sizeof ip);
    snprintf(out, outlen, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, c->port);
    return out;
}

void client_close(struct client *c, const char *why)
{
    struct sidecar *sc = c->sc;
    struct req *r;

    if (c->closed)
        return;
    if (log_enabled(LOG_DEBUG)) {
        char a[64];
        log_debug("client %s id=%llu closed: %s", client_addr(c, a, sizeof a),
                  (unsigned long long)c->id, why);
    }
    c->closed = 1;
    ev_io_stop(sc->loop, &c->io);
    close(c->io.fd);
    c->ips->current--;
    c->ips->last_seen = ev_now(sc->loop);
    /* Slots still upstream become orphans: their links drop the replies. */
    while ((r = TAILQ_FIRST(&c->pending)) != NULL) {
        TAILQ_REMOVE(&c->pending, r, owner_tqe);
        if (r->flags & REQ_HELD) {
            TAILQ_REMOVE(&sc->held, r, link_tqe);
            sc->nheld--;
        }
        if (r->link || (r->flags & REQ_DEFERRED))
            r->owner = NULL;
        else
            req_release(&sc->cache, r);
    }
    c->npending = 0;
    if (c->lease_wait)
        sc->lease_waiters--;
    if (c->lease) {
        pool_unlease(c->lease->pool, c->lease);   /* its orphans make it close */
        c->lease = NULL;
    }
    TAILQ_REMOVE(&sc->clients, c, tqe);
    TAILQ_INSERT_TAIL(&sc->closed, c, tqe);
    sc->nclients--;
}

static void drop_partial(struct client *c)
{
    if (c->partial) {
        buf_free(&c->partial->buf);
        free(c->partial);
        c->partial = NULL;
    }
}

static void client_free(struct client *c)
{
    drop_partial(c);
    buf_free(&c->out);
    if (c->x)
        free(c->x->name);
    free(c->x);
    free(c);
}

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

/* ... and one the proxy answers itself, from its command. */
static enum req_class class_of_cmd(const struct command *cmd)
{
    if (!cmd)
        return CLASS_WRITE;
    if (cmd->flags & CMD_LOCAL)
        return CLASS_ADMIN;
    if (cmd->flags & (CMD_LEASE | CMD_STREAM | CMD_BLOCKING))
        return CLASS_STATEFUL;
    return (cmd->flags & CMD_READONLY) ? CLASS_READ : CLASS_WRITE;
}

static inline int is_error_reply(const char *p, size_t n)
{
    return n && (p[0] == '-' || p[0] == '!');
}

static void emit(struct client *c, const char *p, size_t n)
{
    struct sidecar *sc = c->sc;

    if (!c->out.data)
        buf_cache_get(&sc->bufs, &c->out);
    if (buf_append(&c->out, p, n) < 0) {
        client_close(c, "out of memory for its replies");
        return;
    }
    if (buf_used(&c->out) + c->held > sc->cfg->max_output_buffer) {
        char a[64];
        sc->st.err_output_buffer++;
        log_warn("client %s closed: output buffer over %zu bytes (replies not read)",
                 client_addr(c, a, sizeof a), sc->cfg->max_output_buffer);
        client_close(c, "output buffer limit");
        return;
    }
    mark_dirty(c);
}

static void pop_slot(struct client *c, struct req *r)
{
    TAILQ_REMOVE(&c->pending, r, owner_tqe);
    c->npending--;
    if (r->flags & REQ_CLOSE)
        c->closing = 1;
    req_release(&c->sc->cache, r);
}

/* Send every filled slot at the head of the FIFO. */
static void drain_ready(struct client *c)
{
    struct req *r;

    while (!c->closed && (r = TAILQ_FIRST(&c->pending)) && (r->flags & REQ_DONE)) {
        size_t n = buf_used(&r->reply);
        c->held -= n;
        emit(c, buf_start(&r->reply), n);
        if (!c->closed)
            pop_slot(c, r);
    }
    if (c->paused)
        mark_dirty(c);
}

static void fill_slot(struct client *c, struct req *r, const char *p, size_t n)
{
    if (r == TAILQ_FIRST(&c->pending)) {
        emit(c, p, n);
        if (c->closed)
            return;
        pop_slot(c, r);
        drain_ready(c);
        return;
    }
    buf_append(&r->reply, p, n);
    r->flags |= REQ_DONE;
    c->held += n;
    if (c->held > c->sc->cfg->max_output_buffer)
        emit(c, "", 0);
}

/* A reply on the lease: with nothing held any more and nothing in flight,
 * the lease goes back to the pool (RESET there) and the client's next
 * requests go to the shared links again. */
static void lease_answered(struct client *c)
{
    if (c->x->lease_pending)
        c->x->lease_pending--;
    if (c->lease && c->x->lease_pending == 0 && !c->in_multi && !c->watching &&
        !c->other_db && link_is_ready(c->lease)) {
        pool_unlease(c->lease->pool, c->lease);
        c->lease = NULL;
    }
}

void client_on_stream(void *lessee, const char *p, size_t n, void *arg)
{
    struct client *c = lessee;
    (void)arg;

    c->sc->st.replies++;
    c->sc->st.replies_by[TALLY(CLASS_STATEFUL, DEST_MASTER)][is_error_reply(p, n)]++;
    emit(c, p, n);
}

void client_lease_lost(void *lessee, void *arg)
{
    struct client *c = lessee;
    (void)arg;

    c->lease = NULL;
    /* Its subscriptions, transaction, WATCH or database went with the
     * connection: carrying on would run its next commands without them.
     * A closed connection is what its client library knows how to handle. */
    if (c->stream || c->in_multi || c->watching || c->other_db) {
        client_close(c, "its dedicated connection to the master was lost");
        return;
    }
    /* Its requests are failed next, each counting lease_pending down. */
    c->in_multi = c->watching = c->other_db = 0;
}

/* Errors that say the request did not run: the node is a master's
 * replica no more (or never was), lost its master, is loading, or (a
 * replica) lacks a script the master has, whose cache is per node. */
static int refused(const char *p, size_t n, int by_master)
{
    static const char *const codes[] = {"-READONLY", "-MASTERDOWN", "-LOADING", "-NOSCRIPT"};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0] - (by_master != 0); i++) {
        size_t l = strlen(codes[i]);
        if (n > l && memcmp(p, codes[i], l) == 0 && (p[l] == ' ' || p[l] == '\r'))
            return 1;
    }
    return 0;
}

/* Wait for a master, the request's bytes kept in its (still empty) reply
 * buffer. failover_wait counts from when it first waited (queued on a
 * master's link, or held), however often it is refused and sent again. */
static int hold(struct client *c, struct req *r, const char *req, size_t len)
{
    struct sidecar *sc = c->sc;

    struct req *later;

    if (!client_ext(c) || buf_append(&r->reply, req, len) < 0)
        return -1;
    r->len = len;
    r->link = NULL;
    r->flags |= REQ_HELD;
    if (!r->waiting_since)
        r->waiting_since = r->queued_at;
    /* Before any of the client's requests held already that came after it
     * (its refusal was read after theirs were held), so they go out in the
     * client's order. A new request (client_forward) is not on the
     * client's list yet, and is its latest. */
    for (later = r->owner_tqe.tqe_prev ? TAILQ_NEXT(r, owner_tqe) : NULL; later;
         later = TAILQ_NEXT(later, owner_tqe))
        if (later->flags & REQ_HELD)
            break;
    if (later)
        TAILQ_INSERT_BEFORE(later, r, link_tqe);
    else
        TAILQ_INSERT_TAIL(&sc->held, r, link_tqe);
    sc->nheld++;
    c->x->held++;
    sc->st.held++;
    sc->last_hold_at = ev_now(sc->loop);
    if (!ev_is_active(&sc->held_w))
        ev_timer_again(sc->loop, &sc->held_w);
    return 0;
}

/* To the master, in the same slot, behind the client's held requests. */
static int to_master(struct client *c, struct req *r, const char *req)
{
    struct sidecar *sc = c->sc;
    struct node *m = sc->master;

    if (sc->sentinels && (!m || (c->x && c->x->held)))
        return hold(c, r, req, r->len);
    struct link *l = m ? pool_link_for(m->pool, c->id, c->resp3) : NULL;

    if (!l || (m->pool->down && !sc->sentinels))
        return -1;
    return link_resend(l, r, req, r->len);
}

/* A request that did not run where it went runs on the master instead,
 * in the same slot, so order holds: a read a replica refused or whose
 * link failed (reads are safe to repeat), one handed back by a deposed
 * master's links, or (with sentinels) one the master refused because it
 * is one no more. 0 if so; -1: answer it as it is. */
static int send_again(struct client *c, struct req *r, const char *req, const char *p,
                      size_t n, const char *err)
{
    struct sidecar *sc = c->sc;

    if (r->flags & REQ_REROUTE) {
        if (!err && !refused(p, n, 0))
            return -1;
        r->flags &= ~(unsigned)REQ_REROUTE;
        c->x->replica_reads--;
        sc->st.replica_redirects++;
        return to_master(c, r, req);
    }
    if (sc->sentinels && !err && !(r->flags & REQ_LEASED) && refused(p, n, 1)) {
        sc->st.master_refusals++;
        nodes_refresh(sc);
        return hold(c, r, req, r->len);
    }
    return -1;
}

static void answer(struct client *c, struct req *r, const char *p, size_t n, const char *err);

void client_on_reply(struct req *r, const char *req, const char *p, size_t n,
                     const char *err, void *arg)
{
    struct client *c = r->owner;
    (void)arg;

    if (req && ((r->flags & REQ_REROUTE) || c->sc->sentinels) &&
        send_again(c, r, req, p, n, err) == 0)
        return;
    answer(c, r, p, n, err);
}

void client_on_unrun(struct req *r, const char *req, const char *why, void *arg)
{
    struct client *c = r->owner;
    (void)arg;

    if (r->flags & REQ_REROUTE) {
        r->flags &= ~(unsigned)REQ_REROUTE;
        c->x->replica_reads--;
        c->sc->st.replica_redirects++;
    }
    if (to_master(c, r, req) < 0)
        answer(c, r, NULL, 0, why);
}

static void answer(struct client *c, struct req *r, const char *p, size_t n, const char *err)
{
    char e[512];

    c->inflight -= r->len;
    if (r->flags & REQ_REROUTE)
        c->x->replica_reads--;
    if (r->flags & REQ_WRITE) {
        c->x->writes_pending--;
        c->x->wrote_at = ev_now(c->sc->loop);
        c->x->wrote_offset = -1;
        if (c->sc->cfg->read_your_writes == RYW_OFFSET && c->sc->nreplicas && c->sc->master)
            health_sample_soon(&c->sc->master->health, 0.1);
    }
    c->sc->st.replies++;
    c->sc->st.replies_by[(r->flags & REQ_TALLY_MASK) >> REQ_TALLY_SHIFT]
                        [err || is_error_reply(p, n)]++;
    if (c->paused)
        mark_dirty(c);       /* the flush step decides whether to read again */
    if (err) {
        int m = snprintf(e, sizeof e, "-ERR %s\r\n", err);
        p = e;
        n = m < (int)sizeof e ? (size_t)m : sizeof e - 1;
    }
    unsigned leased = r->flags & REQ_LEASED;
    fill_slot(c, r, p, n);   /* may free r */
    /* After the reply is out: letting the lease go may free the buffer
     * p points into. */
    if (leased)
        lease_answered(c);
}

void client_resend_held(struct sidecar *sc)
{
    struct req *r;

    while (sc->master && (r = TAILQ_FIRST(&sc->held)) != NULL) {
        struct client *c = r->owner;
        struct buf b = r->reply;
        TAILQ_REMOVE(&sc->held, r, link_tqe);
        sc->nheld--;
        c->x->held--;
        r->flags &= ~(unsigned)REQ_HELD;
        memset(&r->reply, 0, sizeof r->reply);
        struct link *l = pool_link_for(sc->master->pool, c->id, c->resp3);
        if (!l || link_send(l, r, buf_start(&b), buf_used(&b)) < 0)
            client_on_reply(r, NULL, NULL, 0, "proxy out of memory", sc);
        buf_free(&b);
    }
}

void client_expire_held(struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    struct req *r, *next, *last = NULL;
    char why[400];

    snprintf(why, sizeof why, "no master confirmed within failover_wait (%gs): %.300s",
             sc->cfg->failover_wait, sc->no_master_why[0] ? sc->no_master_why :
             "the master keeps refusing requests as a replica or while loading");
    /* The expired ones move to the front, then are answered from there:
     * an answer may close its client, which takes the client's other held
     * requests off the list (a saved next pointer could dangle). */
    for (r = TAILQ_FIRST(&sc->held); r; r = next) {
        next = TAILQ_NEXT(r, link_tqe);
        if (now - r->waiting_since < sc->cfg->failover_wait)
            continue;
        r->flags |= REQ_EXPIRED;
        TAILQ_REMOVE(&sc->held, r, link_tqe);
        if (last)
            TAILQ_INSERT_AFTER(&sc->held, last, r, link_tqe);
        else
            TAILQ_INSERT_HEAD(&sc->held, r, link_tqe);
        last = r;
    }
    while ((r = TAILQ_FIRST(&sc->held)) != NULL && (r->flags & REQ_EXPIRED)) {
        TAILQ_REMOVE(&sc->held, r, link_tqe);
        sc->nheld--;
        ((struct client *)r->owner)->x->held--;
        r->flags &= ~(unsigned)(REQ_HELD | REQ_EXPIRED);
        buf_free(&r->reply);
        sc->st.held_failed++;
        client_on_reply(r, NULL, NULL, 0, why, sc);
    }
    /* While requests wait, the master (or the node named to be it) is
     * asked often: the ROLE that says master sends them. */
    if (!sc->nheld)
        ev_timer_stop(sc->loop, &sc->held_w);
    else if (sc->master || sc->candidate)
        health_sample_soon(&(sc->master ? sc->master : sc->candidate)->health, 0.05);
}

void client_forward(struct client *c, struct link *l, const char *p, size_t n,
                    unsigned req_flags)
{
    struct req *r = req_alloc(&c->sc->cache);

    if ((req_flags & (REQ_WRITE | REQ_LEASED | REQ_REROUTE)) && !client_ext(c)) {
        if (r)
            req_release(&c->sc->cache, r);
        r = NULL;
    }
    if (!r) {
        client_reply_error(c, "out of memory");
        return;
    }
    unsigned t = tally_by_flags[req_flags & TALLY_FLAGS];
    r->owner = c;
    r->flags = req_flags | t << REQ_TALLY_SHIFT;
    if (l ? link_send(l, r, p, n) < 0
          : (r->queued_at = ev_now(c->sc->loop), hold(c, r, p, n) < 0)) {
        req_release(&c->sc->cache, r);
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    TAILQ_INSERT_TAIL(&c->pending, r, owner_tqe);
    c->npending++;
    c->inflight += n;
    if (req_flags & REQ_WRITE)
        c->x->writes_pending++;
    if (req_flags & REQ_LEASED)
        c->x->lease_pending++;
    if (req_flags & REQ_REROUTE)
        c->x->replica_reads++;
    c->sc->st.forwarded++;
    c->sc->st.requests_by[t]++;
}

/* A reply made here, after earlier ones; not counted. */
static void reply_in_order(struct client *c, const char *p, size_t n)
{
    if (TAILQ_EMPTY(&c->pending)) {
        emit(c, p, n);
        return;
    }
    struct req *r = req_alloc(&c->sc->cache);
    if (!r) {
        client_close(c, "out of memory");
        return;
    }
    r->owner = c;
    TAILQ_INSERT_TAIL(&c->pending, r, owner_tqe);
    c->npending++;
    fill_slot(c, r, p, n);
}

/* The answer to the request just read, counted under its command's class. */
void client_reply(struct client *c, const char *p, size_t n)
{
    enum req_class k = class_of_cmd(c->last_cmd);

    c->sc->st.local_replies++;
    c->sc->st.requests_by[TALLY(k, DEST_PROXY)]++;
    c->sc->st.replies_by[TALLY(k, DEST_PROXY)][is_error_reply(p, n)]++;
    reply_in_order(c, p, n);
}

void client_reply_error(struct client *c, const char *fmt, ...)
{
    char e[512];
    va_list ap;

    e[0] = '-';
    va_start(ap, fmt);
    int m = vsnprintf(e + 1, sizeof e - 3, fmt, ap);
    va_end(ap);
    size_t n = 1 + (m < (int)sizeof e - 3 ? (size_t)m : sizeof e - 4);
    memcpy(e + n, "\r\n", 2);
    client_reply(c, e, n + 2);
}

/* counted: the answer to a request (QUIT); not: a protocol error. */
static void reply_and_close(struct client *c, const char *p, size_t n, int counted)
{
    void (*reply)(struct client *, const char *, size_t) = counted ? client_reply
                                                                   : reply_in_order;

    if (TAILQ_EMPTY(&c->pending)) {
        c->closing = 1;
        reply(c, p, n);
    } else {
        reply(c, p, n);
        if (!c->closed)
            TAILQ_LAST(&c->pending, req_fifo)->flags |= REQ_CLOSE;
        c->closing = 1;
    }
    if (!c->closed)
        update_watch(c);
}

void client_reply_and_close(struct client *c, const char *p, size_t n)
{
    reply_and_close(c, p, n, 1);
}

static void protocol_error(struct client *c, const char *why)
{
    char e[160];
    int n = snprintf(e, sizeof e, "-ERR %s\r\n", why);

    char a[64];
    c->sc->st.err_protocol++;
    log_info("client %s closed: %s", client_addr(c, a, sizeof a), why);
    reply_and_close(c, e, (size_t)n, 0);   /* counted in clients_closed, not as a reply */
}

static int dispatch_inline(struct client *c, const char *line, size_t len)
{
    struct sidecar *sc = c->sc;
    struct resp_framer f;
    const char *err = NULL;

    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    buf_reset(&sc->inline_req);
    long long argc = resp_inline_to_multibulk(line, len, &sc->inline_req, &err);
    if (argc < 0) {
        protocol_error(c, err);
        return ROUTE_DONE;
    }
    if (argc == 0)
        return ROUTE_DONE;
    resp_framer_reset(&f);
    if (resp_frame_request(&f, buf_start(&sc->inline_req), buf_used(&sc->inline_req),
                           &sc->req_limits) != RESP_DONE)
        return ROUTE_DONE;
    return router_dispatch(c, buf_start(&sc->inline_req), &f.fr);
}

/* Frame and dispatch complete requests from p[0..n), up to the pipeline
 * cap; returns the bytes used. What is left is a partial request (the
 * framer holds its state) or requests held back by the cap. */
static size_t client_process(struct client *c, const char *p, size_t n,
                             struct resp_framer *f)
{
    struct sidecar *sc = c->sc;
    size_t used = 0;

    while (!c->closed && !c->closing && used < n) {
        /* Back-pressure: replies pending, or request bytes still upstream,
         * bound what one connection can make the proxy hold. */
        if (c->npending >= (unsigned)sc->cfg->max_pipeline ||
            c->inflight > sc->cfg->max_query_buffer) {
            sc->st.pipeline_pauses++;
            c->paused = 1;
            update_watch(c);
            break;
        }
        int rc = resp_frame_request(f, p + used, n - used, &sc->req_limits);
        if (rc == RESP_MORE) {
            if (n - used > sc->cfg->max_query_buffer) {
                sc->st.err_query_buffer++;
                protocol_error(c, "Protocol error: query buffer over max_query_buffer");
            }
            break;
        }
        if (rc == RESP_ERR) {
            protocol_error(c, f->err);
            break;
        }
        const struct resp_frame *fr = &f->fr;
        int route = ROUTE_DONE;
        if (fr->is_inline)
            route = dispatch_inline(c, p + used, fr->len);
        else if (fr->argc > 0)
            route = router_dispatch(c, p + used, fr);
        if (route != ROUTE_DONE) {
            /* Kept whole for later: the framer starts it afresh then. */
            c->paused = 1;
            c->barrier = route == ROUTE_LATER;
            c->pause_wait = route == ROUTE_WAIT_PAUSE;
            if (route == ROUTE_WAIT_LEASE && !ev_is_active(&sc->lease_w))
                ev_timer_again(sc->loop, &sc->lease_w);
            update_watch(c);
            break;
        }
        sc->st.requests++;
        used += fr->len;
    }
    return used;
}

/* Input already waiting in c->partial: frame it, free it once used up. */
static void process_partial(struct client *c)
{
    struct client_input *in = c->partial;
    size_t used = client_process(c, buf_start(&in->buf), buf_used(&in->buf), &in->fr);

    if (c->closed || c->closing || used == buf_used(&in->buf))
        drop_partial(c);
    else
        buf_consume(&in->buf, used);
}

/* Requests framed from the shared buffer; only a remainder is copied. */
static void process_shared(struct client *c, size_t n)
{
    struct sidecar *sc = c->sc;

    resp_framer_reset(&sc->rfr);
    size_t used = client_process(c, sc->rbuf, n, &sc->rfr);
    if (used == n || c->closed || c->closing)
        return;
    c->partial = calloc(1, sizeof *c->partial);
    if (!c->partial || buf_append(&c->partial->buf, sc->rbuf + used, n - used) < 0) {
        client_close(c, "out of memory");
        return;
    }
    c->partial->fr = sc->rfr;
}

static void client_read(struct ev_loop *loop, struct client *c)
{
    struct sidecar *sc = c->sc;
    ssize_t n;

    if (c->partial)
        n = buf_read_fd(&c->partial->buf, c->io.fd, CLIENT_READ_CHUNK);
    else
        n = read(c->io.fd, sc->rbuf, SIDECAR_RBUF);
    if (n > 0) {
        c->last_active = ev_now(loop);
        sc->st.bytes_in += (uint64_t)n;
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

/* Draining: nothing in flight, nothing to send, no half request, and no
 * transaction, WATCH or other database (those get until the timeout:
 * closing mid-way could leave half of what they meant). */
static int drained(const struct client *c)
{
    return TAILQ_EMPTY(&c->pending) && !buf_used(&c->out) && !c->partial &&
           !client_holds_state(c);
}

static void client_write(struct client *c)
{
    struct sidecar *sc = c->sc;

    if (buf_used(&c->out)) {
        ssize_t n = buf_write_fd(&c->out, c->io.fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c, strerror(errno));
            return;
        }
        if (n > 0)
            sc->st.bytes_out += (uint64_t)n;
    }
    if (buf_used(&c->out)) {
        update_watch(c);
        return;
    }
    buf_cache_put(&sc->bufs, &c->out);
    update_watch(c);
    if (c->closing && TAILQ_EMPTY(&c->pending))
        client_close(c, "closed after its last reply");
    else if (sc->draining && drained(c))
        /* closed right after its last reply, before it sends another: a
         * client that reconnects on close finds the new process */
        client_close(c, "proxy is shutting down");
}

static void client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = w->data;

    if (revents & EV_READ)
        client_read(loop, c);
    if (revents & EV_WRITE)
        mark_dirty(c);      /* the flush step writes it, once per iteration */
}

void client_flush_all(struct sidecar *sc)
{
    struct client *c;

    while ((c = STAILQ_FIRST(&sc->dirty)) != NULL) {
        STAILQ_REMOVE_HEAD(&sc->dirty, dirty_tqe);
        c->dirty = 0;
        if (c->closed)
            continue;
        if (c->paused && !c->lease_wait && !c->pause_wait && (c->barrier ? c->inflight == 0 :
                          c->npending <= (unsigned)sc->cfg->max_pipeline / 2 &&
                          c->inflight <= sc->cfg->max_query_buffer / 2)) {
            c->paused = c->barrier = 0;
            update_watch(c);
            if (c->partial)
                process_partial(c);
        }
        if (!c->closed)
            client_write(c);
    }
    while ((c = TAILQ_FIRST(&sc->closed)) != NULL) {
        TAILQ_REMOVE(&sc->closed, c, tqe);
        client_free(c);
    }
}

struct req *client_defer(struct client *c)
{
    struct req *r = req_alloc(&c->sc->cache);

    if (!r)
        return NULL;
    r->owner = c;
    r->flags = REQ_DEFERRED | TALLY(CLASS_ADMIN, DEST_PROXY) << REQ_TALLY_SHIFT;
    c->sc->st.requests_by[TALLY(CLASS_ADMIN, DEST_PROXY)]++;
    TAILQ_INSERT_TAIL(&c->pending, r, owner_tqe);
    c->npending++;
    return r;
}

void client_answer_deferred(struct sidecar *sc, struct req *r, const char *p, size_t n)
{
    if (!r->owner) {                     /* its client left meanwhile */
        req_release(&sc->cache, r);
        return;
    }
    client_on_reply(r, NULL, p, n, NULL, sc);
}

void client_resume_all(struct sidecar *sc)
{
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (!c->pause_wait)
            continue;
        c->pause_wait = c->paused = 0;
        update_watch(c);
        if (c->partial)
            process_partial(c);
    }
}

void client_retry_lease_waiters(struct sidecar *sc)
{
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c && sc->lease_waiters; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (!c->lease_wait || !c->paused)
            continue;
        c->paused = 0;
        update_watch(c);
        if (c->partial)
            process_partial(c);
    }
    if (!sc->lease_waiters)
        ev_timer_stop(sc->loop, &sc->lease_w);
}

void client_sweep_idle(struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        /* a subscriber waits for messages, not idle (redis exempts it too) */
        if (c->npending == 0 && !c->stream && now - c->last_active > sc->cfg->idle_timeout) {
            char a[64];
            sc->st.idle_closed++;
            log_info("client %s closed: idle for %.0fs (idle_timeout)",
                     client_addr(c, a, sizeof a), now - c->last_active);
            client_close(c, "idle timeout");
        }
    }
}

int client_drain_step(struct sidecar *sc)
{
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (drained(c))
            client_close(c, "proxy is shutting down");
    }
    return sc->nclients == 0;
}

void client_close_all(struct sidecar *sc)
{
    struct client *c;

    while ((c = TAILQ_FIRST(&sc->clients)) != NULL)
        client_close(c, "proxy is shutting down");
    client_flush_all(sc);
}
