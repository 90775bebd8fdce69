/* Control-plane connections: our socket (plain or TLS), hiredis's
 * formatter and reader. A reply goes to the oldest owed callback; after
 * SUBSCRIBE every reply goes to its callback. A callback may drop the
 * connection it was called on: the free waits until it returns. */
#include "conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../lib/buf.h"
#include "../lib/net.h"
#include "../lib/tls.h"

#define HCONN_READ_CHUNK 16384

struct owed {
    hconn_reply_fn *fn;
    void           *priv;
    int             sticky;      /* SUBSCRIBE: keeps every later reply */
    struct owed    *next;
};

enum hconn_state { HC_CONNECTING, HC_TLS, HC_OPEN };

struct hconn {
    struct ev_loop   *loop;
    int               fd;
    enum hconn_state  state;
    ev_io             rio, wio;
    struct tls_conn  *tls;
    struct tls_stats *stats;
    struct buf        out;
    redisReader      *reader;
    struct owed      *head, *tail;
    void             *data;
    void            (*on_close)(struct hconn *c, const char *why);
    int               wr_wants_read; /* a TLS write waits for a read */
    int               rd_wants_write; /* a TLS read waits for a write */
    int               in_cb;     /* callbacks running on it */
    int               dead;      /* dropped or closed: freed once they return */
};

/* Owed callbacks hear NULL, oldest first; they may drop or queue on
 * nothing (the owner's pointer is clear by now). */
static void answer_owed(struct hconn *c)
{
    struct owed *o;

    c->in_cb++;
    while ((o = c->head) != NULL) {
        c->head = o->next;
        if (o->fn)
            o->fn(c, NULL, o->priv);
        free(o);
    }
    c->tail = NULL;
    c->in_cb--;
}

static void hconn_free(struct hconn *c)
{
    answer_owed(c);
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    tls_conn_free(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    redisReaderFree(c->reader);
    buf_free(&c->out);
    free(c);
}

/* Gone for a reason the owner did not choose: owed callbacks get NULL,
 * then the owner hears why. */
static void hconn_fail(struct hconn *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->in_cb++;
    answer_owed(c);
    if (c->on_close)
        c->on_close(c, why);
    c->in_cb--;
}

static void update_write(struct hconn *c)
{
    if (c->state != HC_OPEN)
        return;                          /* the connect or the handshake has it */
    if ((buf_used(&c->out) && !c->wr_wants_read) || c->rd_wants_write)
        ev_io_start(c->loop, &c->wio);
    else
        ev_io_stop(c->loop, &c->wio);
}

static void flush_out(struct hconn *c)
{
    char err[160];
    int want = 0;

    c->wr_wants_read = 0;
    while (buf_used(&c->out)) {
        ssize_t n = c->tls ? tls_write(c->tls, buf_start(&c->out), buf_used(&c->out), &want,
                                       err, sizeof err)
                           : write(c->fd, buf_start(&c->out), buf_used(&c->out));
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && (!c->tls || want)) {
            c->wr_wants_read = want == TLS_WANT_READ;
            break;
        }
        if (!c->tls)
            snprintf(err, sizeof err, "%s", strerror(errno));
        hconn_fail(c, err);
        return;
    }
    update_write(c);
}

static void dispatch(struct hconn *c)
{
    void *reply;

    while (!c->dead) {
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            char why[200];
            snprintf(why, sizeof why, "protocol error: %s", c->reader->errstr);
            hconn_fail(c, why);
            return;
        }
        if (!reply)
            return;
        struct owed *o = c->head;
        if (o) {
            c->in_cb++;
            if (o->fn)
                o->fn(c, reply, o->priv);
            c->in_cb--;
            if (!o->sticky && o == c->head) {
                c->head = o->next;
                if (!c->head)
                    c->tail = NULL;
                free(o);
            }
        }
        freeReplyObject(reply);
    }
}

static void read_some(struct hconn *c)
{
    char buf[HCONN_READ_CHUNK], err[160];
    int want = 0;

    c->rd_wants_write = 0;
    for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
        ssize_t n = c->tls ? tls_read(c->tls, buf, sizeof buf, &want, err, sizeof err)
                           : read(c->fd, buf, sizeof buf);
        if (n > 0) {
            if (c->wr_wants_read)
                flush_out(c);
            redisReaderFeed(c->reader, buf, (size_t)n);
            dispatch(c);
            if ((size_t)n < sizeof buf && !c->tls)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && (!c->tls || want)) {
            c->rd_wants_write = want == TLS_WANT_WRITE;
            update_write(c);
            return;
        }
        if (n == 0)
            snprintf(err, sizeof err, "connection closed");
        else if (!c->tls)
            snprintf(err, sizeof err, "%s", strerror(errno));
        hconn_fail(c, err);
        return;
    }
}

static void tls_step(struct hconn *c)
{
    char err[200];
    int rc = tls_handshake(c->tls, err, sizeof err);

    if (rc < 0) {
        if (c->stats)
            c->stats->failed++;
        hconn_fail(c, err);
        return;
    }
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    if (rc == TLS_WANT_READ) {
        ev_io_start(c->loop, &c->rio);
        return;
    }
    if (rc == TLS_WANT_WRITE) {
        ev_io_start(c->loop, &c->wio);
        return;
    }
    if (c->stats) {
        if (tls_resumed(c->tls))
            c->stats->resumed++;
        else
            c->stats->full++;
    }
    c->state = HC_OPEN;
    ev_io_start(c->loop, &c->rio);
    flush_out(c);
}

static void settle_dead(struct hconn *c)
{
    if (c->dead && !c->in_cb)
        hconn_free(c);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct hconn *c = w->data;
    (void)loop;
    (void)revents;

    c->in_cb++;
    if (c->state == HC_TLS)
        tls_step(c);
    else
        read_some(c);
    c->in_cb--;
    settle_dead(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct hconn *c = w->data;
    char err[160];
    (void)loop;
    (void)revents;

    c->in_cb++;
    if (c->state == HC_CONNECTING) {
        if (net_connect_result(c->fd, err, sizeof err) < 0) {
            hconn_fail(c, err);
        } else if (c->tls) {
            c->state = HC_TLS;
            tls_step(c);
        } else {
            c->state = HC_OPEN;
            ev_io_start(loop, &c->rio);
            flush_out(c);
        }
    } else if (c->state == HC_TLS) {
        tls_step(c);
    } else {
        if (c->rd_wants_write) {
            c->rd_wants_write = 0;
            read_some(c);
        }
        if (!c->dead)
            flush_out(c);
    }
    c->in_cb--;
    settle_dead(c);
}

static int queue(struct hconn *c, hconn_reply_fn *fn, void *priv, int sticky,
                 const char *cmd, int len)
{
    struct owed *o = malloc(sizeof *o);

    if (!o || buf_append(&c->out, cmd, (size_t)len) < 0) {
        free(o);
        return -1;
    }
    *o = (struct owed){fn, priv, sticky, NULL};
    if (c->tail)
        c->tail->next = o;
    else
        c->head = o;
    c->tail = o;
    update_write(c);
    return 0;
}

int health_conn_command(struct hconn *c, hconn_reply_fn *fn, void *priv, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;

    if (!c || c->dead)
        return -1;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    int rc = queue(c, fn, priv, 0, cmd, len);
    redisFreeCommand(cmd);
    return rc;
}

int health_conn_subscribe(struct hconn *c, hconn_reply_fn *fn, void *priv, const char *cmd)
{
    char *f = NULL;

    if (!c || c->dead)
        return -1;
    int len = redisFormatCommand(&f, cmd);
    if (len < 0)
        return -1;
    int rc = queue(c, fn, priv, 1, f, len);
    redisFreeCommand(f);
    return rc;
}

struct hconn *health_conn_open(struct ev_loop *loop, const struct health_conn_spec *s,
                               char *err, size_t errlen)
{
    char spec[160];
    struct net_addr addr;
    struct hconn *c;
    int fd;

    snprintf(spec, sizeof spec, strchr(s->host, ':') ? "[%s]:%d" : "%s:%d", s->host, s->port);
    if (net_resolve(spec, &addr, err, errlen) < 0 || net_connect(&addr, &fd, err, errlen) < 0)
        return NULL;
    if (!(c = calloc(1, sizeof *c)) || !(c->reader = redisReaderCreate())) {
        snprintf(err, errlen, "out of memory");
        free(c);
        close(fd);
        return NULL;
    }
    c->loop = loop;
    c->fd = fd;
    c->data = s->data;
    c->on_close = s->on_close;
    c->stats = s->stats;
    if (s->tls && !(c->tls = tls_conn_new(s->tls, fd, s->tls_name ? s->tls_name : s->host,
                                          s->resume))) {
        snprintf(err, errlen, "TLS: out of memory");
        hconn_free(c);
        return NULL;
    }
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(loop, &c->wio);          /* the connect's result */
    if (s->password && s->username)
        health_conn_command(c, s->on_auth, s->data, "AUTH %s %s", s->username, s->password);
    else if (s->password)
        health_conn_command(c, s->on_auth, s->data, "AUTH %s", s->password);
    health_conn_command(c, NULL, NULL, "CLIENT SETNAME %s", s->name);
    return c;
}

void *health_conn_data(const struct hconn *c)
{
    return c->data;
}

int health_conn_fd(const struct hconn *c)
{
    return c && c->state == HC_OPEN ? c->fd : -1;
}

void health_conn_drop(struct hconn **cp)
{
    struct hconn *c = *cp;

    if (!c)
        return;
    *cp = NULL;
    c->on_close = NULL;
    c->dead = 1;
    if (!c->in_cb)
        hconn_free(c);
}
