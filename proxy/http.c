/* The HTTP endpoint on [admin] metrics_listen, served from the same
 * loop: GET /metrics (Prometheus), GET /healthz (200 while the proxy
 * serves and its master is reachable, 503 otherwise); anything else is
 * 404. One request per connection, bounded in size (HTTP_MAX_REQUEST)
 * and time (HTTP_DEADLINE: reading the request and writing the answer)
 * and in how many are open at once: a slow or hostile client costs one
 * small buffer for a moment, never the loop. */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/httpreq.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "cluster.h"
#include "metrics.h"

#define HTTP_MAX_REQUEST 8192
#define HTTP_DEADLINE    2.0
#define HTTP_MAX_CONNS   64

struct http_conn {
    struct sidecar *sc;
    TAILQ_ENTRY(http_conn) tqe;   /* sc->http_open */
    int             fd;
    ev_io           io;
    ev_timer        deadline;
    struct buf      out;          /* the answer, while the socket takes it */
    size_t          len;
    char            req[HTTP_MAX_REQUEST];
};

static void conn_close(struct http_conn *h)
{
    ev_io_stop(h->sc->loop, &h->io);
    ev_timer_stop(h->sc->loop, &h->deadline);
    close(h->fd);
    buf_free(&h->out);
    h->sc->http_conns--;
    TAILQ_REMOVE(&h->sc->http_open, h, tqe);
    free(h);
}

/* Write what the socket takes; close once all is out (or it failed). */
static void write_out(struct http_conn *h)
{
    ssize_t n = buf_write_fd(&h->out, h->fd);

    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        log_debug("http: write: %s", strerror(errno));
        conn_close(h);
    } else if (buf_used(&h->out) == 0) {
        conn_close(h);
    }
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    write_out(w->data);
}

/* The headers and the body, then the socket gets them as it can, within
 * what is left of HTTP_DEADLINE. */
static void respond_with(struct http_conn *h, int status, const char *reason,
                         const char *type, const char *body, size_t len)
{
    if (buf_appendf(&h->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu"
                    "\r\nConnection: close\r\n\r\n", status, reason, type, len) < 0 ||
        buf_append(&h->out, body, len) < 0) {
        conn_close(h);
        return;
    }
    ev_io_stop(h->sc->loop, &h->io);
    ev_io_set(&h->io, h->fd, EV_WRITE);
    ev_set_cb(&h->io, on_write);
    ev_io_start(h->sc->loop, &h->io);
    write_out(h);
}

static void respond(struct http_conn *h, int status, const char *reason, const char *body)
{
    respond_with(h, status, reason, "text/plain", body, strlen(body));
}

static void metrics(struct http_conn *h)
{
    struct buf b = {0};

    metrics_render(h->sc, &b);
    respond_with(h, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", buf_start(&b),
                 buf_used(&b));
    buf_free(&b);
}

static void healthz(struct http_conn *h)
{
    const struct sidecar *sc = h->sc;
    char body[600];

    if (sc->draining)
        snprintf(body, sizeof body, "shutting down\n");
    else if (sc->cl)
        cluster_health(sc, body, sizeof body);
    else if (!sc->master)
        snprintf(body, sizeof body, "no master: %s\n", sc->no_master_why);
    else if (sc->master->pool->down)
        snprintf(body, sizeof body, "master %s down: %s\n", sc->master->pool->cfg.name,
                 sc->master->pool->down_reason);
    else
        snprintf(body, sizeof body, "ok\n");
    if (strcmp(body, "ok\n") == 0)
        respond(h, 200, "OK", body);
    else
        respond(h, 503, "Service Unavailable", body);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_conn *h = w->data;
    (void)loop;
    (void)revents;

    ssize_t n = read(h->fd, h->req + h->len, sizeof h->req - h->len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(h);
        return;
    }
    h->len += (size_t)n;
    const char *path;
    size_t pl;
    switch (httpreq_parse(h->req, h->len, &path, &pl)) {
    case HTTPREQ_MORE:
        if (h->len >= sizeof h->req) {
            log_info("http: request over %d bytes: closed", HTTP_MAX_REQUEST);
            conn_close(h);
        }
        return;
    case HTTPREQ_BAD:
        respond(h, 400, "Bad Request", "bad request\n");
        return;
    case HTTPREQ_GET:
        break;
    }
    if (pl == 8 && memcmp(path, "/healthz", 8) == 0)
        healthz(h);
    else if (pl == 8 && memcmp(path, "/metrics", 8) == 0)
        metrics(h);
    else
        respond(h, 404, "Not Found", "not found\n");
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_conn *h = w->data;
    (void)loop;
    (void)revents;
    log_info("http: no complete exchange within %.0fs: closed", HTTP_DEADLINE);
    conn_close(h);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    for (int i = 0; i < 64; i++) {
        int fd = accept4(sc->http_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct http_conn *h = sc->http_conns < HTTP_MAX_CONNS ? malloc(sizeof *h) : NULL;
        if (!h) {
            close(fd);
            continue;
        }
        h->sc = sc;
        h->fd = fd;
        h->len = 0;
        memset(&h->out, 0, sizeof h->out);
        sc->http_conns++;
        TAILQ_INSERT_TAIL(&sc->http_open, h, tqe);
        ev_io_init(&h->io, on_read, fd, EV_READ);
        ev_timer_init(&h->deadline, on_deadline, HTTP_DEADLINE, 0);
        h->io.data = h->deadline.data = h;
        ev_io_start(loop, &h->io);
        ev_timer_start(loop, &h->deadline);
    }
}

int http_bind(const char *spec, int *fd, char *err, size_t errlen)
{
    struct net_addr a;
    char why[200];

    *fd = -1;
    if (!spec)
        return 0;
    if (net_resolve(spec, &a, why, sizeof why) < 0 ||
        (*fd = net_listen(&a, 64, why, sizeof why)) < 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", spec, why);
        return -1;
    }
    return 0;
}

void http_install(struct sidecar *sc, int fd, const char *spec)
{
    if (sc->http_fd >= 0) {
        ev_io_stop(sc->loop, &sc->http_w);
        close(sc->http_fd);
    }
    sc->http_fd = fd;
    if (fd < 0)
        return;
    ev_io_init(&sc->http_w, on_accept, fd, EV_READ);
    sc->http_w.data = sc;
    ev_io_start(sc->loop, &sc->http_w);
    log_info("metrics on http://%s/metrics, health probe on /healthz", spec);
}

int http_start(struct sidecar *sc, char *err, size_t errlen)
{
    int fd;

    sc->http_fd = -1;
    TAILQ_INIT(&sc->http_open);
    if (http_bind(sc->cfg->metrics_listen, &fd, err, errlen) < 0)
        return -1;
    http_install(sc, fd, sc->cfg->metrics_listen);
    return 0;
}

void http_stop(struct sidecar *sc)
{
    while (!TAILQ_EMPTY(&sc->http_open))
        conn_close(TAILQ_FIRST(&sc->http_open));
    if (sc->http_fd < 0)
        return;
    ev_io_stop(sc->loop, &sc->http_w);
    close(sc->http_fd);
    sc->http_fd = -1;
}
