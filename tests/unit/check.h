/* The unit tests' harness, as small as hiredis's test.c: CHECK() counts,
 * CHECK_DONE() prints the one "N passed, N failed" line that
 * tests/run-tests.sh adds up, and gives main() its exit status.
 *
 * Test-only: the counters are statics of the one .c file per binary that
 * includes this. Everything goes to stdout so that the count line is
 * always last, whatever the buffering. */
#ifndef SIDECAR_CHECK_H
#define SIDECAR_CHECK_H

#include <stdio.h>

/* A broken helper fails in every loop iteration; the first few reports
 * say where, the rest would only bury them. */
#define CHECK_MAX_REPORTS 50

static long check_passed, check_failed;

static inline int check_one(int ok, const char *file, int line, const char *expr)
{
    if (ok) {
        check_passed++;
        return 1;
    }
    if (check_failed < CHECK_MAX_REPORTS)
        printf("FAIL %s:%d: %s\n", file, line, expr);
    else if (check_failed == CHECK_MAX_REPORTS)
        printf("(further failures not shown)\n");
    check_failed++;
    return 0;
}

static inline int check_done(void)
{
    printf("%ld passed, %ld failed\n", check_passed, check_failed);
    fflush(stdout);
    return check_failed ? 1 : 0;
}

/* An expression: its value is whether cond held, so a caller can add
 * context (`if (!CHECK(x)) printf(...)`). */
#define CHECK(cond) check_one(!!(cond), __FILE__, __LINE__, #cond)

/* Last statement of main(). */
#define CHECK_DONE() return check_done()

#endif
