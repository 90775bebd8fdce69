/* App connections. A client's replies leave in request order: a reply for
 * the oldest slot goes straight to the output buffer, one that overtakes
 * an earlier slot waits in its own slot. Output is written once per loop
 * iteration by client_flush_all(). */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "router.h"

#define CLIENT_READ_CHUNK  (16 * 1024)
#define CLIENT_KEEP_BUF    (64 * 1024)
#define CLIENT_MAX_PIPELINE 10000     /* slots before the proxy stops reading */

static void client_rd_cb(struct ev_loop *loop, ev_io *w, int revents);
static void client_wr_cb(struct ev_loop *loop, ev_io *w, int revents);

static void mark_dirty(struct client *c)
{
    if (!c->dirty && !c->closed) {
        c->dirty = 1;
        TAILQ_INSERT_TAIL(&c->sc->dirty, c, dirty_tqe);
    }
}

void client_new(struct sidecar *sc, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = calloc(1, sizeof *c);

    if (!c) {
        close(fd);
        return;
    }
    c->sc = sc;
    c->id = ++sc->next_client_id;
    c->fd = fd;
    c->created = ev_now(sc->loop);
    c->authed = sc->cfg->password == NULL;
    net_peer_name(peer, c->addr, sizeof c->addr);
    TAILQ_INIT(&c->pending);
    resp_framer_reset(&c->fr);
    c->last_active = c->created;
    if (peer->ss_family != AF_UNIX) {
        net_set_nodelay(fd);
        /* Reaps dead app sockets even when Redis has tcp-keepalive 0. */
        net_set_keepalive(fd, (int)sc->cfg->tcp_keepalive, 0);
    }
    ev_io_init(&c->rio, client_rd_cb, fd, EV_READ);
    ev_io_init(&c->wio, client_wr_cb, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(sc->loop, &c->rio);
    TAILQ_INSERT_TAIL(&sc->clients, c, tqe);
    sc->nclients++;
    sc->st.connections_received++;
    log_debug("client %s id=%llu connected", c->addr, (unsigned long long)c->id);
}

void client_close(struct client *c, const char *why)
{
    struct sidecar *sc = c->sc;
    struct req *r;

    if (c->closed)
        return;
    log_debug("client %s id=%llu closed: %s", c->addr, (unsigned long long)c->id, why);
    c->closed = 1;
    ev_io_stop(sc->loop, &c->rio);
    ev_io_stop(sc->loop, &c->wio);
    close(c->fd);
    /* Slots still upstream become orphans: their links drop the replies. */
    while ((r = TAILQ_FIRST(&c->pending)) != NULL) {
        TAILQ_REMOVE(&c->pending, r, owner_tqe);
        if (r->link)
            r->owner = NULL;
        else
            req_release(&sc->cache, r);
    }
    c->npending = 0;
    if (c->dirty) {
        TAILQ_REMOVE(&sc->dirty, c, dirty_tqe);
        c->dirty = 0;
    }
    TAILQ_REMOVE(&sc->clients, c, tqe);
    TAILQ_INSERT_TAIL(&sc->closed, c, tqe);
    sc->nclients--;
}

static void client_free(struct client *c)
{
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->name);
    free(c);
}

static void emit(struct client *c, const char *p, size_t n)
{
    struct sidecar *sc = c->sc;

    buf_append(&c->out, p, n);
    if (buf_used(&c->out) + c->held > sc->cfg->max_output_buffer) {
        sc->st.err_output_buffer++;
        log_warn("client %s closed: output buffer over %zu bytes (replies not read)",
                 c->addr, sc->cfg->max_output_buffer);
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

void client_on_reply(struct req *r, const char *p, size_t n, const char *err,
                     void *arg)
{
    struct client *c = r->owner;
    char e[512];
    (void)arg;

    if (err) {
        int m = snprintf(e, sizeof e, "-ERR %s\r\n", err);
        p = e;
        n = m < (int)sizeof e ? (size_t)m : sizeof e - 1;
    }
    fill_slot(c, r, p, n);
}

void client_forward(struct client *c, struct link *l, const char *p, size_t n,
                    unsigned req_flags)
{
    struct req *r = req_alloc(&c->sc->cache);

    if (!r) {
        client_reply_error(c, "out of memory");
        return;
    }
    r->owner = c;
    r->flags = req_flags;
    TAILQ_INSERT_TAIL(&c->pending, r, owner_tqe);
    c->npending++;
    c->sc->st.forwarded++;
    link_send(l, r, p, n);
}

void client_reply(struct client *c, const char *p, size_t n)
{
    c->sc->st.local_replies++;
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

void client_reply_and_close(struct client *c, const char *p, size_t n)
{
    ev_io_stop(c->sc->loop, &c->rio);
    if (TAILQ_EMPTY(&c->pending)) {
        c->closing = 1;
        client_reply(c, p, n);
        return;
    }
    client_reply(c, p, n);
    if (!c->closed)
        TAILQ_LAST(&c->pending, req_fifo)->flags |= REQ_CLOSE;
    c->closing = 1;
}

static void protocol_error(struct client *c, const char *why)
{
    char e[160];
    int n = snprintf(e, sizeof e, "-ERR %s\r\n", why);

    c->sc->st.err_protocol++;
    log_info("client %s closed: %s", c->addr, why);
    client_reply_and_close(c, e, (size_t)n);
}

static void dispatch_inline(struct client *c, const char *line, size_t len)
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
        return;
    }
    if (argc == 0)
        return;
    resp_framer_reset(&f);
    if (resp_frame_request(&f, buf_start(&sc->inline_req), buf_used(&sc->inline_req),
                           &sc->req_limits) == RESP_DONE)
        router_dispatch(c, buf_start(&sc->inline_req), &f.fr);
}

/* Frame and dispatch what the input buffer holds, up to the pipeline cap. */
static void client_process(struct client *c)
{
    struct sidecar *sc = c->sc;

    while (!c->closed && !c->closing && buf_used(&c->in)) {
        if (c->npending >= CLIENT_MAX_PIPELINE) {
            c->paused = 1;
            ev_io_stop(sc->loop, &c->rio);
            return;
        }
        int rc = resp_frame_request(&c->fr, buf_start(&c->in), buf_used(&c->in),
                                    &sc->req_limits);
        if (rc == RESP_MORE) {
            if (buf_used(&c->in) > sc->cfg->max_query_buffer) {
                sc->st.err_query_buffer++;
                protocol_error(c, "Protocol error: query buffer over max_query_buffer");
            }
            return;
        }
        if (rc == RESP_ERR) {
            protocol_error(c, c->fr.err);
            return;
        }
        const struct resp_frame *fr = &c->fr.fr;
        size_t len = fr->len;
        sc->st.requests++;
        if (fr->is_inline)
            dispatch_inline(c, buf_start(&c->in), len);
        else if (fr->argc > 0)
            router_dispatch(c, buf_start(&c->in), fr);
        buf_consume(&c->in, len);
    }
    if (!c->closed)
        buf_shrink(&c->in, CLIENT_KEEP_BUF);
}

static void client_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = w->data;
    (void)loop;
    (void)revents;

    ssize_t n = buf_read_fd(&c->in, c->fd, CLIENT_READ_CHUNK);
    if (n > 0) {
        c->last_active = ev_now(loop);
        c->sc->st.bytes_in += (uint64_t)n;
        client_process(c);
    } else if (n == 0) {
        client_close(c, "closed by the client");
    } else if (errno != EAGAIN && errno != EINTR) {
        client_close(c, strerror(errno));
    }
}

static void client_write(struct client *c)
{
    struct sidecar *sc = c->sc;

    if (buf_used(&c->out)) {
        ssize_t n = buf_write_fd(&c->out, c->fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c, strerror(errno));
            return;
        }
        if (n > 0)
            sc->st.bytes_out += (uint64_t)n;
    }
    if (buf_used(&c->out)) {
        ev_io_start(sc->loop, &c->wio);
        return;
    }
    ev_io_stop(sc->loop, &c->wio);
    buf_shrink(&c->out, CLIENT_KEEP_BUF);
    if (c->closing && TAILQ_EMPTY(&c->pending))
        client_close(c, "closed after its last reply");
}

static void client_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = w->data;
    (void)loop;
    (void)revents;
    if (!c->dirty)          /* else the flush step writes it, once */
        client_write(c);
}

void client_flush_all(struct sidecar *sc)
{
    struct client *c;

    while ((c = TAILQ_FIRST(&sc->dirty)) != NULL) {
        TAILQ_REMOVE(&sc->dirty, c, dirty_tqe);
        c->dirty = 0;
        if (c->paused && c->npending < CLIENT_MAX_PIPELINE / 2) {
            c->paused = 0;
            ev_io_start(sc->loop, &c->rio);
            client_process(c);
        }
        if (!c->closed)
            client_write(c);
    }
    while ((c = TAILQ_FIRST(&sc->closed)) != NULL) {
        TAILQ_REMOVE(&sc->closed, c, tqe);
        client_free(c);
    }
}

void client_sweep_idle(struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (c->npending == 0 && now - c->last_active > sc->cfg->idle_timeout) {
            sc->st.idle_closed++;
            log_info("client %s closed: idle for %.0fs (idle_timeout)", c->addr,
                     now - c->last_active);
            client_close(c, "idle timeout");
        }
    }
}

void client_close_all(struct sidecar *sc)
{
    struct client *c;

    while ((c = TAILQ_FIRST(&sc->clients)) != NULL)
        client_close(c, "proxy is shutting down");
    client_flush_all(sc);
}
