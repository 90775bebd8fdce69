/* App connections. A client's replies leave in request order: a reply for
 * the oldest slot goes straight to the output buffer, one that overtakes
 * an earlier slot waits, parked in its own slot. Output is written once
 * per loop iteration by the flush step (request.c), through
 * client_write(); the last reply a client is owed, with nothing queued
 * before it, is written at once from the link's buffer (run_out). */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/invariant.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "hold.h"
#include "slowlog.h"

void client_watch(struct client *c)
{
    /* Changing the watcher costs a syscall: only when the state changed. */
    int want = (c->paused || c->closing || c->closed ? 0 : EV_READ) |
               (client_out_used(c) && !c->closed ? EV_WRITE : 0);

    if (want == (c->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&c->io) == (want != 0))
        return;
    ev_io_stop(client_sc(c)->loop, &c->io);
    ev_io_set(&c->io, c->io.fd, want);
    if (want)
        ev_io_start(client_sc(c)->loop, &c->io);
}

void client_mark_dirty(struct client *c)
{
    if (!c->dirty && !c->closed) {
        c->dirty = 1;
        client_set_add(&client_sc(c)->dirty, c);
    }
}

/* A set's first size, and the size past which one that used a quarter or
 * less in an iteration is halved: the memory follows the busiest moments,
 * and an idle proxy keeps only a few kilobytes of it. */
#define CLIENT_SET_FIRST 64
#define CLIENT_SET_KEEP  1024

void client_set_add_grown(struct client_set *s, struct client *c)
{
    unsigned cap = s->cap ? s->cap * 2 : CLIENT_SET_FIRST;
    struct client **v = realloc(s->v, cap * sizeof *v);

    if (!v) {
        s->lost = 1;
        return;
    }
    s->v = v;
    s->cap = cap;
    s->v[s->n++] = c;
}

void client_set_trim(struct client_set *s, unsigned used)
{
    if (s->cap > CLIENT_SET_KEEP && used < s->cap / 4) {
        struct client **v = realloc(s->v, s->cap / 2 * sizeof *v);
        if (v) {
            s->v = v;
            s->cap /= 2;
        }
    }
}

void client_new(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                const struct origin *o, int admin,
                void (*on_io)(struct ev_loop *loop, ev_io *w, int revents))
{
    struct client *c = calloc(1, sizeof *c);

    if (!c) {
        o->ips->current--;
        apps_detach(sc, o->proc);
        apps_release(sc, o->proc);
        close(fd);
        return;
    }
    c->ips = o->ips;
    c->proc = o->proc;
    c->peer_ino = o->peer_ino;
    c->admin = admin != 0;
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
    ev_io_init(&c->io, on_io, fd, EV_READ);
    c->io.data = sc;
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

void client_check_counts(const struct client *c)
{
    const struct req *r;
    unsigned n = 0, writes = 0, replica = 0, held = 0;

    TAILQ_FOREACH(r, &c->pending, owner_tqe) {
        n++;
        writes += (r->flags & REQ_WRITE) && !(r->flags & REQ_DONE);
        replica += (r->flags & REQ_REROUTE) && !(r->flags & REQ_DONE);
        held += (r->flags & REQ_HELD) != 0;
    }
    assert(n == c->npending);
    assert(!c->x || (writes == c->x->writes_pending && replica == c->x->replica_reads &&
                     held + hold_parts_of(client_sc(c), c) == c->x->nheld));
}

struct client_ext *client_ext(struct client *c)
{
    if (!c->x && (c->x = calloc(1, sizeof *c->x)) != NULL) {
        c->x->c = c;
        c->x->wrote_offset = -1;
        c->x->wait.who = c;
    }
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

/* Off whatever wait list it is on. */
static void unwait(struct client *c)
{
    switch ((enum client_wait)c->wait) {
    case WAIT_LEASE:
        pool_lease_unwait(&c->x->wait);
        break;
    case WAIT_MASTER:
        TAILQ_REMOVE(&client_sc(c)->master_waiters, &c->x->wait, tqe);
        break;
    case WAIT_RESUME:
        TAILQ_REMOVE(&client_sc(c)->resume_waiters, &c->x->wait, tqe);
        break;
    case WAIT_NONE:
        break;
    }
    c->wait = WAIT_NONE;
}

void client_close(struct client *c, const char *why)
{
    struct sidecar *sc = client_sc(c);
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
    apps_detach(sc, c->proc);
    if (c->peer_ino)
        peer_forget(sc->apps.peers, c->peer_ino);
    /* Slots still upstream, held for a master or answered later become
     * orphans: whoever has them drops them. */
    while ((r = TAILQ_FIRST(&c->pending)) != NULL) {
        TAILQ_REMOVE(&c->pending, r, owner_tqe);
        if (r->link || (r->flags & (REQ_HELD | REQ_DEFERRED)))
            r->owner = NULL;
        else
            req_release(&sc->cache, r);
    }
    c->npending = 0;
    unwait(c);
    if (c->x && c->x->user && --c->x->user->clients == 0)
        c->x->user->idle_since = ev_now(sc->loop);   /* users.c closes its pools later */
    if (c->lease) {
        pool_unlease(c->lease->pool, c->lease);   /* its orphans make it close */
        c->lease = NULL;
    }
    TAILQ_REMOVE(&sc->clients, c, tqe);
    TAILQ_INSERT_TAIL(&sc->closed, c, tqe);
    sc->nclients--;
}

void client_free_closed(struct sidecar *sc)
{
    struct client *c;

    while ((c = TAILQ_FIRST(&sc->closed)) != NULL) {
        TAILQ_REMOVE(&sc->closed, c, tqe);
        apps_release(sc, c->proc);
        if (c->partial) {
            buf_free(&c->partial->buf);
            free(c->partial);
        }
        buf_cache_give(&sc->bufs, c->out);
        if (c->x) {
            free(c->x->name);
            free(c->x->hello_name);
        }
        free(c->x);
        free(c);
    }
    if (CHECKS) {
        unsigned n = 0;
        TAILQ_FOREACH(c, &sc->clients, tqe)
            n++;
        assert(n == sc->nclients);
    }
}

void client_close_all(struct sidecar *sc)
{
    struct client *c;

    while ((c = TAILQ_FIRST(&sc->clients)) != NULL)
        client_close(c, "proxy is shutting down");
    sc->dirty.n = sc->readable.n = 0;   /* they are freed now */
    client_free_closed(sc);
}

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

/* Its replies waiting to be written (and parked behind earlier ones)
 * would go over max_output_buffer with n bytes more: closed instead, before
 * any buffer grows past the limit. */
static void close_over_limit(struct client *c) __attribute__((cold, noinline));

static inline int over_output_limit(struct client *c, size_t n)
{
    size_t limit = client_sc(c)->cfg->max_output_buffer;

    if (__builtin_expect(client_out_used(c) + c->parked + n <= limit, 1))
        return 0;
    close_over_limit(c);
    return 1;
}

static void close_over_limit(struct client *c)
{
    struct sidecar *sc = client_sc(c);
    char a[64];

    sc->st.err_output_buffer++;
    c->proc->app->errors[APP_ERR_CLOSED]++;
    log_warn("client %s closed: output buffer over %zu bytes (replies not read)",
             client_addr(c, a, sizeof a), sc->cfg->max_output_buffer);
    client_close(c, "output buffer limit");
}

static void emit(struct client *c, const char *p, size_t n)
{
    struct sidecar *sc = client_sc(c);

    if (over_output_limit(c, n))
        return;
    if ((!c->out && !(c->out = buf_cache_take(&sc->bufs))) || buf_append(c->out, p, n) < 0) {
        client_close(c, "out of memory for its replies");
        return;
    }
    client_mark_dirty(c);
}

static inline __attribute__((always_inline)) void pop_slot(struct client *c, struct req *r)
{
    slowlog_reply_out(c, r);
    TAILQ_REMOVE(&c->pending, r, owner_tqe);
    c->npending--;
    if (r->flags & REQ_CLOSE)
        c->closing = 1;
    req_release(&client_sc(c)->cache, r);
}

/* Send every filled slot at the head of the FIFO. */
static inline __attribute__((always_inline)) void drain_ready(struct client *c)
{
    struct req *r;

    while (!c->closed && (r = TAILQ_FIRST(&c->pending)) && (r->flags & REQ_DONE)) {
        size_t n = buf_used(&r->reply);
        c->parked -= n;
        emit(c, buf_start(&r->reply), n);
        if (!c->closed)
            pop_slot(c, r);
    }
    if (c->paused)
        client_mark_dirty(c);
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
    if (over_output_limit(c, n))
        return;
    if (buf_append(&r->reply, p, n) < 0) {
        client_close(c, "out of memory for its replies");
        return;
    }
    r->flags |= REQ_DONE;
    c->parked += n;
}

void client_stream(struct client *c, const char *p, size_t n)
{
    emit(c, p, n);
}

/* Bytes written to the client's socket. */
static inline void count_out(struct client *c, size_t n)
{
    client_sc(c)->st.bytes_out += n;
    c->proc->app->bytes_out += n;
}

void client_pass(struct client *c, const char *p, size_t n)
{
    /* Nothing queued before it: what the socket takes goes straight from
     * the link's buffer, uncopied; the rest waits in the output as any
     * reply would (and a failure is the flush step's to see). */
    if (!client_out_used(c)) {
        ssize_t w = write(c->io.fd, p, n);
        if (w > 0) {
            count_out(c, (size_t)w);
            p += w;
            n -= (size_t)w;
        }
    }
    if (n)
        emit(c, p, n);
}

struct req *client_slot(struct client *c, unsigned flags)
{
    struct req *r = req_alloc(&client_sc(c)->cache);

    if (!r)
        return NULL;
    r->owner = c;
    r->flags = flags;
    r->arrived = c->last_active;
    r->what = c->last_cmd;
    TAILQ_INSERT_TAIL(&c->pending, r, owner_tqe);
    c->npending++;
    return r;
}

/* A reply on the lease: with nothing on it any more and nothing held,
 * the lease goes back to the pool (RESET there) and the client's next
 * requests go to the shared links again. */
static void lease_answered(struct client *c)
{
    struct link *l = c->lease;

    if (c->x)
        c->x->retry_since = 0;           /* a run of leases lost unready is over */
    if (l && l->nfifo == l->ahead && !c->in_multi && !c->watching && !c->other_db && !c->stream &&
        link_is_ready(l)) {
        c->lease = NULL;
        pool_unlease(l->pool, l);
    }
}

/* A write of c's answered: what read-your-writes waits for. */
static inline void written(struct client *c)
{
    struct sidecar *sc = client_sc(c);

    c->x->writes_pending--;
    c->x->wrote_at = sc->now;
    c->x->wrote_offset = -1;
    if (sc->cfg->read_your_writes == RYW_OFFSET && sc->nreplicas && sc->master)
        health_sample_soon(&sc->master->health, 0.1);
}

void client_answer(struct client *c, struct req *r, const char *p, size_t n, const char *err)
{
    struct sidecar *sc = client_sc(c);
    char e[512];

    c->inflight -= r->len;
    if (r->flags & REQ_REROUTE)
        c->x->replica_reads--;
    if (r->flags & REQ_WRITE)
        written(c);
    sc->st.replies++;
    /* the end of a reply passed on as it came says nothing of its type */
    int bad = err || (!(r->flags & REQ_STREAMED) && is_error_reply(p, n));
    sc->st.replies_by[(r->flags & REQ_TALLY_MASK) >> REQ_TALLY_SHIFT][bad]++;
    if (__builtin_expect(bad, 0))
        c->proc->app->errors[err ? APP_ERR_PROXY : APP_ERR_REDIS]++;
    if (c->paused)
        client_mark_dirty(c);       /* the flush step decides whether to read again */
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

/* client_answer's tallies for a plain request's reply that is no error. */
static inline void settle_plain(struct client *c, const struct req *r)
{
    c->inflight -= r->len;
    if (r->flags & REQ_WRITE)
        written(c);
    client_sc(c)->st.replies_by[(r->flags & REQ_TALLY_MASK) >> REQ_TALLY_SHIFT][0]++;
}

/* A run of replies ending with `last`, in the client's order: when `last`
 * is the last reply the client is owed, the bytes go to its socket as
 * client_pass does (straight from the link's buffer when nothing is queued
 * before them: no copy and no flush step; only a reply the proxy makes
 * for a request read later in this iteration could have shared the
 * write); else they are queued. A client the flush step must see again
 * (closing, or the proxy draining) is queued. */
static inline void run_out(struct client *c, const struct req *last, const char *p, size_t n)
{
    if (!TAILQ_NEXT(last, owner_tqe) && !c->closing && !client_sc(c)->draining)
        client_pass(c, p, n);
    else
        emit(c, p, n);
}

/* The reply's slot has left: the slowlog's look at it, the slot freed,
 * and what waited behind it sent. */
static inline void answered(struct client *c, struct req *r, const char *req)
{
    slowlog_answered(c, r, req);
    pop_slot(c, r);
}

int client_answer_run(struct client *c, struct req *const *v, const char *const *req,
                      const size_t *len, unsigned k, const char *p)
{
    struct req *r = TAILQ_FIRST(&c->pending);
    size_t n = 0;

    if (c->closed)
        return -1;
    if (k == 1) {                        /* the common reply, without the loops */
        if (r != v[0])
            return -1;
        settle_plain(c, r);
        client_sc(c)->st.replies++;
        run_out(c, r, p, len[0]);
        if (!c->closed) {
            answered(c, r, req[0]);
            drain_ready(c);
        }
        return 0;
    }
    for (unsigned i = 0; i < k; i++, r = TAILQ_NEXT(r, owner_tqe)) {
        if (r != v[i])
            return -1;
        n += len[i];
    }
    for (unsigned i = 0; i < k; i++)
        settle_plain(c, v[i]);
    client_sc(c)->st.replies += k;
    run_out(c, v[k - 1], p, n);          /* the bytes in one append or write */
    if (!c->closed) {
        for (unsigned i = 0; i < k; i++) /* each at the head in its turn */
            answered(c, v[i], req[i]);
        drain_ready(c);
    }
    return 0;
}

/* A reply made here, after earlier ones; not counted. */
static void reply_in_order(struct client *c, const char *p, size_t n)
{
    if (TAILQ_EMPTY(&c->pending)) {
        apps_latency(c->proc->app, client_sc(c)->now - c->last_active);
        emit(c, p, n);
        return;
    }
    struct req *r = client_slot(c, 0);
    if (!r) {
        client_close(c, "out of memory");
        return;
    }
    fill_slot(c, r, p, n);
}

void client_reply(struct client *c, const char *p, size_t n)
{
    enum req_class k = class_of_cmd(c->last_cmd);
    int bad = is_error_reply(p, n);

    client_sc(c)->st.local_replies++;
    client_sc(c)->st.requests_by[TALLY(k, DEST_PROXY)]++;
    client_sc(c)->st.replies_by[TALLY(k, DEST_PROXY)][bad]++;
    c->proc->app->errors[APP_ERR_PROXY] += (unsigned)bad;
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

void client_reply_ok(struct client *c)
{
    client_reply(c, "+OK\r\n", 5);
}

void client_reply_int(struct client *c, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof num, ":%lld\r\n", v);

    client_reply(c, num, (size_t)n);
}

void client_reply_simple(struct client *c, const char *text)
{
    struct buf *b = &client_sc(c)->scratch;

    buf_reset(b);
    buf_appendf(b, "+%s\r\n", text);
    client_reply(c, buf_start(b), buf_used(b));
}

void client_reply_bulk(struct client *c, const char *p, size_t n)
{
    struct buf *b = &client_sc(c)->scratch;

    buf_reset(b);
    buf_appendf(b, "$%zu\r\n", n);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
    client_reply(c, buf_start(b), buf_used(b));
}

void client_reply_null(struct client *c)
{
    if (c->resp3)
        client_reply(c, "_\r\n", 3);
    else
        client_reply(c, "$-1\r\n", 5);
}

/* As redis sends its own text (INFO, CLIENT LIST). */
void client_reply_text(struct client *c, const char *p, size_t n)
{
    struct buf *b = &client_sc(c)->scratch;

    if (!c->resp3) {
        client_reply_bulk(c, p, n);
        return;
    }
    buf_reset(b);
    buf_appendf(b, "=%zu\r\ntxt:", n + 4);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
    client_reply(c, buf_start(b), buf_used(b));
}

/* counted: the answer to a request (QUIT); not: a protocol error. */
static void reply_and_close(struct client *c, const char *p, size_t n, int counted)
{
    if (counted)
        client_reply(c, p, n);
    else
        reply_in_order(c, p, n);
    if (c->closed)
        return;
    if (!TAILQ_EMPTY(&c->pending))
        TAILQ_LAST(&c->pending, req_fifo)->flags |= REQ_CLOSE;
    c->closing = 1;
    client_watch(c);
}

void client_reply_and_close(struct client *c, const char *p, size_t n)
{
    reply_and_close(c, p, n, 1);
}

void client_close_after_replies(struct client *c, const char *why)
{
    char a[64];

    if (c->closing || c->closed)
        return;
    log_info("client %s id=%llu closing after its replies: %s", client_addr(c, a, sizeof a),
             (unsigned long long)c->id, why);
    if (!TAILQ_EMPTY(&c->pending))
        TAILQ_LAST(&c->pending, req_fifo)->flags |= REQ_CLOSE;
    c->closing = 1;
    client_watch(c);
    client_mark_dirty(c);
}

void client_protocol_error(struct client *c, const char *why)
{
    char e[160], a[64];
    int n = snprintf(e, sizeof e, "-ERR %s\r\n", why);

    client_sc(c)->st.err_protocol++;
    c->proc->app->errors[APP_ERR_CLOSED]++;
    log_info("client %s closed: %s", client_addr(c, a, sizeof a), why);
    reply_and_close(c, e, (size_t)n, 0);   /* counted in clients_closed, not as a reply */
}

struct req *client_defer(struct client *c)
{
    struct req *r = client_slot(c, REQ_DEFERRED | TALLY(CLASS_ADMIN, DEST_PROXY) << REQ_TALLY_SHIFT);

    if (r)
        client_sc(c)->st.requests_by[TALLY(CLASS_ADMIN, DEST_PROXY)]++;
    return r;
}

void client_answer_deferred(struct sidecar *sc, struct req *r, const char *p, size_t n)
{
    if (!r->owner) {                     /* its client left meanwhile */
        req_release(&sc->cache, r);
        return;
    }
    client_answer(r->owner, r, p, n, NULL);
}

int client_drained(const struct client *c)
{
    /* A transaction, WATCH or other database gets until the drain's
     * timeout: closing mid-way could leave half of what it meant. */
    return TAILQ_EMPTY(&c->pending) && !client_out_used(c) && !c->partial &&
           !client_holds_state(c);
}

void client_write(struct client *c)
{
    struct sidecar *sc = client_sc(c);

    if (client_out_used(c)) {
        ssize_t n = buf_write_fd(c->out, c->io.fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c, strerror(errno));
            return;
        }
        if (n > 0)
            count_out(c, (size_t)n);
    }
    if (client_out_used(c)) {
        client_watch(c);
        return;
    }
    buf_cache_give(&sc->bufs, c->out);
    c->out = NULL;
    client_watch(c);
    if (c->closing && TAILQ_EMPTY(&c->pending))
        client_close(c, "closed after its last reply");
    else if (sc->draining && client_drained(c))
        /* closed right after its last reply, before it sends another: a
         * client that reconnects on close finds the new process */
        client_close(c, "proxy is shutting down");
}

/* Clients the proxy is not reading (paused, or closing behind replies
 * still to come) would never see their app hang up: one whose request
 * blocks upstream for good (BLPOP 0) would keep its slot and its lease
 * forever. Redis reads its blocked clients and frees them at EOF; here one
 * poll() a sweep asks the kernel (POLLRDHUP: the peer shut its side, with
 * or without input still unread), as many clients as a batch holds each. */
#define HANGUP_BATCH 128

static void close_hung_up(struct sidecar *sc)
{
    struct pollfd pfd[HANGUP_BATCH];
    struct client *who[HANGUP_BATCH];
    struct client *c = TAILQ_FIRST(&sc->clients);

    while (c) {
        int n = 0;
        for (; c && n < HANGUP_BATCH; c = TAILQ_NEXT(c, tqe)) {
            if ((c->paused || c->closing) && !client_out_used(c)) {
                pfd[n] = (struct pollfd){.fd = c->io.fd, .events = POLLRDHUP};
                who[n++] = c;
            }
        }
        if (n == 0 || poll(pfd, (nfds_t)n, 0) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                char a[64];
                log_info("client %s closed: hung up while its requests waited (%u pending)",
                         client_addr(who[i], a, sizeof a), who[i]->npending);
                client_close(who[i], "hung up while not read");
            }
        }
    }
}

void client_sweep(struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    struct client *c, *next;

    close_hung_up(sc);
    if (sc->cfg->idle_timeout <= 0)
        return;
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

double client_sweep_period(const struct config *cfg)
{
    return cfg->idle_timeout > 0 && cfg->idle_timeout / 4 < 1 ? cfg->idle_timeout / 4 : 1;
}

const char *client_user(const struct client *c)
{
    if (c->x && c->x->user)
        return c->x->user->name;
    return client_sc(c)->cfg->username ? client_sc(c)->cfg->username : "default";
}

const char *client_laddr(const struct client *c, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct ip ip;
    char s[64];

    if (getsockname(c->io.fd, (struct sockaddr *)&ss, &sl) < 0 || ip_from_sockaddr((struct sockaddr *)&ss, &ip) < 0) {
        snprintf(out, outlen, "%s", c->is_unix ? "unix" : "?");
        return out;
    }
    ip_format(&ip, s, sizeof s);
    snprintf(out, outlen, strchr(s, ':') ? "[%s]:%u" : "%s:%u", s,
             ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port));
    return out;
}

/* Blocked in a command on its lease (BLPOP, WAIT, DEBUG SLEEP...). */
static int blocked(const struct client *c)
{
    const struct req *r;

    if (!c->lease)
        return 0;
    TAILQ_FOREACH(r, &c->lease->fifo, link_tqe)
        if (r->flags & REQ_NOTIMEOUT)
            return 1;
    return 0;
}

/* CLIENT LIST's fields of c, without the line's end. */
static void describe_fields(struct buf *b, const struct client *c, ev_tstamp now)
{
    const struct client_ext *x = c->x;
    char a[64], la[64], flags[24], *f = flags;
    size_t qbuf = (c->partial ? buf_used(&c->partial->buf) : 0) + (x ? x->qbuf_now : 0);
    char cmd[48];
    size_t obuf = client_out_used(c) + c->parked;
    const char *name = x && x->name ? x->name : "";
    int tracking = x && x->tracking;

    /* redis's letters (x MULTI, b blocked, t tracking, O monitor, P pub/sub,
     * e no-evict, c closing after its replies, U unix socket, N none), then
     * the proxy's: l holds a lease, w WATCH, d another database, p not
     * read (back-pressure or waiting) */
    if (c->in_multi)
        *f++ = 'x';
    if (blocked(c))
        *f++ = 'b';
    if (tracking)
        *f++ = 't';
    if (x && x->monitor)
        *f++ = 'O';
    else if (c->stream && x && (x->sub || x->psub || x->ssub))
        *f++ = 'P';
    if (x && x->no_evict)
        *f++ = 'e';
    if (c->closing)
        *f++ = 'c';
    if (c->is_unix)
        *f++ = 'U';
    if (c->lease)
        *f++ = 'l';
    if (c->watching)
        *f++ = 'w';
    if (c->other_db)
        *f++ = 'd';
    if (c->paused)
        *f++ = 'p';
    if (f == flags)
        *f++ = 'N';
    *f = '\0';
    snprintf(cmd, sizeof cmd, "%s%s%s", c->last_cmd ? c->last_cmd->name : "NULL",
             c->last_cmd && c->last_cmd->local == LOCAL_CLIENT && x && x->client_sub ? "|" : "",
             c->last_cmd && c->last_cmd->local == LOCAL_CLIENT && x && x->client_sub
             ? x->client_sub : "");
    buf_appendf(b, "id=%llu addr=%s laddr=%s fd=%d name=%s age=%.0f idle=%.0f flags=%s db=%d "
                "sub=%d psub=%d ssub=%d multi=%d qbuf=%zu qbuf-free=%zu argv-mem=0 "
                "multi-mem=0 rbs=%zu rbp=0 obl=0 oll=0 omem=%zu tot-mem=%zu events=%s%s cmd=%s "
                "user=%s redir=%lld resp=%d pending=%u obuf=%zu admin=%d",
                (unsigned long long)c->id, client_addr(c, a, sizeof a), client_laddr(c, la, sizeof la),
                c->io.fd, name, now - c->created, now - c->last_active, flags,
                c->other_db && x ? x->db : client_sc(c)->cfg->database, x ? x->sub : 0,
                x ? x->psub : 0,
                x ? x->ssub : 0, c->in_multi && x ? x->multi : -1, qbuf,
                c->partial && c->partial->buf.cap > qbuf ? c->partial->buf.cap - qbuf : 0,
                c->partial ? c->partial->buf.cap : 0,
                obuf, sizeof *c + (x ? sizeof *x : 0) + qbuf + obuf + client_out_used(c),
                c->paused || c->closing ? "" : "r", client_out_used(c) ? "w" : "",
                cmd, client_user(c),
                tracking ? x->redir : -1LL, c->resp3 ? 3 : 2, c->npending, obuf, c->admin);
}

void client_describe(struct buf *b, const struct client *c, ev_tstamp now)
{
    describe_fields(b, c, now);
    buf_append(b, "\n", 1);
}

void client_describe_app(struct buf *b, const struct client *c, ev_tstamp now)
{
    describe_fields(b, c, now);
    buf_appendf(b, " app=%s pid=%d comm=%s\n", c->proc->app->key, (int)c->proc->pid,
                c->proc->comm[0] ? c->proc->comm : "?");
}

long long client_kill(struct client *self, enum client_match by, const char *v, size_t vl,
                      const struct cidr *range, const char *why)
{
    struct sidecar *sc = client_sc(self);
    struct client *c, *next;
    long long id = 0, n = 0;
    char a[64];

    if (by == MATCH_ID && resp_parse_ll(v, vl, &id) < 0)
        return -1;
    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        int hit = 0;
        if (c == self)
            continue;
        if (by == MATCH_ID)
            hit = c->id == (uint64_t)id;
        else if (by == MATCH_ADDR)
            hit = strlen(client_addr(c, a, sizeof a)) == vl && memcmp(a, v, vl) == 0;
        else if (by == MATCH_APP)
            hit = strlen(c->proc->app->key) == vl && memcmp(c->proc->app->key, v, vl) == 0;
        else
            hit = !c->is_unix && cidr_match(range, &c->ips->ip);
        if (hit) {
            client_close(c, why);
            sc->st.killed++;
            n++;
        }
    }
    return n;
}
