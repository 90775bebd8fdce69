/* FNV-1a over bytes: the hash of the proxy's small tables (addresses, app
 * keys, hot keys). Not for anything an attacker could aim at in bulk: the
 * tables it indexes are bounded. */
#ifndef SIDECAR_HASH_H
#define SIDECAR_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t hash_fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

#endif
