/* The node set: each Redis node is a pool of links and a health checker.
 * Nodes are added and found by address, dropped when the topology loses
 * them (what ran nowhere goes elsewhere first), and retired by a reload:
 * a retiring node takes no new request, finishes what it carries, and is
 * freed once idle or at its deadline. Which node is master is master.c's
 * business. */
#ifndef SIDECAR_NODES_H
#define SIDECAR_NODES_H

#include <stddef.h>

#include "sidecar.h"

void nodes_init(struct sidecar *sc);
/* Every node freed, retiring ones too. */
void nodes_stop(struct sidecar *sc);
/* The pool and checker settings the config gives every node (name and
 * address aside), for new nodes and for a reload. */
void nodes_configs(const struct sidecar *sc, struct pool_config *pc, struct checker_config *hc);
/* The TLS context cfg asks for (NULL in *ctx when neither the nodes nor
 * the sentinels use TLS): its files are read now. -1 with the reason. */
int nodes_tls_load(const struct config *cfg, struct tls_ctx **ctx, char *err, size_t errlen);
/* A new node on sc->nodes, its links connecting and its checker started
 * (reporting to hooks, arg the node), with flags; NULL with the reason
 * in err. */
#define NODE_FETCH_COMMANDS 1u   /* its checker asks COMMAND (the first master) */
#define NODE_READONLY       2u   /* a cluster replica: its links say READONLY */
struct node *nodes_add(struct sidecar *sc, const char *addr, const struct checker_hooks *hooks,
                       unsigned flags, char *err, size_t errlen);
/* The node with this address ("host:port", or what it resolves to). */
struct node *nodes_find(struct sidecar *sc, const char *addr);
/* Gone from the topology: its requests that did not run go elsewhere, the
 * rest fail, and it is freed. */
void nodes_drop(struct sidecar *sc, struct node *n, const char *why);
/* Off sc->nodes (the caller keeps it for a while, for nodes_retire), and
 * back on. */
void nodes_unlist(struct sidecar *sc, struct node *n);
void nodes_relist(struct sidecar *sc, struct node *n);
/* A reload left it out: in-flight requests finish there, then it goes. */
void nodes_retire(struct sidecar *sc, struct node *n);
/* A node deposed or dropped takes its retired twins (the same address,
 * left by a reload with their leases kept) along. */
void nodes_evacuate_twins(struct sidecar *sc, const char *addr, const char *why);
/* After a reload: retiring nodes keep their leases while their address is in use. */
void nodes_keep_leases(struct sidecar *sc);
/* Every node's RESP3 links open (a RESP3 client came); nodes added later
 * open theirs at once. -1 out of memory. */
int nodes_open_resp3(struct sidecar *sc);
/* sc->nreplicas again, after the set or the master changed. */
void nodes_count(struct sidecar *sc);
/* redis_version of the master, or of any node when there is none. */
const char *nodes_version(const struct sidecar *sc);
/* Requests in flight on the node's shared links, its users' pools too. */
unsigned nodes_inflight(const struct sidecar *sc, const struct node *n);
/* pool_evacuate and pool_set_down for each of the node's pools. */
void nodes_evacuate(struct sidecar *sc, struct node *n, const char *why);
void nodes_set_down(struct sidecar *sc, struct node *n, int down, const char *why);
/* n takes writes: the master, or a cluster shard's. */
int nodes_is_master(const struct sidecar *sc, const struct node *n);
/* The offsets replica n's lag is measured against: the master's, or its
 * cluster shard master's (none known: an empty history). */
const struct topology *nodes_topo(const struct sidecar *sc, const struct node *n);
/* PROXY NODES: every node and sentinel, one line each. */
void nodes_report(const struct sidecar *sc, struct buf *b);

#endif
