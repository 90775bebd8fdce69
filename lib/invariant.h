/* Counts kept beside a list, checked against it in the ASan build
 * (`make asan` defines SIDECAR_CHECKS); a plain build trusts them. Use
 * as `if (CHECKS) assert(count_of(list) == n);`: the walk compiles in
 * both builds and costs nothing in the plain one. */
#ifndef SIDECAR_INVARIANT_H
#define SIDECAR_INVARIANT_H

#include <assert.h>

#ifdef SIDECAR_CHECKS
#define CHECKS 1
#else
#define CHECKS 0
#endif

#endif
