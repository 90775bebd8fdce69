/* Which replicas may serve reads. A replica is eligible when its checks
 * pass, it reports role replica with its master link connected, and its
 * lag is within bounds. Lag is measured in time from offsets: the master's
 * offset is sampled at every check, and a replica is as far behind as the
 * oldest sample whose offset it has not reached yet. */
#ifndef SIDECAR_TOPOLOGY_H
#define SIDECAR_TOPOLOGY_H

#include <ev.h>
#include <stddef.h>

#include "checker.h"

#define TOPOLOGY_SAMPLES 256

struct topology {
    struct {
        ev_tstamp t;
        long long offset;
    } s[TOPOLOGY_SAMPLES];       /* ring of the master's offsets, oldest at head */
    int head, n;
};

void health_record_master(struct topology *t, ev_tstamp now, long long offset);
/* Seconds the replica at this offset is behind the master (0: caught up
 * with the newest sample; unknown history counts as caught up). */
double health_replica_lag(const struct topology *t, long long offset, ev_tstamp now);
/* The master's offset first sampled after `when`; -1 if none yet. A write
 * acknowledged at `when` is in every replica at or past that offset. */
long long health_master_offset_after(const struct topology *t, ev_tstamp when);
/* 1 if the replica may serve reads; else 0 with the reason in why. */
int health_replica_eligible(const struct topology *t, const struct checker *ch,
                            double max_lag, ev_tstamp now, char *why, size_t whylen);

#endif
