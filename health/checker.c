/* Node health over hiredis (async, on the proxy's loop): PING says whether
 * the node answers, ROLE what it is. hiredis 0.14's async API has no
 * timeouts, so the tick that sends a check also judges the previous one:
 * still unanswered means failed. */
#include "checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/tls.h"
#include "conn.h"

#define COMMANDS_MAX 4096

int health_config_addr(struct checker_config *cfg, const char *spec)
{
    return net_split_addr(spec, cfg->host, sizeof cfg->host, &cfg->port);
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
        ch->hooks.on_change(ch->arg, 0, why);
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
        ch->hooks.on_change(ch->arg, 1, NULL);
    }
}

/* Any answer to PING, even an error (NOAUTH, LOADING, max clients), proves
 * the node is alive: down means it does not answer at all. */
static void on_ping(struct hconn *c, void *r, void *priv)
{
    struct checker *ch = priv;
    (void)c;

    if (r && ch->in_flight)
        check_passed(ch);
}

/* ROLE says what the node is; a user without the right to run it (ACL)
 * leaves the role unknown, which is logged once and is no failure. */
static void on_role(struct hconn *c, void *r, void *priv)
{
    struct checker *ch = priv;
    redisReply *reply = r;
    ev_tstamp sent = 0;
    (void)c;

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
        if (ch->hooks.on_role)
            ch->hooks.on_role(ch->arg);
    }
}

/* A refused AUTH leaves an unauthenticated connection: the next tick
 * starts a fresh one (the password may have been fixed meanwhile). */
static void on_auth(struct hconn *c, void *r, void *priv)
{
    redisReply *reply = r;
    struct checker *ch = priv;
    (void)c;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        if (!ch->auth_failed)
            log_warn("health %s: AUTH refused: %s", ch->cfg.name, reply->str);
        ch->auth_failed = 1;
    }
}

static void on_close(struct hconn *c, const char *why)
{
    struct checker *ch = health_conn_data(c);

    ch->conn = NULL;
    forget_role(ch);
    if (ch->in_flight)
        check_failed(ch, why);
}

/* "redis_version:7.0.15" in INFO server's text. */
static void on_info(struct hconn *c, void *r, void *priv)
{
    struct checker *ch = priv;
    redisReply *reply = r;
    (void)c;

    if (!reply || reply->type != REDIS_REPLY_STRING)     /* the checker speaks RESP2 */
        return;
    const char *v = strstr(reply->str, "redis_version:");
    if (v)
        snprintf(ch->version, sizeof ch->version, "%.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
}

int health_parse_commands(const void *r, struct health_command *v, int max)
{
    const redisReply *reply = r;
    int n = 0;

    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < reply->elements && n < max; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[2]->type != REDIS_REPLY_ARRAY)
            return -1;
        unsigned flags = 0;
        const redisReply *f = e->element[2];
        for (size_t k = 0; k < f->elements; k++) {
            const redisReply *w = f->element[k];
            if (w->type != REDIS_REPLY_STATUS && w->type != REDIS_REPLY_STRING)
                continue;
            flags |= !strcasecmp(w->str, "readonly") ? HEALTH_CMD_READONLY
                   : !strcasecmp(w->str, "write") ? HEALTH_CMD_WRITE
                   : !strcasecmp(w->str, "blocking") ? HEALTH_CMD_BLOCKING : 0;
        }
        int first = e->elements > 3 && e->element[3]->type == REDIS_REPLY_INTEGER
                    ? (int)e->element[3]->integer : 0;
        v[n++] = (struct health_command){e->element[0]->str, e->element[0]->len, flags, first};
    }
    return n;
}

/* COMMAND, once: the node's own table, so that new commands and modules
 * are classified right. */
static void on_command_reply(struct hconn *c, void *r, void *priv)
{
    struct checker *ch = priv;
    redisReply *reply = r;
    (void)c;

    if (!reply)
        return;                          /* the connection went: asked again on the next */
    ch->commands_done = 1;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("health %s: COMMAND refused (%s); using the compiled-in command table",
                 ch->cfg.name, reply->str);
        return;
    }
    struct health_command *v = malloc(COMMANDS_MAX * sizeof *v);
    int n = v ? health_parse_commands(reply, v, COMMANDS_MAX) : -1;
    ch->hooks.on_commands(ch->arg, v, n);
    free(v);
}

static void connect_checker(struct checker *ch)
{
    struct health_conn_spec spec = {
        .host = ch->cfg.host, .port = ch->cfg.port, .username = ch->cfg.username,
        .password = ch->cfg.password, .name = "sidecar-health", .data = ch,
        .tls = ch->cfg.tls, .tls_name = ch->cfg.tls_name, .resume = ch->cfg.tls_resume,
        .stats = ch->cfg.tls_stats, .on_close = on_close, .on_auth = on_auth,
    };
    char err[160];

    if (!(ch->conn = health_conn_open(ch->loop, &spec, err, sizeof err))) {
        check_failed(ch, err);
        return;
    }
    health_conn_command(ch->conn, on_info, ch, "INFO server");
    /* A reply too deep for hiredis 0.14 would cost the connection: tried
     * twice at most, then the compiled-in table stays. */
    if (ch->cfg.fetch_commands && ch->hooks.on_commands && !ch->commands_done) {
        if (ch->commands_asked++ < 2)
            health_conn_command(ch->conn, on_command_reply, ch, "COMMAND");
        else if (ch->commands_asked == 3)
            log_warn("health %s: COMMAND not answered twice; using the compiled-in "
                     "command table", ch->cfg.name);
    }
}

/* ROLE, remembering when it went out: an offset describes the node as of
 * then, so a write acknowledged before that moment is included. */
static void send_role(struct checker *ch)
{
    if (ch->nsent == CHECKER_SENT_MAX)
        return;
    ch->sent_at[(ch->sent_head + ch->nsent) % CHECKER_SENT_MAX] = ev_now(ch->loop);
    ch->nsent++;
    if (health_conn_command(ch->conn, on_role, ch, "ROLE") < 0)
        ch->nsent--;                     /* no callback will come for it */
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct checker *ch = w->data;
    (void)loop;
    (void)revents;

    if (ch->in_flight) {
        check_failed(ch, "no reply within check_interval");
        health_conn_drop(&ch->conn);
    } else if (ch->auth_failed) {
        health_conn_drop(&ch->conn);
    }
    ch->auth_failed = 0;
    ch->in_flight = 1;
    if (!ch->conn)
        connect_checker(ch);
    if (!ch->conn)
        return;
    health_conn_command(ch->conn, on_ping, ch, "PING sidecar");
    send_role(ch);
}

int health_local_port(const struct checker *ch)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    int fd = health_conn_fd(ch->conn);

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

static void on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct checker *ch = w->data;
    (void)loop;
    (void)revents;

    if (ch->conn && !ch->down)
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
                  const struct checker_config *cfg, const struct checker_hooks *hooks,
                  void *arg)
{
    memset(ch, 0, sizeof *ch);
    ch->loop = loop;
    ch->cfg = *cfg;
    if (cfg->tls)
        tls_ctx_ref(cfg->tls);
    ch->hooks = *hooks;
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
    health_conn_drop(&ch->conn);
    tls_ctx_unref(ch->cfg.tls);
    ch->cfg.tls = NULL;
}

void health_configure(struct checker *ch, const struct checker_config *cfg)
{
    double interval = ch->cfg.interval;
    char name[sizeof ch->cfg.name], host[sizeof ch->cfg.host];
    int port = ch->cfg.port;
    struct checker_config keep = ch->cfg;

    memcpy(name, ch->cfg.name, sizeof name);
    memcpy(host, ch->cfg.host, sizeof host);
    ch->cfg = *cfg;
    if (cfg->tls)
        tls_ctx_ref(cfg->tls);
    tls_ctx_unref(keep.tls);
    ch->cfg.tls_resume = keep.tls_resume;
    ch->cfg.tls_stats = keep.tls_stats;
    memcpy(ch->cfg.name, name, sizeof name);
    memcpy(ch->cfg.host, host, sizeof host);
    ch->cfg.port = port;
    if (interval != cfg->interval) {
        ch->tick.repeat = cfg->interval;
        ev_timer_again(ch->loop, &ch->tick);
    }
}
