/* Redis Cluster behind the sidecar ([upstream] cluster): the slot map
 * (health/cluster.c) turned into nodes, each request's node by the slot of
 * its first key, MOVED and ASK absorbed, and a one-node cluster shown to
 * apps that speak cluster themselves. */
#ifndef SIDECAR_PROXY_CLUSTER_H
#define SIDECAR_PROXY_CLUSTER_H

#include <stddef.h>

#include "../health/cluster.h"
#include "command.h"
#include "sidecar.h"

struct cluster {
    struct cluster_src src;
    struct cluster_map map;                       /* the last map read */
    struct node       *shard_node[CLUSTER_MAX_SHARDS];  /* each shard's master */
    /* each shard's replicas, with read_from not master: they serve reads */
    struct node       *replica[CLUSTER_MAX_SHARDS][CLUSTER_MAX_REPLICAS];
    uint8_t            nreplicas[CLUSTER_MAX_SHARDS];
    uint8_t            map_shard[CLUSTER_MAX_SHARDS];  /* the map's shard + 1 (0: MOVED's) */
    int                nshards;                   /* map's, and those MOVED added */
    uint8_t            owner[CLUSTER_SLOTS];      /* shard + 1; MOVED updates it */
    int                have_map;
    ev_tstamp          slots_lost_at;             /* a map last left served slots unserved */
    char               id[41];                    /* the one-node cluster apps see */
    uint64_t           moved, asked, refreshes, tryagain, clusterdown;
    unsigned           scan_gen;                  /* owner[] changed: SCAN ranges restart */
};

/* Follow the seeds' cluster; -1 with the reason. */
int cluster_start(struct sidecar *sc, char *err, size_t errlen);
void cluster_stop(struct sidecar *sc);
/* A reload: the map's connections from now on use its credentials and
 * TLS, and its replicas serve reads or not as read_from now says. */
void cluster_reconfigure(struct sidecar *sc);
/* cluster_route's rare ways: a keyless request (the default master), and
 * a slot no node serves now (shard_plus1: its owner[] entry). */
struct node *cluster_route_keyless(struct sidecar *sc, const char **why, int *shard);
struct node *cluster_route_unserved(struct sidecar *sc, unsigned shard_plus1, const char **why,
                                    int *shard);

/* The master serving the request's first key (keyless: the default
 * master, shard -1); NULL when no node serves its slot now (the map is
 * not read yet, or the slot is unassigned), with why. */
static inline __attribute__((always_inline)) struct node *
cluster_route(struct sidecar *sc, const struct command *cmd, const char *frame,
              const struct resp_frame *fr, const char **why, int *shard)
{
    const struct cluster *cl = sc->cl;
    const char *k;
    size_t kn;

    if (!command_first_key(cmd, frame, fr, &k, &kn))
        return cluster_route_keyless(sc, why, shard);
    unsigned sh = cl->owner[cluster_slot(k, kn)];
    if (__builtin_expect(!sh || !cl->shard_node[sh - 1], 0))
        return cluster_route_unserved(sc, sh, why, shard);
    *shard = (int)sh - 1;
    return cl->shard_node[sh - 1];
}
#define CLUSTER_UNSERVED "CLUSTERDOWN Hash slot not served (no node serves this slot now)"
/* 1 while a slot the map leaves unserved is waited for: within
 * failover_wait of a map that took slots from their master (a manual
 * failover's moment, before the heir's claim is heard). Else, or before
 * the first map, such a request fails at once. */
int cluster_unserved_waits(const struct sidecar *sc);
/* A request for node n (NULL: its slot unserved now) waits for the
 * cluster to settle (hold.c): n is down, or cluster_unserved_waits. */
int cluster_waits_for(const struct sidecar *sc, const struct node *n);
/* Why a held request (its bytes) has no master now, for its error once
 * failover_wait runs out. */
const char *cluster_held_why(struct sidecar *sc, const char *req, size_t len);
/* The replicas of a shard (of cluster_route) that may serve its reads. */
int cluster_replicas(const struct sidecar *sc, int shard, struct node *const **v);
/* 1 if n is the master of a shard in the map. */
int cluster_is_master(const struct sidecar *sc, const struct node *n);
/* The offsets of the master whose replica n is (its lag), or NULL. */
const struct topology *cluster_master_topo(const struct sidecar *sc, const struct node *n);
/* The master serving a slot now, or NULL. */
struct node *cluster_slot_node(const struct sidecar *sc, unsigned slot);
/* The same for a request's bytes (one that did not run where it went). */
struct node *cluster_route_bytes(struct sidecar *sc, const char *req, size_t len);
/* A reply that is -MOVED or -ASK: the request goes where it says (the
 * map learns a MOVED); -TRYAGAIN or -CLUSTERDOWN: it is held (hold.c)
 * and sent again. 0 if so; -1: answer the reply as it is. */
int cluster_redirect(struct client *c, struct req *r, const char *req, const char *p, size_t n);
/* A node's health checks failed: the map may have changed. */
void cluster_node_down(struct sidecar *sc);
/* CLUSTER ..., READONLY, READWRITE, ASKING from an app (cluster mode). */
void cluster_command(struct client *c, const char *frame, const struct resp_frame *fr);
/* /healthz: "ok\n" when every slot the map assigns has a master that is
 * up, else which is not. */
void cluster_health(const struct sidecar *sc, char *body, size_t len);
/* The shards, for PROXY NODES. */
void cluster_report(const struct sidecar *sc, struct buf *b);

#endif
