/* Session commands, with redis's own words where redis has them, so that
 * clients and their error handling see what they expect. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "client.h"
#include "nodes.h"

/* Constant time in the length of the secret, so a timing probe learns nothing. */
static int secret_eq(const char *secret, const char *p, size_t n)
{
    size_t sl = strlen(secret);
    unsigned char d = sl != n;

    for (size_t i = 0; i < sl; i++)
        d |= (unsigned char)(secret[i] ^ (i < n ? p[i] : 0));
    return d == 0;
}

static int is_default(const char *user, size_t ul)
{
    return ul == 7 && memcmp(user, "default", 7) == 0;
}

/* user may be NULL (AUTH pass). Which password counts: see DECISIONS.md.
 * The admin password, in either case, also grants admin rights. 0: good;
 * -1: wrong; 1: a password given where none is configured. */
static int check_credentials(struct client *c, const char *user, size_t ul,
                             const char *pass, size_t pl)
{
    const struct config *cfg = c->sc->cfg;

    if (cfg->admin_password && (!user || is_default(user, ul)) &&
        secret_eq(cfg->admin_password, pass, pl)) {
        c->admin_auth = !c->admin || c->admin_auth;
        c->admin = 1;
        return 0;
    }
    if (cfg->password) {
        if (user && !is_default(user, ul))
            return -1;
        return secret_eq(cfg->password, pass, pl) ? 0 : -1;
    }
    if (!cfg->upstream_password) {
        /* Nothing configured: redis's nopass default user takes any
         * password with its name; any other user is unknown. */
        if (!user)
            return 1;
        return is_default(user, ul) ? 0 : -1;
    }
    if (user) {
        const char *want = cfg->username ? cfg->username : "default";
        if (strlen(want) != ul || memcmp(want, user, ul) != 0)
            return -1;
    }
    return secret_eq(cfg->upstream_password, pass, pl) ? 0 : -1;
}

static void auth_failed(struct client *c, int rc)
{
    c->sc->st.err_auth++;
    if (rc > 0)
        client_reply_error(c, "ERR AUTH <password> called without any password "
                           "configured for the default user. Are you sure your "
                           "configuration is correct?");
    else
        client_reply_error(c, "WRONGPASS invalid username-password pair or user "
                           "is disabled.");
}

static void cmd_auth(struct client *c, const struct resp_args *a)
{
    int rc;

    if (a->argc < 2 || a->argc > 3) {
        client_reply_error(c, a->argc < 2 ? "ERR wrong number of arguments for "
                           "'auth' command" : "ERR syntax error");
        return;
    }
    if (a->argc == 2)
        rc = check_credentials(c, NULL, 0, a->v[1], a->l[1]);
    else
        rc = check_credentials(c, a->v[1], a->l[1], a->v[2], a->l[2]);
    if (rc != 0) {
        auth_failed(c, rc);
        return;
    }
    c->authed = 1;
    client_reply_ok(c);
}

static int valid_name(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

static void set_name(struct client *c, const char *p, size_t n)
{
    struct client_ext *x = client_ext(c);

    if (!x)
        return;
    free(x->name);
    x->name = NULL;
    if (n && (x->name = malloc(n + 1)) != NULL) {
        memcpy(x->name, p, n);
        x->name[n] = '\0';
    }
}

static void hello_reply(struct client *c)
{
    struct buf *b = &c->sc->scratch;
    const char *v = nodes_version(c->sc);

    /* redis's reply: a map of 7 in RESP3, a flat array of 14 in RESP2 */
    buf_reset(b);
    buf_appendf(b, "%s\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
                "$%zu\r\n%s\r\n$5\r\nproto\r\n:%d\r\n$2\r\nid\r\n:%llu\r\n"
                "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
                "$7\r\nmodules\r\n*0\r\n", c->resp3 ? "%7" : "*14",
                strlen(v), v, c->resp3 ? 3 : 2, (unsigned long long)c->id);
    client_reply(c, buf_start(b), buf_used(b));
}

/* The protocol of the connection changes, and its lease follows. 0, or
 * -1 with the error sent. */
static int switch_protocol(struct client *c, int resp3)
{
    struct node *m = c->sc->master;

    /* Its own connection upstream would have to switch in step: not
     * inside a transaction (queued there, it may never run) nor under
     * subscriptions (their messages are framed by the protocol). */
    if (c->in_multi || c->stream) {
        client_reply_error(c, "ERR HELLO cannot change the protocol %s through "
                           "redis-sidecar", c->in_multi ? "inside MULTI" :
                           "of a subscribed or tracking connection");
        return -1;
    }
    if (resp3 && m && m->pool->resp3_refused[0]) {
        client_reply_error(c, "NOPROTO unsupported protocol version (the upstream "
                           "refused HELLO 3: %s)", m->pool->resp3_refused);
        return -1;
    }
    /* A lease switches too, its answer dropped; it is reset in this
     * protocol when it goes back to the pool. Every node gets its RESP3
     * links (the first RESP3 client opens them), where the router looks. */
    if ((c->lease && pool_lease_protocol(c->lease, resp3) < 0) ||
        (resp3 && nodes_open_resp3(c->sc) < 0)) {
        client_reply_error(c, "ERR proxy out of memory");
        return -1;
    }
    c->resp3 = resp3 != 0;
    return 0;
}

/* HELLO [protover [AUTH user pass] [SETNAME name]], parsed as redis 7 does. */
static void cmd_hello(struct client *c, const struct resp_args *a)
{
    long long ver = 2;
    int authed_now = 0;
    const char *name = NULL;
    size_t namel = 0;

    if (a->argc > RESP_ARGS_MAX) {
        client_reply_error(c, "ERR syntax error in HELLO: too many options");
        return;
    }
    if (a->argc >= 2) {
        if (resp_parse_ll(a->v[1], a->l[1], &ver) < 0) {
            client_reply_error(c, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            client_reply_error(c, "NOPROTO unsupported protocol version");
            return;
        }
    }
    for (int i = 2; i < a->argc; i++) {
        int more = (int)(a->argc - i - 1);
        if (resp_arg_is(a, i, "auth") && more >= 2) {
            int rc = check_credentials(c, a->v[i + 1], a->l[i + 1], a->v[i + 2], a->l[i + 2]);
            if (rc != 0) {
                auth_failed(c, rc);
                return;
            }
            authed_now = 1;
            i += 2;
        } else if (resp_arg_is(a, i, "setname") && more >= 1) {
            name = a->v[++i];
            namel = a->l[i];
            if (!valid_name(name, namel)) {
                client_reply_error(c, "ERR Client names cannot contain spaces, "
                                   "newlines or special characters.");
                return;
            }
        } else {
            client_reply_error(c, "ERR Syntax error in HELLO option '%.*s'",
                               (int)(a->l[i] > 64 ? 64 : a->l[i]), a->v[i]);
            return;
        }
    }
    if (!c->authed && !authed_now) {
        c->sc->st.err_auth++;
        client_reply_error(c, "NOAUTH HELLO must be called with the client already "
                           "authenticated, otherwise the HELLO <proto> AUTH <user> "
                           "<pass> option can be used to authenticate the client and "
                           "select the RESP protocol version at the same time");
        return;
    }
    if (authed_now)
        c->authed = 1;
    if (name)
        set_name(c, name, namel);
    if (a->argc >= 2 && c->resp3 != (ver == 3) && switch_protocol(c, ver == 3) < 0)
        return;
    hello_reply(c);
}

static void cmd_select(struct client *c, const struct resp_args *a)
{
    long long db;

    if (a->argc != 2) {
        client_reply_error(c, "ERR wrong number of arguments for 'select' command");
        return;
    }
    if (resp_parse_ll(a->v[1], a->l[1], &db) < 0 || db < 0 || db > 2147483647LL) {
        client_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    client_reply_ok(c);  /* the configured database: another one went to a lease */
}

/* CLIENT KILL ip:port (old form: +OK) or CLIENT KILL ID id | ADDR ip:port
 * (a count), for admins, on the proxy's own app connections. */
static void client_kill_cmd(struct client *c, const struct resp_args *a)
{
    long long n = -1;

    if (!admin_allowed(c))
        return;
    if (a->argc == 3) {
        n = client_kill(c, MATCH_ADDR, a->v[2], a->l[2], NULL, "killed by CLIENT KILL");
        if (n > 0)
            client_reply_ok(c);
        else
            client_reply_error(c, "ERR No such client");
        return;
    }
    if (a->argc == 4 && resp_arg_is(a, 2, "id"))
        n = client_kill(c, MATCH_ID, a->v[3], a->l[3], NULL, "killed by CLIENT KILL");
    else if (a->argc == 4 && resp_arg_is(a, 2, "addr"))
        n = client_kill(c, MATCH_ADDR, a->v[3], a->l[3], NULL, "killed by CLIENT KILL");
    if (n < 0)
        client_reply_error(c, "ERR syntax error: CLIENT KILL ip:port | ID id | ADDR ip:port");
    else
        client_reply_int(c, n);
}

static void reply_own_line(struct client *c)
{
    struct buf b = {0};

    client_describe(&b, c, ev_now(c->sc->loop));
    client_reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

static void cmd_client(struct client *c, const struct resp_args *a)
{
    const char *name = c->x && c->x->name ? c->x->name : NULL;

    if (a->argc >= 2 && resp_arg_is(a, 1, "setinfo")) {
        client_reply_ok(c);
    } else if (a->argc == 3 && resp_arg_is(a, 1, "setname")) {
        if (!valid_name(a->v[2], a->l[2])) {
            client_reply_error(c, "ERR Client names cannot contain spaces, "
                               "newlines or special characters.");
            return;
        }
        set_name(c, a->v[2], a->l[2]);
        client_reply_ok(c);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "getname")) {
        if (name)
            client_reply_bulk(c, name, strlen(name));
        else
            client_reply_null(c);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "id")) {
        client_reply_int(c, (long long)c->id);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "info")) {
        reply_own_line(c);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "list")) {
        if (c->admin)
            admin_client_list(c);
        else
            reply_own_line(c);
    } else if (a->argc >= 3 && resp_arg_is(a, 1, "kill")) {
        client_kill_cmd(c, a);
    } else if (a->argc == 3 && resp_arg_is(a, 1, "no-evict")) {
        client_reply_ok(c);
    } else {
        c->sc->st.err_unsupported++;
        client_reply_error(c, "ERR CLIENT %.*s is not supported by redis-sidecar: "
                           "the upstream connections are shared",
                           a->argc >= 2 ? (int)(a->l[1] > 32 ? 32 : a->l[1]) : 0,
                           a->argc >= 2 ? a->v[1] : "");
    }
}

/* RESET, as redis does it: out of MULTI, WATCH, pub/sub and tracking (the
 * lease goes back, RESET there, or is closed if busy), the configured
 * database, no name, RESP2, and the default user: unauthenticated again
 * if the proxy has a password, no longer an admin if AUTH made it one. */
static void cmd_reset(struct client *c)
{
    if (c->lease) {
        struct link *l = c->lease;
        c->lease = NULL;
        pool_unlease(l->pool, l);
    }
    c->in_multi = c->watching = c->other_db = c->stream = 0;
    c->resp3 = 0;
    if (c->x) {
        free(c->x->name);
        c->x->name = NULL;
    }
    c->authed = c->sc->cfg->password == NULL;
    if (c->admin_auth)
        c->admin = c->admin_auth = 0;
    client_reply(c, "+RESET\r\n", 8);
}

void session_command(struct client *c, const struct command *cmd, const char *frame,
                     const struct resp_frame *fr)
{
    struct resp_args a;

    resp_collect_args(frame, fr, &a);
    switch (cmd->local) {
    case LOCAL_AUTH:   cmd_auth(c, &a); break;
    case LOCAL_HELLO:  cmd_hello(c, &a); break;
    case LOCAL_QUIT:   client_reply_and_close(c, "+OK\r\n", 5); break;
    case LOCAL_SELECT: cmd_select(c, &a); break;
    case LOCAL_CLIENT: cmd_client(c, &a); break;
    case LOCAL_RESET:  cmd_reset(c); break;
    case LOCAL_PROXY:
    case LOCAL_NONE:   break;
    }
}
