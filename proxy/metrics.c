/* GET /metrics: the counter table (stats.c) and what is no single number,
 * in the Prometheus text format (0.0.4), built on demand from the live
 * state. Label values are bounded: classes, destinations, reasons, the
 * nodes in the topology, and at most METRICS_TOP_IPS addresses. */
#include "metrics.h"

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

void metrics_render(const struct sidecar *sc, struct buf *b)
{
    family(b, "info", "gauge", "Always 1; the version in a label.");
    buf_appendf(b, "redis_sidecar_info{version=\"%s\"} 1\n", SIDECAR_VERSION);
    family(b, "start_time_seconds", "gauge", "When the proxy started, in Unix time.");
    buf_appendf(b, "redis_sidecar_start_time_seconds %.3f\n", sc->started);
    stats_metrics(sc, b);
    top_ips(b, sc);
    users(b, sc);
    latency(b, sc);
}
