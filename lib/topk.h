/* The most frequent keys of a stream, in bounded memory: the Space-Saving
 * sketch (Metwally et al.). TOPK_SLOTS counters; a key not counted takes
 * the smallest counter over and inherits its count as its error, so every
 * key seen more than total/TOPK_SLOTS times is in the table, and each
 * count is over its true value by at most its err. */
#ifndef SIDECAR_TOPK_H
#define SIDECAR_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define TOPK_SLOTS   32
#define TOPK_KEY_MAX 48      /* bytes of a key kept; longer ones by prefix and hash */

struct topk_slot {
    uint32_t hash;           /* of the whole key */
    uint32_t len;            /* the whole key's length */
    uint64_t count, err;
    char     key[TOPK_KEY_MAX];
};

struct topk {
    struct topk_slot slot[TOPK_SLOTS];
    unsigned         n;      /* slots in use */
    uint64_t         total;  /* keys offered */
};

void topk_add(struct topk *t, const char *key, size_t len);
/* The slots by count, highest first, at most max; returns how many. */
unsigned topk_sorted(const struct topk *t, const struct topk_slot **out, unsigned max);

#endif
