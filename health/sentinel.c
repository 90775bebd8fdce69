/* Sentinel discovery over hiredis (async, on the proxy's loop). Each
 * sentinel gets two connections: one polled every interval with
 * get-master-addr-by-name, MASTER (for the config epoch), REPLICAS and
 * SENTINELS; one subscribed to the events that mean the topology moved,
 * any of which polls again at once. hiredis 0.14 has no async timeouts:
 * the tick that sends a poll also judges the one before. */
#include "sentinel.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "checker.h"
#include "conn.h"

#define POLL_COMMANDS 4

static const char *const events[] = {
    "+switch-master", "+sdown", "-sdown", "+odown", "-odown", "+slave",
    "+convert-to-slave", "+promoted-slave", "+slave-reconf-done", "+failover-end",
    "+failover-end-for-timeout", "+sentinel", "+reset-master",
};

static void send_poll(struct sentinel *s);

static struct sentinel *find(struct sentinels *ss, const char *addr)
{
    for (int i = 0; i < ss->n; i++)
        if (strcmp(ss->s[i].addr, addr) == 0)
            return &ss->s[i];
    return NULL;
}

static struct sentinel *add(struct sentinels *ss, const char *addr, int configured)
{
    struct sentinel *s;

    if (ss->n == SENTINEL_MAX)
        return NULL;
    s = &ss->s[ss->n];
    memset(s, 0, sizeof *s);
    if (net_split_addr(addr, s->host, sizeof s->host, &s->port) < 0 || s->port <= 0)
        return NULL;
    ss->n++;
    s->set = ss;
    snprintf(s->addr, sizeof s->addr, "%s", addr);
    s->configured = configured;
    s->active = 1;
    return s;
}

static void count_up(struct sentinels *ss)
{
    int nup = 0, untried = 0;

    for (int i = 0; i < ss->n; i++) {
        nup += ss->s[i].active && ss->s[i].up;
        untried += ss->s[i].active && !ss->s[i].up && !ss->s[i].last_err[0];
    }
    if (nup == 0 && !untried && !ss->all_down_logged) {
        log_warn("no sentinel answers: keeping the last known topology");
        ss->all_down_logged = 1;
    } else if (nup > 0 && ss->all_down_logged) {
        log_info("sentinels answer again (%d of them)", nup);
        ss->all_down_logged = 0;
    }
    ss->nup = nup;
}

static void poll_failed(struct sentinel *s, const char *why)
{
    if (s->up || strcmp(s->last_err, why) != 0)
        log_warn("sentinel %s: %s", s->addr, why);
    snprintf(s->last_err, sizeof s->last_err, "%s", why);
    s->up = 0;
    s->polling = 0;
    count_up(s->set);
}

/* The sentinel with the highest config epoch knows best: the others may
 * be cut off, or not have heard of the last failover yet. */
static void decide(struct sentinels *ss)
{
    struct sentinel *best = NULL;

    for (int i = 0; i < ss->n; i++) {
        struct sentinel *s = &ss->s[i];
        if (s->active && s->up && s->rep.master[0] && (!best || s->rep.epoch > best->rep.epoch))
            best = s;
    }
    if (!best)
        return;
    /* Sentinels the up ones know about are polled too; a discovered one
     * nobody lists any more is dropped. */
    for (int i = 0; i < ss->n; i++) {
        struct sentinel *s = &ss->s[i];
        for (int k = 0; k < s->rep.npeers && s->active && s->up; k++) {
            struct sentinel *p = find(ss, s->rep.peers[k]);
            if (!p && (p = add(ss, s->rep.peers[k], 0)) != NULL)
                log_info("sentinel %s discovered (through %s)", p->addr, s->addr);
            else if (p && !p->active) {
                p->active = 1;
                log_info("sentinel %s listed again", p->addr);
            }
        }
    }
    for (int i = 0; i < ss->n; i++) {
        struct sentinel *s = &ss->s[i];
        int listed = s->configured;
        for (int j = 0; j < ss->n && !listed; j++) {
            const struct sentinel *o = &ss->s[j];
            for (int k = 0; o->active && o->up && k < o->rep.npeers && !listed; k++)
                listed = strcmp(o->rep.peers[k], s->addr) == 0;
        }
        /* one that answers for our master stays, listed or not */
        if (s->active && !listed && !s->up) {
            log_info("sentinel %s dropped: unreachable, and no sentinel lists it any more",
                     s->addr);
            s->active = s->up = s->subscribed = s->polling = 0;
            health_conn_drop(&s->cmd);
            health_conn_drop(&s->sub);
        }
    }
    ss->on_view(ss->arg, &best->rep, best->addr);
}

static void poll_step_done(struct sentinel *s)
{
    if (s->polling <= 0 || --s->polling > 0)
        return;
    if (!s->up) {
        if (s->last_err[0])
            log_info("sentinel %s answers (was: %s)", s->addr, s->last_err);
        s->last_err[0] = '\0';
    }
    s->rep = s->next;
    s->up = 1;
    s->answered_at = ev_now(s->set->loop);
    count_up(s->set);
    decide(s->set);
}

/* A flat [key, value, ...] array: the value for key, or NULL. */
static const char *field(const redisReply *m, const char *key)
{
    if (m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING &&
            m->element[i + 1]->type == REDIS_REPLY_STRING &&
            strcmp(m->element[i]->str, key) == 0)
            return m->element[i + 1]->str;
    return NULL;
}

/* 0: an answer; 1: the sentinel does not know our master (an answer
 * too, an empty one); -1: refused, the poll failed. */
static int reply_error(struct sentinel *s, const redisReply *r, const char *what)
{
    char why[200];

    if (r->type != REDIS_REPLY_ERROR)
        return 0;
    if (strncmp(r->str, "ERR No such master", 18) == 0) {
        if (!s->unknown_logged)
            log_warn("sentinel %s does not monitor a master named \"%s\"", s->addr,
                     s->set->master_name);
        s->unknown_logged = 1;
        return 1;
    }
    snprintf(why, sizeof why, "%s refused: %s", what, r->str);
    poll_failed(s, why);
    health_conn_drop(&s->cmd);                /* the rest of this poll is dropped with it */
    return -1;
}

static void on_addr(struct hconn *c, void *reply, void *priv)
{
    struct sentinel *s = priv;
    redisReply *r = reply;
    (void)c;

    if (!r || !s->polling)
        return;
    s->next.master[0] = '\0';
    if (reply_error(s, r, "get-master-addr-by-name") < 0)
        return;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        s->unknown_logged = 0;
        snprintf(s->next.master, sizeof s->next.master,
                 strchr(r->element[0]->str, ':') ? "[%s]:%s" : "%s:%s",
                 r->element[0]->str, r->element[1]->str);
    }
    poll_step_done(s);
}

static void on_master(struct hconn *c, void *reply, void *priv)
{
    struct sentinel *s = priv;
    redisReply *r = reply;
    (void)c;

    if (!r || !s->polling)
        return;
    s->next.epoch = 0;
    s->next.master_down = 0;
    if (reply_error(s, r, "SENTINEL MASTER") < 0)
        return;
    const char *epoch = field(r, "config-epoch"), *flags = field(r, "flags");
    if (epoch)
        s->next.epoch = atoll(epoch);
    if (flags)
        s->next.master_down = strstr(flags, "s_down") || strstr(flags, "o_down");
    poll_step_done(s);
}

/* REPLICAS and SENTINELS: arrays of flat maps with ip and port. */
static int addr_list(const redisReply *r, char (*out)[SENTINEL_ADDR], int max)
{
    int n = 0;

    if (r->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < r->elements && n < max; i++) {
        const char *ip = field(r->element[i], "ip"), *port = field(r->element[i], "port");
        if (ip && port && strcmp(ip, "?") != 0)
            snprintf(out[n++], SENTINEL_ADDR, strchr(ip, ':') ? "[%s]:%s" : "%s:%s", ip, port);
    }
    return n;
}

static void read_list(struct sentinel *s, const redisReply *r, const char *what,
                      char (*out)[SENTINEL_ADDR], int max, int *n)
{
    if (!r || !s->polling)
        return;
    *n = 0;
    if (reply_error(s, r, what) < 0)
        return;
    *n = addr_list(r, out, max);
    poll_step_done(s);
}

static void on_replicas(struct hconn *c, void *reply, void *priv)
{
    struct sentinel *s = priv;
    (void)c;
    read_list(s, reply, "SENTINEL REPLICAS", s->next.replicas, SENTINEL_MAX_REPLICAS,
              &s->next.nreplicas);
}

static void on_peers(struct hconn *c, void *reply, void *priv)
{
    struct sentinel *s = priv;
    (void)c;
    read_list(s, reply, "SENTINEL SENTINELS", s->next.peers, SENTINEL_MAX, &s->next.npeers);
}

static void on_cmd_close(struct hconn *c, const char *why)
{
    struct sentinel *s = health_conn_data(c);

    s->cmd = NULL;
    if (s->polling)
        poll_failed(s, why);
}

static void on_sub_close(struct hconn *c, const char *why)
{
    struct sentinel *s = health_conn_data(c);
    (void)why;

    s->sub = NULL;
    s->subscribed = 0;
}

/* An event about our master (or anything else of its set): the topology
 * may have moved, so every sentinel is asked again now. Sentinels publish
 * events of every master they monitor; those naming others are skipped. */
static void on_event(struct hconn *c, void *reply, void *priv)
{
    struct sentinel *s = priv;
    struct sentinels *ss = s->set;
    redisReply *r = reply;
    (void)c;

    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        s->subscribed = 1;
        return;
    }
    if (strcmp(r->element[0]->str, "message") != 0 ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING)
        return;
    const char *ch = r->element[1]->str, *msg = r->element[2]->str;
    size_t nl = strlen(ss->master_name);
    const char *m = msg;
    int ours = 0;
    while ((m = strstr(m, ss->master_name)) != NULL && !ours) {
        ours = (m == msg || m[-1] == ' ') && (m[nl] == ' ' || m[nl] == '\0');
        m += nl;
    }
    if (!ours)
        return;
    s->events++;
    snprintf(ss->last_event, sizeof ss->last_event, "%s %s (from %s)", ch, msg, s->addr);
    if (strcmp(ch, "+switch-master") == 0) {
        ss->switches_seen++;
        log_warn("sentinel %s: +switch-master %s", s->addr, msg);
    } else if (!strcmp(ch, "+odown") || !strcmp(ch, "-odown") || !strcmp(ch, "+failover-end") ||
               !strcmp(ch, "+convert-to-slave") || !strcmp(ch, "+failover-end-for-timeout")) {
        log_info("sentinel %s: %s %s", s->addr, ch, msg);
    } else {
        log_debug("sentinel %s: %s %s", s->addr, ch, msg);
    }
    health_sentinels_poll_soon(ss);
}

static struct hconn *connect_to(struct sentinel *s,
                                void (*on_close)(struct hconn *, const char *))
{
    struct sentinels *ss = s->set;
    struct health_conn_spec spec = {
        .host = s->host, .port = s->port, .password = ss->has_password ? ss->password : NULL,
        .name = "sidecar-sentinel", .data = s, .on_close = on_close,
        .tls = ss->tls, .tls_name = ss->tls_name[0] ? ss->tls_name : NULL, .resume = &s->resume, .stats = &s->tls_stats,
    };
    char err[160];
    struct hconn *c = health_conn_open(ss->loop, &spec, err, sizeof err);

    if (!c)
        poll_failed(s, err);
    return c;
}

static void subscribe(struct sentinel *s)
{
    char cmd[512] = "SUBSCRIBE";
    size_t used = strlen(cmd);

    if (!(s->sub = connect_to(s, on_sub_close)))
        return;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        used += (size_t)snprintf(cmd + used, sizeof cmd - used, " %s", events[i]);
    health_conn_subscribe(s->sub, on_event, s, cmd);
}

static void send_poll(struct sentinel *s)
{
    const char *name = s->set->master_name;

    if (!s->cmd && !(s->cmd = connect_to(s, on_cmd_close)))
        return;
    if (!s->polling)
        s->owed_since = ev_now(s->set->loop);
    s->polling += POLL_COMMANDS;
    health_conn_command(s->cmd, on_addr, s, "SENTINEL get-master-addr-by-name %s", name);
    health_conn_command(s->cmd, on_master, s, "SENTINEL master %s", name);
    health_conn_command(s->cmd, on_replicas, s, "SENTINEL replicas %s", name);
    health_conn_command(s->cmd, on_peers, s, "SENTINEL sentinels %s", name);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinels *ss = w->data;
    (void)revents;

    for (int i = 0; i < ss->n; i++) {
        struct sentinel *s = &ss->s[i];
        if (!s->active)
            continue;
        /* judged one interval after it went out; a poll an event sent
         * just now gets its chance */
        if (s->polling && ev_now(loop) - s->owed_since >= ss->interval / 2) {
            poll_failed(s, "no answer within the poll interval");
            health_conn_drop(&s->cmd);
        }
        send_poll(s);
        /* a SUBSCRIBE unanswered for a whole interval (refused: AUTH) */
        if (s->sub && !s->subscribed && s->sub_waited++)
            health_conn_drop(&s->sub);
        if (!s->sub) {
            s->sub_waited = 0;
            subscribe(s);
        }
    }
}

static void on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinels *ss = w->data;
    (void)loop;
    (void)revents;

    for (int i = 0; i < ss->n; i++)
        if (ss->s[i].active && ss->s[i].cmd)
            send_poll(&ss->s[i]);
}

int health_sentinels_none_answer(const struct sentinels *ss)
{
    return ss->all_down_logged;
}

void health_sentinels_poll_soon(struct sentinels *ss)
{
    if (!ev_is_active(&ss->soon)) {
        ev_timer_set(&ss->soon, 0, 0);
        ev_timer_start(ss->loop, &ss->soon);
    }
}

int health_sentinels_start(struct sentinels *ss, struct ev_loop *loop,
                           const struct sentinel_config *cfg,
                           void (*on_view)(void *arg, const struct sentinel_report *view,
                                           const char *from),
                           void *arg, char *err, size_t errlen)
{
    memset(ss, 0, sizeof *ss);
    ss->loop = loop;
    ss->interval = cfg->interval;
    ss->on_view = on_view;
    ss->arg = arg;
    snprintf(ss->master_name, sizeof ss->master_name, "%s", cfg->master_name);
    if (cfg->password) {
        snprintf(ss->password, sizeof ss->password, "%s", cfg->password);
        ss->has_password = 1;
    }
    health_sentinels_set_tls(ss, cfg->tls, cfg->tls_name);
    for (int i = 0; i < cfg->naddrs; i++) {
        if (!find(ss, cfg->addrs[i]) && !add(ss, cfg->addrs[i], 1)) {
            snprintf(err, errlen, "sentinel %s: not a host:port", cfg->addrs[i]);
            return -1;
        }
    }
    ev_timer_init(&ss->tick, on_tick, 0, cfg->interval);
    ev_init(&ss->soon, on_soon);
    ss->tick.data = ss->soon.data = ss;
    ev_timer_start(loop, &ss->tick);
    return 0;
}

void health_sentinels_stop(struct sentinels *ss)
{
    ev_timer_stop(ss->loop, &ss->tick);
    ev_timer_stop(ss->loop, &ss->soon);
    for (int i = 0; i < ss->n; i++) {
        ss->s[i].polling = 0;
        health_conn_drop(&ss->s[i].cmd);
        health_conn_drop(&ss->s[i].sub);
        tls_resume_clear(&ss->s[i].resume);
    }
    health_sentinels_set_tls(ss, NULL, NULL);
}

void health_sentinels_set_tls(struct sentinels *ss, struct tls_ctx *ctx, const char *name)
{
    snprintf(ss->tls_name, sizeof ss->tls_name, "%s", name ? name : "");
    if (ctx)
        tls_ctx_ref(ctx);
    tls_ctx_unref(ss->tls);
    ss->tls = ctx;
}
