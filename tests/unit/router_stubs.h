/* The router asks proxy/cluster.c and proxy/split.c only in cluster mode
 * (sc.cl set), which the router's single-master tests and fuzz target never
 * are: link-time stand-ins for them, shared by both. */
#ifndef SIDECAR_TEST_ROUTER_STUBS_H
#define SIDECAR_TEST_ROUTER_STUBS_H

#include "../../proxy/cluster.h"
#include "../../proxy/split.h"

struct node *cluster_route(struct sidecar *sc, const struct command *cmd, const char *frame,
                           const struct resp_frame *fr, const char **why, int *shard)
{
    (void)sc, (void)cmd, (void)frame, (void)fr;
    *why = "not a cluster";
    *shard = -1;
    return NULL;
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
