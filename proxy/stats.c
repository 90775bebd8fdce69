/* The counter table, and PROXY INFO and the /metrics counters rendered
 * from it. Rows are in INFO's order; a Prometheus family's rows may be
 * spread over several sections, and are gathered when rendered. */
#include "stats.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "nodes.h"

long stats_rss_bytes(void)
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

/* --- computed values -------------------------------------------------- */

/* What a computed row ('f', 'n', 'r') shows. */
enum calc {
    UPTIME, CONNECTED, TRACKED_IPS, BANS, PAUSED, DRAINING, REPLICAS, RSS,
    CLIENTS_IDLE, CLIENTS_ACTIVE, CLIENTS_LEASED, CLIENTS_SUBSCRIBED, CLIENTS_WAITING,
    LINKS_MUX, LINKS_VALIDATING, LINKS_CONNECTING, LINKS_DOWN, LINKS_LEASED, LINKS_LEASE_IDLE,
    LINKS_RETIRING, LINKS_RESP2, LINKS_RESP3, READY_RESP2, READY_RESP3, VALIDATION_WAIT_MS,
    LEASES_OPEN, NODE_UP, NODE_MASTER, USERS, APPS, APP_BANS, APP_LOOKUPS,
    APP_MISS_NO_SOCKET, APP_MISS_NO_PID, APP_MISS_PROC_GONE, SLOWLOG_LEN,
    TLS_FULL, TLS_RESUMED, TLS_FAILED,
};

/* An app connection's state for the clients{state} gauge. */
static enum calc client_state(const struct client *c)
{
    return c->stream ? CLIENTS_SUBSCRIBED
         : c->wait != WAIT_NONE || (c->x && c->x->nheld) ? CLIENTS_WAITING
         : c->lease ? CLIENTS_LEASED : c->npending ? CLIENTS_ACTIVE : CLIENTS_IDLE;
}

/* A shared link's state for the links{state} gauge. */
static enum calc link_state(const struct link *l)
{
    return l->state == LINK_READY ? (l->validating ? LINKS_VALIDATING : LINKS_MUX)
         : l->state == LINK_DOWN ? LINKS_DOWN : LINKS_CONNECTING;
}

static uint64_t count_clients(const struct sidecar *sc, enum calc which)
{
    const struct client *c;
    uint64_t k = 0;

    TAILQ_FOREACH(c, &sc->clients, tqe)
        k += client_state(c) == which;
    return k;
}

static uint64_t count_links(const struct node *n, enum calc which)
{
    const struct pool *p = n->pool;
    uint64_t k = which == LINKS_CONNECTING ? (uint64_t)p->nlease[LEASE_RETURNING] : 0;

    for (int v = 0; v < 2; v++)
        for (int i = 0; p->links[v] && i < p->cfg.connections; i++)
            k += link_state(&p->links[v][i]) == which;
    return k;
}

/* A retiring address's links, over every retiring node of that address
 * (two reloads may leave two). */
static uint64_t retiring_links(const struct sidecar *sc, const struct node *n)
{
    const struct node *e;
    uint64_t k = 0;

    TAILQ_FOREACH(e, &sc->retiring, tqe)
        if (strcmp(e->pool->cfg.name, n->pool->cfg.name) == 0)
            k += (uint64_t)pool_open_links(e->pool);
    return k;
}

static uint64_t calc(const struct sidecar *sc, const struct node *n, enum calc which)
{
    const struct pool *p = n ? n->pool : NULL;

    switch (which) {
    case UPTIME:             return (uint64_t)(ev_now(sc->loop) - sc->started + 0.5);
    case CONNECTED:          return sc->nclients;
    case TRACKED_IPS:        return sc->ips.n;
    case BANS:               return (uint64_t)sc->ips.nbans;
    case APPS:               return sc->apps.n;
    case APP_BANS:           return (uint64_t)sc->apps.nbans;
    case APP_LOOKUPS:        return apps_lookups(&sc->apps);
    case APP_MISS_NO_SOCKET: return sc->apps.misses[PEER_MISS_NO_SOCKET];
    case APP_MISS_NO_PID:    return sc->apps.misses[PEER_MISS_NO_PID];
    case APP_MISS_PROC_GONE: return sc->apps.misses[PEER_MISS_PROC_GONE];
    case SLOWLOG_LEN:        return sc->apps.slow_n;
    case PAUSED:             return (uint64_t)sc->requests_paused;
    case DRAINING:           return (uint64_t)sc->draining;
    case REPLICAS:           return (uint64_t)sc->nreplicas;
    case RSS:                return (uint64_t)stats_rss_bytes();
    case CLIENTS_IDLE:
    case CLIENTS_ACTIVE:
    case CLIENTS_LEASED:
    case CLIENTS_SUBSCRIBED:
    case CLIENTS_WAITING:    return count_clients(sc, which);
    case LINKS_MUX:
    case LINKS_VALIDATING:
    case LINKS_CONNECTING:
    case LINKS_DOWN:         return count_links(n, which);
    case LINKS_LEASED:       return (uint64_t)pool_leases_held(p);
    case LINKS_LEASE_IDLE:   return (uint64_t)p->nlease[LEASE_IDLE];
    case LINKS_RETIRING:     return retiring_links(sc, n);
    case LINKS_RESP2:        return (uint64_t)p->cfg.connections;
    case LINKS_RESP3:        return p->links[1] ? (uint64_t)p->cfg.connections : 0;
    case READY_RESP2:        return (uint64_t)pool_ready_links(p, 0);
    case READY_RESP3:        return (uint64_t)pool_ready_links(p, 1);
    case VALIDATION_WAIT_MS: return (uint64_t)(p->st.validation_wait * 1000);
    case LEASES_OPEN:        return (uint64_t)pool_leases(p);
    case NODE_UP:            return !p->down;
    case NODE_MASTER:        return (uint64_t)nodes_is_master(sc, n);
    case USERS:              return (uint64_t)sc->nusers;
    case TLS_FULL:           return n->tls_stats.full;
    case TLS_RESUMED:        return n->tls_stats.resumed;
    case TLS_FAILED:         return n->tls_stats.failed;
    }
    return 0;
}

/* --- INFO text ---------------------------------------------------------- */

static void t_version(const struct sidecar *sc, struct buf *b)
{
    (void)sc;
    buf_appendf(b, "%s", SIDECAR_VERSION);
}

static void t_pid(const struct sidecar *sc, struct buf *b)
{
    (void)sc;
    buf_appendf(b, "%d", (int)getpid());
}

static void t_redis_version(const struct sidecar *sc, struct buf *b)
{
    buf_appendf(b, "%s", nodes_version(sc));
}

/* The mean cost of an accept-time identity lookup, in microseconds. */
static void t_lookup_avg(const struct sidecar *sc, struct buf *b)
{
    const struct apps *t = &sc->apps;

    uint64_t n = apps_lookups(t);

    buf_appendf(b, "%.1f", n ? t->lookup_seconds * 1e6 / (double)n : 0);
}

static void t_master(const struct sidecar *sc, struct buf *b)
{
    buf_appendf(b, "%s", sc->master ? sc->master->pool->cfg.name : "none");
}

static void t_master_state(const struct sidecar *sc, struct buf *b)
{
    buf_appendf(b, "%s", !sc->master ? "none" : sc->master->pool->down ? "down" : "up");
}

static void t_master_role(const struct sidecar *sc, struct buf *b)
{
    const char *role = sc->master ? sc->master->health.role : "";

    buf_appendf(b, "%s", role[0] ? role : "unknown");
}

/* One line per replica, in the style of INFO replication's slaveN lines. */
static void t_replicas(const struct sidecar *sc, struct buf *b)
{
    ev_tstamp now = ev_now(sc->loop);
    const struct node *n;
    int i = 0;

    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        if (nodes_is_master(sc, n))
            continue;
        char why[96] = "";
        int ok = !n->pool->down && health_replica_eligible(nodes_topo(sc, n), &n->health,
                     sc->cfg->replica_max_lag, now, why, sizeof why);
        buf_appendf(b, "replica%d:addr=%s,state=%s,role=%s,master_link=%s,offset=%lld,"
                    "lag=%.1f,eligible=%d,why=%s,links_ready=%d,inflight=%u,requests=%llu\r\n",
                    i++, n->pool->cfg.name, n->pool->down ? "down" : "up",
                    n->health.role[0] ? n->health.role : "unknown",
                    n->health.link[0] ? n->health.link : "unknown", n->health.offset,
                    health_replica_lag(nodes_topo(sc, n), n->health.offset, now), ok,
                    ok ? "-" : why, pool_ready_links(n->pool, 0), pool_inflight(n->pool),
                    (unsigned long long)n->pool->st.requests_sent);
    }
}

/* --- the table ------------------------------------------------------------ */

#define S(f) 's', offsetof(struct sidecar_stats, f), NULL, 0
#define P(f) 'p', offsetof(struct pool_stats, f), NULL, 0
#define H(f) 'h', offsetof(struct checker, f), NULL, 0
#define F(what) 'f', what, NULL, 0
#define N(what) 'n', what, NULL, 0
#define TEXT(sec, name, fn) {sec, name, NULL, "", NULL, 't', 'f', 0, fn, 0}
#define REQ(k, d, kl, dl, help)                                                 \
    {NULL, NULL, "requests_total", "class=\"" kl "\",destination=\"" dl "\"", help, \
     'c', S(requests_by[TALLY(k, d)])}
#define REP(k, d, kl, dl, help)                                                 \
    {NULL, NULL, "replies_total", "class=\"" kl "\",destination=\"" dl "\",result=\"ok\"", \
     help, 'c', S(replies_by[TALLY(k, d)][0])},                                 \
    {NULL, NULL, "replies_total", "class=\"" kl "\",destination=\"" dl "\",result=\"error\"", \
     NULL, 'c', S(replies_by[TALLY(k, d)][1])}

static const char help_refused[] = "App connections refused at accept, by reason: banned "
    "(PROXY BAN, PROXY BAN APP), denied ([clients] deny/allow), max_connections, per_ip "
    "(max_connections_per_ip), per_app (max_connections_per_app).";
static const char help_miss[] = "Local app connections whose identity lookup fell short, "
    "by reason: no_socket (no peer socket found: keyed by address), no_pid (uid known, "
    "process not found: keyed by uid), process_gone (the process left before it was read).";
static const char help_closed[] = "App connections the proxy closed, by reason "
    "(idle_timeout, protocol_error, query_buffer, output_buffer, killed by an admin command).";
static const char help_errors[] = "Requests answered with the proxy's own error, by kind: "
    "refused_command, unsupported_command, auth, noperm, node_down, no_replica, max_users.";
static const char help_failures[] = "Requests failed by the proxy: kind=unavailable (no "
    "link within connect_timeout), after_send (a write whose link died after sending: may or "
    "may not have run), reply_timeout.";
static const char help_lost[] = "Links (and connection attempts) lost, by cause.";
static const char help_links[] = "Upstream links by node and state: multiplexed (shared, "
    "ready), validating (a PING before reuse), connecting, down (waiting to reconnect), "
    "leased (a client's own), lease_idle (kept for the next lease), retiring (left by a "
    "reload, finishing what they carry).";

const struct stat_row stats_table[] = {
    TEXT("Proxy", "version", t_version),
    TEXT("Proxy", "process_id", t_pid),
    {"Proxy", "uptime_in_seconds", "uptime_seconds", "", "Seconds since the proxy started.",
     'g', F(UPTIME)},
    TEXT("Proxy", "upstream_redis_version", t_redis_version),

    {"Clients", "connected_clients", "clients_connected", "", "App connections open.",
     'g', F(CONNECTED)},
    {"Clients", "total_connections_received", "connections_received_total", "",
     "App connections accepted.", 'c', S(connections_received)},
    {"Clients", "refused_banned", "connections_refused_total", "reason=\"banned\"",
     help_refused, 'c', S(refused[REFUSED_BANNED])},
    {"Clients", "refused_denied", "connections_refused_total", "reason=\"denied\"", NULL,
     'c', S(refused[REFUSED_DENIED])},
    {"Clients", "refused_max_connections", "connections_refused_total",
     "reason=\"max_connections\"", NULL, 'c', S(refused[REFUSED_MAX_CONN])},
    {"Clients", "refused_per_ip", "connections_refused_total", "reason=\"per_ip\"", NULL,
     'c', S(refused[REFUSED_PER_IP])},
    {"Clients", "refused_per_app", "connections_refused_total", "reason=\"per_app\"", NULL,
     'c', S(refused[REFUSED_PER_APP])},
    {"Clients", "clients_killed", "clients_closed_total", "reason=\"killed\"", help_closed,
     'c', S(killed)},
    {"Clients", "clients_closed_idle", "clients_closed_total", "reason=\"idle_timeout\"", NULL,
     'c', S(idle_closed)},
    {"Clients", "pipeline_pauses", "pipeline_pauses_total", "", "Times a client was not read "
     "while max_pipeline replies (or max_query_buffer bytes) were pending.", 'c',
     S(pipeline_pauses)},
    {"Clients", "users", "users", "", "ACL users apps authenticated as (checked by Redis) "
     "with pools of their own; max_users bounds them.", 'g', F(USERS)},
    {"Clients", "users_refused", "users_refused_total", "", "Users whose links Redis "
     "refused on a reconnect (a changed password): their apps were closed.", 'c',
     S(users_refused)},
    {"Clients", "tracked_ips", "tracked_ips", "", "Client addresses in the per-IP table.",
     'g', F(TRACKED_IPS)},
    {"Clients", "bans", "bans", "", "Active PROXY BAN ranges.", 'g', F(BANS)},
    {"Clients", "apps", "apps", "", "Local apps (app_key values) in the per-app table.", 'g',
     F(APPS)},
    {"Clients", "app_bans", "app_bans", "", "Active PROXY BAN APP bans.", 'g', F(APP_BANS)},
    {"Clients", "app_lookups", "app_lookups_total", "", "Accept-time identity lookups of "
     "local peers (unix socket, loopback).", 'c', F(APP_LOOKUPS)},
    TEXT("Clients", "app_lookup_avg_us", t_lookup_avg),
    {"Clients", "app_lookup_no_socket", "app_lookup_fallbacks_total", "reason=\"no_socket\"",
     help_miss, 'c', F(APP_MISS_NO_SOCKET)},
    {"Clients", "app_lookup_no_pid", "app_lookup_fallbacks_total", "reason=\"no_pid\"", NULL,
     'c', F(APP_MISS_NO_PID)},
    {"Clients", "app_lookup_process_gone", "app_lookup_fallbacks_total",
     "reason=\"process_gone\"", NULL, 'c', F(APP_MISS_PROC_GONE)},
    {"Clients", "slowlog_len", "slowlog_entries", "", "Requests in PROXY SLOWLOG.", 'g',
     F(SLOWLOG_LEN)},
    {"Clients", "requests_paused", "paused", "", "1 while PROXY PAUSE holds new requests.",
     'g', F(PAUSED)},

    {"Stats", "total_requests", "requests_read_total", "", "Complete requests read from apps.",
     'c', S(requests)},
    {"Stats", "forwarded_requests", "requests_forwarded_total", "", "Requests sent upstream "
     "(or held for a master).", 'c', S(forwarded)},
    {"Stats", "reads_to_replicas", "reads_to_replicas_total", "", "Reads sent to a replica.",
     'c', S(reads_to_replicas)},
    {"Stats", "reads_kept_on_master_ryw", "reads_kept_on_master_total", "", "Reads kept on "
     "the master by read-your-writes.", 'c', S(reads_ryw_master)},
    {"Stats", "replica_redirects", "replica_redirects_total", "", "Reads a replica refused or "
     "lost, sent to the master instead.", 'c', S(replica_redirects)},
    {"Stats", "forwarded_replies", "replies_forwarded_total", "", "Upstream replies (or "
     "errors) for forwarded requests.", 'c', S(replies)},
    {"Stats", "local_replies", "replies_local_total", "", "Replies the proxy made itself.",
     'c', S(local_replies)},
    {"Stats", "client_bytes_in", "client_bytes_received_total", "", "Bytes read from apps.",
     'c', S(bytes_in)},
    {"Stats", "client_bytes_out", "client_bytes_sent_total", "", "Bytes written to apps.",
     'c', S(bytes_out)},
    {"Stats", "upstream_bytes_out", "upstream_bytes_sent_total", "", "Bytes written to the "
     "node.", 'c', P(bytes_out)},
    {"Stats", "upstream_bytes_in", "upstream_bytes_received_total", "", "Bytes read from the "
     "node.", 'c', P(bytes_in)},

    {"Errors", "errors_protocol", "clients_closed_total", "reason=\"protocol_error\"", NULL,
     'c', S(err_protocol)},
    {"Errors", "errors_query_buffer", "clients_closed_total", "reason=\"query_buffer\"", NULL,
     'c', S(err_query_buffer)},
    {"Errors", "errors_output_buffer", "clients_closed_total", "reason=\"output_buffer\"",
     NULL, 'c', S(err_output_buffer)},
    {"Errors", "errors_refused_command", "errors_total", "kind=\"refused_command\"",
     help_errors, 'c', S(err_refused)},
    {"Errors", "errors_unsupported_command", "errors_total", "kind=\"unsupported_command\"",
     NULL, 'c', S(err_unsupported)},
    {"Errors", "errors_auth", "errors_total", "kind=\"auth\"", NULL, 'c', S(err_auth)},
    {"Errors", "errors_noperm", "errors_total", "kind=\"noperm\"", NULL, 'c', S(err_noperm)},
    {"Errors", "err_max_users", "errors_total", "kind=\"max_users\"", NULL, 'c',
     S(err_max_users)},
    {"Errors", "errors_upstream_unavailable", "upstream_failures_total", "kind=\"unavailable\"",
     help_failures, 'c', P(failed_unavailable)},
    {"Errors", "errors_link_lost_after_send", "upstream_failures_total", "kind=\"after_send\"",
     NULL, 'c', P(failed_after_send)},
    {"Errors", "errors_reply_timeout", "upstream_failures_total", "kind=\"reply_timeout\"",
     NULL, 'c', P(reply_timeouts)},
    {"Errors", "errors_node_down", "errors_total", "kind=\"node_down\"", NULL, 'c',
     S(err_node_down)},
    {"Errors", "errors_no_replica", "errors_total", "kind=\"no_replica\"", NULL, 'c',
     S(err_no_replica)},

    TEXT("Upstream", "master", t_master),
    TEXT("Upstream", "master_state", t_master_state),
    TEXT("Upstream", "master_role", t_master_role),
    {"Upstream", "master_switches", "failovers_total", "", "Master switches seen: a new "
     "master confirmed after another.", 'c', S(master_switches)},
    {"Upstream", "requests_held_for_master", "requests_held_total", "", "Requests that "
     "waited for a master.", 'c', S(held)},
    {"Upstream", "requests_held_failed", "requests_held_failed_total", "", "Held requests "
     "that got no master within failover_wait (answered with an error).", 'c',
     S(held_failed)},
    {"Upstream", "master_refusals_held", "master_refusals_total", "", "READONLY, MASTERDOWN "
     "or LOADING from the master: the request was held and sent again.", 'c',
     S(master_refusals)},

    {"Links", "master_links", "links_configured", "protocol=\"resp2\"", "Shared links per "
     "node and protocol (RESP3 ones open with the first RESP3 client).", 'g', N(LINKS_RESP2)},
    {"Links", "master_links_ready", "links_ready", "protocol=\"resp2\"", "Shared links ready, "
     "per node and protocol.", 'g', N(READY_RESP2)},
    {"Links", "master_links_resp3", "links_configured", "protocol=\"resp3\"", NULL, 'g',
     N(LINKS_RESP3)},
    {"Links", "master_links_resp3_ready", "links_ready", "protocol=\"resp3\"", NULL, 'g',
     N(READY_RESP3)},
    {"Links", "pushes_dropped", "pushes_dropped_total", "", "RESP3 pushes on a shared link, "
     "dropped.", 'c', P(pushes_dropped)},
    {"Links", "requests_unbuffered", "requests_unbuffered_total", "", "Large requests sent "
     "from the buffer they were read into, not copied.", 'c', P(requests_unbuffered)},
    {"Links", "replies_streamed", "replies_streamed_total", "", "Large replies passed on to "
     "their client as they came.", 'c', P(replies_streamed)},
    {"Links", "streams_dropped", "streams_dropped_total", "", "Streamed replies whose client "
     "left mid-way (the rest dropped, the link kept).", 'c', P(streams_dropped)},
    {"Links", "links_opened", "links_opened_total", "", "Links that completed their "
     "handshake (leases included).", 'c', P(links_opened)},
    {"Links", "link_failures", "link_failures_total", "", "Ready shared links lost.", 'c',
     P(link_failures)},
    {"Links", "connect_failures", "connect_failures_total", "", "Connection or handshake "
     "attempts that failed.", 'c', P(connect_failures)},
    {"Links", "links_retired", "links_lost_total", "cause=\"retired\"", help_lost, 'c',
     P(lost[LOST_RETIRED])},
    {"Links", "links_lost_closed_by_server", "links_lost_total", "cause=\"closed_by_server\"",
     NULL, 'c', P(lost[LOST_CLOSED])},
    {"Links", "links_lost_socket_error", "links_lost_total", "cause=\"socket_error\"", NULL,
     'c', P(lost[LOST_ERROR])},
    {"Links", "links_lost_bad_reply", "links_lost_total", "cause=\"bad_reply\"", NULL, 'c',
     P(lost[LOST_PROTOCOL])},
    {"Links", "links_lost_validation", "links_lost_total", "cause=\"validation\"", NULL, 'c',
     P(lost[LOST_VALIDATION])},
    {"Links", "links_lost_reply_timeout", "links_lost_total", "cause=\"reply_timeout\"", NULL,
     'c', P(lost[LOST_REPLY_TIMEOUT])},
    {"Links", "links_lost_handshake", "links_lost_total", "cause=\"handshake\"", NULL, 'c',
     P(lost[LOST_HANDSHAKE])},
    {NULL, NULL, "links_lost_total", "cause=\"connect\"", NULL, 'c', P(lost[LOST_CONNECT])},
    {"Links", "links_lost_tls", "links_lost_total", "cause=\"tls\"", NULL, 'c',
     P(lost[LOST_TLS])},
    {"Links", "tls_handshakes_full", "tls_handshakes_total", "kind=\"full\"", "TLS "
     "handshakes with each node (links and health checks): full (certificates checked), "
     "resumed (an earlier session, one round trip), failed.", 'c', N(TLS_FULL)},
    {"Links", "tls_handshakes_resumed", "tls_handshakes_total", "kind=\"resumed\"", NULL, 'c',
     N(TLS_RESUMED)},
    {"Links", "tls_handshakes_failed", "tls_handshakes_total", "kind=\"failed\"", NULL, 'c',
     N(TLS_FAILED)},
    {"Links", "retried_reads", "retries_total", "kind=\"read\"", "Requests sent again on a "
     "new link after theirs was lost: kind=read (written, safe to repeat) or kind=unsent "
     "(never written).", 'c', P(retried_reads)},
    {"Links", "requeued_unsent", "retries_total", "kind=\"unsent\"", NULL, 'c',
     P(requeued_unsent)},
    {"Links", "validations", "validations_total", "", "PINGs sent on idle links before reuse "
     "or in the background.", 'c', P(validations)},
    {"Links", "validations_failed", "validations_failed_total", "", "Validation PINGs that "
     "failed: the link was replaced before any request used it.", 'c',
     P(validations_failed)},
    {"Links", "validation_wait_ms_total", "validation_wait_seconds_total", "", "Time requests "
     "spent waiting behind validation PINGs.", 'c', 'n', VALIDATION_WAIT_MS, NULL, 0.001},
    {"Links", "leases_in_use_or_idle", "leases_open", "", "Leased links open per node: "
     "held, being reset or idle.", 'g', N(LEASES_OPEN)},
    {"Links", "leases_taken", "leases_taken_total", "", "Dedicated links handed to a client "
     "(transactions, blocking calls, pub/sub, another database).", 'c', P(leases_taken)},
    {"Links", "leases_refused", "leases_refused_total", "", "Leases refused: max_leased "
     "reached.", 'c', P(leases_refused)},
    {"Links", "leases_reset_and_reused", "leases_reset_total", "", "Leases given back clean, "
     "reset with RESET and kept for the next holder.", 'c', P(leases_reset)},
    {"Links", "leases_closed", "leases_closed_total", "", "Leases closed: given back busy, "
     "lost, stale or deposed.", 'c', P(leases_closed)},
    {"Links", "health_checks", "health_checks_total", "", "Health checks (PING and ROLE) "
     "that passed.", 'c', H(checks)},
    {"Links", "health_checks_failed", "health_checks_failed_total", "", "Health checks that "
     "failed.", 'c', H(failures)},
    {"Links", "node_down_transitions", "node_down_transitions_total", "", "Times the node was "
     "marked down (down_after failed checks).", 'c', H(downs)},
    {"Links", "node_up_transitions", "node_up_transitions_total", "", "Times the node came "
     "back up.", 'c', H(ups)},
    {NULL, NULL, "upstream_requests_total", "", "Requests written to the node (retries "
     "included).", 'c', P(requests_sent)},
    {NULL, NULL, "reconnects_total", "", "Shared links connected again after a loss.", 'c',
     P(reconnects)},
    {NULL, NULL, "node_up", "", "1 while the node passes its health checks.", 'g', N(NODE_UP)},
    {NULL, NULL, "node_master", "", "1 for the node writes go to (with sentinels: once its "
     "ROLE confirmed it).", 'g', N(NODE_MASTER)},
    {NULL, NULL, "links", "state=\"multiplexed\"", help_links, 'g', N(LINKS_MUX)},
    {NULL, NULL, "links", "state=\"validating\"", NULL, 'g', N(LINKS_VALIDATING)},
    {NULL, NULL, "links", "state=\"connecting\"", NULL, 'g', N(LINKS_CONNECTING)},
    {NULL, NULL, "links", "state=\"down\"", NULL, 'g', N(LINKS_DOWN)},
    {NULL, NULL, "links", "state=\"leased\"", NULL, 'g', N(LINKS_LEASED)},
    {NULL, NULL, "links", "state=\"lease_idle\"", NULL, 'g', N(LINKS_LEASE_IDLE)},
    {NULL, NULL, "links", "state=\"retiring\"", NULL, 'g', 'r', LINKS_RETIRING, NULL, 0},

    {"Replicas", "replicas", "replicas", "", "Nodes that are not the master.", 'g',
     F(REPLICAS)},
    {"Replicas", NULL, NULL, NULL, NULL, 'x', 'f', 0, t_replicas, 0},

    {"Memory", "used_memory_rss", "resident_memory_bytes", "", "Resident set size of the "
     "proxy.", 'g', F(RSS)},

    {NULL, NULL, "clients", "state=\"idle\"", "App connections open, by state: idle, active "
     "(replies pending), leased (holding a transaction, WATCH, blocking call or database), "
     "subscribed (pub/sub), waiting (for a lease, a master or PROXY RESUME).", 'g',
     F(CLIENTS_IDLE)},
    {NULL, NULL, "clients", "state=\"active\"", NULL, 'g', F(CLIENTS_ACTIVE)},
    {NULL, NULL, "clients", "state=\"leased\"", NULL, 'g', F(CLIENTS_LEASED)},
    {NULL, NULL, "clients", "state=\"subscribed\"", NULL, 'g', F(CLIENTS_SUBSCRIBED)},
    {NULL, NULL, "clients", "state=\"waiting\"", NULL, 'g', F(CLIENTS_WAITING)},
    REQ(CLASS_READ, DEST_MASTER, "read", "master", "Requests from apps, by class (read, "
        "write, stateful, admin) and destination (master, replica, or proxy: answered by "
        "the proxy itself, errors included)."),
    REQ(CLASS_READ, DEST_REPLICA, "read", "replica", NULL),
    REQ(CLASS_READ, DEST_PROXY, "read", "proxy", NULL),
    REQ(CLASS_WRITE, DEST_MASTER, "write", "master", NULL),
    REQ(CLASS_WRITE, DEST_PROXY, "write", "proxy", NULL),
    REQ(CLASS_STATEFUL, DEST_MASTER, "stateful", "master", NULL),
    REQ(CLASS_STATEFUL, DEST_PROXY, "stateful", "proxy", NULL),
    REQ(CLASS_ADMIN, DEST_PROXY, "admin", "proxy", NULL),
    REP(CLASS_READ, DEST_MASTER, "read", "master", "Replies sent to apps, by class, by who "
        "answered and by result (error: an error reply). Pub/sub messages count as "
        "stateful replies."),
    REP(CLASS_READ, DEST_REPLICA, "read", "replica", NULL),
    REP(CLASS_READ, DEST_PROXY, "read", "proxy", NULL),
    REP(CLASS_WRITE, DEST_MASTER, "write", "master", NULL),
    REP(CLASS_WRITE, DEST_PROXY, "write", "proxy", NULL),
    REP(CLASS_STATEFUL, DEST_MASTER, "stateful", "master", NULL),
    REP(CLASS_STATEFUL, DEST_PROXY, "stateful", "proxy", NULL),
    REP(CLASS_ADMIN, DEST_PROXY, "admin", "proxy", NULL),
    {NULL, NULL, "reloads_total", "", "Configuration reloads that took effect.", 'c',
     S(reloads)},
    {NULL, NULL, "draining", "", "1 once a stop signal came.", 'g', F(DRAINING)},
};

const size_t stats_rows = sizeof stats_table / sizeof stats_table[0];

uint64_t stats_value(const struct sidecar *sc, const struct stat_row *r, const struct node *n)
{
    const void *home;
    uint64_t v;

    switch (r->home) {
    case 's':
        home = &sc->st;
        break;
    case 'f':
        return calc(sc, NULL, (enum calc)r->off);
    case 'r':
        return calc(sc, n, (enum calc)r->off);
    default:
        if (!n && !(n = sc->master))
            return 0;
        if (r->home == 'n')
            return calc(sc, n, (enum calc)r->off);
        if (r->home == 'p') {            /* the node's: its users' pools too */
            const struct pool *p;
            uint64_t sum;
            memcpy(&sum, (const char *)&n->users_gone + r->off, sizeof sum);
            NODE_FOREACH_POOL(sc, n, p) {
                memcpy(&v, (const char *)&p->st + r->off, sizeof v);
                sum += v;
            }
            return sum;
        }
        home = &n->health;
    }
    memcpy(&v, (const char *)home + r->off, sizeof v);
    return v;
}

void stats_info(const struct sidecar *sc, struct buf *b)
{
    const char *section = NULL;

    for (size_t i = 0; i < stats_rows; i++) {
        const struct stat_row *r = &stats_table[i];
        if (!r->section)
            continue;
        if (!section || strcmp(section, r->section) != 0) {
            buf_appendf(b, "%s# %s\r\n", section ? "\r\n" : "", r->section);
            section = r->section;
        }
        if (r->type == 'x') {
            r->text(sc, b);
        } else if (r->type == 't') {
            buf_appendf(b, "%s:", r->info);
            r->text(sc, b);
            buf_append(b, "\r\n", 2);
        } else {
            buf_appendf(b, "%s:%llu\r\n", r->info,
                        (unsigned long long)stats_value(sc, r, NULL));
        }
    }
}

const char *stats_node_label(const struct node *n, char *out, size_t outlen)
{
    return stats_label("node", n->pool->cfg.name, out, outlen);
}

const char *stats_label(const char *name, const char *value, char *out, size_t outlen)
{
    size_t o = snprintf(out, outlen, "%s=\"", name);

    /* escaped as the format wants: \\, \" and \n */
    for (const char *s = value; *s && o + 4 < outlen; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n')
            out[o++] = '\\';
        out[o++] = *s == '\n' ? 'n' : *s;
    }
    snprintf(out + o, outlen - o, "\"");
    return out;
}

static void sample(struct buf *b, const struct stat_row *r, const char *node, uint64_t v)
{
    int braces = node[0] || r->labels[0];

    buf_appendf(b, "redis_sidecar_%s%s%s%s%s%s", r->family, braces ? "{" : "", node,
                node[0] && r->labels[0] ? "," : "", r->labels, braces ? "}" : "");
    if (r->scale)
        buf_appendf(b, " %.6f\n", (double)v * r->scale);
    else
        buf_appendf(b, " %llu\n", (unsigned long long)v);
}

/* One row's samples: one, one per node, or one per retiring address. */
static void samples(const struct sidecar *sc, struct buf *b, const struct stat_row *r)
{
    const struct node *n, *e;
    char nl[400];

    if (r->home == 's' || r->home == 'f') {
        sample(b, r, "", stats_value(sc, r, NULL));
        return;
    }
    if (r->home != 'r') {
        TAILQ_FOREACH(n, &sc->nodes, tqe)
            sample(b, r, stats_node_label(n, nl, sizeof nl), stats_value(sc, r, n));
        return;
    }
    TAILQ_FOREACH(n, &sc->retiring, tqe) {
        for (e = TAILQ_FIRST(&sc->retiring); e != n; e = TAILQ_NEXT(e, tqe))
            if (strcmp(e->pool->cfg.name, n->pool->cfg.name) == 0)
                break;
        if (e == n)                      /* the first of its address */
            sample(b, r, stats_node_label(n, nl, sizeof nl), stats_value(sc, r, n));
    }
}

void stats_metrics(const struct sidecar *sc, struct buf *b)
{
    for (size_t i = 0; i < stats_rows; i++) {
        const struct stat_row *r = &stats_table[i];
        size_t j;
        if (!r->family)
            continue;
        for (j = 0; j < i; j++)
            if (stats_table[j].family && strcmp(stats_table[j].family, r->family) == 0)
                break;
        if (j < i)
            continue;                    /* rendered with its first row */
        buf_appendf(b, "# HELP redis_sidecar_%s %s\n# TYPE redis_sidecar_%s %s\n", r->family,
                    r->help, r->family, r->type == 'c' ? "counter" : "gauge");
        for (j = i; j < stats_rows; j++)
            if (stats_table[j].family && strcmp(stats_table[j].family, r->family) == 0)
                samples(sc, b, &stats_table[j]);
    }
}
