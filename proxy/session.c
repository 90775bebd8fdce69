/* Session commands, with redis's own words where redis has them, so that
 * clients and their error handling see what they expect. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "client.h"
#include "cluster.h"
#include "clientcmd.h"
#include "nodes.h"
#include "request.h"
#include "users.h"

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

/* The admin password (either AUTH form) grants admin rights. */
static int admin_credentials(struct client *c, const char *user, size_t ul,
                             const char *pass, size_t pl)
{
    const struct config *cfg = client_sc(c)->cfg;

    if (!cfg->admin_password || (user && !is_default(user, ul)) ||
        !secret_eq(cfg->admin_password, pass, pl))
        return 0;
    c->admin_auth = !c->admin || c->admin_auth;
    c->admin = 1;
    return 1;
}

/* With [proxy] password (see DECISIONS.md): user may be NULL (AUTH pass).
 * 0: good; -1: wrong. */
static int check_credentials(struct client *c, const char *user, size_t ul,
                             const char *pass, size_t pl)
{
    const struct config *cfg = client_sc(c)->cfg;

    if (user && !is_default(user, ul))
        return -1;
    return secret_eq(cfg->password, pass, pl) ? 0 : -1;
}

static void auth_failed(struct client *c)
{
    client_sc(c)->st.err_auth++;
    client_reply_error(c, "WRONGPASS invalid username-password pair or user "
                       "is disabled.");
}

/* Without [proxy] password Redis checks the credentials, on a link of the
 * user they name (users.c): AUTH user pass goes there, and the client
 * reads nothing more until the answer is in (session_auth_answered),
 * which decides where its next requests go. hello: HELLO's protocol
 * version (2 or 3), or 0 for AUTH itself. */
static void auth_upstream(struct client *c, const char *user, size_t ul, const char *pass,
                          size_t pl, int hello)
{
    struct sidecar *sc = client_sc(c);
    struct node *m = sc->master;
    struct buf *b = &sc->scratch;
    struct user *u = NULL;
    char err[300];
    int named = user != NULL;   /* AUTH pass is redis's to answer as it does */

    if (!user) {
        user = "default";
        ul = 7;
    }
    if (c->lease) {
        client_reply_error(c, "ERR redis-sidecar cannot change the user of a connection "
                           "that holds a dedicated link (MULTI, WATCH, SELECT, pub/sub, "
                           "MONITOR): RESET first");
        return;
    }
    if (!m || m->pool->down) {
        client_reply_error(c, "ERR AUTH cannot be checked now: %s", !m ? "no master"
                           : m->pool->down_reason);
        return;
    }
    if (!client_ext(c) ||
        (!users_is_upstream(sc, user, ul) && !(u = users_get(sc, user, ul, pass, pl, err,
                                                              sizeof err)))) {
        client_reply_error(c, "%s", c->x ? err : "ERR proxy out of memory");
        return;
    }
    struct link *l = pool_link_for(u ? m->upool[u->idx] : m->pool, c->id, c->resp3);
    if (!l) {
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    buf_reset(b);
    buf_appendf(b, "*%d\r\n$4\r\nAUTH\r\n", 2 + named);
    if (named) {
        buf_appendf(b, "$%zu\r\n", ul);
        buf_append(b, user, ul);
        buf_append(b, "\r\n", 2);
    }
    buf_appendf(b, "$%zu\r\n", pl);
    buf_append(b, pass, pl);
    buf_append(b, "\r\n", 2);
    struct req *r = request_forward(c, l, buf_start(b), buf_used(b), REQ_AUTH | REQ_READONLY |
                                    (hello ? REQ_HELLO : 0) | (hello == 3 ? REQ_HELLO3 : 0));
    if (r)
        r->parked = u;
    request_barrier(c);
}

static void cmd_auth(struct client *c, const struct resp_args *a)
{
    const char *user = a->argc == 3 ? a->v[1] : NULL;
    size_t ul = a->argc == 3 ? a->l[1] : 0;

    if (a->argc < 2 || a->argc > 3) {
        client_reply_error(c, a->argc < 2 ? "ERR wrong number of arguments for "
                           "'auth' command" : "ERR syntax error");
        return;
    }
    if (admin_credentials(c, user, ul, a->v[a->argc - 1], a->l[a->argc - 1])) {
        c->authed = 1;
        client_reply_ok(c);
    } else if (!client_sc(c)->cfg->password) {
        auth_upstream(c, user, ul, a->v[a->argc - 1], a->l[a->argc - 1], 0);
    } else if (check_credentials(c, user, ul, a->v[a->argc - 1], a->l[a->argc - 1]) < 0) {
        auth_failed(c);
    } else {
        c->authed = 1;
        client_reply_ok(c);
    }
}

int session_valid_name(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

void session_set_name(struct client *c, const char *p, size_t n)
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

/* redis's reply to HELLO, in b: a map of 7 in RESP3, a flat array of 14 in RESP2 */
static void hello_build(struct client *c, struct buf *b)
{
    const char *v = nodes_version(client_sc(c));

    buf_reset(b);
    buf_appendf(b, "%s\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
                "$%zu\r\n%s\r\n$5\r\nproto\r\n:%d\r\n$2\r\nid\r\n:%llu\r\n"
                "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
                "$7\r\nmodules\r\n*0\r\n", c->resp3 ? "%7" : "*14",
                strlen(v), v, c->resp3 ? 3 : 2, (unsigned long long)c->id);
}

/* The protocol of the connection changes, and its lease follows. 0, or
 * -1 with the error line (CRLF-ended) in e. */
static int switch_protocol(struct client *c, int resp3, char *e, size_t el)
{
    struct node *m = client_sc(c)->master;

    /* Its own connection upstream would have to switch in step: not
     * inside a transaction (queued there, it may never run) nor under
     * subscriptions (their messages are framed by the protocol). */
    if (c->in_multi || c->stream) {
        snprintf(e, el, "-ERR HELLO cannot change the protocol %s through "
                 "redis-sidecar\r\n", c->in_multi ? "inside MULTI" :
                 "of a subscribed or tracking connection");
        return -1;
    }
    if (resp3 && m && m->pool->resp3_refused[0]) {
        snprintf(e, el, "-NOPROTO unsupported protocol version (the upstream "
                 "refused HELLO 3: %s)\r\n", m->pool->resp3_refused);
        return -1;
    }
    /* A lease switches too, its answer dropped; it is reset in this
     * protocol when it goes back to the pool. Every node gets its RESP3
     * links (the first RESP3 client opens them), where the router looks. */
    if ((c->lease && pool_lease_protocol(c->lease, resp3) < 0) ||
        (resp3 && nodes_open_resp3(client_sc(c)) < 0)) {
        snprintf(e, el, "-ERR proxy out of memory\r\n");
        return -1;
    }
    c->resp3 = resp3 != 0;
    return 0;
}

/* HELLO's effects once its credentials (if any) are good: the name, the
 * protocol, and its reply, in b. */
static void hello_done(struct client *c, int ver, const char *name, size_t namel,
                       struct buf *b)
{
    char e[300];

    if (name)
        session_set_name(c, name, namel);
    if (ver && c->resp3 != (ver == 3) && switch_protocol(c, ver == 3, e, sizeof e) < 0) {
        buf_reset(b);
        buf_append(b, e, strlen(e));
        return;
    }
    hello_build(c, b);
}

/* HELLO [protover [AUTH user pass] [SETNAME name]], parsed as redis 7 does. */
static void cmd_hello(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    long long ver = 0;
    int auth = 0;
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
            auth = i + 1;
            i += 2;
        } else if (resp_arg_is(a, i, "setname") && more >= 1) {
            name = a->v[++i];
            namel = a->l[i];
            if (!session_valid_name(name, namel)) {
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
    /* redis checks the protocol before the credentials */
    if (ver == 3 && sc->master && sc->master->pool->resp3_refused[0]) {
        client_reply_error(c, "NOPROTO unsupported protocol version (the upstream refused "
                           "HELLO 3: %s)", sc->master->pool->resp3_refused);
        return;
    }
    if (auth && !admin_credentials(c, a->v[auth], a->l[auth], a->v[auth + 1], a->l[auth + 1])) {
        if (!sc->cfg->password) {
            /* Redis decides; the name waits for its answer */
            struct client_ext *x = client_ext(c);
            if (x) {
                free(x->hello_name);
                x->hello_name = NULL;
                if (name && !(x->hello_name = strndup(name, namel)))
                    x = NULL;
            }
            if (!x)
                client_reply_error(c, "ERR proxy out of memory");
            else
                auth_upstream(c, a->v[auth], a->l[auth], a->v[auth + 1], a->l[auth + 1],
                              ver ? (int)ver : 2);
            return;
        }
        if (check_credentials(c, a->v[auth], a->l[auth], a->v[auth + 1], a->l[auth + 1]) < 0) {
            auth_failed(c);
            return;
        }
    }
    if (!c->authed && !auth) {
        sc->st.err_auth++;
        client_reply_error(c, "NOAUTH HELLO must be called with the client already "
                           "authenticated, otherwise the HELLO <proto> AUTH <user> "
                           "<pass> option can be used to authenticate the client and "
                           "select the RESP protocol version at the same time");
        return;
    }
    if (auth)
        c->authed = 1;
    hello_done(c, (int)ver, name, namel, &sc->scratch);
    client_reply(c, buf_start(&sc->scratch), buf_used(&sc->scratch));
}

/* Redis's answer to an app's AUTH (or HELLO ... AUTH) sent by
 * auth_upstream(): on +OK the client runs as that user from now on (its
 * pools, or the nodes' own for the [upstream] user) and HELLO's other
 * effects follow; otherwise Redis's error goes to the client, whose user
 * stays what it was. req: the AUTH sent, for the password Redis took. */
void session_auth_answered(struct client *c, struct req *r, const char *req, const char *p,
                           size_t n, const char *err)
{
    struct sidecar *sc = client_sc(c);
    struct user *u = r->parked;
    int hello = !(r->flags & REQ_HELLO) ? 0 : (r->flags & REQ_HELLO3) ? 3 : 2;
    struct client_ext *x = c->x;
    struct resp_framer f;
    struct resp_args a;

    r->parked = NULL;
    r->flags &= ~(unsigned)(REQ_AUTH | REQ_HELLO | REQ_HELLO3);
    if (err || n < 3 || p[0] != '+') {
        sc->st.err_auth++;
        if (u)
            u->auth_failures++;
        free(x->hello_name);
        x->hello_name = NULL;
        client_answer(c, r, p, n, err);
        return;
    }
    resp_framer_reset(&f);
    if (resp_frame_request(&f, req, r->len, &sc->req_limits) != RESP_DONE) {
        client_answer(c, r, NULL, 0, "proxy could not read back its AUTH");
        return;
    }
    resp_collect_args(req, &f.fr, &a);
    if (u && users_accepted(sc, u, a.v[a.argc - 1], a.l[a.argc - 1]) < 0) {
        client_answer(c, r, NULL, 0, "proxy out of memory");
        return;
    }
    users_set(c, u);
    c->authed = 1;
    if (!hello) {
        client_answer(c, r, p, n, NULL);
        return;
    }
    char *name = x->hello_name;
    x->hello_name = NULL;
    hello_done(c, hello, name, name ? strlen(name) : 0, &sc->scratch);
    free(name);
    client_answer(c, r, buf_start(&sc->scratch), buf_used(&sc->scratch), NULL);
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
    c->in_multi = c->watching = c->other_db = c->stream = c->multi_deferred = 0;
    c->multi_aborted = 0;
    c->resp3 = 0;
    if (c->x) {
        struct client_ext *x = c->x;
        free(x->name);
        x->name = NULL;
        x->tracking = x->monitor = x->no_evict = x->redirect_target = 0;
        x->sub = x->psub = x->ssub = 0;
        x->redir = 0;
        x->owed = x->nxlate = x->uncounted = x->reply_off = x->reply_skip = 0;
    }
    c->authed = client_sc(c)->cfg->password == NULL;
    users_set(c, NULL);
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
    case LOCAL_CLIENT: clientcmd(c, &a, frame, fr); break;
    case LOCAL_RESET:  cmd_reset(c); break;
    case LOCAL_CLUSTER: cluster_command(c, frame, fr); break;
    case LOCAL_PROXY:
    case LOCAL_NONE:   break;
    }
}
