/* Cluster mode. Each shard's master is a node (nodes.c: a pool and a
 * checker, as in single-master mode); owner[slot] says which serves a
 * slot. The map comes from health/cluster.c and replaces the node set;
 * a MOVED moves one slot at once (and asks for the map), an ASK sends one
 * request to the slot's importing node behind ASKING. The default master
 * (sc->master) takes what has no key, and the leases. */
#include "cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "client.h"
#include "command.h"
#include "hold.h"
#include "master.h"
#include "nodes.h"
#include "request.h"
#include "split.h"

static struct node *shard_node(const struct cluster *cl, unsigned slot)
{
    unsigned sh = cl->owner[slot];

    return sh ? cl->shard_node[sh - 1] : NULL;
}

/* The default master: slot 0's, else the first shard's. */
static void set_default(struct sidecar *sc)
{
    struct cluster *cl = sc->cl;
    struct node *m = shard_node(cl, 0);

    if (!m && cl->nshards)
        m = cl->shard_node[0];
    if (m == sc->master)
        return;
    if (sc->master)
        pool_keep_idle(sc->master->pool, 0);
    sc->master = m;
    if (m) {
        pool_keep_idle(m->pool, sc->cfg->min_idle_leases);
        sc->no_master_why[0] = '\0';
    }
}

/* The node for addr, added if new (a replica's links say READONLY);
 * NULL (logged) when it cannot be. */
static struct node *node_for(struct sidecar *sc, const char *addr, int replica)
{
    char err[200];
    struct node *n = nodes_find(sc, addr);

    if (!n && !(n = master_add_node(sc, addr, replica, err, sizeof err)))
        log_warn("cluster: node %s cannot be added: %s", addr, err);
    return n;
}

/* The shard whose master n is, or -1. */
static int shard_index(const struct cluster *cl, const struct node *n)
{
    for (int i = 0; i < cl->nshards; i++)
        if (cl->shard_node[i] == n)
            return i;
    return -1;
}

int cluster_is_master(const struct sidecar *sc, const struct node *n)
{
    return shard_index(sc->cl, n) >= 0;
}

/* n serves reads as a replica in the map: added as one (its links say
 * READONLY; a master demoted since is dropped and added again). By the
 * name it was added under, which the map repeats: nothing resolved. */
static int is_read_replica(const struct sidecar *sc, const struct cluster_map *map,
                           const struct node *n)
{
    if (sc->cfg->read_from == READ_MASTER || !n->pool->cfg.readonly)
        return 0;
    for (int i = 0; i < map->nshards; i++)
        for (int k = 0; k < map->shard[i].nreplicas; k++)
            if (strcmp(map->shard[i].replicas[k], n->pool->cfg.name) == 0)
                return 1;
    return 0;
}

/* A master the map no longer names, still up, with requests in flight:
 * they may be writes a manual failover paused there, which it answers
 * MOVED (never applied) once it knows it is a replica. It takes nothing
 * new. Its own ROLE decides: replica, and they finish there (it is
 * retired; MOVED sends them on); still master a second later, and it is
 * dropped by the retry rule, as one that is down or idle is at once. 1 if
 * it stays (or was retired), 0 to drop it. */
static int deposed(struct sidecar *sc, struct node *n)
{
    ev_tstamp now = ev_now(sc->loop);

    if (n->pool->down || !nodes_inflight(sc, n))
        return 0;
    if (strcmp(n->health.role, "slave") == 0) {
        log_info("cluster: %s, deposed, says it is a replica: its %u requests in flight "
                 "finish there", n->pool->cfg.name, nodes_inflight(sc, n));
        nodes_unlist(sc, n);
        nodes_retire(sc, n);
        return 1;
    }
    if (!n->deposed_at) {
        n->deposed_at = now;
        health_sample_soon(&n->health, 0);
    }
    health_cluster_refresh(&sc->cl->src);  /* to decide again soon */
    return now - n->deposed_at < 1.0;
}

/* The map acted on: each shard's master (and, for read_from other than
 * master, its replicas) is a node, the others go. */
static void apply_map(struct sidecar *sc, const struct cluster_map *map)
{
    struct cluster *cl = sc->cl;
    struct node *n, *next;

    if (map != &cl->map)
        memcpy(&cl->map, map, sizeof *map);
    uint8_t remap[CLUSTER_MAX_SHARDS + 1] = {0};     /* map's shard + 1 -> ours + 1 */
    cl->nshards = 0;
    for (int i = 0; i < map->nshards; i++) {
        if (!(n = node_for(sc, map->shard[i].master, 0)))
            continue;                    /* its slots stay unserved until it can be */
        cl->nreplicas[cl->nshards] = 0;
        cl->map_shard[cl->nshards] = (uint8_t)(i + 1);
        cl->shard_node[cl->nshards] = n;
        remap[i + 1] = (uint8_t)++cl->nshards;
    }
    int lost = 0;
    for (unsigned s = 0; s < CLUSTER_SLOTS; s++) {
        uint8_t o = remap[map->owner[s]];
        lost |= cl->owner[s] && !o;
        cl->owner[s] = o;
    }
    if (lost && cl->have_map)
        cl->slots_lost_at = ev_now(sc->loop);
    cl->have_map = 1;
    set_default(sc);
    /* a node the map names master of nothing goes, a deposed master too
     * (its requests that did not run are sent where their slots are now) */
    for (n = TAILQ_FIRST(&sc->nodes); n; n = next) {
        next = TAILQ_NEXT(n, tqe);
        if (cluster_is_master(sc, n) || is_read_replica(sc, map, n))
            n->deposed_at = 0;
        else if (!deposed(sc, n))
            nodes_drop(sc, n, "not a master in the cluster's slot map");
    }
    if (sc->cfg->read_from != READ_MASTER)
        for (int i = 0; i < map->nshards; i++) {
            int sh = remap[i + 1] - 1;
            if (sh < 0)
                continue;
            for (int k = 0; k < map->shard[i].nreplicas; k++)
                if ((n = node_for(sc, map->shard[i].replicas[k], 1)) != NULL &&
                    !cluster_is_master(sc, n))
                    cl->replica[sh][cl->nreplicas[sh]++] = n;
            n = cl->shard_node[sh];
            if (cl->nreplicas[sh] && !n->topo && !(n->topo = calloc(1, sizeof *n->topo)))
                cl->nreplicas[sh] = 0;   /* no lag to judge them by: none */
        }
    nodes_count(sc);
}

/* A shard whose master the new map names in place of one it no longer
 * names (the cluster promoted a replica): counted and logged as a
 * master switch. */
static void count_switches(struct sidecar *sc, const struct cluster_map *old,
                           const struct cluster_map *map)
{
    for (int i = 0; i < map->nshards; i++) {
        const char *now = map->shard[i].master;
        int was_master = 0, gone = 1;
        unsigned s = 0;
        for (int j = 0; j < old->nshards && !was_master; j++)
            was_master = strcmp(old->shard[j].master, now) == 0;
        while (s < CLUSTER_SLOTS && map->owner[s] != i + 1)
            s++;
        if (was_master || s == CLUSTER_SLOTS || !old->owner[s])
            continue;
        const char *before = old->shard[old->owner[s] - 1].master;
        for (int j = 0; j < map->nshards && gone; j++)
            gone = strcmp(map->shard[j].master, before) != 0;
        if (!gone)
            continue;
        sc->st.master_switches++;
        log_info("cluster: %s is the master of slot %u's shard now, in place of %s", now, s,
                 before);
    }
}

static void on_map(void *arg, const struct cluster_map *map, const char *from)
{
    struct sidecar *sc = arg;
    struct cluster *cl = sc->cl;
    int changed = !cl->have_map || map->nshards != cl->map.nshards ||
                  memcmp(map->owner, cl->map.owner, sizeof map->owner) != 0;

    for (int i = 0; i < map->nshards && !changed; i++)
        changed = strcmp(map->shard[i].master, cl->map.shard[i].master) != 0;
    cl->refreshes++;
    if (changed)
        cl->scan_gen++;
    if (changed && cl->have_map)
        count_switches(sc, &cl->map, map);
    apply_map(sc, map);
    if (changed)
        log_info("cluster: %d shards, slot map from %s", cl->nshards, from);
    if (sc->nheld || !TAILQ_EMPTY(&sc->master_waiters))
        hold_master_ready(sc);           /* held for a shard that failed over */
}

int cluster_replicas(const struct sidecar *sc, int shard, struct node *const **v)
{
    const struct cluster *cl = sc->cl;

    if (shard < 0 || shard >= cl->nshards)
        return 0;
    *v = cl->replica[shard];
    return cl->nreplicas[shard];
}

const struct topology *cluster_master_topo(const struct sidecar *sc, const struct node *n)
{
    const struct cluster *cl = sc->cl;

    for (int i = 0; i < cl->nshards; i++)
        for (int k = 0; k < cl->nreplicas[i]; k++)
            if (cl->replica[i][k] == n)
                return cl->shard_node[i]->topo;
    return NULL;
}

int cluster_start(struct sidecar *sc, char *err, size_t errlen)
{
    const struct config *cfg = sc->cfg;
    struct cluster_config cc = {
        .seeds = (const char *const *)cfg->cluster.v, .nseeds = cfg->cluster.n,
        .username = cfg->username, .password = cfg->upstream_password,
        .interval = cfg->check_interval, .tls = cfg->tls ? sc->tls : NULL,
        .tls_name = cfg->tls_server_name,
    };
    struct cluster *cl = calloc(1, sizeof *cl);
    unsigned seed = (unsigned)getpid() ^ (unsigned)(ev_time() * 1e6);

    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < 40; i++)
        cl->id[i] = "0123456789abcdef"[rand_r(&seed) % 16];
    sc->cl = cl;
    snprintf(sc->no_master_why, sizeof sc->no_master_why, "the cluster's slot map is not "
             "read yet");
    if (health_cluster_start(&cl->src, sc->loop, &cc, on_map, sc, err, errlen) < 0) {
        free(cl);
        sc->cl = NULL;
        return -1;
    }
    return 0;
}

void cluster_reconfigure(struct sidecar *sc)
{
    const struct config *cfg = sc->cfg;
    struct cluster_config cc = {
        .username = cfg->username, .password = cfg->upstream_password,
        .interval = cfg->check_interval, .tls = cfg->tls ? sc->tls : NULL,
        .tls_name = cfg->tls_server_name,
    };

    health_cluster_configure(&sc->cl->src, &cc);
    if (sc->cl->have_map)
        apply_map(sc, &sc->cl->map);     /* replicas join or leave as read_from says */
}

void cluster_stop(struct sidecar *sc)
{
    if (!sc->cl)
        return;
    health_cluster_stop(&sc->cl->src);
    free(sc->cl);
    sc->cl = NULL;
}

void cluster_node_down(struct sidecar *sc)
{
    health_cluster_refresh(&sc->cl->src);
}

struct node *cluster_route_keyless(struct sidecar *sc, const char **why, int *shard)
{
    struct node *n = sc->master;         /* its replicas may serve keyless reads */

    *shard = shard_index(sc->cl, n);
    if (!n)
        *why = sc->cl->have_map ? "no node serves this slot now" : sc->no_master_why;
    return n;
}

struct node *cluster_route_unserved(struct sidecar *sc, unsigned shard_plus1, const char **why,
                                    int *shard)
{
    struct cluster *cl = sc->cl;
    struct node *n = shard_plus1 ? cl->shard_node[shard_plus1 - 1] : NULL;

    *shard = (int)shard_plus1 - 1;
    if (!n) {
        health_cluster_refresh(&cl->src);
        *why = cl->have_map ? "no node serves this slot now" : sc->no_master_why;
    }
    return n;
}

int cluster_unserved_waits(const struct sidecar *sc)
{
    const struct cluster *cl = sc->cl;

    return cl->have_map && cl->slots_lost_at &&
           ev_now(sc->loop) - cl->slots_lost_at < sc->cfg->failover_wait;
}

int cluster_waits_for(const struct sidecar *sc, const struct node *n)
{
    return n ? n->pool->down : cluster_unserved_waits(sc);
}

const char *cluster_held_why(struct sidecar *sc, const char *req, size_t len)
{
    struct node *n = cluster_route_bytes(sc, req, len);

    if (!n && sc->cl->have_map)
        return CLUSTER_UNSERVED;
    if (n && n->pool->down)
        return n->pool->down_reason;
    return sc->no_master_why;
}

struct node *cluster_slot_node(const struct sidecar *sc, unsigned slot)
{
    return shard_node(sc->cl, slot);
}

struct node *cluster_route_bytes(struct sidecar *sc, const char *req, size_t len)
{
    struct resp_framer f;
    static const struct resp_limits lim = {.max_bulk = RESP_MAX_BULK, .max_line = 0};
    const char *why;
    int sh;

    resp_framer_reset(&f);
    if (resp_frame_request(&f, req, len, &lim) != RESP_DONE || f.fr.is_inline)
        return NULL;
    const struct command *cmd = command_lookup(&sc->cmds, req + f.fr.name_off, f.fr.name_len);
    return cluster_route(sc, cmd, req, &f.fr, &why, &sh);
}

/* "-MOVED 3999 127.0.0.1:6381": the slot and the address. */
static int parse_redirect(const char *p, size_t n, size_t skip, unsigned *slot, char *addr)
{
    char line[200];

    if (n < skip + 4 || n - 2 >= sizeof line)
        return -1;
    memcpy(line, p + skip, n - 2 - skip);
    line[n - 2 - skip] = '\0';
    char *sp = strchr(line, ' ');
    long s = strtol(line, NULL, 10);
    if (!sp || s < 0 || s >= CLUSTER_SLOTS || !sp[1])
        return -1;
    *slot = (unsigned)s;
    snprintf(addr, CLUSTER_ADDR, "%s", sp + 1);
    return 0;
}

/* The shard whose master is n, added (as a shard MOVED told of) if the
 * map did not have it; -1 when full. */
static int shard_of(struct cluster *cl, struct node *n)
{
    int i = shard_index(cl, n);

    if (i >= 0)
        return i;
    if (cl->nshards == CLUSTER_MAX_SHARDS)
        return -1;
    cl->nreplicas[cl->nshards] = 0;
    cl->map_shard[cl->nshards] = 0;
    cl->shard_node[cl->nshards] = n;
    return cl->nshards++;
}

int cluster_redirect(struct client *c, struct req *r, const char *req, const char *p, size_t n)
{
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    struct sidecar *sc = client_sc(c);
    struct cluster *cl = sc->cl;
    int moved = n > 7 && memcmp(p, "-MOVED ", 7) == 0;
    int ask = !moved && n > 5 && memcmp(p, "-ASK ", 5) == 0;
    char addr[CLUSTER_ADDR];
    unsigned slot;
    struct node *to;

    /* the cluster cannot serve the slot now (a failover, a migration of a
     * multi-key request's slot): held, and sent again as the map changes
     * or every tenth of a second, until failover_wait */
    if (!moved && !ask && !(r->flags & REQ_LEASED) &&
        (!(r->flags & REQ_PART) || split_part_holdable(r)) &&
        ((n > 13 && memcmp(p, "-CLUSTERDOWN ", 13) == 0) ||
         (n > 10 && memcmp(p, "-TRYAGAIN ", 10) == 0))) {
        if (p[1] == 'T')
            cl->tryagain++;
        else
            cl->clusterdown++;
        /* Redis's words, for the error if the wait runs out */
        snprintf(sc->no_master_why, sizeof sc->no_master_why, "%.*s", (int)(n - 3), p + 1);
        health_cluster_refresh(&cl->src);
        return hold_request(c, r, req, r->len);
    }
    /* nodes that keep sending it on to each other: Redis's reply after 5 */
    unsigned hops = (r->flags & REQ_REDIR_MASK) >> REQ_REDIR_SHIFT;
    if ((!moved && !ask) || (r->flags & REQ_LEASED) || hops >= 5 ||
        parse_redirect(p, n, moved ? 7 : 5, &slot, addr) < 0 || !(to = node_for(sc, addr, 0)))
        return -1;
    r->flags = (r->flags & ~REQ_REDIR_MASK) | (hops + 1) << REQ_REDIR_SHIFT;
    struct pool *pl = client_pool(c, to);
    struct link *l = pl ? pool_link_for(pl, c->id, c->resp3) : NULL;
    if (!l)
        return -1;
    if (moved) {
        /* behind the client's requests held for a failover, not before them */
        if (!(r->flags & REQ_PART) && c->x && c->x->nheld) {
            health_cluster_refresh(&cl->src);
            return hold_request(c, r, req, r->len);
        }
        int sh = shard_of(cl, to);
        if (sh >= 0 && cl->owner[slot] != sh + 1) {
            cl->owner[slot] = (uint8_t)(sh + 1);
            cl->scan_gen++;
        }
        cl->moved++;
        health_cluster_refresh(&cl->src);
    } else {
        cl->asked++;
        if (link_send_unowned(l, asking, sizeof asking - 1) < 0)
            return -1;
    }
    return link_resend(l, r, req, r->len);
}

/* --- a one-node cluster, for apps in cluster mode ------------------------ */

/* Where the app reached the sidecar: what it must connect to again. */
static void local_addr(const struct client *c, char *ip, size_t iplen, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    snprintf(ip, iplen, "127.0.0.1");
    *port = 6380;
    if (getsockname(c->io.fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin6_port);
    }
}

static void bulk(struct buf *b, const char *s)
{
    buf_appendf(b, "$%zu\r\n%s\r\n", strlen(s), s);
}

void cluster_command(struct client *c, const char *frame, const struct resp_frame *fr)
{
    struct sidecar *sc = client_sc(c);
    struct cluster *cl = sc->cl;
    struct buf *b = &sc->scratch;
    struct resp_args a;
    char ip[64], text[600];
    int port;

    resp_collect_args(frame, fr, &a);
    if (!resp_arg_is(&a, 0, "cluster")) {            /* READONLY, READWRITE, ASKING */
        client_reply(c, "+OK\r\n", 5);
        return;
    }
    if (a.argc < 2) {
        client_reply_error(c, "ERR wrong number of arguments for 'cluster' command");
        return;
    }
    local_addr(c, ip, sizeof ip, &port);
    buf_reset(b);
    if (resp_arg_is(&a, 1, "slots")) {
        buf_appendf(b, "*1\r\n*3\r\n:0\r\n:%d\r\n*3\r\n", CLUSTER_SLOTS - 1);
        bulk(b, ip);
        buf_appendf(b, ":%d\r\n", port);
        bulk(b, cl->id);
    } else if (resp_arg_is(&a, 1, "shards")) {
        buf_appendf(b, "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:%d\r\n$5\r\nnodes\r\n*1\r\n"
                    "*14\r\n$2\r\nid\r\n", CLUSTER_SLOTS - 1);
        bulk(b, cl->id);
        buf_appendf(b, "$4\r\nport\r\n:%d\r\n$2\r\nip\r\n", port);
        bulk(b, ip);
        bulk(b, "endpoint");
        bulk(b, ip);
        buf_appendf(b, "$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
                    "$6\r\nhealth\r\n$6\r\nonline\r\n");
    } else if (resp_arg_is(&a, 1, "nodes")) {
        snprintf(text, sizeof text, "%s %s:%d@%d myself,master - 0 0 1 connected 0-%d\n",
                 cl->id, ip, port, port + 10000, CLUSTER_SLOTS - 1);
        bulk(b, text);
    } else if (resp_arg_is(&a, 1, "info")) {
        snprintf(text, sizeof text, "cluster_enabled:1\r\ncluster_state:%s\r\n"
                 "cluster_slots_assigned:%d\r\ncluster_slots_ok:%d\r\ncluster_slots_pfail:0\r\n"
                 "cluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n"
                 "cluster_current_epoch:1\r\ncluster_my_epoch:1\r\n",
                 cl->have_map ? "ok" : "fail", CLUSTER_SLOTS, CLUSTER_SLOTS);
        bulk(b, text);
    } else if (resp_arg_is(&a, 1, "myid")) {
        bulk(b, cl->id);
    } else if (resp_arg_is(&a, 1, "keyslot") && a.argc == 3) {
        buf_appendf(b, ":%u\r\n", cluster_slot(a.v[2], a.l[2]));
    } else {
        client_reply_error(c, "ERR CLUSTER %.*s is not supported through redis-sidecar, "
                           "which shows apps a one-node cluster (SLOTS, SHARDS, NODES, INFO, "
                           "MYID, KEYSLOT)", (int)(a.l[1] > 40 ? 40 : a.l[1]), a.v[1]);
        return;
    }
    client_reply(c, buf_start(b), buf_used(b));
}

void cluster_health(const struct sidecar *sc, char *body, size_t len)
{
    const struct cluster *cl = sc->cl;

    if (!cl->have_map) {
        snprintf(body, len, "no slot map: %s\n", cl->src.last_err[0] ? cl->src.last_err
                                                                      : sc->no_master_why);
        return;
    }
    uint8_t serves[CLUSTER_MAX_SHARDS + 1] = {0};
    for (unsigned s = 0; s < CLUSTER_SLOTS; s++) {
        if (cl->map.owner[s] && !cl->owner[s]) {
            snprintf(body, len, "slot %u: its master %s is no node of ours (see the log)\n", s,
                     cl->map.shard[cl->map.owner[s] - 1].master);
            return;
        }
        serves[cl->owner[s]] = 1;
    }
    for (int i = 0; i < cl->nshards; i++) {
        const struct pool *p = cl->shard_node[i]->pool;
        if (serves[i + 1] && p->down) {
            snprintf(body, len, "shard master %s down: %s\n", p->cfg.name, p->down_reason);
            return;
        }
    }
    snprintf(body, len, "ok\n");
}

void cluster_report(const struct sidecar *sc, struct buf *b)
{
    const struct cluster *cl = sc->cl;

    buf_appendf(b, "\r\n# Cluster\r\nslot_map:%s\r\nshards:%d\r\nmap_reads:%llu\r\n"
                "map_read_from:%s\r\nconfig_epoch:%lld\r\nstale_maps_ignored:%llu\r\n"
                "last_error:%s\r\nmoved:%llu\r\nask:%llu\r\n"
                "held_tryagain:%llu\r\nheld_clusterdown:%llu\r\n",
                cl->have_map ? "read" : "none", cl->nshards,
                (unsigned long long)cl->src.reads, cl->src.ask[cl->src.cur], cl->src.epoch,
                (unsigned long long)cl->src.stale,
                cl->src.last_err[0] ? cl->src.last_err : "-", (unsigned long long)cl->moved,
                (unsigned long long)cl->asked, (unsigned long long)cl->tryagain,
                (unsigned long long)cl->clusterdown);
    for (int i = 0; i < cl->nshards; i++) {
        const struct node *n = cl->shard_node[i];
        int from = -1, nslots = 0, nranges = 0;
        char ranges[200] = "";
        size_t used = 0;
        for (int s = 0; s <= CLUSTER_SLOTS; s++) {
            int mine = s < CLUSTER_SLOTS && cl->owner[s] == i + 1;
            if (mine && from < 0)
                from = s;
            if (!mine && from >= 0) {
                nslots += s - from;
                if (nranges++ < 8 && used < sizeof ranges - 24)
                    used += (size_t)snprintf(ranges + used, sizeof ranges - used, "%s%d-%d",
                                             used ? " " : "", from, s - 1);
                from = -1;
            }
        }
        if (nranges > 8 && used < sizeof ranges - 8)
            snprintf(ranges + used, sizeof ranges - used, " ...");
        const struct cluster_shard *sh = cl->map_shard[i] ? &cl->map.shard[cl->map_shard[i] - 1]
                                                          : NULL;
        buf_appendf(b, "shard%d:master=%s,state=%s,role=%s,slots=%d,ranges=%s,replicas=%d,"
                    "replicas_reading=%d\r\n", i, n->pool->cfg.name, n->pool->down ? "down" : "up",
                    n->health.role[0] ? n->health.role : "unknown", nslots,
                    ranges[0] ? ranges : "-", sh ? sh->nreplicas : 0, cl->nreplicas[i]);
    }
}
