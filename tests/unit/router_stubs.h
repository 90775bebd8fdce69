/* The router asks proxy/cluster.c and proxy/split.c only in cluster mode
 * (sc.cl set), which the router's single-master tests and fuzz target never
 * are: link-time stand-ins for them, shared by both. */
#ifndef SIDECAR_TEST_ROUTER_STUBS_H
#define SIDECAR_TEST_ROUTER_STUBS_H

#include "../../proxy/cluster.h"
#include "../../proxy/split.h"

struct node *cluster_route_keyless(struct sidecar *sc, const char **why, int *shard)
{
    (void)sc;
    *why = "not a cluster";
    *shard = -1;
    return NULL;
}

struct node *cluster_route_unserved(struct sidecar *sc, unsigned shard_plus1, const char **why,
                                    int *shard)
{
    (void)sc, (void)shard_plus1;
    *why = "not a cluster";
    *shard = -1;
    return NULL;
}

int cluster_unserved_waits(const struct sidecar *sc)
{
    (void)sc;
    return 0;
}

unsigned cluster_slot(const char *key, size_t len)
{
    (void)key, (void)len;
    return 0;
}

int cluster_replicas(const struct sidecar *sc, int shard, struct node *const **v)
{
    (void)sc, (void)shard, (void)v;
    return 0;
}

enum split_kind split_kind(const struct sidecar *sc, const struct command *cmd,
                           const char *frame, const struct resp_frame *fr)
{
    (void)sc, (void)cmd, (void)frame, (void)fr;
    return SPLIT_NONE;
}

#endif
