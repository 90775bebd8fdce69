/* One upstream socket: connect, handshake (AUTH, SELECT, name), the FIFO
 * of requests in flight, and what happens to them when the socket dies.
 * A link is gained in link_ready() and lost in link_down(), which log why
 * and count the cause; the steps in between (connecting, handshake,
 * validation) only move it forward. */
#include "link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../lib/invariant.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "pool.h"

#define LINK_READ_CHUNK  (16 * 1024)
#define LINK_KEEP_BUF    (64 * 1024)
#define LINK_STREAM_CHUNK (256 * 1024)
#define LINK_HOLD_OUT    (16 * 1024 * 1024)  /* a busy shared link keeps up to this */
#define BACKOFF_FIRST    0.05
#define BACKOFF_MAX      2.0    /* and never over connect_timeout / 2, so a
                                 * request always sees a try before it gives up */

static const struct resp_limits reply_limits = {
    .max_bulk = RESP_MAX_BULK, .max_line = 64 * 1024 * 1024,
};

static void link_rd_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tls_step(struct link *l);
static void link_wr_cb(struct ev_loop *loop, ev_io *w, int revents);
static void link_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void link_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents);

void link_init(struct link *l, struct pool *p, int idx, int resp3)
{
    memset(l, 0, sizeof *l);
    l->pool = p;
    l->idx = idx;
    l->resp3 = resp3;
    l->fd = -1;
    TAILQ_INIT(&l->fifo);
    resp_framer_reset(&l->fr);
    ev_init(&l->rio, link_rd_cb);
    ev_init(&l->wio, link_wr_cb);
    ev_init(&l->conn_timer, link_conn_timer_cb);
    ev_init(&l->watchdog, link_watchdog_cb);
    l->rio.data = l->wio.data = l->conn_timer.data = l->watchdog.data = l;
}

static void append_command(struct buf *b, int argc, const char **argv)
{
    buf_appendf(b, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        buf_appendf(b, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
}

static void close_socket(struct link *l)
{
    struct ev_loop *loop = l->pool->loop;

    l->skipping = l->streaming = 0;
    ev_io_stop(loop, &l->rio);
    ev_io_stop(loop, &l->wio);
    ev_timer_stop(loop, &l->conn_timer);
    tls_conn_free(l->tls);
    l->tls = NULL;
    l->tls_rd_wants_write = l->tls_wr_wants_read = 0;
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    buf_free(&l->in);
    buf_free(&l->hs);
    l->hs_pending = 0;
    resp_framer_reset(&l->fr);
}

/* The bytes at stream offset off, in seg[0..n) or out (based at base).
 * An offset before all of them is a stream lease's request whose bytes
 * went once written (link_flush): the pointer is what it was before there
 * were segments, for callers that do not read it then. */
static const char *stream_at(const struct link_seg *seg, unsigned n, const struct buf *out,
                             uint64_t base, uint64_t off)
{
    if (off >= base || n == 0 || off < seg[0].base)
        return buf_start(out) + (off - base);
    while (off < seg[--n].base)
        ;
    return buf_start(&seg[n].b) + (off - seg[n].base);
}

/* A request's bytes, still in the output stream. */
static inline const char *req_bytes(const struct link *l, const struct req *r)
{
    if (__builtin_expect(r->off >= l->out_base, 1))
        return buf_start(&l->out) + (r->off - l->out_base);
    return stream_at(l->seg, l->nseg, &l->out, l->out_base, r->off);
}

static void consume_segs(struct link *l, uint64_t end) __attribute__((noinline));

static void consume_segs(struct link *l, uint64_t end)
{
    while (l->nseg && l->seg[0].base + buf_used(&l->seg[0].b) <= end) {
        buf_free(&l->seg[0].b);
        memmove(l->seg, l->seg + 1, --l->nseg * sizeof *l->seg);
    }
    if (l->nseg && end > l->seg[0].base) {
        buf_consume(&l->seg[0].b, (size_t)(end - l->seg[0].base));
        l->seg[0].base = end;
    }
}

/* The stream's bytes before end are done with (answered, or dropped). */
static inline void out_consume(struct link *l, uint64_t end)
{
    if (__builtin_expect(l->nseg != 0, 0)) {
        consume_segs(l, end);
        if (l->nseg)
            return;
    }
    buf_consume(&l->out, (size_t)(end - l->out_base));
    l->out_base = end;
}

void link_out_free(struct link *l)
{
    buf_free(&l->out);
    while (l->nseg > 0)
        buf_free(&l->seg[--l->nseg].b);
}

static void unlink_req(struct link *l, struct req *r)
{
    TAILQ_REMOVE(&l->fifo, r, link_tqe);
    l->nfifo--;
    if (__builtin_expect(r->flags & REQ_SCRIPT, 0))
        l->scripts--;
    r->link = NULL;
}

/* Fail a request that will not be answered; its owner gets the reason
 * and the request's bytes. */
static void fail_req(struct link *l, struct req *r, const char *why)
{
    const char *req = req_bytes(l, r);

    unlink_req(l, r);
    if (r->owner)
        l->pool->cb.on_reply(r, req, NULL, 0, why, l->pool->cb.arg);
    else
        req_release(l->pool->cache, r);
}

/* A request that did not run here goes back to its owner, to run elsewhere. */
static void hand_back(struct link *l, struct req *r, const char *why)
{
    const char *req = req_bytes(l, r);

    unlink_req(l, r);
    l->pool->cb.on_unrun(r, req, why, l->pool->cb.arg);
}

/* The retry rule, for everything a socket that is gone held. A request
 * never written may go again; a written one only if it is a read, once,
 * and retry_reads allows it; a write that may have run gets an error, as
 * does a request nobody waits for. `reconnect`: what goes again stays on
 * this link, copied in order into a fresh output stream (a replica's read
 * goes back to its owner, who sends it to the master); otherwise it all
 * goes back to the owner, and the link is left empty. */
static void settle(struct link *l, const char *why, int reconnect)
{
    struct pool *p = l->pool;
    struct buf out = {0}, old = l->out;
    struct link_seg oldseg[LINK_SEGS];
    unsigned noldseg = l->nseg;
    struct req_fifo keep = TAILQ_HEAD_INITIALIZER(keep), back = TAILQ_HEAD_INITIALIZER(back);
    char msg[320];
    struct req *r;
    unsigned kept = 0;

    if (reconnect)
        snprintf(msg, sizeof msg, "upstream link to %s lost after the request was sent "
                 "(%s); it may or may not have been applied", p->cfg.name, why);
    else
        snprintf(msg, sizeof msg, "the request was sent to %s, which is master no more "
                 "(%s); it may or may not have been applied", p->cfg.name, why);
    while ((r = TAILQ_FIRST(&l->fifo)) != NULL) {
        int written = r->off + r->len <= l->sent;
        int again = r->owner && (!written || ((r->flags & REQ_READONLY) && p->cfg.retry_reads &&
                                             !(r->flags & REQ_RETRIED)));
        if (r->flags & REQ_STREAMED) {   /* its reply was cut mid-way: never again */
            if (r->owner)
                p->st.failed_after_send++;
            fail_req(l, r, msg);
            continue;
        }
        if (reconnect && r->owner && (r->flags & REQ_REROUTE)) {
            TAILQ_REMOVE(&l->fifo, r, link_tqe);
            TAILQ_INSERT_TAIL(&back, r, link_tqe);
            continue;
        }
        if (!again) {
            if (r->owner)
                p->st.failed_after_send++;
            fail_req(l, r, msg);
            continue;
        }
        /* room in the new stream first: a slot without its bytes there
         * would take another request's reply */
        if (reconnect && buf_reserve(&out, buf_used(&out) + r->len) < 0) {
            fail_req(l, r, "proxy out of memory");
            continue;
        }
        TAILQ_REMOVE(&l->fifo, r, link_tqe);
        /* A retried read gets a fresh wait; a request never sent keeps its
         * own, so queue_timeout bounds it however often the link fails. */
        if (written) {
            r->flags |= REQ_RETRIED;
            r->queued_at = ev_now(p->loop);
            p->st.retried_reads++;
        } else {
            p->st.requeued_unsent++;
        }
        if (!reconnect) {
            TAILQ_INSERT_TAIL(&back, r, link_tqe);
            continue;
        }
        const char *src = req_bytes(l, r);
        r->off = buf_used(&out);
        buf_append(&out, src, r->len);
        TAILQ_INSERT_TAIL(&keep, r, link_tqe);
        kept++;
    }
    /* The link is whole again before any owner hears of it: what they do
     * with a request handed back may touch this very link. */
    uint64_t old_base = l->out_base;
    memcpy(oldseg, l->seg, noldseg * sizeof *oldseg);
    l->nseg = 0;
    l->out = out;
    l->out_base = l->sent = 0;
    TAILQ_CONCAT(&l->fifo, &keep, link_tqe);
    l->nfifo = kept;
    l->scripts = 0;
    TAILQ_FOREACH(r, &l->fifo, link_tqe)
        l->scripts += (r->flags & REQ_SCRIPT) != 0;
    while ((r = TAILQ_FIRST(&back)) != NULL) {
        TAILQ_REMOVE(&back, r, link_tqe);
        r->link = NULL;
        if (!r->owner)                   /* its client left while an earlier one was
                                          * handed back (an error closed it) */
            req_release(p->cache, r);
        else
            p->cb.on_unrun(r, stream_at(oldseg, noldseg, &old, old_base, r->off), why,
                           p->cb.arg);
    }
    buf_free(&old);
    while (noldseg > 0)
        buf_free(&oldseg[--noldseg].b);
}

/* A lease in stream mode that never got ready: the bytes its holder
 * streamed into it (those no request slot covers) go back, in order. No
 * slot of the holder's is before them: stream mode starts only once
 * nothing of the client's is in flight (router.c's stream()). */
static void hand_back_stream(struct link *l, void *lessee)
{
    struct pool *p = l->pool;
    uint64_t at = l->out_base, end = l->out_base + buf_used(&l->out);
    const struct req *r;

    for (r = TAILQ_FIRST(&l->fifo);; r = TAILQ_NEXT(r, link_tqe)) {
        uint64_t to = r ? r->off : end;
        if (to > at)
            p->cb.on_stream_unrun(lessee, buf_start(&l->out) + (at - l->out_base),
                                  (size_t)(to - at), p->cb.arg);
        if (!r)
            break;
        at = r->off + r->len;
    }
}

/* A leased connection that dies takes its server-side state with it
 * (a transaction, WATCH, a database): nothing on it may run elsewhere, so
 * every request on it fails, and the link is gone for good. One that died
 * before it was ready ran none of them: its holder may take them back. */
static void lease_down(struct link *l, const char *why)
{
    struct pool *p = l->pool;
    struct req *r;
    char msg[320];
    int unrun = l->state != LINK_READY, stream = l->lease == LEASE_STREAM;
    void *lessee = l->lessee;

    snprintf(l->last_err, sizeof l->last_err, "%s", why);
    snprintf(msg, sizeof msg, "dedicated connection to %s lost (%s); its "
             "transaction, WATCH or blocking call is gone", p->cfg.name, why);
    close_socket(l);
    ev_timer_stop(p->loop, &l->watchdog);
    l->state = LINK_DOWN;
    l->ahead = 0;
    /* Detached first: its holder forgets it before the errors reach it, so
     * nothing those errors trigger (a close) can touch this link again. */
    if (pool_lease_lost(p, l, why, unrun)) {
        /* its holder waits and tries again: not worth a line each time */
        log_debug("lease %s#%d closed before it was ready: %s", p->cfg.name, l->idx, why);
        if (stream)
            hand_back_stream(l, lessee);
        while ((r = TAILQ_FIRST(&l->fifo)) != NULL) {
            if (r->owner) {
                hand_back(l, r, msg);
            } else {
                unlink_req(l, r);
                req_release(p->cache, r);
            }
        }
        return;
    }
    if (!unrun)
        log_info("lease %s#%d closed: %s", p->cfg.name, l->idx, why);
    else if (strcmp(p->connect_err, why) != 0) {   /* once per cause, as shared links */
        log_warn("lease %s#%d cannot connect: %s", p->cfg.name, l->idx, why);
        snprintf(p->connect_err, sizeof p->connect_err, "%s", why);
    } else
        log_debug("lease %s#%d cannot connect: %s", p->cfg.name, l->idx, why);
    while ((r = TAILQ_FIRST(&l->fifo)) != NULL)
        fail_req(l, r, msg);
}

static void link_down(struct link *l, enum link_loss cause, const char *why)
{
    struct pool *p = l->pool;

    if (link_is_lease(l)) {
        p->st.lost[cause]++;
        lease_down(l, why);
        return;
    }
    int was_ready = l->state == LINK_READY || l->validating;
    double delay;

    p->st.lost[cause]++;
    if (l->validating)
        p->st.validations_failed++;
    l->validating = 0;
    if (cause == LOST_RETIRED) {
        log_info("link %s#%d retired: %s", p->cfg.name, l->idx, why);
        delay = 0;
    } else if (was_ready) {
        log_warn("link %s#%d lost: %s", p->cfg.name, l->idx, why);
        p->st.link_failures++;
        delay = 0;
        l->backoff = BACKOFF_FIRST;
    } else {
        /* once per cause for the node, not once per link and retry */
        if (strcmp(p->connect_err, why) != 0) {
            log_warn("link %s#%d cannot connect: %s", p->cfg.name, l->idx, why);
            snprintf(p->connect_err, sizeof p->connect_err, "%s", why);
        } else {
            log_debug("link %s#%d cannot connect: %s", p->cfg.name, l->idx, why);
        }
        p->st.connect_failures++;
        double cap = p->cfg.connect_timeout / 2 < BACKOFF_MAX ? p->cfg.connect_timeout / 2
                                                               : BACKOFF_MAX;
        delay = l->backoff ? l->backoff : BACKOFF_FIRST;
        if (delay > cap)
            delay = cap;
        l->backoff = delay * 2 > cap ? cap : delay * 2;
    }
    snprintf(l->last_err, sizeof l->last_err, "%s", cause == LOST_RETIRED ? "" : why);
    close_socket(l);
    l->state = LINK_DOWN;
    settle(l, why, 1);
    ev_timer_set(&l->conn_timer, delay, 0);
    ev_timer_start(p->loop, &l->conn_timer);
}

/* Bytes in the output stream, in out or seg[]. */
static inline int has_output(const struct link *l)
{
    return buf_used(&l->out) || l->nseg;
}

static void link_ready(struct link *l)
{
    struct pool *p = l->pool;

    ev_timer_stop(p->loop, &l->conn_timer);
    if (l->validating) {
        l->validating = 0;
        l->state = LINK_READY;
        p->st.validation_wait += ev_now(p->loop) - l->validate_started;
        if (has_output(l))
            pool_mark_dirty(p, l);
        return;
    }
    if (link_is_lease(l) && l->opened_at) {     /* a lease given back, reset */
        l->state = LINK_READY;
        l->last_rx = ev_now(p->loop);
        if (has_output(l))           /* taken while it was being reset */
            pool_mark_dirty(p, l);
        pool_lease_returned(p, l);
        return;
    }
    if (!link_is_lease(l) && l->opened_at)
        p->st.reconnects++;
    l->opened_at = ev_now(p->loop);
    /* Up to 10% either way, so links opened together do not retire together. */
    l->age_limit = p->cfg.max_link_age * (0.9 + 0.2 * (double)(rand_r(&p->seed) % 1000) / 1000);
    if (l->last_err[0])
        log_info("link %s#%d up again (was: %s)", p->cfg.name, l->idx, l->last_err);
    else
        log_debug("link %s#%d ready", p->cfg.name, l->idx);
    l->last_err[0] = '\0';
    p->connect_err[0] = '\0';
    l->state = LINK_READY;
    l->backoff = 0;
    l->last_rx = ev_now(p->loop);
    p->st.links_opened++;
    if (has_output(l))
        pool_mark_dirty(p, l);
    if (l->lease == LEASE_RETURNING)     /* opened ahead of need: idle now */
        pool_lease_returned(p, l);
}

void link_start(struct link *l)
{
    struct pool *p = l->pool;
    char err[128];
    int fd;

    if (net_connect(&p->cfg.addr, &fd, err, sizeof err) < 0) {
        link_down(l, LOST_CONNECT, err);
        return;
    }
    l->fd = fd;
    l->state = LINK_CONNECTING;
    ev_io_set(&l->rio, fd, EV_READ);
    ev_io_set(&l->wio, fd, EV_WRITE);
    ev_io_start(p->loop, &l->wio);
    ev_timer_set(&l->conn_timer, p->cfg.connect_timeout, 0);
    ev_timer_start(p->loop, &l->conn_timer);
}

/* A handshake being built: its commands, one after the other in `b`. */
struct hs_build {
    struct buf   b;
    int          n;
    enum hs_kind kind[8];
    size_t       end[8];
};

static void hs_add(struct hs_build *h, enum hs_kind kind, int argc, const char **argv)
{
    append_command(&h->b, argc, argv);
    h->kind[h->n] = kind;
    h->end[h->n++] = buf_used(&h->b);
}

/* AUTH and SELECT must succeed before any client byte goes out, or a
 * client's write could land unauthenticated or in the wrong database.
 * After RESET (a lease coming back), a connection is as good as new and
 * gets the same. */
static void build_handshake(const struct link *l, int reset, struct hs_build *h)
{
    const struct pool_config *c = &l->pool->cfg;
    char db[16];

    if (reset) {
        const char *rst[] = {"RESET"};
        hs_add(h, HS_RESET, 1, rst);
    }
    if (l->resp3) {
        /* RESP3 from the first reply on (RESET above went back to RESP2) */
        const char *hello[] = {"HELLO", "3", "AUTH", c->username ? c->username : "default",
                               c->password};
        hs_add(h, HS_HELLO, c->password ? 5 : 2, hello);
    } else if (c->password) {
        const char *auth[] = {"AUTH", c->username ? c->username : c->password,
                              c->password};
        hs_add(h, HS_AUTH, c->username ? 3 : 2, auth);
    }
    if (c->database) {
        snprintf(db, sizeof db, "%d", c->database);
        const char *sel[] = {"SELECT", db};
        hs_add(h, HS_SELECT, 2, sel);
    }
    if (c->readonly) {
        const char *ro[] = {"READONLY"};
        hs_add(h, HS_READONLY, 1, ro);
    }
    /* An app's ACL user may not have CLIENT or PING, and each refusal
     * would be an entry in its ACL LOG that the app never caused: its
     * links ask only what every user may (HELLO), and stay unnamed. */
    int app_user = c->auth_final;
    const char *name[] = {"CLIENT", "SETNAME", link_is_lease(l) ? "sidecar-lease"
                                                                 : "sidecar-data"};
    if (!app_user)
        hs_add(h, HS_NAME, 3, name);
    /* A new lease learns its id on the server: CLIENT UNBLOCK and
     * TRACKING REDIRECT name an app connection by the lease serving it. */
    if (link_is_lease(l) && !reset) {
        const char *id[] = {"CLIENT", "ID"}, *hello[] = {"HELLO"};
        if (app_user)
            hs_add(h, HS_ID, 1, hello);
        else
            hs_add(h, HS_ID, 2, id);
    }
    /* A new lease asks whether the server is loading its data (the
     * commands above run then, MULTI and BLPOP would not): its holder's
     * requests then wait for it as a shared link's would. */
    if (link_is_lease(l) && !reset && !app_user) {
        const char *ping[] = {"PING", "sidecar"};   /* told apart in MONITOR */
        hs_add(h, HS_PING, 2, ping);
    }
}

/* Sent before anything else on the socket: what `out` holds waits. */
static void install(struct link *l, struct hs_build *h)
{
    buf_free(&l->hs);
    l->hs = h->b;
    l->hs_total = l->hs_pending = h->n;
    memcpy(l->hs_kind, h->kind, sizeof h->kind);
    l->state = LINK_HANDSHAKE;
}

static void queue_handshake(struct link *l, int reset)
{
    struct hs_build h = {0};

    build_handshake(l, reset, &h);
    install(l, &h);
}

int link_return_ahead(struct link *l)
{
    struct hs_build h = {0};
    struct req *r[8];
    int k;

    if (l->ahead)
        return 0;                        /* one is on its way already */
    build_handshake(l, 1, &h);
    for (k = 0; k < h.n && (r[k] = req_alloc(l->pool->cache)) != NULL; k++)
        ;
    /* all of it or nothing: half a handshake could leave the next holder
     * in the wrong database */
    if (k < h.n || buf_reserve(&l->out, buf_used(&h.b)) < 0) {
        while (k-- > 0)
            req_release(l->pool->cache, r[k]);
        buf_free(&h.b);
        return -1;
    }
    for (int i = 0; i < h.n; i++) {
        size_t from = i ? h.end[i - 1] : 0;
        r[i]->flags = REQ_HANDSHAKE | (unsigned)h.kind[i] << REQ_HS_SHIFT;
        link_send(l, r[i], buf_start(&h.b) + from, h.end[i] - from);
    }
    l->ahead = (unsigned)h.n;
    l->ahead_end = r[h.n - 1]->off + r[h.n - 1]->len;
    buf_free(&h.b);
    return 0;
}

static void start_handshake(struct link *l)
{
    const struct pool_config *c = &l->pool->cfg;

    net_set_nodelay(l->fd);
    net_set_keepalive(l->fd, c->tcp_keepalive, c->tcp_user_timeout_ms);
    queue_handshake(l, 0);
    ev_io_start(l->pool->loop, &l->rio);
}

void link_return(struct link *l)
{
    struct pool *p = l->pool;

    queue_handshake(l, 1);
    ev_timer_set(&l->conn_timer, p->cfg.connect_timeout, 0);
    ev_timer_start(p->loop, &l->conn_timer);
    pool_mark_dirty(p, l);
}

/* A link idle for a while may have been dropped silently on the way (NAT,
 * firewall, server timeout): ask before trusting it with requests. The
 * requests wait behind the PING; if no PONG comes within ping_timeout the
 * link is replaced and they go out, never written, on the new one. */
void link_validate(struct link *l, const char *why)
{
    struct pool *p = l->pool;
    const char *ping[] = {"PING", "sidecar"};  /* told apart in MONITOR */
    const char *hello[] = {"HELLO"};           /* any ACL user may (see build_handshake) */
    struct hs_build h = {0};

    log_debug("link %s#%d validating: %s", p->cfg.name, l->idx, why);
    p->st.validations++;
    if (p->cfg.auth_final)
        hs_add(&h, HS_PING, 1, hello);
    else
        hs_add(&h, HS_PING, 2, ping);
    install(l, &h);
    l->validating = 1;
    l->validate_started = ev_now(p->loop);
    ev_timer_set(&l->conn_timer, p->cfg.ping_timeout, 0);
    ev_timer_start(p->loop, &l->conn_timer);
    pool_mark_dirty(p, l);
}

/* The server refused an app user's credentials: the pool ends, every
 * request on it answered with the server's own line. */
static void auth_refused(struct link *l, const char *p, size_t n, const char *why)
{
    struct pool *pl = l->pool;
    char line[160];
    size_t m = n - 2 < sizeof line - 3 ? n - 2 : sizeof line - 3;

    memcpy(line, p, m);                  /* p lives in l->in, freed by link_down */
    memcpy(line + m, "\r\n", 2);
    link_down(l, LOST_HANDSHAKE, why);
    if (pl->auth_refused[0])             /* one of its last ready links, gone now */
        link_fail_all(l, line, m + 2);
    else
        pool_auth_refused(pl, line, m + 2);
}

static int is_code(const char *p, size_t n, const char *code)
{
    size_t k = strlen(code);

    return n > k && memcmp(p, code, k) == 0 && p[k] == ' ';
}

/* A handshake command's reply: -1, the link gone, if it refused. */
static int judge(struct link *l, enum hs_kind kind, const char *p, size_t n)
{
    struct pool *pl = l->pool;
    char why[200];
    int m = (int)(n - 3 > 120 ? 120 : n - 3);

    if (kind == HS_ID) {                 /* refused by an ACL: unknown, that is all */
        const char *id = p[0] == ':' ? p : memmem(p, n, "$2\r\nid\r\n:", 9);
        l->server_id = !id ? 0 : strtoll(id + (p[0] == ':' ? 1 : 9), NULL, 10);
        return 0;
    }
    if (p[0] != '-')
        return 0;
    /* A new lease's PING: only LOADING matters. An ACL user may lack
     * PING or CLIENT: NOPERM proves the link alive, as BUSY does (a
     * script running: SCRIPT KILL must still find a way in), and the name
     * is only a courtesy. */
    if (kind == HS_PING && ((!l->validating && !is_code(p, n, "-LOADING")) ||
                            is_code(p, n, "-NOPERM") || is_code(p, n, "-BUSY")))
        return 0;
    if (kind == HS_NAME) {
        if (!pl->name_refused)
            log_warn("node %s refuses CLIENT SETNAME to user %s (%.*s): its links stay "
                     "unnamed", pl->cfg.name, pl->cfg.username ? pl->cfg.username : "default",
                     m, p + 1);
        pl->name_refused = 1;
        return 0;
    }
    snprintf(why, sizeof why, "%s refused: %.*s", kind == HS_AUTH ? "AUTH" :
             kind == HS_SELECT ? "SELECT" : kind == HS_RESET ? "RESET" :
             kind == HS_HELLO ? "HELLO 3" : kind == HS_READONLY ? "READONLY" :
             l->validating ? "validation PING" : "PING",
             m, p + 1);
    if ((kind == HS_AUTH || kind == HS_HELLO) && pl->cfg.auth_final &&
        is_code(p, n, "-WRONGPASS")) {
        auth_refused(l, p, n, why);
        return -1;
    }
    if (kind == HS_HELLO && !pl->resp3_refused[0]) {
        snprintf(pl->resp3_refused, sizeof pl->resp3_refused, "%.*s", m, p + 1);
        log_warn("node %s refuses HELLO 3 (%.*s): RESP3 clients get NOPROTO",
                 pl->cfg.name, m, p + 1);
    }
    link_down(l, l->validating ? LOST_VALIDATION : LOST_HANDSHAKE, why);
    return -1;
}

static int handshake_reply(struct link *l, const char *p, size_t n)
{
    enum hs_kind kind = l->hs_kind[l->hs_total - l->hs_pending];

    l->hs_pending--;
    if (judge(l, kind, p, n) < 0)
        return -1;
    if (l->hs_pending == 0)
        link_ready(l);
    return 0;
}

/* One of a lease's return handshake sent ahead: the last one's reply
 * makes the lease idle again (if its holder gave it back meanwhile) and
 * lets what waited behind it go out. */
static int ahead_reply(struct link *l, struct req *r, const char *p, size_t n)
    __attribute__((noinline));

static int ahead_reply(struct link *l, struct req *r, const char *p, size_t n)
{
    uint64_t end = r->off + r->len;

    if (judge(l, (enum hs_kind)(r->flags >> REQ_HS_SHIFT & 7), p, n) < 0)
        return -1;
    unlink_req(l, r);
    req_release(l->pool->cache, r);
    out_consume(l, end);
    if (--l->ahead == 0) {
        if (l->out_base + buf_used(&l->out) > l->sent)
            pool_mark_dirty(l->pool, l);
        pool_lease_returned(l->pool, l);
    }
    return 0;
}

/* Into the round-trip histogram: k round trips of t seconds each (t from
 * last_rx, the time their replies were read). */
static inline void rtt_observe_n(struct pool_stats *st, double t, unsigned k)
{
    st->rtt[pool_rtt_bucket(t)] += k;
    st->rtt_sum += t * k;
}

/* `last`: the end of a reply passed on as it came (on_reply_part). */
static int deliver(struct link *l, const char *p, size_t n, int last)
{
    struct pool *pl = l->pool;
    struct req *r = TAILQ_FIRST(&l->fifo);

    if (!r || r->off + r->len > l->sent) {
        link_down(l, LOST_PROTOCOL, "reply with no request waiting for it");
        return -1;
    }
    if (__builtin_expect(r->flags & REQ_HANDSHAKE, 0))
        return ahead_reply(l, r, p, n);
    if (!(r->flags & REQ_NOTIMEOUT))      /* a blocking call waits for data, not the node */
        rtt_observe_n(&pl->st, l->last_rx - r->queued_at, 1);
    unlink_req(l, r);
    /* A lease's return handshake, queued behind a blocking call, waits for
     * its reply from now, not from when the call went out. */
    struct req *next;
    if (__builtin_expect(r->flags & REQ_NOTIMEOUT, 0) && (next = TAILQ_FIRST(&l->fifo)) &&
        (next->flags & REQ_HANDSHAKE))
        next->queued_at = l->last_rx;
    /* The request's bytes stay until the owner has seen the reply: it may
     * send them elsewhere (a read a replica could not serve). */
    uint64_t end = r->off + r->len;
    if (r->owner && last)
        pl->cb.on_reply_part(r, req_bytes(l, r), p, n, 1, pl->cb.arg);
    else if (r->owner)
        pl->cb.on_reply(r, req_bytes(l, r), p, n, NULL, pl->cb.arg);
    else
        req_release(pl->cache, r);
    out_consume(l, end);
    return 0;
}

/* A reply that cannot be delivered (over max_reply, or for a request
 * nobody waits for any more) is dropped as it arrives instead of buffered
 * whole. Its request is answered with an error at once and replaced at
 * the head of the FIFO by an unowned one, which the frame's end matches.
 * 1 while dropping. */
static int skip_reply(struct link *l) __attribute__((noinline));

static int skip_reply(struct link *l)
{
    struct pool *p = l->pool;
    struct req *r = TAILQ_FIRST(&l->fifo), *o;
    long long known = resp_known(&l->fr);

    if (!l->skipping) {
        if (l->hs_pending || l->lease == LEASE_STREAM || !r || r->off + r->len > l->sent ||
            (r->flags & REQ_HANDSHAKE) || buf_start(&l->in)[0] == '>' ||
            known <= (r->owner ? (long long)p->cfg.max_reply : LINK_KEEP_BUF))
            return 0;
        if (r->owner) {
            if (!(o = req_alloc(p->cache)))
                return 0;                /* then it is buffered, as any other */
            o->off = r->off;
            o->len = r->len;
            o->flags = r->flags & REQ_NOTIMEOUT;
            o->block = r->block;
            o->queued_at = r->queued_at;
            o->link = l;
            TAILQ_INSERT_BEFORE(r, o, link_tqe);
            l->nfifo++;
            unlink_req(l, r);
            char e[200];
            int n = snprintf(e, sizeof e, "-ERR the reply (at least %lld bytes) is over "
                             "max_output_buffer (%zu bytes)\r\n", known, p->cfg.max_reply);
            l->skipping = 1;
            p->cb.on_reply(r, req_bytes(l, o), e, (size_t)n, NULL, p->cb.arg);
            if (!l->skipping)
                return 0;                /* the answer closed the link (a lease let go) */
        }
        log_debug("link %s#%d: dropping a reply of at least %lld bytes as it comes",
                  p->cfg.name, l->idx, known);
        l->skipping = 1;
    }
    buf_consume(&l->in, resp_reply_skip(&l->fr, buf_used(&l->in)));
    return 1;
}

/* A large reply goes to its owner as it comes, if the owner takes it:
 * a bulk or an array (not an error, whose text the owner reads, nor a
 * push) answering the request at the head, on a shared link or a lease
 * not in stream mode. Then what is read of it is passed on and dropped
 * from the input: the first piece at once, later ones once they make
 * LINK_STREAM_BATCH, and the end as it comes. Memory holds that and one
 * read's worth of it, not the whole. */
static void stream_reply(struct link *l) __attribute__((noinline));

static void stream_reply(struct link *l)
{
    struct pool *p = l->pool;
    struct req *r = TAILQ_FIRST(&l->fifo);
    const char *in = buf_start(&l->in);

    if (!l->streaming &&
        (resp_known(&l->fr) < LINK_STREAM_MIN || l->hs_pending || l->lease == LEASE_STREAM ||
         !r || !r->owner || r->off + r->len > l->sent || (r->flags & REQ_HANDSHAKE) ||
         (in[0] != '$' && in[0] != '*')))
        return;                          /* (a small reply in pieces leaves at the first test) */
    size_t n = resp_reply_skippable(&l->fr, buf_used(&l->in));
    if (l->streaming && r->owner && n < LINK_STREAM_BATCH)
        return;                          /* kept for a larger piece, or the end */
    if (!l->streaming) {
        /* set before the call: what it does may close this link (its
         * client closed at its output limit lets its lease go) */
        r->flags |= REQ_STREAMED;
        l->streaming = 1;
        if (!p->cb.on_reply_part(r, req_bytes(l, r), in, n, 0, p->cb.arg)) {
            r->flags &= ~(unsigned)REQ_STREAMED;
            l->streaming = 0;
            return;
        }
        p->st.replies_streamed++;
    } else if (r->owner) {
        p->cb.on_reply_part(r, req_bytes(l, r), in, n, 0, p->cb.arg);
    }
    if (!l->streaming)
        return;                          /* the link closed under the call: r is gone */
    if (!r->owner) {                     /* its client left: the rest is dropped */
        p->st.streams_dropped++;
        l->streaming = 0;
        l->skipping = 1;
    }
    buf_consume(&l->in, resp_reply_skip(&l->fr, buf_used(&l->in)));
}

/* A request whose reply may go through on_replies in owner's run: all of
 * it written, nothing the pool or its owner (run_exclude) treats apart. */
static inline int runs_on(const struct link *l, const struct req *r, const void *owner)
{
    unsigned apart = REQ_HANDSHAKE | REQ_NOTIMEOUT | REQ_STREAMED | l->pool->cb.run_exclude;

    return r && r->owner == owner && !(r->flags & apart) && r->off + r->len <= l->sent;
}

static inline int plain_reply(const char *p)
{
    return p[0] != '-' && p[0] != '!' && p[0] != '>';
}

/* v[0..k), the head of the FIFO, answered by the replies from p (len[i]
 * bytes each): off the FIFO as deliver() takes them (the owner may send
 * more meanwhile), timed (a batch handed over at one time, at once), to
 * the owner, and their bytes let go. */
static inline __attribute__((always_inline)) void hand_over(struct link *l, struct req **v,
                                                            const char **req,
                                                            const size_t *len, unsigned k,
                                                            const char *p)
{
    struct pool *pl = l->pool;
    uint64_t end = v[k - 1]->off + v[k - 1]->len;    /* v may be freed by the call */
    ev_tstamp t0 = v[0]->queued_at;
    unsigned same = 0;

    for (unsigned i = 0; i < k; i++) {
        if (v[i]->queued_at != t0) {
            rtt_observe_n(&pl->st, l->last_rx - t0, same);
            t0 = v[i]->queued_at;
            same = 0;
        }
        same++;
        req[i] = req_bytes(l, v[i]);
        unlink_req(l, v[i]);
    }
    rtt_observe_n(&pl->st, l->last_rx - t0, same);
    pl->cb.on_replies(v, req, len, k, p, pl->cb.arg);
    out_consume(l, end);
}

/* The replies after the first (len0 bytes from p, of the n read) for the
 * requests after `first` of the same owner, framed and handed over with
 * it. Returns the bytes they all took, or 0 when none follows (the first
 * goes alone then). A reply framed but not joining the run is framed again
 * by the caller; one not all read yet keeps its framer's state, which
 * holds as the caller goes on from the bytes this run leaves. */
__attribute__((noinline))
static size_t deliver_run(struct link *l, struct req *first, const char *p, size_t n,
                          size_t len0)
{
    struct req *v[LINK_RUN_MAX], *r = first;
    const char *req[LINK_RUN_MAX];
    size_t len[LINK_RUN_MAX], at = len0;
    unsigned k = 1;

    v[0] = first;
    len[0] = len0;
    while (k < LINK_RUN_MAX && at < n && runs_on(l, r = TAILQ_NEXT(r, link_tqe), first->owner)) {
        int rc = resp_frame_reply(&l->fr, p + at, n - at, &reply_limits);
        if (rc != RESP_DONE) {
            if (rc != RESP_MORE)
                resp_framer_reset(&l->fr);    /* the caller meets the error afresh */
            break;
        }
        if (!plain_reply(p + at))
            break;
        v[k] = r;
        len[k++] = l->fr.fr.len;
        at += l->fr.fr.len;
    }
    if (k < 2)
        return 0;
    hand_over(l, v, req, len, k, p);
    return at;
}

/* A plain reply (p, len of the n bytes read) for the request at the head
 * of the FIFO: through on_replies, with the replies after it for the same
 * owner if there are any (deliver_run), or alone: the common reply's
 * short way. Returns the bytes taken, or 0 when the request is one the
 * pool or its owner treats apart (deliver's way then). */
static inline size_t deliver_plain(struct link *l, const char *p, size_t n, size_t len)
{
    struct req *r = TAILQ_FIRST(&l->fifo), *next;
    const char *req;
    size_t run;

    if (!r || !r->owner || !runs_on(l, r, r->owner))
        return 0;
    if (len < n && (next = TAILQ_NEXT(r, link_tqe)) && next->owner == r->owner &&
        (run = deliver_run(l, r, p, n, len)) != 0)
        return run;
    hand_over(l, &r, &req, &len, 1, p);
    return len;
}

static void process_replies(struct link *l)
{
    while (buf_used(&l->in)) {
        int rc = resp_frame_reply(&l->fr, buf_start(&l->in), buf_used(&l->in),
                                  &reply_limits);
        if (rc == RESP_MORE) {
            if (l->streaming || !skip_reply(l))
                stream_reply(l);
            break;
        }
        if (rc == RESP_ERR) {
            char why[128];
            snprintf(why, sizeof why, "bad reply from server: %s", l->fr.err);
            link_down(l, LOST_PROTOCOL, why);
            return;
        }
        size_t len = l->fr.fr.len, run;
        const char *p = buf_start(&l->in);
        /* the end of a dropped reply goes to its unowned request, the end
         * of one passed on as it came to its owner */
        int skipped = l->skipping, streamed = l->streaming;
        l->skipping = l->streaming = 0;
        if (skipped || streamed) {
            if (deliver(l, p, len, streamed) < 0)
                return;
        } else if (l->lease == LEASE_STREAM && !l->hs_pending && !l->ahead) {
            l->pool->cb.on_stream(l->lessee, p, len, l->pool->cb.arg);
        } else if (p[0] == '>') {
            /* A RESP3 push answers no request: matched to one, it would
             * shift every later reply onto the wrong client. On a lease it
             * is its holder's, in order with its replies. */
            if (l->lease == LEASE_HELD) {
                l->pool->cb.on_stream(l->lessee, p, len, l->pool->cb.arg);
            } else {
                l->pool->st.pushes_dropped++;
                log_debug("link %s#%d: push frame of %zu bytes dropped", l->pool->cfg.name,
                          l->idx, len);
            }
        } else if (l->hs_pending) {
            if (handshake_reply(l, p, len) < 0)
                return;
        } else if (plain_reply(p) && (run = deliver_plain(l, p, buf_used(&l->in), len)) != 0) {
            len = run;
        } else if (deliver(l, p, len, 0) < 0) {
            return;
        }
        buf_consume(&l->in, len);
    }
    buf_shrink(&l->in, LINK_KEEP_BUF);
    /* A shared link keeps its output's pages while it is busy (a run of
     * large values would fault fresh ones in for every batch): link_tend
     * gives them back once it is idle. */
    if (l->nfifo == 0 && (link_is_lease(l) || l->out.cap > LINK_HOLD_OUT))
        buf_shrink(&l->out, LINK_KEEP_BUF);
}

/* Over TLS: records decrypted into l->in until the socket has no more
 * (level-triggered: a record OpenSSL still holds is read now, not at the
 * next readiness, which may never come). As read(): >0, 0 closed, -1 with
 * errno (EAGAIN: wait), why set for a failure. */
static ssize_t tls_read_some(struct link *l, char *why, size_t whylen)
{
    ssize_t got = 0;
    int want = 0;

    l->tls_rd_wants_write = 0;
    for (;;) {
        if (buf_reserve(&l->in, LINK_READ_CHUNK) < 0) {
            errno = ENOMEM;
            snprintf(why, whylen, "%s", strerror(errno));
            return -1;
        }
        ssize_t n = tls_read(l->tls, l->in.data + l->in.len, l->in.cap - l->in.len, &want,
                             why, whylen);
        if (n > 0) {
            l->in.len += (size_t)n;
            got += n;
            if (got >= 4 * LINK_READ_CHUNK)   /* the rest after these are handled */
                return got;
            continue;
        }
        if (n < 0 && want) {
            if (want == TLS_WANT_WRITE) {     /* a key update to send first */
                l->tls_rd_wants_write = 1;
                ev_io_start(l->pool->loop, &l->wio);
            }
            if (got)
                return got;
            errno = EAGAIN;
            return -1;
        }
        if (got)                  /* the close (or failure) is seen on the next read */
            return got;
        if (n == 0)
            snprintf(why, whylen, "closed by the server");
        return n;
    }
}

static void link_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct link *l = w->data;
    char why[200];
    (void)revents;

    if (__builtin_expect(l->tls != NULL, 0)) {
        if (l->state == LINK_TLS) {
            tls_step(l);
            return;
        }
        ssize_t n = tls_read_some(l, why, sizeof why);
        if (n > 0) {
            l->last_rx = ev_now(loop);
            l->pool->st.bytes_in += (uint64_t)n;
            if (l->tls_wr_wants_read) {
                l->tls_wr_wants_read = 0;
                pool_mark_dirty(l->pool, l);
            }
            process_replies(l);
            /* a link still up whose TLS layer holds more: once more, now */
            if (l->tls && n >= 4 * LINK_READ_CHUNK)
                ev_feed_event(loop, &l->rio, EV_READ);
            return;
        }
        if (n < 0 && errno == EAGAIN)
            return;
        link_down(l, n == 0 ? LOST_CLOSED : LOST_TLS, why);
        return;
    }
    /* a reply passed on as it comes: as much at a time as has come */
    ssize_t n = buf_read_fd(&l->in, l->fd, l->streaming ? LINK_STREAM_CHUNK : LINK_READ_CHUNK);
    if (n > 0) {
        l->last_rx = ev_now(loop);
        l->pool->st.bytes_in += (uint64_t)n;
        process_replies(l);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    snprintf(why, sizeof why, "%s", n == 0 ? "closed by the server" : strerror(errno));
    link_down(l, n == 0 ? LOST_CLOSED : LOST_ERROR, why);
}

/* A plain write()'s or writev()'s result as link_write returns it: EINTR
 * is a wait (EAGAIN), another failure gets its why. */
static inline ssize_t plain_written(ssize_t w, char *why, size_t whylen)
{
    if (w < 0 && errno != EAGAIN && errno != EINTR)
        snprintf(why, whylen, "%s", strerror(errno));
    else if (w < 0)
        errno = EAGAIN;
    return w;
}

/* Bytes out, as write(): over TLS, record after record until all are out
 * or the socket is full. -1 with errno EAGAIN is a wait; any other -1 a
 * failure, why set. */
static ssize_t link_write(struct link *l, const char *p, size_t n, char *why, size_t whylen)
{
    if (__builtin_expect(l->tls == NULL, 1))
        return plain_written(write(l->fd, p, n), why, whylen);
    size_t done = 0;
    int want = 0;
    l->tls_wr_wants_read = 0;
    while (done < n) {
        ssize_t w = tls_write(l->tls, p + done, n - done, &want, why, whylen);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (want == TLS_WANT_READ)            /* rio is on: the next read flushes */
            l->tls_wr_wants_read = 1;
        if (want)
            break;
        return -1;
    }
    if (done)
        return (ssize_t)done;
    errno = EAGAIN;
    return -1;
}

static void write_handshake(struct link *l)
{
    char why[200];
    ssize_t n = link_write(l, buf_start(&l->hs), buf_used(&l->hs), why, sizeof why);

    if (n > 0)
        buf_consume(&l->hs, (size_t)n);
    if (n < 0 && errno != EAGAIN) {
        link_down(l, l->tls ? LOST_TLS : LOST_ERROR, why);
        return;
    }
    if (buf_used(&l->hs) == 0 || l->tls_wr_wants_read)   /* that read flushes it */
        ev_io_stop(l->pool->loop, &l->wio);
    else
        ev_io_start(l->pool->loop, &l->wio);
}

/* The TLS handshake, a step each time the socket is ready the way it
 * asked; then the Redis handshake as on a plain socket. */
static void tls_step(struct link *l)
{
    struct pool *p = l->pool;
    char err[200];
    int rc = tls_handshake(l->tls, err, sizeof err);

    if (rc < 0) {
        if (p->cfg.tls_stats)
            p->cfg.tls_stats->failed++;
        link_down(l, LOST_TLS, err);
        return;
    }
    if (rc == TLS_WANT_READ) {
        ev_io_stop(p->loop, &l->wio);
        ev_io_start(p->loop, &l->rio);
        return;
    }
    if (rc == TLS_WANT_WRITE) {
        ev_io_stop(p->loop, &l->rio);
        ev_io_start(p->loop, &l->wio);
        return;
    }
    if (p->cfg.tls_stats) {
        if (tls_resumed(l->tls))
            p->cfg.tls_stats->resumed++;
        else
            p->cfg.tls_stats->full++;
    }
    ev_io_stop(p->loop, &l->wio);
    start_handshake(l);
    write_handshake(l);
}

static void link_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct link *l = w->data;
    char err[128];
    (void)loop;
    (void)revents;

    switch (l->state) {
    case LINK_CONNECTING:
        if (net_connect_result(l->fd, err, sizeof err) < 0) {
            link_down(l, LOST_CONNECT, err);
            return;
        }
        if (l->pool->cfg.tls) {
            if (!(l->tls = tls_conn_new(l->pool->cfg.tls, l->fd, l->pool->cfg.tls_name
                                        ? l->pool->cfg.tls_name : l->pool->host,
                                        l->pool->cfg.tls_resume))) {
                link_down(l, LOST_TLS, "TLS: out of memory");
                return;
            }
            l->state = LINK_TLS;
            tls_step(l);
            return;
        }
        start_handshake(l);
        write_handshake(l);
        break;
    case LINK_TLS:
        tls_step(l);
        break;
    case LINK_HANDSHAKE:
        write_handshake(l);
        break;
    case LINK_READY:
        if (l->tls_rd_wants_write) {    /* a TLS read could not finish */
            link_rd_cb(loop, &l->rio, EV_READ);
            if (l->state != LINK_READY)
                return;
        }
        pool_mark_dirty(l->pool, l);    /* the flush step writes it, once */
        break;
    case LINK_DOWN:
        ev_io_stop(loop, w);
        break;
    }
}

static void link_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct link *l = w->data;
    (void)loop;
    (void)revents;

    if (l->state == LINK_DOWN) {
        link_start(l);
        return;
    }
    /* a CLIENT PAUSE or DEBUG SLEEP holds the server's answers: wait for them */
    ev_tstamp quiet = l->pool->quiet_until - ev_now(loop);
    if (quiet > 0) {
        ev_timer_set(w, quiet + (l->validating ? l->pool->cfg.ping_timeout
                                               : l->pool->cfg.connect_timeout), 0);
        ev_timer_start(loop, w);
        return;
    }
    if (l->state == LINK_CONNECTING)
        link_down(l, LOST_CONNECT, "connect timeout");
    else if (l->state == LINK_TLS) {
        if (l->pool->cfg.tls_stats)
            l->pool->cfg.tls_stats->failed++;
        link_down(l, LOST_TLS, "TLS: no handshake within connect_timeout (does the server "
                  "speak TLS?)");
    }
    else if (l->validating)
        link_down(l, LOST_VALIDATION, "no reply to the validation PING within ping_timeout");
    else if (l->state == LINK_HANDSHAKE)
        link_down(l, LOST_HANDSHAKE, "no reply to the connection handshake");
}

/* Requests waiting for a socket give up after queue_timeout. On a ready
 * socket, the server may be silent for reply_timeout while a reply is
 * awaited: a link busy with other replies (a deep pipeline of large ones),
 * or whose server is still taking in the awaited request (a large one),
 * is slow, not dead. RESP has no request ids, so a late reply costs the
 * whole link. */
static void link_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct link *l = w->data;
    struct pool *p = l->pool;
    ev_tstamp now = ev_now(loop);
    struct req *r;
    (void)revents;

    if (l->state == LINK_READY) {
        r = TAILQ_FIRST(&l->fifo);
        /* A blocking call may wait as long as it asked to (r->block is 0
         * for the others, INFINITY for ever). */
        ev_tstamp since = r && r->queued_at > l->last_rx ? r->queued_at : l->last_rx;
        if (since < l->last_tx)          /* still taking in the awaited request */
            since = l->last_tx;
        if (since < p->quiet_until)      /* a CLIENT PAUSE holds the server's replies */
            since = p->quiet_until;
        if (r && now - since > p->cfg.reply_timeout + r->block) {
            p->st.reply_timeouts++;
            link_down(l, LOST_REPLY_TIMEOUT, "no reply within reply_timeout");
        }
    } else if (!l->validating && now >= p->quiet_until) {   /* validation has its own deadline */
        char why[320];
        snprintf(why, sizeof why, "upstream %s unavailable: %s", p->cfg.name,
                 l->last_err[0] ? l->last_err : "still connecting");
        while ((r = TAILQ_FIRST(&l->fifo)) != NULL &&
               now - (r->queued_at > p->quiet_until ? r->queued_at : p->quiet_until) >=
               p->cfg.queue_timeout) {
            uint64_t end = r->off + r->len;
            l->ahead -= (r->flags & REQ_HANDSHAKE) != 0;   /* a lease's, sent ahead */
            p->st.failed_unavailable++;
            /* a replica's read goes to the master instead */
            if (r->owner && (r->flags & REQ_REROUTE))
                hand_back(l, r, why);
            else
                fail_req(l, r, why);
            out_consume(l, end);
            if (l->sent < end)
                l->sent = end;
        }
    }
    if (CHECKS) {
        unsigned n = 0;
        TAILQ_FOREACH(r, &l->fifo, link_tqe)
            n++;
        unsigned k = 0;
        TAILQ_FOREACH(r, &l->fifo, link_tqe)
            k += (r->flags & REQ_SCRIPT) != 0;
        assert(n == l->nfifo && l->ahead <= l->nfifo && k == l->scripts);
    }
    if (l->nfifo == 0)
        ev_timer_stop(loop, w);
}

/* Bytes this very link may hold (a read sent back to the node that
 * refused it, now the master): copied aside first, as growing the buffer
 * may move them. */
int link_resend(struct link *l, struct req *r, const char *p, size_t n)
{
    if (l->out.data && p >= l->out.data && p < l->out.data + l->out.cap) {
        char *copy = malloc(n);
        int rc = copy ? link_send(l, r, memcpy(copy, p, n), n) : -1;
        free(copy);
        return rc;
    }
    return link_send(l, r, p, n);
}

/* r on l's FIFO: its n bytes at offset off of the link's output stream,
 * handed over now. */
static inline __attribute__((always_inline)) void enqueue(struct link *l, struct req *r,
                                                          uint64_t off, size_t n, ev_tstamp now)
{
    r->link = l;
    r->off = off;
    r->len = n;
    r->queued_at = now;
    TAILQ_INSERT_TAIL(&l->fifo, r, link_tqe);
    l->nfifo++;
    if (__builtin_expect(r->flags & REQ_SCRIPT, 0))
        l->scripts++;
    l->pool->st.requests_sent++;
}

/* l has requests to write and replies to wait for: the flush step writes
 * it, its watchdog times the replies. */
static inline __attribute__((always_inline)) void link_busy(struct link *l)
{
    struct pool *pl = l->pool;

    if (!ev_is_active(&l->watchdog)) {
        double t = pl->cfg.connect_timeout < pl->cfg.reply_timeout
                   ? pl->cfg.connect_timeout : pl->cfg.reply_timeout;
        t /= 10;
        t = t < 0.01 ? 0.01 : t > 0.1 ? 0.1 : t;
        ev_timer_set(&l->watchdog, t, t);
        ev_timer_start(pl->loop, &l->watchdog);
    }
    if (l->state == LINK_READY)
        pool_mark_dirty(pl, l);
}

int link_batch_add(struct link_batch *b, struct link *l, struct req *r, const char *p,
                   size_t n)
{
    int first = b->l != l || b->from + b->len != p;

    if (first) {
        link_batch_end(b);
        b->l = l;
        b->from = p;
    }
    /* room for the batch so far: link_batch_end cannot fail */
    if (buf_reserve(&l->out, b->len + n) < 0)
        return -1;
    enqueue(l, r, l->out_base + buf_used(&l->out) + b->len, n, ev_now(l->pool->loop));
    b->len += n;
    if (first)
        link_busy(l);
    return 0;
}

void link_batch_copy(struct link_batch *b)
{
    struct buf *out = &b->l->out;

    memcpy(out->data + out->len, b->from, b->len);
    out->len += b->len;
}

/* The request whose bytes, n of them at stream offset off, end the
 * stream, on the FIFO: after a validation PING if the link was idle too
 * long. */
static inline __attribute__((always_inline)) void queue_last(struct link *l, struct req *r,
                                                             uint64_t off, size_t n)
{
    struct pool *pl = l->pool;
    ev_tstamp now = ev_now(pl->loop);

    /* Never inside a lease: a PING in a MULTI would be queued with it. */
    if (l->state == LINK_READY && !link_is_lease(l) && l->nfifo == 0 &&
        pl->cfg.validate_after > 0 && now - l->last_rx > pl->cfg.validate_after &&
        now >= pl->quiet_until)
        link_validate(l, "idle before use");
    enqueue(l, r, off, n, now);
    link_busy(l);
}

int link_send(struct link *l, struct req *r, const char *p, size_t n)
{
    /* The bytes first: a slot on the FIFO without them would take
     * another request's reply. */
    if (buf_append(&l->out, p, n) < 0)
        return -1;
    queue_last(l, r, l->out_base + buf_used(&l->out) - n, n);
    return 0;
}

int link_send_buf(struct link *l, struct req *r, struct buf *b)
{
    size_t n = buf_used(b);

    /* the pool's setting, not l->tls: a TLS link is plaintext while down
     * or connecting; two segments at most: out's bytes, then the buffer */
    if (l->pool->cfg.tls || link_is_lease(l) || l->nseg + 2 > LINK_SEGS)
        return 1;
    if (buf_used(&l->out)) {               /* what is before it stays before it */
        l->seg[l->nseg++] = (struct link_seg){l->out, l->out_base};
        l->out_base += buf_used(&l->out);
        l->out = (struct buf){0};
    }
    l->seg[l->nseg++] = (struct link_seg){*b, l->out_base};
    *b = (struct buf){0};
    l->out_base += n;
    l->pool->st.requests_unbuffered++;
    queue_last(l, r, l->out_base - n, n);
    return 0;
}

/* w bytes of the stream written. last_tx: when the request whose reply
 * comes next was still being taken in (its last byte, or a later part of
 * it, written then); other requests' bytes going out say nothing of a
 * server that may have stopped reading them. */
static inline void wrote(struct link *l, ssize_t w)
{
    const struct req *h = TAILQ_FIRST(&l->fifo);

    if (w <= 0)
        return;
    if (h && l->sent < h->off + h->len)
        l->last_tx = ev_now(l->pool->loop);
    l->sent += (uint64_t)w;
    l->pool->st.bytes_out += (uint64_t)w;
}

/* What is unsent of seg[] and out, in one writev (plaintext, not a
 * lease: link_send_buf); *n: how much that is. As link_write returns. */
static ssize_t write_segs(struct link *l, size_t *n, char *why, size_t whylen)
    __attribute__((noinline));

static ssize_t write_segs(struct link *l, size_t *n, char *why, size_t whylen)
{
    struct iovec iov[LINK_SEGS + 1];
    int k = 0;
    uint64_t at = l->sent;

    if (CHECKS)
        assert(l->nseg > 0 && !l->tls && !l->ahead);
    *n = 0;
    for (unsigned i = 0; i < l->nseg; i++) {
        uint64_t end = l->seg[i].base + buf_used(&l->seg[i].b);
        if (at < end) {
            iov[k].iov_base = buf_start(&l->seg[i].b) + (at - l->seg[i].base);
            iov[k].iov_len = (size_t)(end - at);
            *n += iov[k++].iov_len;
            at = end;
        }
    }
    if (buf_used(&l->out) > at - l->out_base) {
        iov[k].iov_base = buf_start(&l->out) + (at - l->out_base);
        iov[k].iov_len = buf_used(&l->out) - (size_t)(at - l->out_base);
        *n += iov[k++].iov_len;
    }
    return plain_written(writev(l->fd, iov, k), why, whylen);
}

void link_flush(struct link *l)
{
    struct ev_loop *loop = l->pool->loop;
    char why[200];
    size_t n;
    ssize_t w;

    if (l->state == LINK_HANDSHAKE && buf_used(&l->hs)) {
        write_handshake(l);
        return;
    }
    if (l->state != LINK_READY)
        return;
    if (__builtin_expect(l->sent < l->out_base, 0)) {     /* unsent bytes in seg[] */
        w = write_segs(l, &n, why, sizeof why);
    } else {
        size_t from = (size_t)(l->sent - l->out_base);
        n = buf_used(&l->out) - from;
        if (__builtin_expect(l->ahead != 0, 0) && l->ahead_end - l->sent < n)
            n = (size_t)(l->ahead_end - l->sent);   /* the rest waits for its replies */
        if (n == 0) {
            if (!l->tls_rd_wants_write)
                ev_io_stop(loop, &l->wio);
            return;
        }
        w = link_write(l, buf_start(&l->out) + from, n, why, sizeof why);
    }
    if (w < 0 && errno != EAGAIN) {
        link_down(l, l->tls ? LOST_TLS : LOST_ERROR, why);
        return;
    }
    wrote(l, w);
    /* a stream lease's: no slot keeps these, gone once written */
    if (w > 0 && l->lease == LEASE_STREAM && !l->ahead) {
        buf_consume(&l->out, (size_t)w);
        l->out_base += (uint64_t)w;
    }
    /* a TLS write that waits for a read is flushed again by that read */
    if (w == (ssize_t)n || l->tls_wr_wants_read) {
        if (!l->tls_rd_wants_write)
            ev_io_stop(loop, &l->wio);
    } else {
        ev_io_start(loop, &l->wio);
    }
}

void link_stop(struct link *l)
{
    struct req *r;

    close_socket(l);
    ev_timer_stop(l->pool->loop, &l->watchdog);
    while ((r = TAILQ_FIRST(&l->fifo)) != NULL)
        fail_req(l, r, "proxy is shutting down");
    link_out_free(l);
    l->state = LINK_DOWN;
    l->ahead = 0;
}

void link_fail_all(struct link *l, const char *reply, size_t n)
{
    struct pool *p = l->pool;
    struct req *r;

    close_socket(l);
    ev_timer_stop(p->loop, &l->watchdog);
    l->state = LINK_DOWN;
    l->validating = 0;
    l->ahead = 0;
    while ((r = TAILQ_FIRST(&l->fifo)) != NULL) {
        const char *req = req_bytes(l, r);
        unlink_req(l, r);
        if (r->owner && !(r->flags & REQ_HANDSHAKE))
            p->cb.on_reply(r, req, reply, n, NULL, p->cb.arg);
        else
            req_release(p->cache, r);
    }
    link_out_free(l);
    l->out_base = l->sent = 0;
}

void link_evacuate(struct link *l, const char *why)
{
    struct pool *p = l->pool;

    if (link_is_lease(l)) {
        lease_down(l, why);
        return;
    }
    settle(l, why, 0);
    ev_timer_stop(p->loop, &l->watchdog);
    if (l->dirty) {
        TAILQ_REMOVE(&p->dirty, l, dirty_tqe);
        l->dirty = 0;
    }
    if (l->state == LINK_DOWN)
        return;                  /* its reconnect is already on the way */
    log_info("link %s#%d closed: %s", p->cfg.name, l->idx, why);
    l->validating = 0;
    close_socket(l);
    l->state = LINK_DOWN;
    ev_timer_set(&l->conn_timer, BACKOFF_FIRST, 0);
    ev_timer_start(p->loop, &l->conn_timer);
}

void link_tend(struct link *l, ev_tstamp now)
{
    struct pool *p = l->pool;

    if (l->nfifo == 0)
        buf_shrink(&l->out, LINK_KEEP_BUF);
    if (l->state != LINK_READY || l->nfifo != 0 || now < p->quiet_until)
        return;
    if (p->cfg.max_link_age > 0 && now - l->opened_at > l->age_limit) {
        char why[64];
        snprintf(why, sizeof why, "%.0fs old (max_link_age)", now - l->opened_at);
        link_down(l, LOST_RETIRED, why);
        return;
    }
    if (p->cfg.ping_interval > 0 && now - l->last_rx >= p->cfg.ping_interval)
        link_validate(l, "idle, background ping");
}

void link_retry_now(struct link *l)
{
    if (l->state == LINK_DOWN && ev_is_active(&l->conn_timer)) {
        ev_timer_stop(l->pool->loop, &l->conn_timer);
        ev_timer_set(&l->conn_timer, 0, 0);
        ev_timer_start(l->pool->loop, &l->conn_timer);
    }
}

int link_stream_send(struct link *l, const char *p, size_t n)
{
    if (buf_append(&l->out, p, n) < 0)
        return -1;
    l->pool->st.requests_sent++;
    if (l->state == LINK_READY)
        pool_mark_dirty(l->pool, l);
    return 0;
}

int link_send_unowned(struct link *l, const char *p, size_t n)
{
    struct req *r = req_alloc(l->pool->cache);

    if (!r)
        return -1;
    if (link_send(l, r, p, n) < 0) {
        req_release(l->pool->cache, r);
        return -1;
    }
    return 0;
}
