/* Commands answered by the proxy, with redis's own words where redis has
 * them, so clients and their error handling see what they expect. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client.h"

#define MAX_ARGS 16

struct args {
    long long   argc;             /* all of them, even past MAX_ARGS */
    const char *v[MAX_ARGS];
    size_t      l[MAX_ARGS];
};

static void collect_args(const char *frame, const struct resp_frame *fr, struct args *a)
{
    size_t pos = 0;
    int i = 0;

    a->argc = fr->argc;
    while (i < MAX_ARGS && resp_next_arg(frame, fr->len, &pos, &a->v[i], &a->l[i]))
        i++;
}

static int arg_is(const struct args *a, int i, const char *s)
{
    return i < MAX_ARGS && a->l[i] == strlen(s) && strncasecmp(a->v[i], s, a->l[i]) == 0;
}

/* Constant time in the length of the secret, so a timing probe learns nothing. */
static int secret_eq(const char *secret, const char *p, size_t n)
{
    size_t sl = strlen(secret);
    unsigned char d = sl != n;

    for (size_t i = 0; i < sl; i++)
        d |= (unsigned char)(secret[i] ^ (i < n ? p[i] : 0));
    return d == 0;
}

static void reply_ok(struct client *c)
{
    client_reply(c, "+OK\r\n", 5);
}

static void reply_bulk(struct client *c, const char *p, size_t n)
{
    struct buf *b = &c->sc->scratch;
    buf_reset(b);
    buf_appendf(b, "$%zu\r\n", n);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
    client_reply(c, buf_start(b), buf_used(b));
}

/* user may be NULL (AUTH pass). Which password counts: see DECISIONS.md. */
static int check_credentials(struct client *c, const char *user, size_t ul,
                             const char *pass, size_t pl)
{
    const struct config *cfg = c->sc->cfg;

    if (cfg->password) {
        if (user && !(ul == 7 && memcmp(user, "default", 7) == 0))
            return -1;
        return secret_eq(cfg->password, pass, pl) ? 0 : -1;
    }
    if (!cfg->upstream_password)
        return 1;
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

static void cmd_auth(struct client *c, const struct args *a)
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
    reply_ok(c);
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
    free(c->name);
    c->name = NULL;
    if (n) {
        c->name = malloc(n + 1);
        memcpy(c->name, p, n);
        c->name[n] = '\0';
    }
}

static void hello_reply(struct client *c)
{
    struct buf *b = &c->sc->scratch;
    const char *v = c->sc->master->version[0] ? c->sc->master->version : "unknown";

    buf_reset(b);
    buf_appendf(b, "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
                "$%zu\r\n%s\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:%llu\r\n"
                "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
                "$7\r\nmodules\r\n*0\r\n",
                strlen(v), v, (unsigned long long)c->id);
    client_reply(c, buf_start(b), buf_used(b));
}

/* HELLO [protover [AUTH user pass] [SETNAME name]], parsed as redis 7 does. */
static void cmd_hello(struct client *c, const struct args *a)
{
    long long ver = 2;
    int i = 2, authed_now = 0;
    const char *name = NULL;
    size_t namel = 0;

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
    for (; i < a->argc && i < MAX_ARGS; i++) {
        int more = (int)(a->argc - i - 1);
        if (arg_is(a, i, "auth") && more >= 2 && i + 2 < MAX_ARGS) {
            int rc = check_credentials(c, a->v[i + 1], a->l[i + 1], a->v[i + 2], a->l[i + 2]);
            if (rc != 0) {
                auth_failed(c, rc);
                return;
            }
            authed_now = 1;
            i += 2;
        } else if (arg_is(a, i, "setname") && more >= 1) {
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
    if (ver == 3) {
        client_reply_error(c, "NOPROTO sorry, this protocol version is not supported");
        return;
    }
    if (authed_now)
        c->authed = 1;
    if (name)
        set_name(c, name, namel);
    hello_reply(c);
}

static void cmd_select(struct client *c, const struct args *a)
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
    if (db == c->sc->cfg->database) {
        reply_ok(c);
        return;
    }
    c->sc->st.err_unsupported++;
    client_reply_error(c, "ERR SELECT of a database other than the configured one "
                       "(%d) is not supported by redis-sidecar yet", c->sc->cfg->database);
}

static void cmd_client(struct client *c, const struct args *a)
{
    char num[32];

    if (a->argc >= 2 && arg_is(a, 1, "setinfo")) {
        reply_ok(c);
    } else if (a->argc == 3 && arg_is(a, 1, "setname")) {
        if (!valid_name(a->v[2], a->l[2])) {
            client_reply_error(c, "ERR Client names cannot contain spaces, "
                               "newlines or special characters.");
            return;
        }
        set_name(c, a->v[2], a->l[2]);
        reply_ok(c);
    } else if (a->argc == 2 && arg_is(a, 1, "getname")) {
        if (c->name)
            reply_bulk(c, c->name, strlen(c->name));
        else
            client_reply(c, "$-1\r\n", 5);
    } else if (a->argc == 2 && arg_is(a, 1, "id")) {
        int n = snprintf(num, sizeof num, ":%llu\r\n", (unsigned long long)c->id);
        client_reply(c, num, (size_t)n);
    } else {
        c->sc->st.err_unsupported++;
        client_reply_error(c, "ERR CLIENT %.*s is not supported by redis-sidecar: "
                           "the upstream connections are shared",
                           a->argc >= 2 ? (int)(a->l[1] > 32 ? 32 : a->l[1]) : 0,
                           a->argc >= 2 ? a->v[1] : "");
    }
}

static long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static void proxy_info(struct client *c)
{
    struct sidecar *sc = c->sc;
    const struct sidecar_stats *s = &sc->st;
    const struct pool_stats *p = &sc->master->st;
    struct buf b = {0};

    buf_appendf(&b, "# Proxy\r\nversion:%s\r\nprocess_id:%d\r\nuptime_in_seconds:%.0f\r\n"
                "upstream_redis_version:%s\r\n\r\n",
                SIDECAR_VERSION, (int)getpid(), ev_now(sc->loop) - sc->started,
                sc->master->version[0] ? sc->master->version : "unknown");
    buf_appendf(&b, "# Clients\r\nconnected_clients:%u\r\ntotal_connections_received:%llu\r\n\r\n",
                sc->nclients, (unsigned long long)s->connections_received);
    buf_appendf(&b, "# Stats\r\ntotal_requests:%llu\r\nforwarded_requests:%llu\r\n"
                "local_replies:%llu\r\nclient_bytes_in:%llu\r\nclient_bytes_out:%llu\r\n"
                "upstream_bytes_out:%llu\r\nupstream_bytes_in:%llu\r\n\r\n",
                (unsigned long long)s->requests, (unsigned long long)s->forwarded,
                (unsigned long long)s->local_replies, (unsigned long long)s->bytes_in,
                (unsigned long long)s->bytes_out, (unsigned long long)p->bytes_out,
                (unsigned long long)p->bytes_in);
    buf_appendf(&b, "# Errors\r\nerrors_protocol:%llu\r\nerrors_query_buffer:%llu\r\n"
                "errors_output_buffer:%llu\r\nerrors_refused_command:%llu\r\n"
                "errors_unsupported_command:%llu\r\nerrors_auth:%llu\r\n"
                "errors_upstream_unavailable:%llu\r\nerrors_link_lost_after_send:%llu\r\n"
                "errors_reply_timeout:%llu\r\nerrors_node_down:%llu\r\n"
                "clients_closed_idle:%llu\r\n\r\n",
                (unsigned long long)s->err_protocol, (unsigned long long)s->err_query_buffer,
                (unsigned long long)s->err_output_buffer, (unsigned long long)s->err_refused,
                (unsigned long long)s->err_unsupported, (unsigned long long)s->err_auth,
                (unsigned long long)p->failed_unavailable,
                (unsigned long long)p->failed_after_send,
                (unsigned long long)p->reply_timeouts, (unsigned long long)s->err_node_down,
                (unsigned long long)s->idle_closed);
    buf_appendf(&b, "# Upstream\r\nmaster:%s\r\nmaster_links:%d\r\nmaster_links_ready:%d\r\n"
                "links_opened:%llu\r\nlink_failures:%llu\r\nconnect_failures:%llu\r\n"
                "retried_reads:%llu\r\nrequeued_unsent:%llu\r\nvalidations:%llu\r\nvalidations_failed:%llu\r\n"
                "validation_wait_ms_total:%.0f\r\nlinks_retired:%llu\r\n"
                "master_state:%s\r\nnode_down_transitions:%llu\r\nnode_up_transitions:%llu\r\n"
                "master_role:%s\r\n\r\n",
                sc->master->cfg.name, sc->master->cfg.connections,
                pool_ready_links(sc->master), (unsigned long long)p->links_opened,
                (unsigned long long)p->link_failures, (unsigned long long)p->connect_failures,
                (unsigned long long)p->retried_reads, (unsigned long long)p->requeued_unsent,
                (unsigned long long)p->validations,
                (unsigned long long)p->validations_failed, p->validation_wait * 1000,
                (unsigned long long)p->links_retired, sc->master->down ? "down" : "up",
                (unsigned long long)sc->master_health.downs,
                (unsigned long long)sc->master_health.ups,
                sc->master_health.role[0] ? sc->master_health.role : "unknown");
    buf_appendf(&b, "# Memory\r\nused_memory_rss:%ld\r\n", rss_bytes());
    reply_bulk(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

static void cmd_proxy(struct client *c, const struct args *a)
{
    static const char help[] =
        "*4\r\n+PROXY INFO: the proxy's counters, in INFO format\r\n"
        "+PROXY HELP: this list\r\n"
        "+Other commands go to the master; AUTH, HELLO, QUIT, SELECT and CLIENT "
        "SETNAME|GETNAME|ID|SETINFO are answered by the proxy\r\n"
        "+See README.md for the retry rule and the limits\r\n";

    if (a->argc == 2 && arg_is(a, 1, "info"))
        proxy_info(c);
    else if (a->argc == 2 && arg_is(a, 1, "help"))
        client_reply(c, help, sizeof help - 1);
    else
        client_reply_error(c, "ERR unknown PROXY subcommand or wrong number of "
                           "arguments; try PROXY HELP");
}

void admin_local(struct client *c, const struct command *cmd, const char *frame,
                 const struct resp_frame *fr)
{
    struct args a;

    collect_args(frame, fr, &a);
    switch (cmd->local) {
    case LOCAL_AUTH:   cmd_auth(c, &a); break;
    case LOCAL_HELLO:  cmd_hello(c, &a); break;
    case LOCAL_QUIT:   client_reply_and_close(c, "+OK\r\n", 5); break;
    case LOCAL_SELECT: cmd_select(c, &a); break;
    case LOCAL_CLIENT: cmd_client(c, &a); break;
    case LOCAL_PROXY:  cmd_proxy(c, &a); break;
    case LOCAL_NONE:   break;
    }
}
