/* The per-IP table: a chained hash on the 16-byte address. */
#include "iptable.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/hash.h"

static unsigned hash_ip(const struct ip *ip)
{
    return hash_fnv1a(ip->b, sizeof ip->b);
}

int iptable_init(struct iptable *t)
{
    memset(t, 0, sizeof *t);
    t->nbuckets = 1024;
    t->bucket = calloc(t->nbuckets, sizeof *t->bucket);
    return t->bucket ? 0 : -1;
}

void iptable_free(struct iptable *t)
{
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct ipstat *e = t->bucket[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(t->bucket);
    t->bucket = NULL;
    t->n = 0;
}

/* Past the bound, forget every address that has no connection now. */
static void forget_idle(struct iptable *t)
{
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct ipstat **pp = &t->bucket[i];
        while (*pp) {
            struct ipstat *e = *pp;
            if (e->current == 0) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static void grow(struct iptable *t)
{
    unsigned nb = t->nbuckets * 2;
    struct ipstat **b = calloc(nb, sizeof *b);

    if (!b)
        return;
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct ipstat *e = t->bucket[i], *next;
        for (; e; e = next) {
            next = e->next;
            unsigned h = hash_ip(&e->ip) & (nb - 1);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(t->bucket);
    t->bucket = b;
    t->nbuckets = nb;
}

struct ipstat *iptable_get(struct iptable *t, const struct ip *ip, ev_tstamp now)
{
    unsigned h = hash_ip(ip) & (t->nbuckets - 1);

    for (struct ipstat *e = t->bucket[h]; e; e = e->next)
        if (ip_equal(&e->ip, ip))
            return e;
    if (t->n >= IPTABLE_MAX) {
        forget_idle(t);
        if (t->n >= IPTABLE_MAX)
            return NULL;
    }
    if (t->n >= t->nbuckets * 2) {
        grow(t);
        h = hash_ip(ip) & (t->nbuckets - 1);
    }
    struct ipstat *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->ip = *ip;
    e->first_seen = e->last_seen = now;
    e->next = t->bucket[h];
    t->bucket[h] = e;
    t->n++;
    return e;
}

unsigned iptable_all(const struct iptable *t, struct ipstat **out, unsigned max)
{
    unsigned n = 0;

    for (unsigned i = 0; i < t->nbuckets && n < max; i++)
        for (struct ipstat *e = t->bucket[i]; e && n < max; e = e->next)
            out[n++] = e;
    return n;
}

double iptable_banned_for(struct iptable *t, const struct ip *ip, ev_tstamp now)
{
    double left = 0;

    for (int i = 0; i < t->nbans; i++) {
        if (t->bans[i].until <= now) {          /* expired: drop it */
            t->bans[i--] = t->bans[--t->nbans];
            continue;
        }
        if (cidr_match(&t->bans[i].cidr, ip) && t->bans[i].until - now > left)
            left = t->bans[i].until - now;
    }
    return left;
}

static int same_range(const struct cidr *a, const struct cidr *b)
{
    return a->bits == b->bits && ip_equal(&a->net, &b->net);
}

int iptable_ban(struct iptable *t, const struct cidr *c, ev_tstamp until)
{
    for (int i = 0; i < t->nbans; i++) {
        if (same_range(&t->bans[i].cidr, c)) {
            t->bans[i].until = until;
            return 0;
        }
    }
    if (t->nbans == BANS_MAX)
        return -1;
    t->bans[t->nbans].cidr = *c;
    t->bans[t->nbans++].until = until;
    return 0;
}

int iptable_unban(struct iptable *t, const struct cidr *c)
{
    for (int i = 0; i < t->nbans; i++) {
        if (same_range(&t->bans[i].cidr, c)) {
            t->bans[i] = t->bans[--t->nbans];
            return 1;
        }
    }
    return 0;
}
