/* Reading a cluster's slot map over one control connection (conn.c):
 * CLUSTER SHARDS, parsed into shards and an owner per slot; CLUSTER SLOTS
 * where the node does not know SHARDS (Redis 6). A node that fails or
 * gives no usable map is left for the next one on the list. */
#include "cluster.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/tls.h"
#include "conn.h"

#define REFRESH_MIN_GAP 0.1          /* seconds between two reads asked for */

/* CRC16/XMODEM with 4 tables: crc_at[0] is the usual one, byte x fed to
 * a zero register; crc_at[z] the same register moved on by z zero bytes.
 * CRC is linear, so the register after bytes b0..b3 is crc_at[3][hi ^ b0]
 * ^ crc_at[2][lo ^ b1] ^ crc_at[1][b2] ^ crc_at[0][b3] (hi, lo: its bytes
 * before them): four lookups that do not wait for each other. */
static uint16_t crc_at[4][256];

static uint16_t crc_zero_byte(uint16_t c)
{
    return (uint16_t)(c << 8) ^ crc_at[0][c >> 8];
}

static void crc_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint16_t c = (uint16_t)(i << 8);
        for (int k = 0; k < 8; k++)
            c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
        crc_at[0][i] = c;
    }
    for (int z = 1; z < 4; z++)
        for (unsigned i = 0; i < 256; i++)
            crc_at[z][i] = crc_zero_byte(crc_at[z - 1][i]);
}

unsigned cluster_slot(const char *key, size_t len)
{
    const unsigned char *k = (const unsigned char *)key;
    uint16_t crc = 0;

    if (__builtin_expect(crc_at[0][1] == 0, 0))
        crc_init();
    /* {tag}: only the part between the first { and the next }, if not empty */
    const unsigned char *open = memchr(k, '{', len);
    if (open) {
        size_t from = (size_t)(open - k) + 1;
        const unsigned char *close = memchr(k + from, '}', len - from);
        if (close && close > k + from) {
            len = (size_t)(close - (k + from));
            k += from;
        }
    }
    size_t i = 0;
    for (; i + 4 <= len; i += 4)
        crc = crc_at[3][(crc >> 8) ^ k[i]] ^ crc_at[2][(crc & 0xff) ^ k[i + 1]] ^
              crc_at[1][k[i + 2]] ^ crc_at[0][k[i + 3]];
    for (; i < len; i++)
        crc = crc_zero_byte(crc) ^ crc_at[0][k[i]];
    return crc & (CLUSTER_SLOTS - 1);
}

static void addr_of(char *out, const char *ip, long long port)
{
    snprintf(out, CLUSTER_ADDR, strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip, port);
}

/* A flat [key, value, ...] map's value for key, or NULL. */
static const redisReply *field(const redisReply *m, const char *key)
{
    if (!m || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING && strcmp(m->element[i]->str, key) == 0)
            return m->element[i + 1];
    return NULL;
}

static long long int_of(const redisReply *r)
{
    return !r ? -1 : r->type == REDIS_REPLY_INTEGER ? r->integer
         : r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
}

static int own(struct cluster_map *m, int shard, long long from, long long to)
{
    if (from < 0 || to >= CLUSTER_SLOTS || from > to)
        return -1;
    for (long long s = from; s <= to; s++)
        m->owner[s] = (uint8_t)(shard + 1);
    m->shard[shard].nslots += (int)(to - from + 1);
    return 0;
}

/* One node of a SHARDS entry, as host:port: its endpoint (or ip), and
 * its TLS port when the links are TLS and it has one. */
static int shard_node_addr(const struct cluster_src *cs, const redisReply *n, char *out)
{
    const redisReply *ip = field(n, "endpoint"), *alt = field(n, "ip");
    long long port = int_of(field(n, "port")), tport = int_of(field(n, "tls-port"));

    if (!ip || ip->type != REDIS_REPLY_STRING || !ip->str[0] || strcmp(ip->str, "?") == 0)
        ip = alt;
    if (!ip || ip->type != REDIS_REPLY_STRING || !ip->str[0])
        return -1;
    if (cs->tls && tport > 0)
        port = tport;
    if (port <= 0)
        port = tport;
    if (port <= 0)
        return -1;
    addr_of(out, ip->str, port);
    return 0;
}

static int parse_shards(const struct cluster_src *cs, const redisReply *r, struct cluster_map *m)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *slots = field(r->element[i], "slots"), *nodes = field(r->element[i], "nodes");
        if (!slots || !nodes || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY)
            return -1;
        /* a shard that serves nothing (yet: a node taking slots in a
         * resharding, or one that gave its last away) is kept: its node
         * stays, requests ASK sends there find it */
        if (m->nshards == CLUSTER_MAX_SHARDS)
            return -1;
        struct cluster_shard *sh = &m->shard[m->nshards];
        memset(sh, 0, sizeof *sh);
        for (size_t k = 0; k < nodes->elements; k++) {
            const redisReply *n = nodes->element[k], *role = field(n, "role"),
                             *health = field(n, "health");
            char addr[CLUSTER_ADDR];
            if (!role || role->type != REDIS_REPLY_STRING || shard_node_addr(cs, n, addr) < 0)
                continue;
            int online = !health || health->type != REDIS_REPLY_STRING ||
                         strcmp(health->str, "online") == 0;
            /* a failed master stays listed (offline) beside the replica the
             * cluster promoted: the online one is the master */
            if (strcmp(role->str, "master") == 0) {
                if (!sh->master[0] || (online && !sh->master_online)) {
                    memcpy(sh->master, addr, sizeof addr);
                    sh->master_online = online;
                }
            } else if (sh->nreplicas < CLUSTER_MAX_REPLICAS &&
                       (online || strcmp(health->str, "loading") == 0)) {
                /* a replica says "loading" until its offset passes 0 (Redis
                 * 7.0: on a cluster that took no write yet); its own checks
                 * say whether it serves reads */
                memcpy(sh->replicas[sh->nreplicas++], addr, sizeof addr);
            }
        }
        /* no master known: its slots are unserved; a failed master that
         * serves nothing (its replica took over) is no node of ours */
        if (!sh->master[0] || (slots->elements == 0 && !sh->master_online)) {
            memset(sh, 0, sizeof *sh);
            continue;
        }
        for (size_t k = 0; k + 1 < slots->elements; k += 2)
            if (own(m, m->nshards, int_of(slots->element[k]), int_of(slots->element[k + 1])) < 0)
                return -1;
        m->nshards++;
    }
    return 0;
}

/* CLUSTER SLOTS: [from, to, [ip, port, id], replicas...] per range; the
 * ranges of one master make one shard. */
static int parse_slots(const redisReply *r, struct cluster_map *m)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING)
            return -1;
        char addr[CLUSTER_ADDR];
        addr_of(addr, e->element[2]->element[0]->str, int_of(e->element[2]->element[1]));
        int s = 0;
        while (s < m->nshards && strcmp(m->shard[s].master, addr) != 0)
            s++;
        if (s == m->nshards) {
            if (m->nshards == CLUSTER_MAX_SHARDS)
                return -1;
            memcpy(m->shard[m->nshards].master, addr, sizeof addr);
            m->shard[m->nshards].master_online = 1;
            m->nshards++;
            for (size_t k = 3; k < e->elements; k++) {
                const redisReply *n = e->element[k];
                struct cluster_shard *sh = &m->shard[s];
                if (n->type == REDIS_REPLY_ARRAY && n->elements >= 2 &&
                    n->element[0]->type == REDIS_REPLY_STRING &&
                    sh->nreplicas < CLUSTER_MAX_REPLICAS)
                    addr_of(sh->replicas[sh->nreplicas++], n->element[0]->str,
                            int_of(n->element[1]));
            }
        }
        if (own(m, s, int_of(e->element[0]), int_of(e->element[1])) < 0)
            return -1;
    }
    return 0;
}

long long cluster_nodes_epoch(const char *text, size_t len)
{
    long long best = -1;
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
        /* id addr flags master ping pong epoch link slot... */
        const char *f[9];
        size_t fl[9];
        int k = 0;
        for (const char *q = p; q < eol && k < 9;) {
            while (q < eol && *q == ' ')
                q++;
            if (q == eol)
                break;
            const char *e = memchr(q, ' ', (size_t)(eol - q));
            f[k] = q;
            fl[k++] = (size_t)((e ? e : eol) - q);
            q = e ? e : eol;
        }
        if (k == 9 && memmem(f[2], fl[2], "master", 6) && f[6][0] >= '0' && f[6][0] <= '9') {
            long long e = strtoll(f[6], NULL, 10);
            if (e > best)
                best = e;
        }
        p = eol + 1;
    }
    return best;
}

static void drop_conn(struct cluster_src *cs)
{
    cs->asking = 0;
    health_conn_drop(&cs->conn);
}

/* The next node on the list is asked from now on. */
static void failed(struct cluster_src *cs, const char *why)
{
    cs->failures++;
    if (strcmp(cs->last_err, why) != 0)
        log_warn("cluster: cannot read the slot map from %s: %s", cs->ask[cs->cur], why);
    snprintf(cs->last_err, sizeof cs->last_err, "%s", why);
    drop_conn(cs);
    cs->cur = (cs->cur + 1) % cs->nask;
}

/* Every node the map names is worth asking next time, after the seeds. */
static void learn_nodes(struct cluster_src *cs, const struct cluster_map *m)
{
    char was[CLUSTER_ADDR];

    snprintf(was, sizeof was, "%s", cs->ask[cs->cur]);   /* asked next time too */
    cs->nask = cs->nseeds;
    for (int i = 0; i < m->nshards; i++) {
        const struct cluster_shard *sh = &m->shard[i];
        for (int k = -1; k < sh->nreplicas && cs->nask < CLUSTER_MAX_ASK; k++) {
            const char *a = k < 0 ? sh->master : sh->replicas[k];
            int known = 0;
            for (int j = 0; j < cs->nask && !known; j++)
                known = strcmp(cs->ask[j], a) == 0;
            if (!known)
                snprintf(cs->ask[cs->nask++], CLUSTER_ADDR, "%s", a);
        }
    }
    cs->cur = 0;
    for (int j = 0; j < cs->nask; j++)
        if (strcmp(cs->ask[j], was) == 0)
            cs->cur = j;
}

static void ask(struct cluster_src *cs);
static void on_nodes_reply(struct hconn *c, void *reply, void *priv);

static void on_map_reply(struct hconn *c, void *reply, void *priv)
{
    struct cluster_src *cs = priv;
    const redisReply *r = reply;
    (void)c;

    if (!r || !cs->asking)
        return;                          /* the connection went: failed already */
    cs->asking = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        if (!cs->use_slots && strncasecmp(r->str, "ERR unknown subcommand", 22) == 0) {
            cs->use_slots = 1;           /* Redis 6: SLOTS */
            log_info("cluster: %s does not know CLUSTER SHARDS; reading CLUSTER SLOTS",
                     cs->ask[cs->cur]);
            ask(cs);
            return;
        }
        char why[200];
        snprintf(why, sizeof why, "%s", r->str);
        failed(cs, why);
        return;
    }
    memset(cs->next, 0, sizeof *cs->next);
    int parsed = (cs->use_slots ? parse_slots(r, cs->next) : parse_shards(cs, r, cs->next)) == 0;
    int served = 0;
    for (int i = 0; parsed && i < cs->next->nshards; i++)
        served += cs->next->shard[i].nslots;
    if (!parsed || !served) {
        failed(cs, parsed ? "no shard serves any slot" : "the map did not parse");
        return;
    }
    /* its config epoch next, on the same connection: asking goes on */
    cs->asking = 1;
    if (health_conn_command(cs->conn, on_nodes_reply, cs, "CLUSTER NODES") < 0)
        failed(cs, "out of memory");
}

/* The map just read is taken unless the node answering has not seen the
 * epoch of the map in use (it missed a failover or a slot move: a
 * deposed master back from a pause says it still owns its slots). When
 * every node asked in a row says so, the cluster was made again: taken. */
static void on_nodes_reply(struct hconn *c, void *reply, void *priv)
{
    struct cluster_src *cs = priv;
    const redisReply *r = reply;
    char from[CLUSTER_ADDR], why[200];
    (void)c;

    if (!r || !cs->asking)
        return;
    cs->asking = 0;
    /* not allowed to the user, say: the map is taken as it is */
    long long epoch = r->type == REDIS_REPLY_STRING ? cluster_nodes_epoch(r->str, r->len) : -1;
    if (epoch >= 0 && epoch < cs->epoch && ++cs->stale_run < cs->nask) {
        cs->stale++;
        snprintf(why, sizeof why, "a stale map (config epoch %lld, the map in use has %lld)",
                 epoch, cs->epoch);
        failed(cs, why);
        return;
    }
    cs->stale_run = 0;
    if (epoch >= 0)
        cs->epoch = epoch;
    if (cs->last_err[0])
        log_info("cluster: slot map read from %s (was: %s)", cs->ask[cs->cur], cs->last_err);
    cs->last_err[0] = '\0';
    cs->reads++;
    cs->read_at = ev_now(cs->loop);
    snprintf(from, sizeof from, "%s", cs->ask[cs->cur]);
    learn_nodes(cs, cs->next);
    cs->on_map(cs->arg, cs->next, from);
}

static void on_close(struct hconn *c, const char *why)
{
    struct cluster_src *cs = health_conn_data(c);

    cs->conn = NULL;
    if (cs->asking)
        failed(cs, why);
}

static void ask(struct cluster_src *cs)
{
    char host[CLUSTER_ADDR], err[200];
    int port = 0;

    if (!cs->conn) {
        if (net_split_addr(cs->ask[cs->cur], host, sizeof host, &port) < 0) {
            failed(cs, "not a host:port");
            return;
        }
        struct health_conn_spec spec = {
            .host = host, .port = port,
            .username = cs->has_password && cs->username[0] ? cs->username : NULL,
            .password = cs->has_password ? cs->password : NULL,
            .name = "sidecar-cluster", .data = cs, .on_close = on_close,
            .tls = cs->tls, .tls_name = cs->tls_name[0] ? cs->tls_name : NULL,
        };
        if (!(cs->conn = health_conn_open(cs->loop, &spec, err, sizeof err))) {
            failed(cs, err);
            return;
        }
    }
    cs->asking = 1;
    cs->asked_at = ev_now(cs->loop);
    if (health_conn_command(cs->conn, on_map_reply, cs, cs->use_slots ? "CLUSTER SLOTS"
                                                                       : "CLUSTER SHARDS") < 0)
        failed(cs, "out of memory");
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cluster_src *cs = w->data;
    (void)loop;
    (void)revents;

    if (cs->asking && ev_now(loop) - cs->asked_at < cs->interval)
        return;                          /* a read asked for just now: its answer first */
    if (cs->asking)                      /* unanswered for a whole interval */
        failed(cs, "no answer within the check interval");
    ask(cs);
}

static void on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cluster_src *cs = w->data;
    (void)loop;
    (void)revents;

    if (!cs->asking)
        ask(cs);
}

void health_cluster_refresh(struct cluster_src *cs)
{
    if (ev_is_active(&cs->soon) || cs->asking)
        return;
    double wait = cs->asked_at + REFRESH_MIN_GAP - ev_now(cs->loop);
    ev_timer_set(&cs->soon, wait > 0 ? wait : 0, 0);
    ev_timer_start(cs->loop, &cs->soon);
}

int health_cluster_start(struct cluster_src *cs, struct ev_loop *loop,
                         const struct cluster_config *cfg,
                         void (*on_map)(void *arg, const struct cluster_map *map,
                                        const char *from),
                         void *arg, char *err, size_t errlen)
{
    memset(cs, 0, sizeof *cs);
    cs->epoch = -1;
    if (!(cs->next = malloc(sizeof *cs->next))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cs->loop = loop;
    cs->interval = cfg->interval;
    cs->on_map = on_map;
    cs->arg = arg;
    for (int i = 0; i < cfg->nseeds && i < CLUSTER_MAX_ASK; i++)
        snprintf(cs->ask[cs->nask++], CLUSTER_ADDR, "%s", cfg->seeds[i]);
    cs->nseeds = cs->nask;
    if (cfg->password) {
        snprintf(cs->password, sizeof cs->password, "%s", cfg->password);
        snprintf(cs->username, sizeof cs->username, "%s", cfg->username ? cfg->username : "");
        cs->has_password = 1;
    }
    if (cfg->tls) {
        tls_ctx_ref(cfg->tls);
        cs->tls = cfg->tls;
    }
    snprintf(cs->tls_name, sizeof cs->tls_name, "%s", cfg->tls_name ? cfg->tls_name : "");
    ev_timer_init(&cs->tick, on_tick, 0, cfg->interval);
    ev_init(&cs->soon, on_soon);
    cs->tick.data = cs->soon.data = cs;
    ev_timer_start(loop, &cs->tick);
    return 0;
}

void health_cluster_configure(struct cluster_src *cs, const struct cluster_config *cfg)
{
    if (cfg->password) {
        snprintf(cs->password, sizeof cs->password, "%s", cfg->password);
        snprintf(cs->username, sizeof cs->username, "%s", cfg->username ? cfg->username : "");
    }
    cs->has_password = cfg->password != NULL;
    if (cfg->tls)
        tls_ctx_ref(cfg->tls);
    tls_ctx_unref(cs->tls);
    cs->tls = cfg->tls;
    snprintf(cs->tls_name, sizeof cs->tls_name, "%s", cfg->tls_name ? cfg->tls_name : "");
    if (cfg->interval != cs->interval) {
        cs->interval = cfg->interval;
        cs->tick.repeat = cfg->interval;
        ev_timer_again(cs->loop, &cs->tick);
    }
}

void health_cluster_stop(struct cluster_src *cs)
{
    ev_timer_stop(cs->loop, &cs->tick);
    ev_timer_stop(cs->loop, &cs->soon);
    drop_conn(cs);
    tls_ctx_unref(cs->tls);
    cs->tls = NULL;
    free(cs->next);
    cs->next = NULL;
}
