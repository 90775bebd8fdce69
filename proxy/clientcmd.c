/* The CLIENT family for app connections, as redis 7.0 answers it (its
 * subcommands, filters, fields and error texts), with each app
 * connection's own values: the proxy's client ids, names and state. What
 * is server-wide (PAUSE, UNPAUSE) goes to the master; what must reach the
 * server connection serving an app connection (UNBLOCK, TRACKING ...
 * REDIRECT, GETREDIR, TRACKINGINFO) is translated to and from that
 * connection's id on the server (its lease's). An app sees and acts on
 * the connections of its own ACL user; admins on every one. */
#include "clientcmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "master.h"
#include "nodes.h"
#include "request.h"
#include "session.h"
#include "users.h"

/* c may see (and kill, unblock) o: its own ACL user's, or c is an admin. */
static int visible(const struct client *c, const struct client *o)
{
    return c->admin || (c->x ? c->x->user : NULL) == (o->x ? o->x->user : NULL);
}

struct client *clientcmd_find(const struct client *c, long long id)
{
    struct client *o;

    TAILQ_FOREACH(o, &client_sc(c)->clients, tqe)
        if ((long long)o->id == id && !o->closed)
            return visible(c, o) ? o : NULL;
    return NULL;
}

enum ctype { CT_NORMAL, CT_REPLICA, CT_MASTER, CT_PUBSUB, CT_NONE };

static enum ctype type_by_name(const char *p, size_t n)
{
    static const char *const names[] = {"normal", "replica", "master", "pubsub", "slave"};

    for (int i = 0; i < 5; i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], p, n) == 0)
            return i == 4 ? CT_REPLICA : (enum ctype)i;
    return CT_NONE;
}

/* What redis would call it: app connections are normal, or pubsub. */
static enum ctype type_of(const struct client *o)
{
    return o->x && (o->x->sub || o->x->psub || o->x->ssub) ? CT_PUBSUB : CT_NORMAL;
}

static void reply_lines(struct client *c, const struct buf *b)
{
    client_reply_text(c, buf_used(b) ? buf_start(b) : "", buf_used(b));
}

/* CLIENT LIST [TYPE type] [ID id [id ...]] */
static void cmd_list(struct client *c, const struct resp_args *a, const char *frame,
                     const struct resp_frame *fr)
{
    struct buf b = {0};
    struct client *o;
    enum ctype type = CT_NONE;
    ev_tstamp now = ev_now(client_sc(c)->loop);

    if (a->argc == 4 && resp_arg_is(a, 2, "type")) {
        if ((type = type_by_name(a->v[3], a->l[3])) == CT_NONE) {
            client_reply_error(c, "ERR Unknown client type '%.*s'", (int)(a->l[3] > 64 ? 64 :
                               a->l[3]), a->v[3]);
            return;
        }
    } else if (a->argc > 3 && resp_arg_is(a, 2, "id")) {
        size_t pos = 0, n;
        const char *p;
        long long id;
        for (int i = 0; i < 3; i++)
            resp_next_arg(frame, fr->len, &pos, &p, &n);
        while (resp_next_arg(frame, fr->len, &pos, &p, &n))
            if (resp_parse_ll(p, n, &id) < 0 || id < 1) {
                client_reply_error(c, "ERR Invalid client ID");
                buf_free(&b);
                return;
            } else if ((o = clientcmd_find(c, id)) != NULL) {
                client_describe(&b, o, now);
            }
        reply_lines(c, &b);
        buf_free(&b);
        return;
    } else if (a->argc != 2) {
        client_reply_error(c, "ERR syntax error");
        return;
    }
    TAILQ_FOREACH(o, &client_sc(c)->clients, tqe)
        if (visible(c, o) && (type == CT_NONE || type == type_of(o)))
            client_describe(&b, o, now);
    reply_lines(c, &b);
    buf_free(&b);
}

struct kill_filter {
    long long   id;           /* 0: any */
    const char *addr, *laddr, *user;
    size_t      addrl, laddrl, userl;
    enum ctype  type;
    int         skipme;
};

static int matches(const struct client *c, const struct client *o, const struct kill_filter *k)
{
    char s[64];
    const char *u;
    const char *la;

    if (!visible(c, o) || o->closed || (o == c && k->skipme))
        return 0;
    if (k->id && (long long)o->id != k->id)
        return 0;
    if (k->type != CT_NONE && type_of(o) != k->type)
        return 0;
    if (k->addr && (strlen(client_addr(o, s, sizeof s)) != k->addrl ||
                    memcmp(s, k->addr, k->addrl) != 0))
        return 0;
    if (k->laddr && (strlen(la = client_laddr(o, s, sizeof s)) != k->laddrl ||
                     memcmp(la, k->laddr, k->laddrl) != 0))
        return 0;
    if (k->user && (strlen(u = client_user(o)) != k->userl || memcmp(u, k->user, k->userl) != 0))
        return 0;
    return 1;
}

/* A user the proxy knows of: the [upstream] one, "default", or one an
 * app authenticated as. (Redis may know others; with no app connection
 * of theirs here, redis's 0 and this error kill nothing either way.) */
static int known_user(const struct sidecar *sc, const char *name, size_t nl)
{
    if ((nl == 7 && memcmp(name, "default", 7) == 0) || users_is_upstream(sc, name, nl))
        return 1;
    for (int i = 0; i < sc->users_hi; i++)
        if (sc->users[i] && strlen(sc->users[i]->name) == nl &&
            memcmp(sc->users[i]->name, name, nl) == 0)
            return 1;
    return 0;
}

/* CLIENT KILL addr:port (the old form: +OK or an error), or CLIENT KILL
 * with filters ID, ADDR, LADDR, USER, TYPE, SKIPME (a count). */
static void cmd_kill(struct client *c, const struct resp_args *a)
{
    struct kill_filter k = {.type = CT_NONE, .skipme = 1};
    struct client *o, *next;
    long long n = 0;
    int old = a->argc == 3;

    if (old) {
        k.addr = a->v[2];
        k.addrl = a->l[2];
        k.skipme = 0;
    } else if (a->argc > RESP_ARGS_MAX || (a->argc - 2) % 2) {
        client_reply_error(c, "ERR syntax error");
        return;
    }
    for (int i = 2; !old && i + 1 < a->argc; i += 2) {
        const char *v = a->v[i + 1];
        size_t vl = a->l[i + 1];
        if (resp_arg_is(a, i, "id")) {
            if (resp_parse_ll(v, vl, &k.id) < 0 || k.id <= 0) {
                client_reply_error(c, "ERR client-id should be greater than 0");
                return;
            }
        } else if (resp_arg_is(a, i, "type")) {
            if ((k.type = type_by_name(v, vl)) == CT_NONE) {
                client_reply_error(c, "ERR Unknown client type '%.*s'", (int)(vl > 64 ? 64 : vl), v);
                return;
            }
        } else if (resp_arg_is(a, i, "addr")) {
            k.addr = v;
            k.addrl = vl;
        } else if (resp_arg_is(a, i, "laddr")) {
            k.laddr = v;
            k.laddrl = vl;
        } else if (resp_arg_is(a, i, "user")) {
            k.user = v;
            k.userl = vl;
        } else if (resp_arg_is(a, i, "skipme")) {
            if (resp_arg_is(a, i + 1, "yes"))
                k.skipme = 1;
            else if (resp_arg_is(a, i + 1, "no"))
                k.skipme = 0;
            else {
                client_reply_error(c, "ERR syntax error");
                return;
            }
        } else {
            client_reply_error(c, "ERR syntax error");
            return;
        }
    }
    if (k.user && !known_user(client_sc(c), k.user, k.userl)) {
        client_reply_error(c, "ERR No such user '%.*s'", (int)(k.userl > 64 ? 64 : k.userl),
                           k.user);
        return;
    }
    int self = 0;
    for (o = TAILQ_FIRST(&client_sc(c)->clients); o; o = next) {
        next = TAILQ_NEXT(o, tqe);
        if (!matches(c, o, &k))
            continue;
        n++;
        client_sc(c)->st.killed++;
        if (o == c)
            self = 1;                    /* after its reply, as redis does */
        else
            client_close(o, "killed by CLIENT KILL");
    }
    if (old && !n)
        client_reply_error(c, "ERR No such client");
    else if (old)
        client_reply_ok(c);
    else
        client_reply_int(c, n);
    if (self)
        client_close_after_replies(c, "killed itself by CLIENT KILL");
}

/* To the master, as the app's own request (its ACL applies). */
static void to_master(struct client *c, const char *p, size_t n, unsigned flags)
{
    struct node *m = client_sc(c)->master;
    struct pool *pl = m ? client_pool(c, m) : NULL;
    struct link *l = pl ? pool_link_for(pl, c->id, c->resp3) : NULL;

    if (!l || (m->pool->down && !client_sc(c)->sentinels)) {
        client_reply_error(c, "ERR no master to send CLIENT to now");
        return;
    }
    request_forward(c, l, p, n, flags);
}

/* CLIENT PAUSE timeout [WRITE|ALL] and CLIENT UNPAUSE act on every client
 * of the server: they go to the master as they are, and while the pause
 * lasts its silence is no failure (master_paused). Reads a replica serves
 * are not paused. */
static void cmd_pause(struct client *c, const struct resp_args *a, const char *frame,
                      const struct resp_frame *fr)
{
    (void)a;
    /* a pause starts with redis's +OK (clientcmd_quiet_answered) */
    if (resp_arg_is(a, 1, "unpause"))
        master_paused(client_sc(c), 0, 1);
    to_master(c, frame, fr->len, REQ_QUIET);
}

void clientcmd_quiet_answered(struct client *c, const char *req, size_t reqlen, const char *p,
                              size_t n)
{
    struct resp_framer f;
    struct resp_args a;
    long long ms;

    resp_framer_reset(&f);
    if (!req || resp_frame_request(&f, req, reqlen, &client_sc(c)->req_limits) != RESP_DONE)
        return;
    resp_collect_args(req, &f.fr, &a);
    int ok = n >= 3 && p[0] == '+';
    if (resp_arg_is(&a, 0, "debug") && !ok)           /* refused: it sleeps not */
        master_paused(client_sc(c), 0, 1);
    else if (resp_arg_is(&a, 0, "client") && resp_arg_is(&a, 1, "pause") && ok &&
             resp_parse_ll(a.v[2], a.l[2], &ms) == 0 && ms > 0)
        master_paused(client_sc(c), ms / 1000.0 > 86400 ? 86400 : ms / 1000.0, 1);
}

/* CLIENT UNBLOCK id [TIMEOUT|ERROR]: the app connection's blocking call
 * runs on its lease; the lease's id goes to the master instead. */
static void cmd_unblock(struct client *c, const struct resp_args *a)
{
    struct buf *b = &client_sc(c)->scratch;
    long long id;
    struct client *o;

    if (a->argc > 4) {
        client_reply_error(c, "ERR syntax error");
        return;
    }
    if (resp_parse_ll(a->v[2], a->l[2], &id) < 0) {
        client_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    if (a->argc == 4 && !resp_arg_is(a, 3, "timeout") && !resp_arg_is(a, 3, "error")) {
        client_reply_error(c, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        return;
    }
    o = clientcmd_find(c, id);
    if (!o || !o->lease || o->lease->server_id <= 0) {
        client_reply_int(c, 0);      /* not blocked anywhere */
        return;
    }
    buf_reset(b);
    buf_appendf(b, "*%d\r\n$6\r\nCLIENT\r\n$7\r\nUNBLOCK\r\n", (int)a->argc);
    char sid[24];
    int sl = snprintf(sid, sizeof sid, "%lld", o->lease->server_id);
    buf_appendf(b, "$%d\r\n%s\r\n", sl, sid);
    if (a->argc == 4)
        buf_appendf(b, "$%zu\r\n%.*s\r\n", a->l[3], (int)a->l[3], a->v[3]);
    to_master(c, buf_start(b), buf_used(b), 0);
}

/* Without a lease of its own a connection tracks nothing. */
static void cmd_trackinginfo(struct client *c)
{
    static const char resp2[] = "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n"
                                ":-1\r\n$8\r\nprefixes\r\n*0\r\n";
    static const char resp3[] = "%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n"
                                ":-1\r\n$8\r\nprefixes\r\n*0\r\n";

    if (c->resp3)
        client_reply(c, resp3, sizeof resp3 - 1);
    else
        client_reply(c, resp2, sizeof resp2 - 1);
}

static void cmd_no_evict(struct client *c, const struct resp_args *a)
{
    struct client_ext *x = client_ext(c);

    if (!resp_arg_is(a, 2, "on") && !resp_arg_is(a, 2, "off")) {
        client_reply_error(c, "ERR syntax error");
        return;
    }
    if (!x) {
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    x->no_evict = resp_arg_is(a, 2, "on");
    client_reply_ok(c);
}

static void cmd_help(struct client *c)
{
    static const char *const lines[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME", "ID", "INFO", "KILL <ip:port> | <filter> <value> ... (ID, ADDR, LADDR, "
        "USER, TYPE, SKIPME)", "LIST [TYPE <type>] [ID <id> [<id> ...]]",
        "UNPAUSE", "PAUSE <timeout> [WRITE|ALL]", "REPLY (ON|OFF|SKIP)", "SETNAME <name>",
        "SETINFO <attr> <value>", "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix>] "
        "[OPTIN] [OPTOUT] [NOLOOP]", "CACHING (YES|NO)", "GETREDIR", "TRACKINGINFO",
        "UNBLOCK <clientid> [TIMEOUT|ERROR]", "NO-EVICT (ON|OFF)", "HELP",
    };
    struct buf *b = &client_sc(c)->scratch;
    size_t k = sizeof lines / sizeof lines[0];

    buf_reset(b);
    buf_appendf(b, "*%zu\r\n", k);
    for (size_t i = 0; i < k; i++)
        buf_appendf(b, "+%s\r\n", lines[i]);
    client_reply(c, buf_start(b), buf_used(b));
}

static void clientcmd_run(struct client *c, const struct resp_args *a, const char *frame,
                          const struct resp_frame *fr);

/* Redis 7.0's arity of each subcommand answered here (negative: at least). */
static const struct {
    const char *name;
    int arity;
} subcommands[] = {
    {"id", 2}, {"info", 2}, {"list", -2}, {"kill", -3}, {"getname", 2}, {"setname", 3},
    {"setinfo", 4}, {"pause", -3}, {"unpause", 2}, {"unblock", -3}, {"getredir", 2},
    {"trackinginfo", 2}, {"no-evict", 3}, {"help", 2},
};

/* Redis's error for an unknown subcommand or a wrong count: 0 if neither. */
static int bad_arity(struct client *c, const struct resp_args *a)
{
    int len = (int)(a->l[1] > 64 ? 64 : a->l[1]);

    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        int k = subcommands[i].arity;
        if (!resp_arg_is(a, 1, subcommands[i].name))
            continue;
        if (c->x)
            c->x->client_sub = subcommands[i].name;
        if (k > 0 ? a->argc == k : a->argc >= -k)
            return 0;
        client_reply_error(c, "ERR wrong number of arguments for 'client|%s' command",
                           subcommands[i].name);
        return 1;
    }
    client_reply_error(c, "ERR unknown subcommand '%.*s'. Try CLIENT HELP.", len, a->v[1]);
    return 1;
}

void clientcmd(struct client *c, const struct resp_args *a, const char *frame,
               const struct resp_frame *fr)
{
    struct client_ext *x = client_ext(c);     /* what CLIENT LIST shows of it */

    if (x)
        x->qbuf_now = fr->len;
    clientcmd_run(c, a, frame, fr);
    if (c->x)
        c->x->qbuf_now = 0;
}

static void clientcmd_run(struct client *c, const struct resp_args *a, const char *frame,
                          const struct resp_frame *fr)
{
    const char *name = c->x && c->x->name ? c->x->name : NULL;

    if (a->argc < 2) {
        client_reply_error(c, "ERR wrong number of arguments for 'client' command");
    } else if (bad_arity(c, a)) {
        return;
    } else if (resp_arg_is(a, 1, "setinfo")) {
        client_reply_ok(c);
    } else if (resp_arg_is(a, 1, "setname")) {
        if (!session_valid_name(a->v[2], a->l[2])) {
            client_reply_error(c, "ERR Client names cannot contain spaces, "
                               "newlines or special characters.");
            return;
        }
        session_set_name(c, a->v[2], a->l[2]);
        client_reply_ok(c);
    } else if (resp_arg_is(a, 1, "getname")) {
        if (name)
            client_reply_bulk(c, name, strlen(name));
        else
            client_reply_null(c);
    } else if (resp_arg_is(a, 1, "id")) {
        client_reply_int(c, (long long)c->id);
    } else if (resp_arg_is(a, 1, "info")) {
        struct buf b = {0};
        client_describe(&b, c, ev_now(client_sc(c)->loop));
        reply_lines(c, &b);
        buf_free(&b);
    } else if (resp_arg_is(a, 1, "list")) {
        cmd_list(c, a, frame, fr);
    } else if (resp_arg_is(a, 1, "kill")) {
        cmd_kill(c, a);
    } else if (resp_arg_is(a, 1, "pause") || resp_arg_is(a, 1, "unpause")) {
        cmd_pause(c, a, frame, fr);
    } else if (resp_arg_is(a, 1, "unblock")) {
        cmd_unblock(c, a);
    } else if (resp_arg_is(a, 1, "getredir")) {
        client_reply_int(c, -1);         /* with tracking on it streams: not here */
    } else if (resp_arg_is(a, 1, "trackinginfo")) {
        cmd_trackinginfo(c);
    } else if (resp_arg_is(a, 1, "no-evict")) {
        cmd_no_evict(c, a);
    } else {
        cmd_help(c);
    }
}

void clientcmd_in_multi(struct client *c, const struct command *cmd, const char *frame,
                        const struct resp_frame *fr)
{
    struct client_ext *x = c->x;
    const char *p;
    size_t n;
    long long ms;

    if (!x)
        return;
    if (cmd && cmd->state == STATE_END_MULTI) {
        /* EXEC runs a CLIENT PAUSE queued in it; DISCARD drops it */
        if (x->pause_in_multi && strcmp(cmd->name, "exec") == 0)
            master_paused(client_sc(c), x->pause_in_multi / 1000.0, 1);
        x->pause_in_multi = 0;
    } else if (cmd && cmd->local == LOCAL_CLIENT && fr->argc >= 3 &&
               resp_arg(frame, fr, 1, &p, &n) && n == 5 && strncasecmp(p, "pause", 5) == 0 &&
               resp_arg(frame, fr, 2, &p, &n) && resp_parse_ll(p, n, &ms) == 0 && ms > 0) {
        x->pause_in_multi = ms > 86400000 ? 86400000 : ms;
    }
}
