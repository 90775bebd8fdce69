/* The proxy's counters and gauges, each declared once, in one table:
 * where it lives, its INFO name and section, its Prometheus family,
 * labels, type and help. The table renders PROXY INFO and the counters of
 * GET /metrics (metrics.c adds what is no single number: histograms, the
 * busiest addresses). A counter is added in one row. */
#ifndef SIDECAR_STATS_H
#define SIDECAR_STATS_H

#include <stddef.h>

#include "sidecar.h"

struct stat_row {
    const char *section;   /* INFO section; NULL: /metrics only */
    const char *info;      /* INFO field; NULL: /metrics only */
    const char *family;    /* Prometheus family after "redis_sidecar_"; NULL: INFO only */
    const char *labels;    /* this row's labels in its family ("" for none) */
    const char *help;      /* the family's help, on its first row */
    char        type;      /* 'c' counter, 'g' gauge, 't' INFO text, 'x' INFO lines */
    char        home;      /* 's' sidecar_stats, 'p' pool_stats and 'h' checker of
                            * each node (INFO: the master's), 'f' computed,
                            * 'n' computed for each node, 'r' for each
                            * retiring address */
    size_t      off;       /* of its uint64_t in its home ('s', 'p', 'h'); for
                            * a computed one ('f', 'n', 'r': per retiring
                            * address), which value (stats.c's enum calc) */
    void      (*text)(const struct sidecar *sc, struct buf *b);  /* 't', 'x' */
    double      scale;     /* /metrics shows the value times this (0: as it is) */
};

extern const struct stat_row stats_table[];
extern const size_t stats_rows;

/* PROXY INFO's text into b. */
void stats_info(const struct sidecar *sc, struct buf *b);
/* Every family of the table, in the Prometheus text format, into b. */
void stats_metrics(const struct sidecar *sc, struct buf *b);
/* A row's value: its node's (per-node rows; NULL: the master's, 0 if none). */
uint64_t stats_value(const struct sidecar *sc, const struct stat_row *r, const struct node *n);
/* "node=\"host:port\"", escaped, into out. */
const char *stats_node_label(const struct node *n, char *out, size_t outlen);
/* name="value", escaped, into out. */
const char *stats_label(const char *name, const char *value, char *out, size_t outlen);
/* Resident set size, bytes (0 if /proc cannot say). */
long stats_rss_bytes(void);

#endif
