/* Requests waiting for a master: with sentinels, while none is confirmed
 * (a failover), or when the master refused them as only a replica would
 * (READONLY, MASTERDOWN, LOADING). Each has its own entry on sc->held with
 * a copy of its bytes; once a master is confirmed they go to it in the
 * order they came, and past failover_wait they get an error. Clients that
 * need a lease and find no master wait here too (sc->master_waiters). */
#ifndef SIDECAR_HOLD_H
#define SIDECAR_HOLD_H

#include "sidecar.h"

struct client;

void hold_start(struct sidecar *sc);
void hold_stop(struct sidecar *sc);
/* Hold r (c's, its bytes p[0..n)), before c's own later held requests.
 * -1 out of memory. */
int hold_request(struct client *c, struct req *r, const char *p, size_t n);
/* c's split parts held (for client_check_counts: nheld counts them). */
unsigned hold_parts_of(const struct sidecar *sc, const struct client *c);
/* c waits, paused, for a master (up to failover_wait) to take a lease. */
void hold_wait_master(struct client *c);
/* A master is confirmed (or confirmed again): held requests go to it, in
 * order, and waiting clients go on. */
void hold_master_ready(struct sidecar *sc);

#endif
