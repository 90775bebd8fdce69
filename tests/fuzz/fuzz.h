/* What the libFuzzer targets share: how an input says where it is cut
 * into reads, and how a broken property is reported.
 *
 * A property that does not hold aborts: libFuzzer saves the input as a
 * crash, as it does for what ASan and UBSan find. */
#ifndef SIDECAR_FUZZ_H
#define SIDECAR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_REQUIRE(cond, ...) do {                                        \
    if (!(cond)) {                                                          \
        fprintf(stderr, "%s:%d: property broken: %s: ", __FILE__, __LINE__, \
                #cond);                                                     \
        fprintf(stderr, __VA_ARGS__);                                       \
        fputc('\n', stderr);                                                \
        abort();                                                            \
    }                                                                       \
} while (0)

#define FUZZ_MAX_CUTS 7

/* An input fed in pieces starts with a header: one byte whose low three
 * bits are the number of cuts and whose high five bits are the target's
 * options, then one byte per cut, the length of the piece before it
 * minus one (so 1 to 256 bytes). What follows is the payload; the last
 * piece is the rest of it. Cuts past its end are dropped. */
struct fuzz_cuts {
    unsigned opts;                      /* the first byte's high five bits */
    size_t   n;                         /* pieces: cuts kept, plus one */
    size_t   end[FUZZ_MAX_CUTS + 1];    /* where each piece ends; the last is the length */
};

/* 0 with the payload in *p and *n, or -1 when the input is shorter than
 * its header. */
static inline int fuzz_header(const uint8_t **p, size_t *n, struct fuzz_cuts *c)
{
    size_t cuts, at = 0, hdr;

    if (*n == 0)
        return -1;
    cuts = (*p)[0] & 7u;
    c->opts = (*p)[0] >> 3;
    hdr = 1 + cuts;
    if (*n < hdr)
        return -1;
    c->n = 0;
    for (size_t i = 0; i < cuts; i++) {
        at += (size_t)(*p)[1 + i] + 1;
        if (at >= *n - hdr)
            break;
        c->end[c->n++] = at;
    }
    *p += hdr;
    *n -= hdr;
    c->end[c->n++] = *n;
    return 0;
}

#endif
