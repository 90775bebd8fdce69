/* Read eligibility of replicas, from what their checkers saw. */
#include "topology.h"

#include <stdio.h>
#include <string.h>

void health_record_master(struct topology *t, ev_tstamp now, long long offset)
{
    if (t->n == TOPOLOGY_SAMPLES) {
        t->head = (t->head + 1) % TOPOLOGY_SAMPLES;
        t->n--;
    }
    int i = (t->head + t->n) % TOPOLOGY_SAMPLES;
    t->s[i].t = now;
    t->s[i].offset = offset;
    t->n++;
}

double health_replica_lag(const struct topology *t, long long offset, ev_tstamp now)
{
    for (int k = 0; k < t->n; k++) {
        int i = (t->head + k) % TOPOLOGY_SAMPLES;
        if (t->s[i].offset > offset)
            return now - t->s[i].t;
    }
    return 0;
}

int health_replica_eligible(const struct topology *t, const struct checker *ch,
                            double max_lag, ev_tstamp now, char *why, size_t whylen)
{
    if (ch->down) {
        snprintf(why, whylen, "down");
        return 0;
    }
    if (strcmp(ch->role, "slave") != 0) {
        snprintf(why, whylen, "role %s", ch->role[0] ? ch->role : "unknown");
        return 0;
    }
    if (strcmp(ch->link, "connected") != 0) {
        snprintf(why, whylen, "master link %s", ch->link[0] ? ch->link : "unknown");
        return 0;
    }
    double lag = health_replica_lag(t, ch->offset, now);
    if (lag > max_lag) {
        snprintf(why, whylen, "lag %.1fs over replica_max_lag", lag);
        return 0;
    }
    return 1;
}

long long health_master_offset_after(const struct topology *t, ev_tstamp when)
{
    for (int k = 0; k < t->n; k++) {
        int i = (t->head + k) % TOPOLOGY_SAMPLES;
        if (t->s[i].t > when)
            return t->s[i].offset;
    }
    return -1;
}
