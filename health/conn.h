/* One hiredis connection on the loop, the way the checker and the
 * Sentinel poller open theirs: connecting, authenticated if a password is
 * set, named, with the owner's callbacks. Closing one is a call too, so
 * that a callback hiredis makes while it frees the context finds the
 * owner's pointer already cleared. */
#ifndef SIDECAR_HEALTH_CONN_H
#define SIDECAR_HEALTH_CONN_H

#include <ev.h>
#include <stddef.h>

struct redisAsyncContext;

struct health_conn_spec {
    const char *host;
    int         port;
    const char *username;        /* NULL: AUTH with the password alone */
    const char *password;        /* NULL: no AUTH */
    const char *name;            /* CLIENT SETNAME */
    void       *data;            /* ac->data, for the callbacks */
    void      (*on_connect)(const struct redisAsyncContext *ac, int status);
    void      (*on_disconnect)(const struct redisAsyncContext *ac, int status);
    /* The AUTH reply (NULL: not looked at). */
    void      (*on_auth)(struct redisAsyncContext *ac, void *reply, void *priv);
};

/* NULL with the reason in err when the connect fails at once. */
struct redisAsyncContext *health_conn_open(struct ev_loop *loop,
                                           const struct health_conn_spec *spec,
                                           char *err, size_t errlen);
/* Close *acp if open and clear it first. */
void health_conn_drop(struct redisAsyncContext **acp);

#endif
