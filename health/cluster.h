/* The slot map of a Redis Cluster: which shard (a master and its
 * replicas) serves each of the 16,384 hash slots. Read with CLUSTER SHARDS
 * (Redis 7; CLUSTER SLOTS where that is unknown) from one reachable node
 * at a time (the seeds, then every node the last map named), every
 * interval and when asked (a MOVED, a node lost): at most ten times a
 * second. Acting on the map is the owner's job. */
#ifndef SIDECAR_CLUSTER_H
#define SIDECAR_CLUSTER_H

#include <ev.h>
#include <stdint.h>

#define CLUSTER_SLOTS        16384
#define CLUSTER_MAX_SHARDS   64
#define CLUSTER_MAX_REPLICAS 8
#define CLUSTER_ADDR         128     /* "host:port" */
#define CLUSTER_MAX_ASK      (CLUSTER_MAX_SHARDS * (1 + CLUSTER_MAX_REPLICAS) + 16)

struct hconn;
struct tls_ctx;

/* CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384. */
unsigned cluster_slot(const char *key, size_t len);
/* The highest config epoch of a master that serves slots, in CLUSTER
 * NODES' text; -1 if there is none. A node that missed a failover or a
 * slot move has not seen that epoch. */
long long cluster_nodes_epoch(const char *text, size_t len);

struct cluster_shard {
    char master[CLUSTER_ADDR];
    int  master_online;              /* SHARDS' health (SLOTS: always) */
    char replicas[CLUSTER_MAX_REPLICAS][CLUSTER_ADDR];
    int  nreplicas;
    int  nslots;
};

struct cluster_map {
    int                  nshards;
    struct cluster_shard shard[CLUSTER_MAX_SHARDS];
    uint8_t              owner[CLUSTER_SLOTS];   /* shard index + 1; 0: no shard */
};

struct cluster_config {
    const char *const *seeds;        /* host:port, from proxy.ini */
    int         nseeds;
    const char *username;
    const char *password;            /* NULL: no AUTH */
    double      interval;
    struct tls_ctx *tls;             /* NULL: plaintext */
    const char *tls_name;
};

struct cluster_src {
    struct ev_loop     *loop;
    char                ask[CLUSTER_MAX_ASK][CLUSTER_ADDR];  /* seeds, then the map's nodes */
    int                 nask, nseeds, cur;
    char                username[128], password[128];
    int                 has_password;
    double              interval;
    struct tls_ctx     *tls;         /* a reference */
    char                tls_name[256];
    struct hconn       *conn;        /* to ask[cur] */
    int                 asking;      /* a map request is out */
    int                 use_slots;   /* CLUSTER SHARDS unknown: CLUSTER SLOTS */
    ev_tstamp           asked_at, read_at;
    ev_timer            tick, soon;
    struct cluster_map *next;        /* the map being read */
    char                last_err[200];
    long long           epoch;       /* the map in use's config epoch (-1: unknown) */
    int                 stale_run;   /* stale maps in a row (every node's: taken) */
    uint64_t            reads, failures, stale;
    void              (*on_map)(void *arg, const struct cluster_map *map, const char *from);
    void               *arg;
};

int health_cluster_start(struct cluster_src *cs, struct ev_loop *loop,
                         const struct cluster_config *cfg,
                         void (*on_map)(void *arg, const struct cluster_map *map,
                                        const char *from),
                         void *arg, char *err, size_t errlen);
void health_cluster_stop(struct cluster_src *cs);
/* Credentials, TLS and interval of a reload, for the connections made
 * from now on. */
void health_cluster_configure(struct cluster_src *cs, const struct cluster_config *cfg);
/* Read the map again soon (a MOVED, a node lost), not more than ten
 * times a second. */
void health_cluster_refresh(struct cluster_src *cs);

#endif
