/* Replica read eligibility: the ring of the master's offsets, lag in time
 * from it, the offset that covers a write, and every reason a replica is
 * not eligible. */
#include <string.h>

#include "../../health/topology.h"
#include "check.h"

/* A checker as a replica's ROLE left it: up, role slave, link connected. */
static struct checker replica(long long offset)
{
    struct checker ch;
    memset(&ch, 0, sizeof ch);
    strcpy(ch.role, "slave");
    strcpy(ch.link, "connected");
    ch.offset = offset;
    return ch;
}

static int near(double a, double b)
{
    return a - b < 1e-9 && b - a < 1e-9;
}

static void test_empty(void)
{
    struct topology t;
    memset(&t, 0, sizeof t);
    /* no history: caught up, and no offset covers anything yet */
    CHECK(near(health_replica_lag(&t, 0, 100.0), 0));
    CHECK(near(health_replica_lag(&t, 12345, 100.0), 0));
    CHECK(health_master_offset_after(&t, 0) == -1);
    CHECK(health_master_offset_after(&t, -1e9) == -1);
}

static void test_lag(void)
{
    struct topology t;
    memset(&t, 0, sizeof t);
    health_record_master(&t, 1.0, 100);
    health_record_master(&t, 2.0, 200);
    health_record_master(&t, 3.0, 300);
    CHECK(t.n == 3 && t.head == 0);

    /* as far behind as the oldest sample it has not reached */
    CHECK(near(health_replica_lag(&t, 300, 5.0), 0));
    CHECK(near(health_replica_lag(&t, 301, 5.0), 0));     /* ahead of the newest sample */
    CHECK(near(health_replica_lag(&t, 250, 5.0), 2.0));   /* has 200, not 300 (t=3) */
    CHECK(near(health_replica_lag(&t, 200, 5.0), 2.0));   /* reaching a sample is enough */
    CHECK(near(health_replica_lag(&t, 199, 5.0), 3.0));
    CHECK(near(health_replica_lag(&t, 100, 5.0), 3.0));
    CHECK(near(health_replica_lag(&t, 0, 5.0), 4.0));     /* behind the oldest sample */
    CHECK(near(health_replica_lag(&t, 0, 10.5), 9.5));    /* and it grows with time */

    /* the same offset sampled again: a replica there is caught up */
    health_record_master(&t, 4.0, 300);
    CHECK(near(health_replica_lag(&t, 300, 6.0), 0));
    CHECK(near(health_replica_lag(&t, 299, 6.0), 3.0));   /* from t=3, not t=4 */
}

static void test_offset_after(void)
{
    struct topology t;
    memset(&t, 0, sizeof t);
    health_record_master(&t, 1.0, 100);
    health_record_master(&t, 2.0, 200);
    health_record_master(&t, 3.0, 300);

    CHECK(health_master_offset_after(&t, 0.5) == 100);
    CHECK(health_master_offset_after(&t, 1.0) == 200);    /* strictly after: t=1 may predate it */
    CHECK(health_master_offset_after(&t, 1.5) == 200);
    CHECK(health_master_offset_after(&t, 2.999) == 300);
    CHECK(health_master_offset_after(&t, 3.0) == -1);     /* not sampled yet */
    CHECK(health_master_offset_after(&t, 7.0) == -1);
    health_record_master(&t, 7.5, 350);
    CHECK(health_master_offset_after(&t, 7.0) == 350);    /* the next sample covers it */
    CHECK(health_master_offset_after(&t, 3.0) == 350);
}

static void test_ring(void)
{
    struct topology t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < TOPOLOGY_SAMPLES; i++)
        health_record_master(&t, (double)i, (long long)i * 10);
    CHECK(t.n == TOPOLOGY_SAMPLES && t.head == 0);
    CHECK(health_master_offset_after(&t, -1) == 0);

    /* full: each new sample drops the oldest */
    const int extra = 44;
    for (int i = TOPOLOGY_SAMPLES; i < TOPOLOGY_SAMPLES + extra; i++)
        health_record_master(&t, (double)i, (long long)i * 10);
    CHECK(t.n == TOPOLOGY_SAMPLES);
    CHECK(t.head == extra);
    CHECK(health_master_offset_after(&t, -1) == extra * 10);          /* the oldest kept */
    CHECK(health_master_offset_after(&t, extra + 0.5) == (extra + 1) * 10);
    long long newest = (long long)(TOPOLOGY_SAMPLES + extra - 1) * 10;
    CHECK(health_master_offset_after(&t, TOPOLOGY_SAMPLES + extra - 1.5) == newest);
    CHECK(health_master_offset_after(&t, TOPOLOGY_SAMPLES + extra - 1) == -1);

    /* lag across the wrap point of the array */
    double now = TOPOLOGY_SAMPLES + extra + 1;
    CHECK(near(health_replica_lag(&t, newest, now), 0));
    CHECK(near(health_replica_lag(&t, newest - 5, now), 2.0));        /* the newest, t=299 */
    CHECK(near(health_replica_lag(&t, (TOPOLOGY_SAMPLES + 1) * 10, now), now - (TOPOLOGY_SAMPLES + 2)));
    /* older than anything kept: the oldest kept sample bounds it */
    CHECK(near(health_replica_lag(&t, 0, now), now - extra));

    /* a long run keeps exactly the last TOPOLOGY_SAMPLES, in order */
    for (int i = 0; i < 10 * TOPOLOGY_SAMPLES; i++)
        health_record_master(&t, 1000.0 + i, 100000 + i);
    CHECK(t.n == TOPOLOGY_SAMPLES);
    CHECK(health_master_offset_after(&t, 0) == 100000 + 9 * TOPOLOGY_SAMPLES);
    int ordered = 1;
    for (int k = 1; k < t.n; k++) {
        int a = (t.head + k - 1) % TOPOLOGY_SAMPLES, b = (t.head + k) % TOPOLOGY_SAMPLES;
        ordered &= t.s[a].offset + 1 == t.s[b].offset && t.s[a].t < t.s[b].t;
    }
    CHECK(ordered);
}

static void test_eligible(void)
{
    struct topology t;
    char why[96];
    memset(&t, 0, sizeof t);
    health_record_master(&t, 10.0, 1000);
    health_record_master(&t, 11.0, 2000);

    struct checker ch = replica(2000);
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 1);

    ch.down = 1;
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "down") == 0);
    strcpy(ch.role, "master");                     /* down is said first */
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "down") == 0);

    ch = replica(2000);
    strcpy(ch.role, "master");
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "role master") == 0);
    ch.role[0] = '\0';                             /* no ROLE answer yet */
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "role unknown") == 0);
    strcpy(ch.link, "connect");                    /* the role is said before the link */
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "role unknown") == 0);

    ch = replica(2000);
    strcpy(ch.link, "connecting");
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "master link connecting") == 0);
    ch.link[0] = '\0';
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, why, sizeof why) == 0);
    CHECK(strcmp(why, "master link unknown") == 0);

    /* lag: behind the t=11 sample, 1.5 s later */
    ch = replica(1500);
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.5, why, sizeof why) == 0);
    CHECK(strcmp(why, "lag 1.5s over replica_max_lag") == 0);
    CHECK(health_replica_eligible(&t, &ch, 2.0, 12.5, why, sizeof why) == 1);
    CHECK(health_replica_eligible(&t, &ch, 1.5, 12.5, why, sizeof why) == 1);   /* at the bound */
    CHECK(health_replica_eligible(&t, &ch, 0.0, 11.0, why, sizeof why) == 1);   /* no time yet */
    ch = replica(999);                             /* behind the t=10 sample */
    CHECK(health_replica_eligible(&t, &ch, 2.0, 12.5, why, sizeof why) == 0);
    CHECK(strcmp(why, "lag 2.5s over replica_max_lag") == 0);
    ch = replica(2000);                            /* caught up: no lag however late */
    CHECK(health_replica_eligible(&t, &ch, 0.0, 1000.0, why, sizeof why) == 1);

    /* the reason fits the buffer it is given */
    char small[6];
    ch = replica(0);
    strcpy(ch.link, "connecting");
    CHECK(health_replica_eligible(&t, &ch, 1.0, 12.0, small, sizeof small) == 0);
    CHECK(strcmp(small, "maste") == 0);
}

int main(void)
{
    test_empty();
    test_lag();
    test_offset_after();
    test_ring();
    test_eligible();
    CHECK_DONE();
}
