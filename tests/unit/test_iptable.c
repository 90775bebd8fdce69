/* The per-IP table and the bans: entries found again whatever the table
 * grew to, the bound (idle entries forgotten, busy ones kept), listings,
 * and bans by range with their expiry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proxy/iptable.h"
#include "check.h"

static struct ip addr(const char *s)
{
    struct cidr c;
    if (cidr_parse(s, &c) != 0 || c.bits != 128) {
        printf("bad test address %s\n", s);
        exit(2);
    }
    return c.net;
}

static struct cidr range(const char *s)
{
    struct cidr c;
    if (cidr_parse(s, &c) != 0) {
        printf("bad test range %s\n", s);
        exit(2);
    }
    return c;
}

/* The i-th of many distinct IPv4 addresses: 10.x.y.z. */
static struct ip nth(unsigned i)
{
    char s[32];
    snprintf(s, sizeof s, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    return addr(s);
}

static void test_get(void)
{
    struct iptable t;
    CHECK(iptable_init(&t) == 0);
    CHECK(t.n == 0 && t.nbans == 0 && t.nbuckets == 1024);

    struct ip a = addr("127.0.0.2"), b = addr("127.0.0.3"), v6 = addr("::ffff:7f00:2");
    struct ipstat *ea = iptable_get(&t, &a, 100.0);
    CHECK(ea != NULL);
    CHECK(ip_equal(&ea->ip, &a));
    CHECK(ea->current == 0 && ea->peak == 0 && ea->accepted == 0);
    CHECK(ea->first_seen == 100.0 && ea->last_seen == 100.0);
    CHECK(t.n == 1);

    ea->current = 3;
    ea->accepted = 7;
    CHECK(iptable_get(&t, &a, 200.0) == ea);          /* found, not created again */
    CHECK(ea->first_seen == 100.0 && ea->current == 3 && ea->accepted == 7);
    CHECK(t.n == 1);

    struct ipstat *eb = iptable_get(&t, &b, 150.0);
    CHECK(eb != NULL && eb != ea && t.n == 2);
    CHECK(eb->first_seen == 150.0 && eb->current == 0);
    /* ::ffff:127.0.0.2 is how IPv4 is kept: the same address */
    CHECK(iptable_get(&t, &v6, 300.0) == ea && t.n == 2);
    struct ip one = addr("::1");
    struct ipstat *e1 = iptable_get(&t, &one, 300.0);
    CHECK(e1 != NULL && e1 != ea && e1 != eb && t.n == 3);
    iptable_free(&t);
    CHECK(t.n == 0 && t.bucket == NULL);
}

/* Past twice as many entries as buckets the table doubles; every entry
 * keeps its address (pointers handed out stay valid). */
static void test_growth(void)
{
    enum { N = 20000 };
    static struct ipstat *e[N];
    struct iptable t;
    CHECK(iptable_init(&t) == 0);

    for (unsigned i = 0; i < N; i++) {
        struct ip ip = nth(i);
        e[i] = iptable_get(&t, &ip, (double)i);
        if (!e[i])
            break;
        e[i]->accepted = i;
    }
    CHECK(t.n == N);
    CHECK(t.nbuckets >= N / 2 && t.nbuckets < N);
    CHECK((t.nbuckets & (t.nbuckets - 1)) == 0);       /* a power of two */

    unsigned found = 0;
    for (unsigned i = 0; i < N; i++) {
        struct ip ip = nth(i);
        struct ipstat *x = iptable_get(&t, &ip, 1e6);
        found += x == e[i] && x->accepted == i && x->first_seen == (double)i;
    }
    CHECK(found == N);
    CHECK(t.n == N);

    /* iptable_all: every entry once; at most max */
    static struct ipstat *all[N + 10];
    unsigned got = iptable_all(&t, all, N + 10);
    CHECK(got == N);
    static unsigned char seen[N];
    unsigned distinct = 0;
    for (unsigned i = 0; i < got && i < N; i++) {
        unsigned k = (unsigned)all[i]->accepted;
        if (k < N && all[i] == e[k] && !seen[k]) {
            seen[k] = 1;
            distinct++;
        }
    }
    CHECK(distinct == N);
    CHECK(iptable_all(&t, all, 10) == 10);
    CHECK(iptable_all(&t, all, 0) == 0);
    iptable_free(&t);

    CHECK(iptable_init(&t) == 0);
    CHECK(iptable_all(&t, all, N) == 0);
    iptable_free(&t);
}

/* At IPTABLE_MAX entries a new address makes room by forgetting entries
 * with no open connection (the oldest at least); with none to forget it
 * gets NULL. Entries busy now are never forgotten. */
static void test_bound(void)
{
    static struct ipstat *e[IPTABLE_MAX], *all[IPTABLE_MAX + 1];
    struct iptable t;
    CHECK(iptable_init(&t) == 0);

    unsigned made = 0;
    for (unsigned i = 0; i < IPTABLE_MAX; i++) {
        struct ip ip = nth(i);
        e[i] = iptable_get(&t, &ip, 1.0 + i);           /* nth(1) is the oldest idle one */
        if (!e[i])
            break;
        made++;
        e[i]->accepted = i;
        if (i % 3 == 0)
            e[i]->current = 1;                          /* a connection open now */
    }
    CHECK(made == IPTABLE_MAX && t.n == IPTABLE_MAX);

    unsigned busy = (IPTABLE_MAX + 2) / 3;
    struct ip fresh = nth(IPTABLE_MAX);
    struct ipstat *f = iptable_get(&t, &fresh, 1e6);
    CHECK(f != NULL && f->current == 0 && f->first_seen == 1e6);
    CHECK(t.n > busy && t.n <= IPTABLE_MAX);
    CHECK(iptable_all(&t, all, IPTABLE_MAX + 1) == t.n);  /* the count is what is there */

    /* the busy ones are still there, untouched */
    unsigned kept = 0;
    for (unsigned i = 0; i < IPTABLE_MAX; i += 3) {
        struct ip ip = nth(i);
        struct ipstat *x = iptable_get(&t, &ip, 2e6);
        kept += x == e[i] && x->accepted == i && x->current == 1;
    }
    CHECK(kept == busy);
    /* the oldest idle one was forgotten: it comes back as a new entry */
    unsigned n = t.n;
    struct ip idle = nth(1);
    struct ipstat *again = iptable_get(&t, &idle, 3e6);
    CHECK(again != NULL && again->accepted == 0 && again->first_seen == 3e6);
    CHECK(t.n == n + 1);
    iptable_free(&t);

    /* every entry busy: nothing can be forgotten, no entry, nothing freed */
    CHECK(iptable_init(&t) == 0);
    for (unsigned i = 0; i < IPTABLE_MAX; i++) {
        struct ip ip = nth(i);
        struct ipstat *x = iptable_get(&t, &ip, 1.0);
        if (!x)
            break;
        x->current = 1;
    }
    CHECK(t.n == IPTABLE_MAX);
    CHECK(iptable_get(&t, &fresh, 2.0) == NULL);
    CHECK(t.n == IPTABLE_MAX);
    struct ip first = nth(0);
    CHECK(iptable_get(&t, &first, 2.0) != NULL);        /* known ones are still found */
    iptable_free(&t);
}

static void test_bans(void)
{
    struct iptable t;
    CHECK(iptable_init(&t) == 0);
    struct ip a = addr("10.1.2.3"), b = addr("10.2.0.1"), other = addr("11.0.0.1");
    struct ip v6 = addr("fd12::5"), v6other = addr("fe80::1");

    CHECK(iptable_banned_for(&t, &a, 100.0) == 0);
    struct cidr net8 = range("10.0.0.0/8");
    CHECK(iptable_ban(&t, &net8, 110.0) == 0);
    CHECK(t.nbans == 1);
    CHECK(iptable_banned_for(&t, &a, 100.0) == 10.0);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 10.0);
    CHECK(iptable_banned_for(&t, &other, 100.0) == 0);
    CHECK(iptable_banned_for(&t, &v6, 100.0) == 0);     /* a v4 range holds no v6 address */

    /* the longest ban covering an address counts */
    struct cidr net16 = range("10.1.0.0/16");
    CHECK(iptable_ban(&t, &net16, 130.0) == 0);
    CHECK(t.nbans == 2);
    CHECK(iptable_banned_for(&t, &a, 100.0) == 30.0);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 10.0);
    struct cidr host = range("10.1.2.3/32");
    CHECK(iptable_ban(&t, &host, 105.0) == 0);          /* shorter: the /16 still wins */
    CHECK(iptable_banned_for(&t, &a, 100.0) == 30.0);
    CHECK(iptable_unban(&t, &host) == 1);

    /* the same network with another prefix is another range */
    struct cidr net16at0 = range("10.0.0.0/16"), net8at0 = range("10.0.0.0/8");
    CHECK(iptable_ban(&t, &net16at0, 140.0) == 0);
    CHECK(t.nbans == 3);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 10.0);   /* 10.2.0.1 is not in 10.0/16 */
    CHECK(iptable_unban(&t, &net16at0) == 1);
    CHECK(t.nbans == 2);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 10.0);   /* the /8 stays */

    /* the same range again: its deadline moves, no second entry */
    CHECK(iptable_ban(&t, &net8, 150.0) == 0);
    CHECK(t.nbans == 2);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 50.0);
    struct cidr net8b = range("10.9.9.9/8");           /* host bits do not make it another range */
    CHECK(iptable_ban(&t, &net8b, 160.0) == 0);
    CHECK(t.nbans == 2);
    CHECK(iptable_unban(&t, &net8at0) == 1 && t.nbans == 1);   /* written another way, the same */
    CHECK(iptable_ban(&t, &net8, 160.0) == 0 && t.nbans == 2);
    CHECK(iptable_banned_for(&t, &b, 100.0) == 60.0);

    struct cidr fd = range("fd00::/8");
    CHECK(iptable_ban(&t, &fd, 120.0) == 0);
    CHECK(iptable_banned_for(&t, &v6, 100.0) == 20.0);
    CHECK(iptable_banned_for(&t, &v6other, 100.0) == 0);
    CHECK(t.nbans == 3);

    /* expiry: a ban ends at its deadline and is dropped from the list */
    CHECK(iptable_banned_for(&t, &v6, 119.5) == 0.5);
    CHECK(iptable_banned_for(&t, &v6, 120.0) == 0);
    CHECK(t.nbans == 2);
    CHECK(iptable_banned_for(&t, &a, 129.0) == 31.0);  /* the /8 (160) outlasts the /16 */
    CHECK(iptable_banned_for(&t, &a, 140.0) == 20.0);
    CHECK(t.nbans == 1);                                /* the /16 went at 130 */
    /* any lookup drops every expired ban, matching or not */
    CHECK(iptable_banned_for(&t, &other, 200.0) == 0);
    CHECK(t.nbans == 0);
    CHECK(iptable_banned_for(&t, &a, 200.0) == 0);

    /* unban lifts exactly that range */
    CHECK(iptable_ban(&t, &net8, 1000.0) == 0);
    CHECK(iptable_ban(&t, &net16, 1000.0) == 0);
    CHECK(iptable_unban(&t, &host) == 0);
    CHECK(iptable_unban(&t, &fd) == 0);
    CHECK(t.nbans == 2);
    CHECK(iptable_unban(&t, &net8) == 1);
    CHECK(t.nbans == 1);
    CHECK(iptable_banned_for(&t, &b, 500.0) == 0);     /* 10.2/16 is free now */
    CHECK(iptable_banned_for(&t, &a, 500.0) == 500.0);  /* 10.1/16 is not */
    CHECK(iptable_unban(&t, &net8) == 0);               /* once */
    CHECK(iptable_unban(&t, &net16) == 1);
    CHECK(t.nbans == 0);
    CHECK(iptable_banned_for(&t, &a, 500.0) == 0);
    iptable_free(&t);
}

static void test_bans_full(void)
{
    struct iptable t;
    CHECK(iptable_init(&t) == 0);
    int added = 0;
    for (unsigned i = 0; i < BANS_MAX; i++) {
        char s[40];
        snprintf(s, sizeof s, "192.168.%u.%u/32", i / 256, i % 256);
        struct cidr c = range(s);
        added += iptable_ban(&t, &c, 100.0 + i) == 0;
    }
    CHECK(added == BANS_MAX && t.nbans == BANS_MAX);
    struct cidr more = range("172.16.0.0/12");
    CHECK(iptable_ban(&t, &more, 500.0) == -1);         /* full */
    CHECK(t.nbans == BANS_MAX);
    struct ip in_more = addr("172.16.1.1");
    CHECK(iptable_banned_for(&t, &in_more, 50.0) == 0);
    struct cidr first = range("192.168.0.0/32");
    CHECK(iptable_ban(&t, &first, 900.0) == 0);         /* a known range still moves */
    struct ip f = addr("192.168.0.0");
    CHECK(iptable_banned_for(&t, &f, 50.0) == 850.0);
    struct ip last = addr("192.168.3.255");
    CHECK(iptable_banned_for(&t, &last, 50.0) == 100.0 + BANS_MAX - 1 - 50.0);
    CHECK(iptable_unban(&t, &first) == 1);
    CHECK(iptable_ban(&t, &more, 500.0) == 0);          /* room again */
    CHECK(iptable_banned_for(&t, &in_more, 50.0) == 450.0);
    /* expired bans make room too: at 450, 192.168.0.1-350 are over */
    CHECK(t.nbans == BANS_MAX);
    CHECK(iptable_banned_for(&t, &in_more, 450.0) == 50.0);
    CHECK(t.nbans == BANS_MAX - 351 + 1);
    struct cidr another = range("172.32.0.0/16");
    CHECK(iptable_ban(&t, &another, 600.0) == 0);
    CHECK(iptable_banned_for(&t, &last, 1200.0) == 0);   /* all over */
    CHECK(t.nbans == 0);
    iptable_free(&t);
}

int main(void)
{
    test_get();
    test_growth();
    test_bound();
    test_bans();
    test_bans_full();
    CHECK_DONE();
}
