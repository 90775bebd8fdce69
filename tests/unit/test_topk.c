/* The hot-key sketch (lib/topk.c) and the per-app latency buckets
 * (proxy/apps.h): what PROXY HOTKEYS and PROXY APPS report from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/topk.h"
#include "../../proxy/apps.h"
#include "check.h"

static uint32_t rng = 12345;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* A key read 1 time in 11 among 100,000 random ones comes first, with a
 * count within its error bound of the truth. */
static void test_hot_key_found(void)
{
    struct topk *t = calloc(1, sizeof *t);
    const struct topk_slot *top[TOPK_SLOTS];
    char k[32];
    unsigned hot = 0;

    for (int i = 0; i < 110000; i++) {
        if (next() % 11 == 0) {
            topk_add(t, "hot:key", 7);
            hot++;
        } else {
            int n = snprintf(k, sizeof k, "k:%u", next());
            topk_add(t, k, (size_t)n);
        }
    }
    unsigned n = topk_sorted(t, top, 3);
    CHECK(n == 3);
    CHECK(top[0]->len == 7 && memcmp(top[0]->key, "hot:key", 7) == 0);
    CHECK(top[0]->count >= hot && top[0]->count - top[0]->err <= hot);
    CHECK(t->total == 110000);
    CHECK(top[0]->count >= top[1]->count && top[1]->count >= top[2]->count);
    free(t);
}

/* Keys longer than what is kept are told apart by length and hash; every
 * key of a small set is counted exactly. */
static void test_exact_when_few_and_long_keys(void)
{
    struct topk *t = calloc(1, sizeof *t);
    const struct topk_slot *top[TOPK_SLOTS];
    char a[100], b[100];

    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    b[99] = 'y';                          /* same 48-byte prefix, same length */
    for (int i = 0; i < 30; i++)
        topk_add(t, a, sizeof a);
    for (int i = 0; i < 20; i++)
        topk_add(t, b, sizeof b);
    for (int i = 0; i < 10; i++)
        topk_add(t, a, 60);               /* same prefix, other length */
    CHECK(topk_sorted(t, top, TOPK_SLOTS) == 3);
    CHECK(top[0]->count == 30 && top[0]->err == 0 && top[0]->len == 100);
    CHECK(top[1]->count == 20 && top[2]->count == 10 && top[2]->len == 60);
    topk_add(t, "", 0);                   /* an empty key is a key */
    CHECK(topk_sorted(t, top, TOPK_SLOTS) == 4);
    free(t);
}

/* Every value lands in the bucket whose bounds hold it, the buckets are
 * in order and at most 12.5% wide, and the ends take everything past them
 * (a clock step back included). */
static void test_latency_buckets(void)
{
    int bad = 0;
    unsigned last = 0;

    for (double s = ldexp(1, APP_LAT_E0); s < 128; s *= 1.0137) {
        unsigned i = apps_bucket(s);
        if (i >= APP_LAT_BUCKETS || apps_bucket_upper((int)i) <= s ||
            (i > 0 && apps_bucket_upper((int)i - 1) > s) || i < last)
            bad++;
        last = i;
    }
    CHECK(bad == 0);
    CHECK(apps_bucket(0) == 0 && apps_bucket(-0.5) == 0 && apps_bucket(1e-9) == 0);
    CHECK(apps_bucket(1e6) == APP_LAT_BUCKETS - 1 && apps_bucket(INFINITY) == APP_LAT_BUCKETS - 1);
    CHECK(apps_bucket(0.000100) == apps_bucket(0.000101));       /* one bucket */
    CHECK(apps_bucket_upper(apps_bucket(0.000100)) <= 0.000100 * 1.125);
    bad = 0;
    for (int i = 1; i < APP_LAT_BUCKETS; i++)
        bad += apps_bucket_upper(i) / apps_bucket_upper(i - 1) > 1.125 + 1e-12;
    CHECK(bad == 0);
}

int main(void)
{
    test_hot_key_found();
    test_exact_when_few_and_long_keys();
    test_latency_buckets();
    return check_done();
}
