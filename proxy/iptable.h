/* Per-IP accounting, kept live: connections now and at peak, accepted,
 * refused by reason, first and last seen; and the bans. Bounded: at
 * IPTABLE_MAX entries, every entry with no open connection is dropped. */
#ifndef SIDECAR_IPTABLE_H
#define SIDECAR_IPTABLE_H

#include <ev.h>
#include <stdint.h>

#include "../lib/cidr.h"

#define IPTABLE_MAX  65536
#define BANS_MAX     1024

enum refusal { REFUSED_BANNED, REFUSED_DENIED, REFUSED_MAX_CONN, REFUSED_PER_IP, REFUSED_PER_APP,
               REFUSED_NREASONS };

struct ipstat {
    struct ip       ip;
    uint32_t        current, peak;
    uint64_t        accepted;
    uint64_t        refused[REFUSED_NREASONS];
    ev_tstamp       first_seen, last_seen;
    struct ipstat  *next;          /* hash chain */
};

struct ban {
    struct cidr cidr;
    ev_tstamp   until;
};

struct iptable {
    struct ipstat **bucket;
    unsigned        nbuckets;      /* power of two */
    unsigned        n;
    struct ban      bans[BANS_MAX];
    int             nbans;
};

int iptable_init(struct iptable *t);
void iptable_free(struct iptable *t);
/* The entry for ip, created if new (NULL only when out of memory). */
struct ipstat *iptable_get(struct iptable *t, const struct ip *ip, ev_tstamp now);
/* Every entry, for listings; the caller sorts. Returns the count. */
unsigned iptable_all(const struct iptable *t, struct ipstat **out, unsigned max);

/* Seconds left on the longest ban covering ip, 0 if none. */
double iptable_banned_for(struct iptable *t, const struct ip *ip, ev_tstamp now);
/* Ban a range until `until`; a range banned already gets the new deadline
 * (shorter or longer). -1 when the list is full. */
int iptable_ban(struct iptable *t, const struct cidr *c, ev_tstamp until);
/* 1 if a ban on exactly this range was lifted. */
int iptable_unban(struct iptable *t, const struct cidr *c);

#endif
