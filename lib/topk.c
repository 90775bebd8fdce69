/* Space-Saving: a linear scan of 32 slots, paid only by sampled requests. */
#include "topk.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

static int same(const struct topk_slot *s, uint32_t h, const char *p, size_t n)
{
    size_t kept = n < TOPK_KEY_MAX ? n : TOPK_KEY_MAX;

    return s->hash == h && s->len == n && memcmp(s->key, p, kept) == 0;
}

void topk_add(struct topk *t, const char *key, size_t len)
{
    uint32_t h = hash_fnv1a(key, len);
    struct topk_slot *min = NULL;

    t->total++;
    for (unsigned i = 0; i < t->n; i++) {
        struct topk_slot *s = &t->slot[i];
        if (same(s, h, key, len)) {
            s->count++;
            return;
        }
        if (!min || s->count < min->count)
            min = s;
    }
    if (t->n < TOPK_SLOTS) {
        min = &t->slot[t->n++];
        min->count = min->err = 0;
    } else {
        min->err = min->count;    /* the key it replaces may have been this one */
    }
    min->count++;
    min->hash = h;
    min->len = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
    memcpy(min->key, key, len < TOPK_KEY_MAX ? len : TOPK_KEY_MAX);
}

static int by_count(const void *x, const void *y)
{
    const struct topk_slot *a = *(const struct topk_slot *const *)x;
    const struct topk_slot *b = *(const struct topk_slot *const *)y;

    return a->count < b->count ? 1 : a->count > b->count ? -1 : 0;
}

unsigned topk_sorted(const struct topk *t, const struct topk_slot **out, unsigned max)
{
    const struct topk_slot *all[TOPK_SLOTS];

    for (unsigned i = 0; i < t->n; i++)
        all[i] = &t->slot[i];
    qsort(all, t->n, sizeof *all, by_count);
    unsigned n = t->n < max ? t->n : max;
    memcpy(out, all, n * sizeof *out);
    return n;
}
