/* Node health over hiredis (async, on the proxy's loop): PING says whether
 * the node answers, ROLE what it is. hiredis 0.14's async API has no
 * timeouts, so the tick that sends a check also judges the previous one:
 * still unanswered means failed. */
#include "checker.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"

int health_split_addr(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(spec, ':');
    size_t hl;

    if (!colon || strncmp(spec, "unix:", 5) == 0)
        return -1;
    hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2) {
        spec++;
        hl -= 2;
    }
    if (hl >= hostlen)
        return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    *port = atoi(colon + 1);
    return 0;
}

int health_config_addr(struct checker_config *cfg, const char *spec)
{
    return health_split_addr(spec, cfg->host, sizeof cfg->host, &cfg->port);
}

/* What ROLE said holds for the connection it came on: a node not heard
 * from (or reconnected) must answer ROLE again before it serves reads. */
static void forget_role(struct checker *ch)
{
    ch->role[0] = ch->link[0] = '\0';
}

static void check_failed(struct checker *ch, const char *why)
{
    forget_role(ch);
    ch->in_flight = 0;
    ch->fails++;
    ch->failures++;
    snprintf(ch->last_err, sizeof ch->last_err, "%s", why);
    log_debug("health %s: check failed (%d in a row): %s", ch->cfg.name, ch->fails, why);
    if (!ch->down && ch->fails >= ch->cfg.down_after) {
        ch->down = 1;
        ch->downs++;
        log_warn("node %s is down: %d checks failed, last: %s", ch->cfg.name,
                 ch->fails, why);
        ch->on_change(ch->arg, 0, why);
    }
}

static void check_passed(struct checker *ch)
{
    ch->in_flight = 0;
    ch->fails = 0;
    ch->checks++;
    if (ch->down) {
        ch->down = 0;
        ch->ups++;
        log_info("node %s is up again", ch->cfg.name);
        ch->on_change(ch->arg, 1, NULL);
    }
}

/* Any answer to PING, even an error (NOAUTH, LOADING, max clients), proves
 * the node is alive: down means it does not answer at all. */
static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
    struct checker *ch = priv;
    (void)ac;

    if (r && ch->in_flight)
        check_passed(ch);
}

/* ROLE says what the node is; a user without the right to run it (ACL)
 * leaves the role unknown, which is logged once and is no failure. */
static void on_role(redisAsyncContext *ac, void *r, void *priv)
{
    struct checker *ch = priv;
    redisReply *reply = r;
    ev_tstamp sent = 0;
    (void)ac;

    /* Replies come in the order the ROLEs went out, even the NULL ones a
     * closing connection delivers. */
    if (ch->nsent > 0) {
        sent = ch->sent_at[ch->sent_head];
        ch->sent_head = (ch->sent_head + 1) % CHECKER_SENT_MAX;
        ch->nsent--;
    }
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!ch->role_refused)
            log_warn("health %s: ROLE refused (%s); the node's role stays unknown",
                     ch->cfg.name, reply->str);
        ch->role_refused = 1;
        return;
    }
    ch->role_refused = 0;
    /* master: [role, offset, replicas]; replica: [role, host, port, link state, offset] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(ch->role, sizeof ch->role, "%s", reply->element[0]->str);
        ch->link[0] = '\0';
        if (reply->element[1]->type == REDIS_REPLY_INTEGER)
            ch->offset = reply->element[1]->integer;
        if (reply->elements >= 5 && reply->element[3]->type == REDIS_REPLY_STRING &&
            reply->element[4]->type == REDIS_REPLY_INTEGER) {
            snprintf(ch->link, sizeof ch->link, "%s", reply->element[3]->str);
            ch->offset = reply->element[4]->integer;
        }
        ch->role_at = sent;
        if (ch->on_role)
            ch->on_role(ch->arg);
    }
}

/* A refused AUTH leaves an unauthenticated connection: the next tick
 * starts a fresh one (the password may have been fixed meanwhile). */
static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    struct checker *ch = priv;
    (void)ac;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        if (!ch->auth_failed)
            log_warn("health %s: AUTH refused: %s", ch->cfg.name, reply->str);
        ch->auth_failed = 1;
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct checker *ch = ac->data;

    if (status != REDIS_OK) {
        ch->ac = NULL;     /* hiredis frees it after this callback */
        if (ch->in_flight)
            check_failed(ch, ac->errstr);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct checker *ch = ac->data;

    ch->ac = NULL;
    forget_role(ch);
    if (ch->in_flight)
        check_failed(ch, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void drop_connection(struct checker *ch)
{
    redisAsyncContext *ac = ch->ac;

    if (ac) {
        ch->ac = NULL;
        redisAsyncFree(ac);
    }
}

static int connect_checker(struct checker *ch)
{
    redisAsyncContext *ac = redisAsyncConnect(ch->cfg.host, ch->cfg.port);

    if (!ac || ac->err) {
        check_failed(ch, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = ch;
    redisLibevAttach(ch->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ch->ac = ac;
    if (ch->cfg.password && ch->cfg.username)
        redisAsyncCommand(ac, on_auth, ch, "AUTH %s %s", ch->cfg.username, ch->cfg.password);
    else if (ch->cfg.password)
        redisAsyncCommand(ac, on_auth, ch, "AUTH %s", ch->cfg.password);
    redisAsyncCommand(ac, NULL, NULL, "CLIENT SETNAME sidecar-health");
    return 0;
}

/* ROLE, remembering when it went out: an offset describes the node as of
 * then, so a write acknowledged before that moment is included. */
static void send_role(struct checker *ch)
{
    if (ch->nsent == CHECKER_SENT_MAX)
        return;
    ch->sent_at[(ch->sent_head + ch->nsent) % CHECKER_SENT_MAX] = ev_now(ch->loop);
    ch->nsent++;
    if (redisAsyncCommand(ch->ac, on_role, ch, "ROLE") != REDIS_OK)
        ch->nsent--;                     /* no callback will come for it */
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct checker *ch = w->data;
    (void)loop;
    (void)revents;

    if (ch->in_flight) {
        check_failed(ch, "no reply within check_interval");
        drop_connection(ch);
    } else if (ch->auth_failed) {
        drop_connection(ch);
    }
    ch->auth_failed = 0;
    ch->in_flight = 1;
    if (!ch->ac && connect_checker(ch) < 0)
        return;
    redisAsyncCommand(ch->ac, on_ping, ch, "PING");
    send_role(ch);
}

static void on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct checker *ch = w->data;
    (void)loop;
    (void)revents;

    if (ch->ac && !ch->down)
        send_role(ch);
}

void health_sample_soon(struct checker *ch, double delay)
{
    if (!ev_is_active(&ch->soon)) {
        ev_timer_set(&ch->soon, delay, 0);
        ev_timer_start(ch->loop, &ch->soon);
    }
}

void health_start(struct checker *ch, struct ev_loop *loop,
                  const struct checker_config *cfg,
                  void (*fn)(void *arg, int up, const char *why), void *arg)
{
    memset(ch, 0, sizeof *ch);
    ch->loop = loop;
    ch->cfg = *cfg;
    ch->on_change = fn;
    ch->arg = arg;
    ev_timer_init(&ch->tick, on_tick, 0, cfg->interval);
    ev_init(&ch->soon, on_soon);
    ch->tick.data = ch->soon.data = ch;
    ev_timer_start(loop, &ch->tick);
}

void health_stop(struct checker *ch)
{
    ev_timer_stop(ch->loop, &ch->tick);
    ev_timer_stop(ch->loop, &ch->soon);
    ch->in_flight = 0;
    drop_connection(ch);
}
