/* The PROXY family: the operator's commands, for admins only (the admin
 * unix socket from the proxy's own user or root, [admin] allow, or AUTH
 * with [admin] password). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "client.h"
#include "nodes.h"
#include "pause.h"
#include "reload.h"
#include "slowlog.h"
#include "stats.h"

int admin_allowed(struct client *c)
{
    if (c->admin)
        return 1;
    client_sc(c)->st.err_noperm++;
    client_reply_error(c, "NOPERM this command needs admin rights: connect over the "
                       "[admin] socket or from [admin] allow, or AUTH with the admin "
                       "password");
    return 0;
}

static void reply_buf(struct client *c, struct buf *b)
{
    client_reply_text(c, buf_start(b), buf_used(b));
    buf_free(b);
}

/* "30s", "500ms", or plain seconds; a day at most. */
static int parse_timeout(const char *p, size_t n, double *t)
{
    char b[32], *end;

    if (n == 0 || n >= sizeof b)
        return -1;
    memcpy(b, p, n);
    b[n] = '\0';
    if (config_parse_duration(b, t) < 0) {
        *t = strtod(b, &end);
        if (*end != '\0')
            return -1;
    }
    return *t >= 0 && *t <= 86400 ? 0 : -1;
}

/* PROXY PAUSE [seconds]: new requests wait, without an error, until PROXY
 * RESUME or the timeout (e.g. while Redis restarts); it answers once the
 * requests in flight are answered, so that Redis may then go. */
static void proxy_pause(struct client *c, const struct resp_args *a)
{
    double t = 0;

    if (a->argc == 3 && parse_timeout(a->v[2], a->l[2], &t) < 0) {
        client_reply_error(c, "ERR PROXY PAUSE [timeout]: a duration up to a day (30s, 500ms) "
                           "or seconds");
        return;
    }
    log_info("requests paused (PROXY PAUSE%s%.*s)", a->argc == 3 ? " " : "",
             a->argc == 3 ? (int)(a->l[2] > 20 ? 20 : a->l[2]) : 0, a->argc == 3 ? a->v[2] : "");
    pause_requests(c, t);
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

/* "PROXY <what> [TOP n]": n (every row without it), or -1 answered. */
static int parse_top(struct client *c, const struct resp_args *a, const char *what,
                     long long *top)
{
    *top = 1000;
    if (a->argc == 4 && resp_arg_is(a, 2, "top")) {
        if (resp_parse_ll(a->v[3], a->l[3], top) < 0 || *top < 1) {
            client_reply_error(c, "ERR TOP needs a positive count");
            return -1;
        }
    } else if (a->argc != 2) {
        client_reply_error(c, "ERR usage: PROXY %s [TOP n]", what);
        return -1;
    }
    return 0;
}

/* PROXY CLIENTS [TOP n]: the per-IP table, busiest first. */
static void proxy_clients(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    long long top;
    ev_tstamp now = ev_now(sc->loop);

    if (parse_top(c, a, "CLIENTS", &top) < 0)
        return;
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
                    "refused_per_ip=%llu refused_per_app=%llu refused_max_connections=%llu "
                    "refused_denied=%llu refused_banned=%llu first_seen=%.0f last_seen=%.0f banned_for=%.0f\n",
                    ip, e->current, e->peak, (unsigned long long)e->accepted,
                    (unsigned long long)refused,
                    (unsigned long long)e->refused[REFUSED_PER_IP],
                    (unsigned long long)e->refused[REFUSED_PER_APP],
                    (unsigned long long)e->refused[REFUSED_MAX_CONN],
                    (unsigned long long)e->refused[REFUSED_DENIED],
                    (unsigned long long)e->refused[REFUSED_BANNED],
                    now - e->first_seen, now - e->last_seen,
                    iptable_banned_for(&sc->ips, &e->ip, now));
    }
    reply_buf(c, &b);
    free(all);
}

void admin_client_list(struct client *c)
{
    struct buf b = {0};
    const struct client *o;

    TAILQ_FOREACH(o, &client_sc(c)->clients, tqe)
        client_describe_app(&b, o, ev_now(client_sc(c)->loop));
    reply_buf(c, &b);
}

static int by_busiest_app(const void *x, const void *y)
{
    const struct app *a = *(const struct app *const *)x;
    const struct app *b = *(const struct app *const *)y;

    if (a->current != b->current)
        return a->current < b->current ? 1 : -1;
    return a->requests < b->requests ? 1 : a->requests > b->requests ? -1 : 0;
}

#define APP_PROCS_SHOWN 32               /* per PROXY APPS line, then "..." */

/* PROXY APPS [TOP n]: one line per app key, busiest first. */
static void proxy_apps(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    long long top;
    ev_tstamp now = ev_now(sc->loop);

    if (parse_top(c, a, "APPS", &top) < 0)
        return;
    struct app **all = malloc((sc->apps.n + 1) * sizeof *all);
    if (!all) {
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    unsigned n = apps_all(&sc->apps, all, sc->apps.n);
    qsort(all, n, sizeof *all, by_busiest_app);
    struct buf b = {0};
    for (unsigned i = 0; i < n && i < top; i++) {
        const struct app *e = all[i];
        uint64_t refused = 0;
        for (int k = 0; k < REFUSED_NREASONS; k++)
            refused += e->refused[k];
        buf_appendf(&b, "app=%s key=%s uid=", e->key, config_app_key_name(e->kind));
        if (e->has_uid)
            buf_appendf(&b, "%u", (unsigned)e->uid);
        buf_appendf(&b, " service=%s processes=", e->service);
        int listed = 0;
        for (const struct app_proc *p = e->procs; p; p = p->next) {
            if (!p->pid || !p->conns)
                continue;                /* unknown pids; processes whose last one closed */
            if (listed++ == APP_PROCS_SHOWN) {
                buf_appendf(&b, ",...");
                break;
            }
            buf_appendf(&b, "%s%d:%s", listed > 1 ? "," : "", (int)p->pid, p->comm);
        }
        buf_appendf(&b, " current=%u peak=%u accepted=%llu refused=%llu refused_per_app=%llu "
                    "refused_per_ip=%llu refused_max_connections=%llu refused_denied=%llu "
                    "refused_banned=%llu requests=%llu errors_redis=%llu errors_proxy=%llu "
                    "errors_closed=%llu bytes_in=%llu bytes_out=%llu latency_p50_us=%.0f "
                    "latency_p99_us=%.0f replies_timed=%llu hot_sampled=%llu first_seen=%.0f "
                    "last_seen=%.0f banned_for=%.0f\n",
                    e->current, e->peak, (unsigned long long)e->accepted,
                    (unsigned long long)refused,
                    (unsigned long long)e->refused[REFUSED_PER_APP],
                    (unsigned long long)e->refused[REFUSED_PER_IP],
                    (unsigned long long)e->refused[REFUSED_MAX_CONN],
                    (unsigned long long)e->refused[REFUSED_DENIED],
                    (unsigned long long)e->refused[REFUSED_BANNED],
                    (unsigned long long)e->requests,
                    (unsigned long long)e->errors[APP_ERR_REDIS],
                    (unsigned long long)e->errors[APP_ERR_PROXY],
                    (unsigned long long)e->errors[APP_ERR_CLOSED],
                    (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out,
                    apps_percentile(e->lat, 0.5) * 1e6, apps_percentile(e->lat, 0.99) * 1e6,
                    (unsigned long long)apps_latency_count(e->lat),
                    (unsigned long long)(e->hot ? e->hot->total : 0),
                    now - e->first_seen, now - e->last_seen,
                    apps_banned_for(&sc->apps, e->key, now));
    }
    free(all);
    reply_buf(c, &b);
}

static void proxy_kill(struct client *c, const struct resp_args *a)
{
    struct cidr one;
    long long n = -1;
    char ip[64];

    if (a->argc == 4 && resp_arg_is(a, 2, "id")) {
        n = client_kill(c, MATCH_ID, a->v[3], a->l[3], NULL, "killed by PROXY KILL");
    } else if (a->argc == 4 && resp_arg_is(a, 2, "app")) {
        n = client_kill(c, MATCH_APP, a->v[3], a->l[3], NULL, "killed by PROXY KILL APP");
    } else if (a->argc == 4 && resp_arg_is(a, 2, "addr")) {
        n = client_kill(c, MATCH_ADDR, a->v[3], a->l[3], NULL, "killed by PROXY KILL");
    } else if (a->argc == 4 && resp_arg_is(a, 2, "ip")) {
        snprintf(ip, sizeof ip, "%.*s", (int)(a->l[3] < 60 ? a->l[3] : 60), a->v[3]);
        if (cidr_parse(ip, &one) == 0 && !strchr(ip, '/'))
            n = client_kill(c, MATCH_CIDR, NULL, 0, &one, "killed by PROXY KILL");
    }
    if (n < 0)
        client_reply_error(c, "ERR usage: PROXY KILL ID id | ADDR ip:port | IP ip | APP key");
    else
        client_reply_int(c, n);
}

static int arg_cidr(const struct resp_args *a, int i, struct cidr *out)
{
    char s[80];
    snprintf(s, sizeof s, "%.*s", (int)(a->l[i] < 79 ? a->l[i] : 79), a->v[i]);
    return a->l[i] < 79 ? cidr_parse(s, out) : -1;
}

/* PROXY BAN APP key seconds: the same for one app. */
static void proxy_ban_app(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    long long secs;

    if (a->argc != 5 || resp_parse_ll(a->v[4], a->l[4], &secs) < 0 || secs < 1 ||
        secs > 30 * 86400) {
        client_reply_error(c, "ERR usage: PROXY BAN APP key seconds");
        return;
    }
    int rc = apps_ban(&sc->apps, a->v[3], a->l[3], ev_now(sc->loop) + (double)secs);
    if (rc < 0) {
        client_reply_error(c, rc == -1 ? "ERR too many app bans (%d)"
                                       : "ERR not an app key (see PROXY APPS)", APP_BANS_MAX);
        return;
    }
    log_warn("ban app %.*s for %llds (PROXY BAN APP)", (int)a->l[3], a->v[3], secs);
    client_reply_int(c, client_kill(c, MATCH_APP, a->v[3], a->l[3], NULL,
                                    "banned by PROXY BAN APP"));
}

/* PROXY BAN cidr seconds: close matching clients, refuse new ones until
 * it expires. */
static void proxy_ban(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    struct cidr range;
    long long secs;
    char r[96];

    if (a->argc >= 3 && resp_arg_is(a, 2, "app")) {
        proxy_ban_app(c, a);
        return;
    }
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
    client_reply_int(c, client_kill(c, MATCH_CIDR, NULL, 0, &range, "banned by PROXY BAN"));
}

static void proxy_unban(struct client *c, const struct resp_args *a)
{
    struct cidr range;

    if (a->argc == 4 && resp_arg_is(a, 2, "app")) {
        client_reply_int(c, apps_unban(&client_sc(c)->apps, a->v[3], a->l[3]));
        return;
    }
    if (a->argc != 3 || arg_cidr(a, 2, &range) < 0) {
        client_reply_error(c, "ERR usage: PROXY UNBAN cidr | APP key");
        return;
    }
    client_reply_int(c, iptable_unban(&client_sc(c)->ips, &range));
}

static void proxy_bans(struct client *c)
{
    struct iptable *t = &client_sc(c)->ips;
    ev_tstamp now = ev_now(client_sc(c)->loop);
    struct buf b = {0};
    char r[96];

    iptable_banned_for(t, &(struct ip){{0}}, now);     /* drops expired bans */
    for (int i = 0; i < t->nbans; i++) {
        cidr_format(&t->bans[i].cidr, r, sizeof r);
        buf_appendf(&b, "cidr=%s remaining=%.0f\n", r, t->bans[i].until - now);
    }
    struct apps *at = &client_sc(c)->apps;
    apps_banned_for(at, "", now);                      /* drops expired bans */
    for (int i = 0; i < at->nbans; i++)
        buf_appendf(&b, "app=%s remaining=%.0f\n", at->bans[i].key, at->bans[i].until - now);
    reply_buf(c, &b);
}

void admin_command(struct client *c, const char *frame, const struct resp_frame *fr)
{
    static const char help[] =
        "*19\r\n+PROXY INFO: the proxy's counters, in INFO format\r\n"
        "+PROXY RELOAD: read proxy.ini again (as SIGHUP); an invalid file changes nothing\r\n"
        "+PROXY CONFIG: the running configuration, passwords masked\r\n"
        "+PROXY PAUSE [timeout]: requests in flight finish, new ones wait (no error)\r\n"
        "+PROXY RESUME: the waiting requests go on\r\n"
        "+PROXY NODES: the master, each replica and sentinel: role, state, lag, links\r\n"
        "+PROXY CLIENTS [TOP n]: per-IP connections, peaks and refusals, busiest first\r\n"
        "+PROXY APPS [TOP n]: per local app (service, uid, process or IP): connections, "
        "requests, errors, latency\r\n"
        "+PROXY CLIENT LIST: one line per app connection, with its app, pid and process\r\n"
        "+PROXY KILL ID id | ADDR ip:port | IP ip | APP key: close app connections\r\n"
        "+PROXY BAN cidr seconds | BAN APP key seconds: close matching connections, refuse "
        "new ones until it expires\r\n"
        "+PROXY UNBAN cidr | UNBAN APP key: lift a ban\r\n"
        "+PROXY SLOWLOG [GET] [n] | LEN | RESET: the slowest recent requests, by app\r\n"
        "+PROXY HOTKEYS [APP key] [n]: each app's most frequent keys (sampled)\r\n"
        "+PROXY BANS: the bans in force\r\n"
        "+PROXY HELP: this list\r\n"
        "+PROXY commands need admin rights: the [admin] socket, [admin] allow, or AUTH with [admin] password\r\n"
        "+AUTH, HELLO, QUIT, SELECT and CLIENT are answered by the proxy; the rest goes to the master\r\n"
        "+See README.md for the retry rule and the limits\r\n";

    struct resp_args args, *a = &args;
    struct sidecar *sc = client_sc(c);
    struct buf b = {0};
    char msg[600];

    resp_collect_args(frame, fr, a);
    if (!admin_allowed(c))
        return;
    if (a->argc == 2 && resp_arg_is(a, 1, "info")) {
        stats_info(sc, &b);
        reply_buf(c, &b);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "nodes")) {
        nodes_report(sc, &b);
        reply_buf(c, &b);
    } else if ((a->argc == 2 || a->argc == 3) && resp_arg_is(a, 1, "pause")) {
        proxy_pause(c, a);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "reload")) {
        if (reload_config(sc, msg, sizeof msg) < 0)
            client_reply_error(c, "ERR reload refused, nothing changed: %s", msg);
        else
            client_reply_simple(c, msg);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "config")) {
        config_dump(sc->cfg, &b);
        reply_buf(c, &b);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "resume")) {
        pause_resume(sc, "PROXY RESUME");
        client_reply_ok(c);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "help")) {
        client_reply(c, help, sizeof help - 1);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "clients")) {
        proxy_clients(c, a);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "apps")) {
        proxy_apps(c, a);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "slowlog")) {
        slowlog_command(c, a);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "hotkeys")) {
        slowlog_hotkeys(c, a);
    } else if (a->argc == 3 && resp_arg_is(a, 1, "client") && resp_arg_is(a, 2, "list")) {
        admin_client_list(c);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "kill")) {
        proxy_kill(c, a);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "ban")) {
        proxy_ban(c, a);
    } else if (a->argc >= 2 && resp_arg_is(a, 1, "unban")) {
        proxy_unban(c, a);
    } else if (a->argc == 2 && resp_arg_is(a, 1, "bans")) {
        proxy_bans(c);
    } else {
        client_reply_error(c, "ERR unknown PROXY subcommand or wrong number of "
                           "arguments; try PROXY HELP");
    }
}

