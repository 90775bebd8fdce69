/* The proxy's counters as PROXY INFO shows them, in redis's INFO format. */
#include "stats.h"

#include <stdio.h>
#include <unistd.h>

#include "metrics.h"
#include "nodes.h"

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

void stats_info(const struct sidecar *sc, struct buf *out)
{
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
    *out = b;
}
