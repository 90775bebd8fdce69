/* Which node is master: fixed from proxy.ini, or followed through
 * Sentinel. A node the sentinels name is confirmed with ROLE before
 * writes go to it; the old master's links are closed at once
 * (pool_evacuate), and requests for the master wait (hold.c) while none
 * is confirmed. */
#ifndef SIDECAR_MASTER_H
#define SIDECAR_MASTER_H

#include <stddef.h>

#include "sidecar.h"

/* The configured nodes, and the sentinels if any; -1 with the reason. */
int master_start(struct sidecar *sc, char *err, size_t errlen);
void master_stop(struct sidecar *sc);
/* A node of a cluster's shard, watched like the others: a master (the
 * command table from the first one), or a replica, whose links say
 * READONLY. */
struct node *master_add_node(struct sidecar *sc, const char *addr, int replica, char *err,
                             size_t errlen);
/* An app sent CLIENT PAUSE for this long, or DEBUG SLEEP (0: UNPAUSE):
 * until it is over (the longest, as redis keeps it), the master's silence
 * is no failure (health checks, reply timeouts); `clients` (a CLIENT
 * PAUSE, which holds some clients and not others): requests take leases. */
void master_paused(struct sidecar *sc, double seconds, int clients);
/* Reload, with sc->cfg the new config: nodes whose address went, and
 * every node when the links' database or count changed, are retired
 * (in-flight requests finish, then their links close) and new ones
 * added; a changed master takes writes at once; changed sentinel
 * settings start a new sentinel set. */
void master_reconfigure(struct sidecar *sc, const struct config *old);

#endif
