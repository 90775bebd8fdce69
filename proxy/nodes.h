/* The node set and which node is master: fixed from proxy.ini, or
 * followed through Sentinel. A node the sentinels name is confirmed with
 * ROLE before writes go to it; the old master's links are closed at once
 * (pool_evacuate), and requests for the master wait (held, see client.c)
 * while none is confirmed. */
#ifndef SIDECAR_NODES_H
#define SIDECAR_NODES_H

#include <stddef.h>

#include "sidecar.h"

int nodes_start(struct sidecar *sc, char *err, size_t errlen);
void nodes_stop(struct sidecar *sc);
/* Reload, with sc->cfg the new config: nodes whose address went, and
 * every node when the links' credentials, database or count changed, are
 * retired (in-flight requests finish, then their links close) and new
 * ones added; a changed master takes writes at once; changed sentinel
 * settings start a new sentinel set. */
void nodes_reconfigure(struct sidecar *sc, const struct config *old);
/* Something says the master moved (it refused a write as a replica would):
 * ask the sentinels and the master's ROLE again now. */
void nodes_refresh(struct sidecar *sc);
/* The pool and checker settings the config gives every node (name and
 * address aside), for new nodes and for a reload. */
void nodes_configs(const struct sidecar *sc, struct pool_config *pc, struct checker_config *hc);
/* redis_version of the master, or of any node when there is none. */
const char *nodes_version(const struct sidecar *sc);
/* PROXY NODES: every node and sentinel, one line each. */
void nodes_report(const struct sidecar *sc, struct buf *b);

#endif
