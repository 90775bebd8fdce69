/* GET /metrics: every counter the proxy keeps, in the Prometheus text
 * format (0.0.4), built on demand from the live state; nothing is kept
 * for it but a few counters on the request path and the round-trip
 * histogram. Label values are bounded: classes, destinations, reasons,
 * the nodes in the topology, and at most METRICS_TOP_IPS addresses. */
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

#define METRICS_TOP_IPS 10

long proxy_rss_bytes(void)
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

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_appendf(b, "# HELP redis_sidecar_%s %s\n# TYPE redis_sidecar_%s %s\n",
                name, help, name, type);
}

static void u64(struct buf *b, const char *name, const char *labels, uint64_t v)
{
    buf_appendf(b, "redis_sidecar_%s%s%s%s %llu\n", name, *labels ? "{" : "", labels,
                *labels ? "}" : "", (unsigned long long)v);
}

/* A family of one sample. */
static void single(struct buf *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    family(b, name, type, help);
    u64(b, name, "", v);
}

/* A label value, escaped as the format wants (\\, \", \n). */
static const char *esc(const char *s, char *out, size_t outlen)
{
    size_t o = 0;

    for (; *s && o + 3 < outlen; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n')
            out[o++] = '\\';
        out[o++] = *s == '\n' ? 'n' : *s;
    }
    out[o] = '\0';
    return out;
}

static const char *node_label(const struct node *n, char *out, size_t outlen)
{
    char e[300];

    snprintf(out, outlen, "node=\"%s\"", esc(n->pool->cfg.name, e, sizeof e));
    return out;
}

static const char *const class_names[CLASS_N] = {"read", "write", "stateful", "admin"};
static const char *const dest_names[DEST_N] = {"master", "replica", "proxy"};

/* Where each class can be answered: reads alone go to replicas, and the
 * proxy answers admin requests only. */
static int class_dest_possible(int k, int d)
{
    if (k == CLASS_ADMIN)
        return d == DEST_PROXY;
    return d != DEST_REPLICA || k == CLASS_READ;
}

static void clients(struct buf *b, const struct sidecar *sc)
{
    enum { IDLE, ACTIVE, LEASED, SUBSCRIBED, WAITING, NSTATES };
    static const char *const names[NSTATES] = {"idle", "active", "leased", "subscribed",
                                              "waiting"};
    uint64_t n[NSTATES] = {0};
    const struct client *c;
    char l[64];

    TAILQ_FOREACH(c, &sc->clients, tqe) {
        if (c->stream)
            n[SUBSCRIBED]++;
        else if (c->wait != WAIT_NONE || (c->x && c->x->nheld))
            n[WAITING]++;
        else if (c->lease)
            n[LEASED]++;
        else if (c->npending)
            n[ACTIVE]++;
        else
            n[IDLE]++;
    }
    family(b, "clients", "gauge", "App connections open, by state: idle, active (replies "
           "pending), leased (holding a transaction, WATCH, blocking call or database), "
           "subscribed (pub/sub), waiting (for a lease, a master or PROXY RESUME).");
    for (int i = 0; i < NSTATES; i++) {
        snprintf(l, sizeof l, "state=\"%s\"", names[i]);
        u64(b, "clients", l, n[i]);
    }
}

static void requests(struct buf *b, const struct sidecar_stats *s)
{
    char l[96];

    family(b, "requests_total", "counter", "Requests from apps, by class (read, write, "
           "stateful, admin) and destination (master, replica, or proxy: answered by the "
           "proxy itself, errors included).");
    for (int k = 0; k < CLASS_N; k++)
        for (int d = 0; d < DEST_N; d++)
            if (class_dest_possible(k, d)) {
                snprintf(l, sizeof l, "class=\"%s\",destination=\"%s\"", class_names[k],
                         dest_names[d]);
                u64(b, "requests_total", l, s->requests_by[TALLY(k, d)]);
            }
    family(b, "replies_total", "counter", "Replies sent to apps, by class, by who answered "
           "and by result (error: an error reply). Pub/sub messages count as stateful "
           "replies.");
    for (int k = 0; k < CLASS_N; k++)
        for (int d = 0; d < DEST_N; d++)
            for (int e = 0; e < 2 && class_dest_possible(k, d); e++) {
                snprintf(l, sizeof l, "class=\"%s\",destination=\"%s\",result=\"%s\"",
                         class_names[k], dest_names[d], e ? "error" : "ok");
                u64(b, "replies_total", l, s->replies_by[TALLY(k, d)][e]);
            }
}

static void refusals(struct buf *b, const struct sidecar_stats *s)
{
    static const char *const why[REFUSED_NREASONS] = {
        [REFUSED_BANNED] = "banned", [REFUSED_DENIED] = "denied",
        [REFUSED_MAX_CONN] = "max_connections", [REFUSED_PER_IP] = "per_ip",
    };
    const struct { const char *reason; uint64_t v; } closed[] = {
        {"idle_timeout", s->idle_closed}, {"protocol_error", s->err_protocol},
        {"query_buffer", s->err_query_buffer}, {"output_buffer", s->err_output_buffer},
        {"killed", s->killed},
    };
    char l[64];

    family(b, "connections_refused_total", "counter", "App connections refused at accept, "
           "by reason: banned (PROXY BAN), denied ([clients] deny/allow), max_connections, "
           "per_ip (max_connections_per_ip).");
    for (int i = 0; i < REFUSED_NREASONS; i++) {
        snprintf(l, sizeof l, "reason=\"%s\"", why[i]);
        u64(b, "connections_refused_total", l, s->refused[i]);
    }
    family(b, "clients_closed_total", "counter", "App connections the proxy closed, by "
           "reason (idle_timeout, protocol_error, query_buffer, output_buffer, killed by "
           "an admin command).");
    for (size_t i = 0; i < sizeof closed / sizeof closed[0]; i++) {
        snprintf(l, sizeof l, "reason=\"%s\"", closed[i].reason);
        u64(b, "clients_closed_total", l, closed[i].v);
    }
}

/* Per-node counters kept in pool_stats, one family each. */
static const struct {
    const char *name, *help;
    size_t      off;
} pool_counters[] = {
    {"upstream_requests_total", "Requests written to the node (retries included).",
     offsetof(struct pool_stats, requests_sent)},
    {"validations_total", "PINGs sent on idle links before reuse or in the background.",
     offsetof(struct pool_stats, validations)},
    {"validations_failed_total", "Validation PINGs that failed: the link was replaced "
     "before any request used it.", offsetof(struct pool_stats, validations_failed)},
    {"reconnects_total", "Shared links connected again after a loss.",
     offsetof(struct pool_stats, reconnects)},
    {"links_opened_total", "Links that completed their handshake (leases included).",
     offsetof(struct pool_stats, links_opened)},
    {"connect_failures_total", "Connection or handshake attempts that failed.",
     offsetof(struct pool_stats, connect_failures)},
    {"upstream_bytes_sent_total", "Bytes written to the node.",
     offsetof(struct pool_stats, bytes_out)},
    {"upstream_bytes_received_total", "Bytes read from the node.",
     offsetof(struct pool_stats, bytes_in)},
    {"leases_taken_total", "Dedicated links handed to a client (transactions, blocking "
     "calls, pub/sub, another database).", offsetof(struct pool_stats, leases_taken)},
    {"leases_refused_total", "Leases refused: max_leased reached.",
     offsetof(struct pool_stats, leases_refused)},
    {"pushes_dropped_total", "RESP3 pushes on a shared link, dropped.",
     offsetof(struct pool_stats, pushes_dropped)},
};

static uint64_t stat_at(const struct pool_stats *st, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)st + off, sizeof v);
    return v;
}

static void per_node_counters(struct buf *b, const struct sidecar *sc)
{
    const struct node *n;
    char l[400];

    for (size_t i = 0; i < sizeof pool_counters / sizeof pool_counters[0]; i++) {
        family(b, pool_counters[i].name, "counter", pool_counters[i].help);
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            u64(b, pool_counters[i].name, node_label(n, l, sizeof l),
                stat_at(&n->pool->st, pool_counters[i].off));
    }
}

/* Labelled per-node counters: retries by kind, failures by kind, losses
 * by cause. */
static void per_node_labelled(struct buf *b, const struct sidecar *sc)
{
    static const char *const causes[LOST_NCAUSES] = {
        [LOST_CLOSED] = "closed_by_server", [LOST_ERROR] = "socket_error",
        [LOST_PROTOCOL] = "bad_reply", [LOST_VALIDATION] = "validation",
        [LOST_REPLY_TIMEOUT] = "reply_timeout", [LOST_HANDSHAKE] = "handshake",
        [LOST_CONNECT] = "connect", [LOST_RETIRED] = "retired",
    };
    const struct node *n;
    char l[400], nl[360];

    family(b, "retries_total", "counter", "Requests sent again on a new link after theirs "
           "was lost: kind=read (written, safe to repeat) or kind=unsent (never written).");
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        node_label(n, nl, sizeof nl);
        snprintf(l, sizeof l, "%s,kind=\"read\"", nl);
        u64(b, "retries_total", l, n->pool->st.retried_reads);
        snprintf(l, sizeof l, "%s,kind=\"unsent\"", nl);
        u64(b, "retries_total", l, n->pool->st.requeued_unsent);
    }
    family(b, "upstream_failures_total", "counter", "Requests failed by the proxy: kind="
           "unavailable (no link within connect_timeout), after_send (a write whose link "
           "died after sending: may or may not have run), reply_timeout.");
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        const struct { const char *k; uint64_t v; } f[] = {
            {"unavailable", n->pool->st.failed_unavailable},
            {"after_send", n->pool->st.failed_after_send},
            {"reply_timeout", n->pool->st.reply_timeouts},
        };
        node_label(n, nl, sizeof nl);
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            snprintf(l, sizeof l, "%s,kind=\"%s\"", nl, f[i].k);
            u64(b, "upstream_failures_total", l, f[i].v);
        }
    }
    family(b, "links_lost_total", "counter", "Links (and connection attempts) lost, by cause.");
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        node_label(n, nl, sizeof nl);
        for (int i = 0; i < LOST_NCAUSES; i++) {
            snprintf(l, sizeof l, "%s,cause=\"%s\"", nl, causes[i]);
            u64(b, "links_lost_total", l, n->pool->st.lost[i]);
        }
    }
}

static void links(struct buf *b, const struct sidecar *sc)
{
    enum { MUX, VALIDATING, CONNECTING, DOWN, LEASED, IDLE, NSTATES };
    static const char *const names[NSTATES] = {"multiplexed", "validating", "connecting",
                                              "down", "leased", "lease_idle"};
    const struct node *n;
    char l[400], nl[360];

    family(b, "links", "gauge", "Upstream links by node and state: multiplexed (shared, "
           "ready), validating (a PING before reuse), connecting, down (waiting to "
           "reconnect), leased (a client's own), lease_idle (kept for the next lease), "
           "retiring (left by a reload, finishing what they carry).");
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        const struct pool *p = n->pool;
        uint64_t c[NSTATES] = {0};
        const struct link *k;
        for (int v = 0; v < 2; v++)
            for (int i = 0; p->links[v] && i < p->cfg.connections; i++) {
                k = &p->links[v][i];
                c[k->state == LINK_READY ? (k->validating ? VALIDATING : MUX)
                  : k->state == LINK_DOWN ? DOWN : CONNECTING]++;
            }
        c[LEASED] = (uint64_t)pool_leases_held(p);
        c[IDLE] = (uint64_t)p->nlease[LEASE_IDLE];
        c[CONNECTING] += (uint64_t)p->nlease[LEASE_RETURNING];
        node_label(n, nl, sizeof nl);
        for (int i = 0; i < NSTATES; i++) {
            snprintf(l, sizeof l, "%s,state=\"%s\"", nl, names[i]);
            u64(b, "links", l, c[i]);
        }
    }
    /* Retiring nodes, summed by address (two reloads may leave two). */
    TAILQ_FOREACH(n, &sc->retiring, tqe) {
        const struct node *e;
        uint64_t k = 0;
        for (e = TAILQ_FIRST(&sc->retiring); e != n; e = TAILQ_NEXT(e, tqe))
            if (strcmp(e->pool->cfg.name, n->pool->cfg.name) == 0)
                break;
        if (e != n)
            continue;                    /* counted with the first of its address */
        for (; e; e = TAILQ_NEXT(e, tqe))
            if (strcmp(e->pool->cfg.name, n->pool->cfg.name) == 0)
                k += (uint64_t)pool_open_links(e->pool);
        snprintf(l, sizeof l, "%s,state=\"retiring\"", node_label(n, nl, sizeof nl));
        u64(b, "links", l, k);
    }
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
        node_label(n, nl, sizeof nl);
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

static void nodes(struct buf *b, const struct sidecar *sc)
{
    const struct node *n;
    char l[400];

    family(b, "node_up", "gauge", "1 while the node passes its health checks.");
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        u64(b, "node_up", node_label(n, l, sizeof l), !n->pool->down);
    family(b, "node_master", "gauge", "1 for the node writes go to (with sentinels: once "
           "its ROLE confirmed it).");
    TAILQ_FOREACH(n, &sc->nodes, tqe)
        u64(b, "node_master", node_label(n, l, sizeof l), n == sc->master);
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

void metrics_render(const struct sidecar *sc, struct buf *b)
{
    const struct sidecar_stats *s = &sc->st;
    char l[64];

    family(b, "info", "gauge", "Always 1; the version in a label.");
    snprintf(l, sizeof l, "version=\"%s\"", SIDECAR_VERSION);
    u64(b, "info", l, 1);
    family(b, "start_time_seconds", "gauge", "When the proxy started, in Unix time.");
    buf_appendf(b, "redis_sidecar_start_time_seconds %.3f\n", sc->started);
    single(b, "resident_memory_bytes", "gauge", "Resident set size of the proxy.",
           (uint64_t)proxy_rss_bytes());
    clients(b, sc);
    single(b, "connections_received_total", "counter", "App connections accepted.",
           s->connections_received);
    refusals(b, s);
    requests(b, s);
    single(b, "client_bytes_received_total", "counter", "Bytes read from apps.", s->bytes_in);
    single(b, "client_bytes_sent_total", "counter", "Bytes written to apps.", s->bytes_out);
    single(b, "replica_redirects_total", "counter", "Reads a replica refused or lost, sent "
           "to the master instead.", s->replica_redirects);
    single(b, "failovers_total", "counter", "Master switches seen: a new master confirmed "
           "after another.", s->master_switches);
    single(b, "master_refusals_total", "counter", "READONLY, MASTERDOWN or LOADING from the "
           "master: the request was held and sent again.", s->master_refusals);
    single(b, "requests_held_total", "counter", "Requests that waited for a master.", s->held);
    single(b, "requests_held_failed_total", "counter", "Held requests that got no master "
           "within failover_wait (answered with an error).", s->held_failed);
    single(b, "reloads_total", "counter", "Configuration reloads that took effect.", s->reloads);
    single(b, "paused", "gauge", "1 while PROXY PAUSE holds new requests.",
           (uint64_t)sc->requests_paused);
    single(b, "draining", "gauge", "1 once a stop signal came.", (uint64_t)sc->draining);
    single(b, "bans", "gauge", "Active PROXY BAN ranges.", (uint64_t)sc->ips.nbans);
    top_ips(b, sc);
    nodes(b, sc);
    links(b, sc);
    latency(b, sc);
    per_node_counters(b, sc);
    per_node_labelled(b, sc);
}
