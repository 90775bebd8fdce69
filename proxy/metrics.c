/* GET /metrics: the counter table (stats.c) and what is no single number,
 * in the Prometheus text format (0.0.4), built on demand from the live
 * state. Label values are bounded: classes, destinations, reasons, the
 * nodes in the topology, and at most METRICS_TOP_IPS addresses. */
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define METRICS_TOP_IPS 10

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_appendf(b, "# HELP redis_sidecar_%s %s\n# TYPE redis_sidecar_%s %s\n",
                name, help, name, type);
}

static void u64(struct buf *b, const char *name, const char *labels, uint64_t v)
{
    buf_appendf(b, "redis_sidecar_%s{%s} %llu\n", name, labels, (unsigned long long)v);
}

static void latency(struct buf *b, const struct sidecar *sc)
{
    const struct node *n;
    char l[400], nl[360];

    family(b, "upstream_latency_seconds", "histogram", "Upstream round trips: from a "
           "request handed to its link to its reply read (waits behind a validation PING "
           "or a reconnect included).");
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        const struct pool_stats *st = &n->pool->st;
        uint64_t cum = 0;
        stats_node_label(n, nl, sizeof nl);
        for (int i = 0; i <= POOL_RTT_BUCKETS; i++) {
            cum += st->rtt[i];
            if (i < POOL_RTT_BUCKETS)
                snprintf(l, sizeof l, "%s,le=\"%g\"", nl, pool_rtt_bounds[i]);
            else
                snprintf(l, sizeof l, "%s,le=\"+Inf\"", nl);
            u64(b, "upstream_latency_seconds_bucket", l, cum);
        }
        buf_appendf(b, "redis_sidecar_upstream_latency_seconds_sum{%s} %.9f\n", nl, st->rtt_sum);
        u64(b, "upstream_latency_seconds_count", nl, cum);
    }
}

static int by_current(const void *x, const void *y)
{
    const struct ipstat *a = *(const struct ipstat *const *)x;
    const struct ipstat *b = *(const struct ipstat *const *)y;

    return a->current < b->current ? 1 : a->current > b->current ? -1 : 0;
}

static void top_ips(struct buf *b, const struct sidecar *sc)
{
    struct ipstat **all = malloc((sc->ips.n + 1) * sizeof *all);
    char ip[64], l[96];

    family(b, "top_ip_connections", "gauge", "Open app connections of the busiest client "
           "addresses (at most 10; ip=\"unix\" for the unix socket).");
    if (!all)
        return;
    unsigned n = iptable_all(&sc->ips, all, sc->ips.n);
    qsort(all, n, sizeof *all, by_current);
    for (unsigned i = 0; i < n && i < METRICS_TOP_IPS && all[i]->current; i++) {
        if (ip_equal(&all[i]->ip, &(struct ip){{0}}))
            snprintf(ip, sizeof ip, "unix");
        else
            ip_format(&all[i]->ip, ip, sizeof ip);
        snprintf(l, sizeof l, "ip=\"%s\"", ip);
        u64(b, "top_ip_connections", l, all[i]->current);
    }
    free(all);
}

/* A user's series: one accepted by Redis, the first of its name (a
 * name refused and accepted again is the same series). */
static int shown(const struct sidecar *sc, int i)
{
    const struct user *u = sc->users[i];

    if (!u || !u->verified || u->refused)
        return 0;
    for (int j = 0; j < i; j++)
        if (shown(sc, j) && strcmp(sc->users[j]->name, u->name) == 0)
            return 0;
    return 1;
}

/* Per ACL user (at most max_users label values). */
static void users(struct buf *b, const struct sidecar *sc)
{
    char l[200];

    family(b, "user_clients", "gauge", "App connections authenticated as each ACL user "
           "(AUTH checked by Redis).");
    for (int i = 0; i < sc->users_hi; i++)
        if (shown(sc, i))
            u64(b, "user_clients", stats_label("user", sc->users[i]->name, l, sizeof l),
                sc->users[i]->clients);
    family(b, "user_requests_total", "counter", "Requests written on each ACL user's links, "
           "every node.");
    for (int i = 0; i < sc->users_hi; i++) {
        const struct node *n;
        uint64_t k = 0;
        if (!shown(sc, i))
            continue;
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            if (n->upool[i])
                k += n->upool[i]->st.requests_sent;
        u64(b, "user_requests_total", stats_label("user", sc->users[i]->name, l, sizeof l), k);
    }
    family(b, "user_auth_failures_total", "counter", "AUTHs as each ACL user that Redis "
           "refused.");
    for (int i = 0; i < sc->users_hi; i++)
        if (shown(sc, i))
            u64(b, "user_auth_failures_total",
                stats_label("user", sc->users[i]->name, l, sizeof l),
                sc->users[i]->auth_failures);
}

/* Buckets of the per-app latency histogram: every other power of two of
 * seconds, 2^-16 (15 us) to 2^4 (16 s); each is an exact edge of the
 * app's own finer buckets (apps.h). */
#define APP_LE_FIRST (-16)
#define APP_LE_STEP  2
#define APP_LE_N     11

/* An app's series, or the sum of several (app="other"). */
struct app_sums {
    uint64_t current, requests, errors[APP_ERR_N], refused, bytes_in, bytes_out;
    uint64_t le[APP_LE_N + 1];
    double   sum;
};

static void app_add(struct app_sums *s, const struct app *a)
{
    s->current += a->current;
    s->requests += a->requests;
    for (int k = 0; k < APP_ERR_N; k++)
        s->errors[k] += a->errors[k];
    for (int k = 0; k < REFUSED_NREASONS; k++)
        s->refused += a->refused[k];
    s->bytes_in += a->bytes_in;
    s->bytes_out += a->bytes_out;
    if (!a->lat)
        return;
    for (int i = 0, e = 0; i < APP_LAT_BUCKETS; i++) {
        /* bucket i holds values under its upper bound: find its le */
        while (e < APP_LE_N && apps_bucket_upper(i) > ldexp(1, APP_LE_FIRST + APP_LE_STEP * e))
            e++;
        s->le[e] += a->lat->n[i];
    }
    s->sum += a->lat->sum;
}

/* The per-app series that are one number each. */
static const struct {
    const char *name, *type, *help;
    size_t      off;
} app_rows[] = {
    {"app_connections", "gauge", "Open connections per local app (app_key); the apps past "
     "metrics_max_apps are summed under app=\"other\".", offsetof(struct app_sums, current)},
    {"app_requests_total", "counter", "Requests read per app.",
     offsetof(struct app_sums, requests)},
    {"app_connections_refused_total", "counter", "Connections refused per app, every reason.",
     offsetof(struct app_sums, refused)},
    {"app_bytes_received_total", "counter", "Bytes read from each app.",
     offsetof(struct app_sums, bytes_in)},
    {"app_bytes_sent_total", "counter", "Bytes written to each app.",
     offsetof(struct app_sums, bytes_out)},
};

static int by_requests(const void *x, const void *y)
{
    const struct app *a = *(const struct app *const *)x;
    const struct app *b = *(const struct app *const *)y;

    if (a->requests != b->requests)
        return a->requests < b->requests ? 1 : -1;
    return a->current < b->current ? 1 : a->current > b->current ? -1 : 0;
}

/* Per app, for the metrics_max_apps busiest (by requests); the rest are
 * summed under app="other", so the series stay bounded. */
static void apps(struct buf *b, const struct sidecar *sc)
{
    static const char *const err_kind[APP_ERR_N] = {"redis", "proxy", "closed"};
    unsigned max = (unsigned)sc->cfg->metrics_max_apps;
    struct app **all = malloc((sc->apps.n + 1) * sizeof *all);
    struct app_sums *sums;
    char l[300], ll[360];

    if (!all)
        return;
    unsigned n = apps_all(&sc->apps, all, sc->apps.n);
    qsort(all, n, sizeof *all, by_requests);
    unsigned shown = n < max ? n : max, rows = shown + (n > shown);
    if (!(sums = calloc(rows + 1, sizeof *sums))) {
        free(all);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        app_add(&sums[i < shown ? i : shown], all[i]);
#define EACH_ROW(i) for (unsigned i = 0; i < rows; i++)
#define LABEL(i) stats_label("app", i < shown ? all[i]->key : "other", l, sizeof l)
    for (size_t k = 0; k < sizeof app_rows / sizeof app_rows[0]; k++) {
        family(b, app_rows[k].name, app_rows[k].type, app_rows[k].help);
        EACH_ROW(i) {
            uint64_t v;
            memcpy(&v, (const char *)&sums[i] + app_rows[k].off, sizeof v);
            u64(b, app_rows[k].name, LABEL(i), v);
        }
    }
    family(b, "app_errors_total", "counter", "Errors per app, by kind: redis (error replies "
           "from Redis), proxy (the sidecar's own), closed (connections closed for a protocol "
           "error or a buffer limit).");
    EACH_ROW(i)
        for (int k = 0; k < APP_ERR_N; k++) {
            snprintf(ll, sizeof ll, "%s,kind=\"%s\"", LABEL(i), err_kind[k]);
            u64(b, "app_errors_total", ll, sums[i].errors[k]);
        }
    family(b, "app_latency_seconds", "histogram", "Latency as each app sees it: from a "
           "request's bytes read to its reply written out (waits for validation, leases and "
           "failover included; calls that wait for data, such as BLPOP, excluded).");
    EACH_ROW(i) {
        uint64_t cum = 0;
        for (int e = 0; e <= APP_LE_N; e++) {
            cum += sums[i].le[e];
            if (e < APP_LE_N)
                snprintf(ll, sizeof ll, "%s,le=\"%.9g\"", LABEL(i),
                         ldexp(1, APP_LE_FIRST + APP_LE_STEP * e));
            else
                snprintf(ll, sizeof ll, "%s,le=\"+Inf\"", LABEL(i));
            u64(b, "app_latency_seconds_bucket", ll, cum);
        }
        buf_appendf(b, "redis_sidecar_app_latency_seconds_sum{%s} %.9f\n", LABEL(i),
                    sums[i].sum);
        u64(b, "app_latency_seconds_count", LABEL(i), cum);
    }
#undef EACH_ROW
#undef LABEL
    free(sums);
    free(all);
}

void metrics_render(const struct sidecar *sc, struct buf *b)
{
    family(b, "info", "gauge", "Always 1; the version in a label.");
    buf_appendf(b, "redis_sidecar_info{version=\"%s\"} 1\n", SIDECAR_VERSION);
    family(b, "start_time_seconds", "gauge", "When the proxy started, in Unix time.");
    buf_appendf(b, "redis_sidecar_start_time_seconds %.3f\n", sc->started);
    stats_metrics(sc, b);
    top_ips(b, sc);
    users(b, sc);
    apps(b, sc);
    latency(b, sc);
}
