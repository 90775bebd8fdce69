/* The local app behind a connection, and what the sidecar keeps per app.
 * A connection's identity is computed once, at accept (lib/peer.c: the
 * kernel's SO_PEERCRED or sock_diag, then /proc), and turned into its app
 * key by [clients] app_key: the systemd service or container, the uid,
 * the process, or (always for remote peers) the IP. Caps, bans, PROXY
 * APPS, the slowlog, hot keys and /metrics work per key. The request path
 * only adds to counters of an app the connection points to. */
#ifndef SIDECAR_APPS_H
#define SIDECAR_APPS_H

#include <ev.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../lib/cidr.h"
#include "../lib/peer.h"
#include "../lib/topk.h"
#include "../pool/req.h"
#include "iptable.h"

#define APP_KEY_MAX    112
#define APPS_MAX       1024    /* past it, apps with no connection are forgotten */
#define APP_BANS_MAX   256
/* Scans of all of a uid's processes per second, for loopback peers whose
 * process is new (under a millisecond each): a storm of connections from
 * new processes is keyed by service or uid without its pid past that. */
#define APPS_WIDE_SCANS 50

enum app_key_kind { APP_KEY_SERVICE, APP_KEY_UID, APP_KEY_PROCESS, APP_KEY_IP };

/* Errors an app met, by who made them: Redis's error replies, the
 * proxy's own (unavailable, timeouts, refused commands), and connections
 * the proxy closed on it (protocol errors, buffer limits). */
enum app_err { APP_ERR_REDIS, APP_ERR_PROXY, APP_ERR_CLOSED, APP_ERR_N };

/* Latency in log-linear buckets read straight off the double's bits:
 * 8 per power of two of seconds (at most 12.5% wide), from 2^-20 s (about
 * 1 us; everything below, in the first) to 2^7 s (128 s; everything
 * above, in the last). */
#define APP_LAT_E0      (-20)
#define APP_LAT_BUCKETS (27 * 8)

struct app_latency {
    uint64_t n[APP_LAT_BUCKETS];
    double   sum;             /* seconds */
};

/* A process with connections open now, listed under its app (pid 0: its
 * connections whose process is not known). */
struct app_proc {
    int32_t          pid;
    uint32_t         conns;      /* its connections open */
    uint32_t         refs;       /* its clients, open or closed but not yet freed */
    char             comm[PEER_COMM_MAX];
    struct app      *app;
    struct app_proc *next;    /* its app's list */
};

struct app {
    char        key[APP_KEY_MAX];
    enum app_key_kind kind;   /* what the key names (a fallback may differ from app_key) */
    int         has_uid;
    uint32_t    uid;          /* of its latest connection */
    char        service[PEER_SERVICE_MAX];
    uint32_t    current, peak;
    uint64_t    accepted;
    uint64_t    refused[REFUSED_NREASONS];
    uint64_t    requests, errors[APP_ERR_N];
    uint64_t    bytes_in, bytes_out;
    struct app_latency *lat;  /* NULL until its first answered request */
    struct topk *hot;         /* NULL until one of its keys is sampled */
    ev_tstamp   first_seen, last_seen;
    struct app_proc *procs;
    struct app *next;         /* hash chain */
};

/* Who an accepted connection is, for its client: its address's entry,
 * its app and process (each counting it), its peer socket. */
struct origin {
    struct ipstat   *ips;
    struct app_proc *proc;       /* its process, and through it its app */
    uint32_t         peer_ino;   /* loopback TCP: for peer_forget() at its close */
};

struct app_ban {
    char      key[APP_KEY_MAX];
    ev_tstamp until;
};

/* One slow request, as PROXY SLOWLOG shows it. */
#define SLOW_KEY_MAX REQ_KEY_SNAP   /* what a request keeps of its key */
struct slow_entry {
    uint64_t  id;
    ev_tstamp at;                  /* when its reply left */
    double    total, upstream;     /* seconds: arrival to reply out; on its link */
    uint64_t  client_id;
    int32_t   pid;
    char      app[APP_KEY_MAX];
    char      cmd[32];
    char      key[SLOW_KEY_MAX];
    uint32_t  key_len;             /* the whole key's (key[] may hold a prefix) */
};

struct apps {
    struct app     **bucket;
    unsigned         nbuckets, n;
    struct app       fallback;     /* when no entry can be made (out of memory) */
    struct app_proc  fallback_proc;
    struct app_ban   bans[APP_BANS_MAX];
    int              nbans;
    struct peer_cache *peers;
    /* accept-time lookups of local peers, by how they ended (NONE: all
     * found), and what they cost */
    uint64_t         misses[PEER_MISS_NCAUSES];
    double           lookup_seconds;
    /* hot keys: one request in `sample` on average, at random gaps */
    uint32_t         sample_left, rng;
    /* the slowlog: a ring of the latest slow requests */
    struct slow_entry *slow;
    unsigned         slow_cap, slow_n, slow_head;
    double           slow_after;   /* slowlog_slower_than, or INFINITY when it is off */
    uint64_t         slow_next_id;
};

struct sidecar;
struct client;
struct req;

int apps_init(struct apps *t);
void apps_free(struct apps *t);

/* At accept: the peer's identity into id (fd, its address), and its app
 * under the configured key, created if new (the fallback entry when out
 * of memory). */
struct app *apps_identify(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                          socklen_t len, const struct ip *ip, int is_unix,
                          struct peer_id *id);
/* NULL admits; else the refusal line (a ban on its key, or its cap). */
const char *apps_admit(struct sidecar *sc, struct app *a, char *line, size_t len,
                       enum refusal *why);
/* A connection of app a opened: its process entry (pid 0 when its pid is
 * unknown). apps_detach() uncounts it when it closes; apps_release() lets
 * the entry go when its client is freed, after the loop iteration that
 * closed it (which may still read c->proc->app). */
struct app_proc *apps_attach(struct sidecar *sc, struct app *a, const struct peer_id *id);
void apps_detach(struct sidecar *sc, struct app_proc *p);
void apps_release(struct sidecar *sc, struct app_proc *p);
/* Accept-time lookups of local peers so far. */
static inline uint64_t apps_lookups(const struct apps *t)
{
    uint64_t n = 0;

    for (int i = 0; i < PEER_MISS_NCAUSES; i++)
        n += t->misses[i];
    return n;
}

/* An app by its key; NULL if none. */
struct app *apps_find(struct apps *t, const char *key, size_t len);
/* Ban a key until `until` (again: the new deadline). -1 when the list is
 * full, -2 when key is no app key (empty, too long, characters no key has). */
int apps_ban(struct apps *t, const char *key, size_t len, ev_tstamp until);
int apps_unban(struct apps *t, const char *key, size_t len);
double apps_banned_for(struct apps *t, const char *key, ev_tstamp now);
/* Every app, for listings; the caller sorts. */
unsigned apps_all(const struct apps *t, struct app **out, unsigned max);
/* Percentile q (0..1) of an app's latency, in seconds; 0 with none. */
double apps_percentile(const struct app_latency *l, double q);

struct app_latency *apps_latency_new(struct app *a);
/* Its replies timed: the sum of its buckets. */
uint64_t apps_latency_count(const struct app_latency *l);

/* The bucket of s seconds: the exponent and the top 3 bits of the
 * mantissa, shifted to start at 2^APP_LAT_E0; negative (a clock step
 * back) and tiny values go to the first, huge ones to the last. */
static inline unsigned apps_bucket(double s)
{
    int64_t bits;

    memcpy(&bits, &s, sizeof bits);
    uint64_t i = (uint64_t)((bits >> 49) - ((int64_t)(1023 + APP_LAT_E0) << 3));
    if (__builtin_expect(i >= APP_LAT_BUCKETS, 0))       /* one test for both ends */
        i = bits < 0 || (int64_t)i < 0 ? 0 : APP_LAT_BUCKETS - 1;
    return (unsigned)i;
}

/* The upper bound (exclusive), in seconds, of bucket i. */
static inline double apps_bucket_upper(int i)
{
    return ldexp((9 + i % 8) / 8.0, i / 8 + APP_LAT_E0);
}

/* A reply left for a request that arrived `s` seconds before. */
static inline void apps_latency(struct app *a, double s)
{
    struct app_latency *l = a->lat;

    if (__builtin_expect(l == NULL, 0) && (l = apps_latency_new(a)) == NULL)
        return;
    l->n[apps_bucket(s)]++;
    l->sum += s;
}

#endif
