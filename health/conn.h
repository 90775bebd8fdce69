/* One control-plane connection on the loop, the way the checker and the
 * Sentinel poller open theirs: connecting (over TLS when configured),
 * authenticated if a password is set, named, with the owner's callbacks.
 *
 * hiredis 0.14 has no TLS and its async context owns its socket, so the
 * transport is ours; hiredis still formats the commands and parses the
 * replies (callbacks get its redisReply). Replies come back in order; one
 * owed when the connection goes (closed, failed, or dropped by its owner)
 * reaches its callback as NULL, as hiredis does. */
#ifndef SIDECAR_HEALTH_CONN_H
#define SIDECAR_HEALTH_CONN_H

#include <ev.h>
#include <stddef.h>

struct hconn;
struct tls_ctx;
struct tls_resume;
struct tls_stats;

/* reply: a redisReply, freed after the call; NULL when the connection went
 * before it came. */
typedef void hconn_reply_fn(struct hconn *c, void *reply, void *priv);

struct health_conn_spec {
    const char *host;
    int         port;
    const char *username;        /* NULL: AUTH with the password alone */
    const char *password;        /* NULL: no AUTH */
    const char *name;            /* CLIENT SETNAME */
    void       *data;            /* health_conn_data(), for the callbacks */
    struct tls_ctx    *tls;      /* NULL: plaintext */
    const char        *tls_name; /* SNI and the name checked; NULL: host */
    struct tls_resume *resume;   /* the node's sessions, or NULL */
    struct tls_stats  *stats;    /* the node's handshake counts, or NULL */
    /* The connection failed or was closed (never after health_conn_drop):
     * why, in a line. The owner forgets its pointer; it is freed after. */
    void      (*on_close)(struct hconn *c, const char *why);
    /* The AUTH reply (NULL: not looked at). */
    hconn_reply_fn *on_auth;
};

/* NULL with the reason in err when the connect fails at once. */
struct hconn *health_conn_open(struct ev_loop *loop, const struct health_conn_spec *spec,
                               char *err, size_t errlen);
/* A command in hiredis's format ("ROLE", "SENTINEL master %s"); fn may be
 * NULL. -1 when it could not be queued (no callback will come). */
int health_conn_command(struct hconn *c, hconn_reply_fn *fn, void *priv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same for SUBSCRIBE: fn gets every reply from then on (the
 * confirmations and each message). */
int health_conn_subscribe(struct hconn *c, hconn_reply_fn *fn, void *priv, const char *cmd);
void *health_conn_data(const struct hconn *c);
/* Its socket (for its local port), -1 if none. */
int health_conn_fd(const struct hconn *c);
/* Close *cp if open and clear it first: owed callbacks get NULL (at once,
 * or once the callback running now returns), on_close is not called. */
void health_conn_drop(struct hconn **cp);

#endif
