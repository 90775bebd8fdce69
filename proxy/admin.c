/* Commands answered by the proxy, with redis's own words where redis has
 * them, so clients and their error handling see what they expect. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client.h"
#include "metrics.h"
#include "nodes.h"
#include "reload.h"

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

/* Text for people (INFO-style, CLIENT LIST): a verbatim string in RESP3,
 * as redis sends its own, a bulk string in RESP2. */
static void reply_text(struct client *c, const char *p, size_t n)
{
    struct buf *b = &c->sc->scratch;

    if (!c->resp3) {
        reply_bulk(c, p, n);
        return;
    }
    buf_reset(b);
    buf_appendf(b, "=%zu\r\ntxt:", n + 4);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
    client_reply(c, buf_start(b), buf_used(b));
}

static void reply_simple(struct client *c, const char *text)
{
    struct buf *b = &c->sc->scratch;

    buf_reset(b);
    buf_appendf(b, "+%s\r\n", text);
    client_reply(c, buf_start(b), buf_used(b));
}

static void reply_null(struct client *c)
{
    if (c->resp3)
        client_reply(c, "_\r\n", 3);
    else
        client_reply(c, "$-1\r\n", 5);
}

/* user may be NULL (AUTH pass). Which password counts: see DECISIONS.md.
 * The admin password, in either case, also grants admin rights. */
static int check_credentials(struct client *c, const char *user, size_t ul,
                             const char *pass, size_t pl)
{
    const struct config *cfg = c->sc->cfg;

    if (cfg->admin_password && (!user || (ul == 7 && memcmp(user, "default", 7) == 0)) &&
        secret_eq(cfg->admin_password, pass, pl)) {
        c->admin = 1;
        return 0;
    }

    if (cfg->password) {
        if (user && !(ul == 7 && memcmp(user, "default", 7) == 0))
            return -1;
        return secret_eq(cfg->password, pass, pl) ? 0 : -1;
    }
    if (!cfg->upstream_password) {
        /* Nothing configured: redis's nopass default user takes any
         * password with its name; any other user is unknown. */
        if (!user)
            return 1;
        return ul == 7 && memcmp(user, "default", 7) == 0 ? 0 : -1;
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

static const char *name_of(const struct client *c)
{
    return c->x && c->x->name ? c->x->name : NULL;
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

/* HELLO [protover [AUTH user pass] [SETNAME name]], parsed as redis 7 does. */
static void cmd_hello(struct client *c, const struct args *a)
{
    long long ver = 2;
    int i = 2, authed_now = 0;
    const char *name = NULL;
    size_t namel = 0;

    if (a->argc > MAX_ARGS) {
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
    for (; i < a->argc && i < MAX_ARGS; i++) {
        int more = (int)(a->argc - i - 1);
        if (arg_is(a, i, "auth") && more >= 2) {
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
    if (authed_now)
        c->authed = 1;
    if (name)
        set_name(c, name, namel);
    if (a->argc >= 2 && c->resp3 != (ver == 3)) {
        /* Its own connection upstream would have to switch in step: not
         * inside a transaction (queued there, it may never run) nor under
         * subscriptions (their messages are framed by the protocol). */
        if (c->in_multi || c->stream) {
            client_reply_error(c, "ERR HELLO cannot change the protocol %s through "
                               "redis-sidecar", c->in_multi ? "inside MULTI" :
                               "of a subscribed or tracking connection");
            return;
        }
        if (ver == 3 && c->sc->master && c->sc->master->pool->resp3_refused[0]) {
            client_reply_error(c, "NOPROTO unsupported protocol version (the upstream "
                               "refused HELLO 3: %s)", c->sc->master->pool->resp3_refused);
            return;
        }
        /* A lease switches too, its answer dropped; it is reset in this
         * protocol when it goes back to the pool. */
        if (c->lease && pool_lease_protocol(c->lease, ver == 3) < 0) {
            client_reply_error(c, "ERR proxy out of memory");
            return;
        }
        c->resp3 = ver == 3;
    }
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
    reply_ok(c);        /* the configured database: another one went to a lease */
}


struct field {
    const char        *name;
    unsigned long long v;
};

#define FIELDS(...) (const struct field[]){__VA_ARGS__}, \
    sizeof (const struct field[]){__VA_ARGS__} / sizeof (struct field)

static void section(struct buf *b, const char *title, const struct field *f, size_t n)
{
    buf_appendf(b, "# %s\r\n", title);
    for (size_t i = 0; i < n; i++)
        buf_appendf(b, "%s:%llu\r\n", f[i].name, f[i].v);
    buf_append(b, "\r\n", 2);
}

/* One line per replica, in the style of INFO replication's slaveN lines. */
static void info_replicas(struct buf *b, const struct sidecar *sc)
{
    ev_tstamp now = ev_now(sc->loop);
    const struct node *n;
    int i = 0;

    buf_appendf(b, "# Replicas\r\nreplicas:%d\r\n", sc->nreplicas);
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        if (n == sc->master)
            continue;
        char why[96] = "";
        int ok = !n->pool->down && health_replica_eligible(&sc->topo, &n->health,
                     sc->cfg->replica_max_lag, now, why, sizeof why);
        buf_appendf(b, "replica%d:addr=%s,state=%s,role=%s,master_link=%s,offset=%lld,"
                    "lag=%.1f,eligible=%d,why=%s,links_ready=%d,inflight=%u,requests=%llu\r\n",
                    i++, n->pool->cfg.name, n->pool->down ? "down" : "up",
                    n->health.role[0] ? n->health.role : "unknown",
                    n->health.link[0] ? n->health.link : "unknown", n->health.offset,
                    health_replica_lag(&sc->topo, n->health.offset, now), ok,
                    ok ? "-" : why, pool_ready_links(n->pool, 0), pool_inflight(n->pool),
                    (unsigned long long)n->pool->st.requests_sent);
    }
    buf_append(b, "\r\n", 2);
}

static const struct pool_stats no_stats;

/* The master's link counters (none while there is no master). */
static const struct pool_stats *master_stats(const struct sidecar *sc)
{
    return sc->master ? &sc->master->pool->st : &no_stats;
}

static void info_upstream(struct buf *b, const struct sidecar *sc)
{
    const struct pool *m = sc->master ? sc->master->pool : NULL;
    const struct pool_stats *p = master_stats(sc);
    static const struct checker no_checks;
    const struct checker *h = sc->master ? &sc->master->health : &no_checks;

    buf_appendf(b, "# Upstream\r\nmaster:%s\r\nmaster_state:%s\r\nmaster_role:%s\r\n"
                "master_switches:%llu\r\nrequests_held_for_master:%llu\r\n"
                "requests_held_failed:%llu\r\nmaster_refusals_held:%llu\r\n\r\n",
                m ? m->cfg.name : "none", !m ? "none" : m->down ? "down" : "up",
                h->role[0] ? h->role : "unknown", (unsigned long long)sc->st.master_switches,
                (unsigned long long)sc->st.held, (unsigned long long)sc->st.held_failed,
                (unsigned long long)sc->st.master_refusals);
    section(b, "Links", FIELDS(
        {"master_links", (unsigned long long)(m ? m->cfg.connections : 0)},
        {"master_links_ready", (unsigned long long)(m ? pool_ready_links(m, 0) : 0)},
        {"master_links_resp3", (unsigned long long)(m && m->links[1] ? m->cfg.connections : 0)},
        {"master_links_resp3_ready", (unsigned long long)(m ? pool_ready_links(m, 1) : 0)},
        {"pushes_dropped", p->pushes_dropped},
        {"links_opened", p->links_opened}, {"link_failures", p->link_failures},
        {"connect_failures", p->connect_failures}, {"links_retired", p->links_retired},
        {"links_lost_closed_by_server", p->lost[LOST_CLOSED]},
        {"links_lost_socket_error", p->lost[LOST_ERROR]},
        {"links_lost_bad_reply", p->lost[LOST_PROTOCOL]},
        {"links_lost_validation", p->lost[LOST_VALIDATION]},
        {"links_lost_reply_timeout", p->lost[LOST_REPLY_TIMEOUT]},
        {"links_lost_handshake", p->lost[LOST_HANDSHAKE]},
        {"retried_reads", p->retried_reads}, {"requeued_unsent", p->requeued_unsent},
        {"validations", p->validations}, {"validations_failed", p->validations_failed},
        {"validation_wait_ms_total", (unsigned long long)(p->validation_wait * 1000)},
        {"leases_in_use_or_idle", (unsigned long long)(m ? pool_leases(m) : 0)},
        {"leases_taken", p->leases_taken}, {"leases_refused", p->leases_refused},
        {"leases_reset_and_reused", p->leases_reset}, {"leases_closed", p->leases_closed},
        {"health_checks", h->checks},
        {"health_checks_failed", h->failures},
        {"node_down_transitions", h->downs},
        {"node_up_transitions", h->ups}));
    info_replicas(b, sc);
}

static void proxy_info(struct client *c)
{
    struct sidecar *sc = c->sc;
    const struct sidecar_stats *s = &sc->st;
    const struct pool_stats *p = master_stats(sc);
    struct buf b = {0};

    buf_appendf(&b, "# Proxy\r\nversion:%s\r\nprocess_id:%d\r\nuptime_in_seconds:%.0f\r\n"
                "upstream_redis_version:%s\r\n\r\n",
                SIDECAR_VERSION, (int)getpid(), ev_now(sc->loop) - sc->started,
                nodes_version(sc));
    section(&b, "Clients", FIELDS(
        {"connected_clients", sc->nclients},
        {"total_connections_received", s->connections_received},
        {"refused_banned", s->refused[REFUSED_BANNED]},
        {"refused_denied", s->refused[REFUSED_DENIED]},
        {"refused_max_connections", s->refused[REFUSED_MAX_CONN]},
        {"refused_per_ip", s->refused[REFUSED_PER_IP]},
        {"clients_killed", s->killed}, {"clients_closed_idle", s->idle_closed},
        {"pipeline_pauses", s->pipeline_pauses}, {"tracked_ips", sc->ips.n},
        {"bans", (unsigned long long)sc->ips.nbans},
        {"requests_paused", (unsigned long long)sc->requests_paused}));
    section(&b, "Stats", FIELDS(
        {"total_requests", s->requests}, {"forwarded_requests", s->forwarded},
        {"reads_to_replicas", s->reads_to_replicas},
        {"reads_kept_on_master_ryw", s->reads_ryw_master},
        {"replica_redirects", s->replica_redirects},
        {"forwarded_replies", s->replies}, {"local_replies", s->local_replies},
        {"client_bytes_in", s->bytes_in}, {"client_bytes_out", s->bytes_out},
        {"upstream_bytes_out", p->bytes_out}, {"upstream_bytes_in", p->bytes_in}));
    section(&b, "Errors", FIELDS(
        {"errors_protocol", s->err_protocol}, {"errors_query_buffer", s->err_query_buffer},
        {"errors_output_buffer", s->err_output_buffer},
        {"errors_refused_command", s->err_refused},
        {"errors_unsupported_command", s->err_unsupported}, {"errors_auth", s->err_auth},
        {"errors_noperm", s->err_noperm},
        {"errors_upstream_unavailable", p->failed_unavailable},
        {"errors_link_lost_after_send", p->failed_after_send},
        {"errors_reply_timeout", p->reply_timeouts}, {"errors_node_down", s->err_node_down},
        {"errors_no_replica", s->err_no_replica}));
    info_upstream(&b, sc);
    buf_appendf(&b, "# Memory\r\nused_memory_rss:%ld\r\n", proxy_rss_bytes());
    reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

/* "30s", "500ms", or plain seconds. */
static int parse_timeout(const char *p, size_t n, double *t)
{
    char b[32], *end;

    if (n == 0 || n >= sizeof b)
        return -1;
    memcpy(b, p, n);
    b[n] = '\0';
    if (config_parse_duration(b, t) == 0)
        return 0;
    *t = strtod(b, &end);
    return *end == '\0' && *t >= 0 && *t <= 86400 ? 0 : -1;
}

static void resume(struct sidecar *sc, const char *why)
{
    ev_timer_stop(sc->loop, &sc->pause_w);
    if (!sc->requests_paused)
        return;
    sc->requests_paused = 0;
    log_info("requests resumed (%s)", why);
    client_resume_all(sc);
}

static void on_pause_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    resume(w->data, "PROXY PAUSE timeout");
}

/* Requests on the shared links of every node, not answered yet (a lease
 * may wait in a blocking call for ever: not counted). */
static unsigned inflight_everywhere(const struct sidecar *sc)
{
    const struct node *n;
    unsigned k = 0;

    TAILQ_FOREACH(n, &sc->nodes, tqe)
        k += pool_inflight(n->pool);
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        k += pool_inflight(n->pool);
    return k;
}

static void on_quiet_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    if (sc->pause_reply && inflight_everywhere(sc) && sc->requests_paused)
        return;
    ev_timer_stop(loop, w);
    if (sc->pause_reply) {
        struct req *r = sc->pause_reply;
        sc->pause_reply = NULL;
        client_answer_deferred(sc, r, "+OK\r\n", 5);
    }
}

/* PROXY PAUSE [seconds]: new requests wait, without an error, until PROXY
 * RESUME or the timeout (e.g. while Redis restarts); it answers once the
 * requests in flight are answered, so that Redis may then go. */
static void proxy_pause(struct client *c, const struct args *a)
{
    struct sidecar *sc = c->sc;
    double t = 0;

    if (a->argc == 3 && parse_timeout(a->v[2], a->l[2], &t) < 0) {
        client_reply_error(c, "ERR PROXY PAUSE [timeout]: a duration (30s, 500ms) "
                           "or seconds");
        return;
    }
    sc->requests_paused = 1;
    ev_timer_stop(sc->loop, &sc->pause_w);
    if (t > 0) {
        ev_timer_init(&sc->pause_w, on_pause_timeout, t, 0);
        sc->pause_w.data = sc;
        ev_timer_start(sc->loop, &sc->pause_w);
    }
    log_info("requests paused (PROXY PAUSE%s%.*s)", a->argc == 3 ? " " : "",
             a->argc == 3 ? (int)(a->l[2] > 20 ? 20 : a->l[2]) : 0, a->argc == 3 ? a->v[2] : "");
    if (!inflight_everywhere(sc) || sc->pause_reply) {
        reply_ok(c);                     /* quiet already, or another PAUSE waits */
        return;
    }
    if (!(sc->pause_reply = client_defer(c))) {
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    ev_timer_init(&sc->quiet_w, on_quiet_check, 0.005, 0.005);
    sc->quiet_w.data = sc;
    ev_timer_start(sc->loop, &sc->quiet_w);
}

static void proxy_nodes(struct client *c)
{
    struct buf b = {0};

    nodes_report(c->sc, &b);
    reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

static int require_admin(struct client *c)
{
    if (c->admin)
        return 1;
    c->sc->st.err_noperm++;
    client_reply_error(c, "NOPERM this command needs admin rights: connect from "
                       "[admin] allow, or AUTH with the admin password");
    return 0;
}

static void reply_int(struct client *c, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof num, ":%lld\r\n", v);
    client_reply(c, num, (size_t)n);
}

/* One line about a client, in the spirit of CLIENT LIST. */
static void client_line(struct buf *b, const struct client *c, ev_tstamp now)
{
    char a[64];
    size_t qbuf = c->partial ? buf_used(&c->partial->buf) : 0;

    buf_appendf(b, "id=%llu addr=%s name=%s age=%.0f idle=%.0f cmd=%s pending=%u "
                "qbuf=%zu obuf=%zu admin=%d resp=%d\n", (unsigned long long)c->id,
                client_addr(c, a, sizeof a), name_of(c) ? name_of(c) : "",
                now - c->created, now - c->last_active,
                c->last_cmd ? c->last_cmd->name : "-", c->npending, qbuf,
                buf_used(&c->out) + c->held, c->admin, c->resp3 ? 3 : 2);
}

static int by_busiest(const void *x, const void *y)
{
    const struct ipstat *a = *(const struct ipstat *const *)x;
    const struct ipstat *b = *(const struct ipstat *const *)y;
    uint64_t ra = a->accepted, rb = b->accepted;

    for (int i = 0; i < REFUSED_NREASONS; i++) {
        ra += a->refused[i];
        rb += b->refused[i];
    }
    if (a->current != b->current)
        return a->current < b->current ? 1 : -1;
    return ra < rb ? 1 : ra > rb ? -1 : 0;
}

/* PROXY CLIENTS [TOP n]: the per-IP table, busiest first. */
static void proxy_clients(struct client *c, const struct args *a)
{
    struct sidecar *sc = c->sc;
    long long top = 1000;
    ev_tstamp now = ev_now(sc->loop);

    if (a->argc == 4 && arg_is(a, 2, "top")) {
        if (resp_parse_ll(a->v[3], a->l[3], &top) < 0 || top < 1) {
            client_reply_error(c, "ERR TOP needs a positive count");
            return;
        }
    } else if (a->argc != 2) {
        client_reply_error(c, "ERR usage: PROXY CLIENTS [TOP n]");
        return;
    }
    struct ipstat **all = malloc((sc->ips.n + 1) * sizeof *all);
    unsigned n = iptable_all(&sc->ips, all, sc->ips.n);
    qsort(all, n, sizeof *all, by_busiest);
    struct buf b = {0};
    for (unsigned i = 0; i < n && i < top; i++) {
        const struct ipstat *e = all[i];
        char ip[64];
        uint64_t refused = 0;
        for (int k = 0; k < REFUSED_NREASONS; k++)
            refused += e->refused[k];
        if (ip_equal(&e->ip, &(struct ip){{0}}))
            snprintf(ip, sizeof ip, "unix");
        else
            ip_format(&e->ip, ip, sizeof ip);
        buf_appendf(&b, "ip=%s current=%u peak=%u accepted=%llu refused=%llu "
                    "refused_per_ip=%llu refused_max_connections=%llu refused_denied=%llu "
                    "refused_banned=%llu first_seen=%.0f last_seen=%.0f banned_for=%.0f\n",
                    ip, e->current, e->peak, (unsigned long long)e->accepted,
                    (unsigned long long)refused,
                    (unsigned long long)e->refused[REFUSED_PER_IP],
                    (unsigned long long)e->refused[REFUSED_MAX_CONN],
                    (unsigned long long)e->refused[REFUSED_DENIED],
                    (unsigned long long)e->refused[REFUSED_BANNED],
                    now - e->first_seen, now - e->last_seen,
                    iptable_banned_for(&sc->ips, &e->ip, now));
    }
    reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
    free(all);
}

static void proxy_client_list(struct client *c)
{
    struct buf b = {0};
    const struct client *o;

    TAILQ_FOREACH(o, &c->sc->clients, tqe)
        client_line(&b, o, ev_now(c->sc->loop));
    reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

enum kill_by { KILL_ID, KILL_ADDR, KILL_IP, KILL_CIDR };

/* Close matching clients other than the caller; returns how many. */
static long long kill_matching(struct client *self, enum kill_by by, const char *v,
                               size_t vl, const struct cidr *range, const char *why)
{
    struct sidecar *sc = self->sc;
    struct client *c, *next;
    long long id = 0, n = 0;
    struct cidr one;
    char a[64];

    if (by == KILL_ID && resp_parse_ll(v, vl, &id) < 0)
        return -1;
    if (by == KILL_IP) {
        snprintf(a, sizeof a, "%.*s", (int)(vl < 60 ? vl : 60), v);
        if (cidr_parse(a, &one) < 0 || strchr(a, '/'))
            return -1;
        range = &one;
    }
    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        int hit = 0;
        if (c == self)
            continue;
        if (by == KILL_ID)
            hit = c->id == (uint64_t)id;
        else if (by == KILL_ADDR)
            hit = strlen(client_addr(c, a, sizeof a)) == vl && memcmp(a, v, vl) == 0;
        else
            hit = !c->is_unix && cidr_match(range, &c->ips->ip);
        if (hit) {
            client_close(c, why);
            sc->st.killed++;
            n++;
        }
    }
    return n;
}

static void proxy_kill(struct client *c, const struct args *a)
{
    static const char *const kinds[] = {"id", "addr", "ip"};
    long long n = -1;

    for (int k = 0; a->argc == 4 && k < 3; k++)
        if (arg_is(a, 2, kinds[k]))
            n = kill_matching(c, (enum kill_by)k, a->v[3], a->l[3], NULL,
                              "killed by PROXY KILL");
    if (n < 0)
        client_reply_error(c, "ERR usage: PROXY KILL ID id | ADDR ip:port | IP ip");
    else
        reply_int(c, n);
}

static int arg_cidr(const struct args *a, int i, struct cidr *out)
{
    char s[80];
    snprintf(s, sizeof s, "%.*s", (int)(a->l[i] < 79 ? a->l[i] : 79), a->v[i]);
    return a->l[i] < 79 ? cidr_parse(s, out) : -1;
}

/* PROXY BAN cidr seconds: close matching clients, refuse new ones until
 * it expires. */
static void proxy_ban(struct client *c, const struct args *a)
{
    struct sidecar *sc = c->sc;
    struct cidr range;
    long long secs;
    char r[96];

    if (a->argc != 4 || arg_cidr(a, 2, &range) < 0 ||
        resp_parse_ll(a->v[3], a->l[3], &secs) < 0 || secs < 1) {
        client_reply_error(c, "ERR usage: PROXY BAN cidr seconds");
        return;
    }
    if (iptable_ban(&sc->ips, &range, ev_now(sc->loop) + (double)secs) < 0) {
        client_reply_error(c, "ERR too many bans (%d)", BANS_MAX);
        return;
    }
    cidr_format(&range, r, sizeof r);
    log_warn("ban %s for %llds (PROXY BAN)", r, secs);
    reply_int(c, kill_matching(c, KILL_CIDR, NULL, 0, &range, "banned by PROXY BAN"));
}

static void proxy_unban(struct client *c, const struct args *a)
{
    struct cidr range;

    if (a->argc != 3 || arg_cidr(a, 2, &range) < 0) {
        client_reply_error(c, "ERR usage: PROXY UNBAN cidr");
        return;
    }
    reply_int(c, iptable_unban(&c->sc->ips, &range));
}

static void proxy_bans(struct client *c)
{
    struct iptable *t = &c->sc->ips;
    ev_tstamp now = ev_now(c->sc->loop);
    struct buf b = {0};
    char r[96];

    iptable_banned_for(t, &(struct ip){{0}}, now);     /* drops expired bans */
    for (int i = 0; i < t->nbans; i++) {
        cidr_format(&t->bans[i].cidr, r, sizeof r);
        buf_appendf(&b, "cidr=%s remaining=%.0f\n", r, t->bans[i].until - now);
    }
    reply_text(c, buf_start(&b), buf_used(&b));
    buf_free(&b);
}

/* CLIENT KILL ip:port (old form: +OK) or CLIENT KILL ID id | ADDR ip:port
 * (a count), for admins, on the proxy's own app connections. */
static void client_kill(struct client *c, const struct args *a)
{
    long long n = -1;

    if (!require_admin(c))
        return;
    if (a->argc == 3) {
        n = kill_matching(c, KILL_ADDR, a->v[2], a->l[2], NULL, "killed by CLIENT KILL");
        if (n > 0)
            reply_ok(c);
        else
            client_reply_error(c, "ERR No such client");
        return;
    }
    if (a->argc == 4 && arg_is(a, 2, "id"))
        n = kill_matching(c, KILL_ID, a->v[3], a->l[3], NULL, "killed by CLIENT KILL");
    else if (a->argc == 4 && arg_is(a, 2, "addr"))
        n = kill_matching(c, KILL_ADDR, a->v[3], a->l[3], NULL, "killed by CLIENT KILL");
    if (n < 0)
        client_reply_error(c, "ERR syntax error: CLIENT KILL ip:port | ID id | ADDR ip:port");
    else
        reply_int(c, n);
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
        if (name_of(c))
            reply_bulk(c, name_of(c), strlen(name_of(c)));
        else
            reply_null(c);
    } else if (a->argc == 2 && arg_is(a, 1, "id")) {
        int n = snprintf(num, sizeof num, ":%llu\r\n", (unsigned long long)c->id);
        client_reply(c, num, (size_t)n);
    } else if (a->argc == 2 && arg_is(a, 1, "info")) {
        struct buf b = {0};
        client_line(&b, c, ev_now(c->sc->loop));
        reply_text(c, buf_start(&b), buf_used(&b));
        buf_free(&b);
    } else if (a->argc == 2 && arg_is(a, 1, "list")) {
        if (c->admin) {
            proxy_client_list(c);
        } else {
            struct buf b = {0};
            client_line(&b, c, ev_now(c->sc->loop));
            reply_text(c, buf_start(&b), buf_used(&b));
            buf_free(&b);
        }
    } else if (a->argc >= 3 && arg_is(a, 1, "kill")) {
        client_kill(c, a);
    } else if (a->argc == 3 && arg_is(a, 1, "no-evict")) {
        reply_ok(c);
    } else {
        c->sc->st.err_unsupported++;
        client_reply_error(c, "ERR CLIENT %.*s is not supported by redis-sidecar: "
                           "the upstream connections are shared",
                           a->argc >= 2 ? (int)(a->l[1] > 32 ? 32 : a->l[1]) : 0,
                           a->argc >= 2 ? a->v[1] : "");
    }
}

static void cmd_proxy(struct client *c, const struct args *a)
{
    static const char help[] =
        "*16\r\n+PROXY INFO: the proxy's counters, in INFO format\r\n"
        "+PROXY RELOAD: read proxy.ini again (as SIGHUP); an invalid file changes nothing\r\n"
        "+PROXY CONFIG: the running configuration, passwords masked\r\n"
        "+PROXY PAUSE [timeout]: requests in flight finish, new ones wait (no error)\r\n"
        "+PROXY RESUME: the waiting requests go on\r\n"
        "+PROXY NODES: the master, each replica and sentinel: role, state, lag, links\r\n"
        "+PROXY CLIENTS [TOP n]: per-IP connections, peaks and refusals, busiest first\r\n"
        "+PROXY CLIENT LIST: one line per app connection\r\n"
        "+PROXY KILL ID id | ADDR ip:port | IP ip: close app connections\r\n"
        "+PROXY BAN cidr seconds: close matching connections, refuse new ones until it expires\r\n"
        "+PROXY UNBAN cidr: lift a ban\r\n"
        "+PROXY BANS: the bans in force\r\n"
        "+PROXY HELP: this list\r\n"
        "+PROXY commands need admin rights: [admin] allow, or AUTH with [admin] password\r\n"
        "+AUTH, HELLO, QUIT, SELECT and CLIENT are answered by the proxy; the rest goes to the master\r\n"
        "+See README.md for the retry rule and the limits\r\n";

    if (!require_admin(c))
        return;
    if (a->argc == 2 && arg_is(a, 1, "info"))
        proxy_info(c);
    else if (a->argc == 2 && arg_is(a, 1, "nodes"))
        proxy_nodes(c);
    else if ((a->argc == 2 || a->argc == 3) && arg_is(a, 1, "pause"))
        proxy_pause(c, a);
    else if (a->argc == 2 && arg_is(a, 1, "reload")) {
        char msg[600];
        if (reload_config(c->sc, msg, sizeof msg) < 0)
            client_reply_error(c, "ERR reload refused, nothing changed: %s", msg);
        else
            reply_simple(c, msg);
    } else if (a->argc == 2 && arg_is(a, 1, "config")) {
        struct buf b = {0};
        config_dump(c->sc->cfg, &b);
        reply_text(c, buf_start(&b), buf_used(&b));
        buf_free(&b);
    } else if (a->argc == 2 && arg_is(a, 1, "resume")) {
        resume(c->sc, "PROXY RESUME");
        reply_ok(c);
    }
    else if (a->argc == 2 && arg_is(a, 1, "help"))
        client_reply(c, help, sizeof help - 1);
    else if (a->argc >= 2 && arg_is(a, 1, "clients"))
        proxy_clients(c, a);
    else if (a->argc == 3 && arg_is(a, 1, "client") && arg_is(a, 2, "list"))
        proxy_client_list(c);
    else if (a->argc >= 2 && arg_is(a, 1, "kill"))
        proxy_kill(c, a);
    else if (a->argc >= 2 && arg_is(a, 1, "ban"))
        proxy_ban(c, a);
    else if (a->argc >= 2 && arg_is(a, 1, "unban"))
        proxy_unban(c, a);
    else if (a->argc == 2 && arg_is(a, 1, "bans"))
        proxy_bans(c);
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
