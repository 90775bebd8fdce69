/* The counter table: every number PROXY INFO shows comes from the table
 * and has its Prometheus series with the same value (scaled where the
 * units differ); every family has one HELP and one TYPE, counters end in
 * _total. Rendered from a sidecar whose every counter holds a different
 * value, with a master node whose pool and checker do too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proxy/stats.h"
#include "check.h"

/* What stats.c asks of nodes.c, for a single master. */
const char *nodes_version(const struct sidecar *sc)
{
    (void)sc;
    return "7.0.99";
}

int nodes_is_master(const struct sidecar *sc, const struct node *n)
{
    return n == sc->master;
}

const struct topology *nodes_topo(const struct sidecar *sc, const struct node *n)
{
    (void)n;
    return &sc->topo;
}

static void fill(void *p, size_t n, uint64_t from)
{
    uint64_t *v = p;

    for (size_t i = 0; i < n / sizeof *v; i++)
        v[i] = from + i;
}

static const struct stat_row *row_of(const char *info)
{
    for (size_t i = 0; i < stats_rows; i++)
        if (stats_table[i].info && strcmp(stats_table[i].info, info) == 0)
            return &stats_table[i];
    return NULL;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
        n++;
    return n;
}

/* The round-trip bucket is the first bound not under t, as a walk up
 * the bounds finds it: at each bound, next to it, and over the range. */
static void test_rtt_bucket(void)
{
    int bad = 0;
    double t = -1;

    pool_rtt_init();
    for (int k = 0; k < 4000; k++) {
        int i = 0;
        while (i < POOL_RTT_BUCKETS && t > pool_rtt_bounds[i])
            i++;
        bad += pool_rtt_bucket(t) != i;
        t = t < 1e-9 ? 1e-9 : t * 1.01;
    }
    CHECK(bad == 0);
    for (int k = 0; k < POOL_RTT_BUCKETS; k++) {
        double b = pool_rtt_bounds[k];
        CHECK(pool_rtt_bucket(b) == k);
        CHECK(pool_rtt_bucket(nextafter(b, 100)) == k + 1);
        CHECK(pool_rtt_bucket(nextafter(b, 0)) == k);
    }
    CHECK(pool_rtt_bucket(0) == 0 && pool_rtt_bucket(-3) == 0 && pool_rtt_bucket(NAN) == 0);
    CHECK(pool_rtt_bucket(INFINITY) == POOL_RTT_BUCKETS && pool_rtt_bucket(1e300) == POOL_RTT_BUCKETS);
}

int main(void)
{
    static struct config cfg;
    static struct sidecar sc;
    struct node *m = calloc(1, sizeof *m);
    struct pool *p = calloc(1, sizeof *p);
    struct buf info = {0}, met = {0};

    test_rtt_bucket();
    char line[600], want[600], nl[200];

    sc.loop = ev_default_loop(0);
    sc.cfg = &cfg;
    TAILQ_INIT(&sc.nodes);
    TAILQ_INIT(&sc.retiring);
    TAILQ_INIT(&sc.clients);
    fill(&sc.st, sizeof sc.st, 1000);
    snprintf(p->cfg.name, sizeof p->cfg.name, "127.0.0.1:6379");
    p->cfg.connections = 2;
    p->links[0] = calloc(2, sizeof *p->links[0]);
    for (int s = 0; s < LEASE_NSTATES; s++)
        TAILQ_INIT(&p->lease_list[s]);
    fill(&p->st, sizeof p->st, 5000);
    p->st.validation_wait = 1.234;       /* the doubles: seconds */
    p->st.rtt_sum = 0;
    m->pool = p;
    m->sc = &sc;
    m->health.checks = 7001;
    m->health.failures = 7002;
    m->health.downs = 7003;
    m->health.ups = 7004;
    TAILQ_INSERT_TAIL(&sc.nodes, m, tqe);
    sc.master = m;
    sc.nnodes = 1;

    stats_info(&sc, &info);
    stats_metrics(&sc, &met);
    buf_append(&info, "", 1);
    buf_append(&met, "", 1);
    const char *text = buf_start(&info), *prom = buf_start(&met);
    stats_node_label(m, nl, sizeof nl);

    int numbers = 0;
    for (const char *s = text; *s; s += strcspn(s, "\n") + (s[strcspn(s, "\n")] != '\0')) {
        size_t len = strcspn(s, "\r\n");
        snprintf(line, sizeof line, "%.*s", (int)len, s);
        char *colon = strchr(line, ':');
        if (line[0] == '#' || !colon || strchr(line, '='))
            continue;                    /* headers, blank lines, replicaN lines */
        *colon = '\0';
        const struct stat_row *r = row_of(line);
        CHECK(r != NULL);                /* every INFO field is a table row */
        if (!r || r->type == 't')
            continue;                    /* text: versions, addresses, the pid */
        numbers++;
        CHECK(r->family != NULL);        /* ... and every number has its series */
        if (!r->family)
            continue;
        int per_node = r->home == 'p' || r->home == 'h' || r->home == 'n';
        int braces = per_node || r->labels[0];
        int n = snprintf(want, sizeof want, "redis_sidecar_%s%s%s%s%s%s ", r->family,
                         braces ? "{" : "", per_node ? nl : "",
                         per_node && r->labels[0] ? "," : "", r->labels, braces ? "}" : "");
        unsigned long long v = strtoull(colon + 1, NULL, 10);
        if (!strcmp(line, "used_memory_rss"))
            want[n] = '\0';             /* it moves between the two renders */
        else if (r->scale)
            snprintf(want + n, sizeof want - (size_t)n, "%.6f\n", (double)v * r->scale);
        else
            snprintf(want + n, sizeof want - (size_t)n, "%llu\n", v);
        int found = strstr(prom, want) != NULL;
        CHECK(found);
        if (!found)
            printf("  no series \"%.*s\" for INFO %s\n", (int)strlen(want) - 1, want, line);
    }
    CHECK(numbers > 60);
    CHECK(strstr(text, "total_requests:1001\r\n") != NULL);    /* sc.st.requests */
    CHECK(strstr(text, "validation_wait_ms_total:1234\r\n") != NULL);
    CHECK(strstr(prom, "redis_sidecar_validation_wait_seconds_total{" "node=\"127.0.0.1:6379\"} "
                       "1.234000\n") != NULL);
    CHECK(strstr(text, "(null)") == NULL && strstr(prom, "(null)") == NULL);

    /* One HELP and one TYPE per family; counters end in _total. */
    for (size_t i = 0; i < stats_rows; i++) {
        const struct stat_row *r = &stats_table[i];
        if (!r->family)
            continue;
        snprintf(want, sizeof want, "# HELP redis_sidecar_%s ", r->family);
        CHECK(count(prom, want) == 1);
        snprintf(want, sizeof want, "# TYPE redis_sidecar_%s %s\n", r->family,
                 r->type == 'c' ? "counter" : "gauge");
        CHECK(count(prom, want) == 1);
        if (r->type == 'c')
            CHECK(strlen(r->family) > 6 && !strcmp(r->family + strlen(r->family) - 6, "_total"));
    }
    buf_free(&info);
    buf_free(&met);
    free(p->links[0]);
    free(p);
    free(m);
    CHECK_DONE();
}
