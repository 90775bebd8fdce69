/* hiredis connections for the control plane (health checks, Sentinel). */
#include "conn.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>

struct redisAsyncContext *health_conn_open(struct ev_loop *loop,
                                           const struct health_conn_spec *s,
                                           char *err, size_t errlen)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);

    if (!ac || ac->err) {
        snprintf(err, errlen, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s->data;
    redisLibevAttach(loop, ac);
    redisAsyncSetConnectCallback(ac, s->on_connect);
    redisAsyncSetDisconnectCallback(ac, s->on_disconnect);
    if (s->password && s->username)
        redisAsyncCommand(ac, s->on_auth, s->data, "AUTH %s %s", s->username, s->password);
    else if (s->password)
        redisAsyncCommand(ac, s->on_auth, s->data, "AUTH %s", s->password);
    redisAsyncCommand(ac, NULL, NULL, "CLIENT SETNAME %s", s->name);
    return ac;
}

void health_conn_drop(struct redisAsyncContext **acp)
{
    redisAsyncContext *ac = *acp;

    if (ac) {
        *acp = NULL;
        redisAsyncFree(ac);
    }
}
