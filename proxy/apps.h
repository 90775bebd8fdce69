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
#include <stdint.h>

#include "../lib/cidr.h"
#include "../lib/peer.h"
#include "../lib/topk.h"
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

/* Latency in log-linear buckets of microseconds: exact below 8 us, then
 * 8 buckets per power of two (at most 12.5% wide), up to 2^27 us (134 s). */
#define APP_LAT_BUCKETS 200

struct app_latency {
    uint64_t n[APP_LAT_BUCKETS];
    uint64_t count;
    double   sum;             /* seconds */
};

/* A process with connections open now, listed under its app. */
struct app_proc {
    int32_t          pid;
    uint32_t         conns;
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
    unsigned    nprocs;
    struct app *next;         /* hash chain */
};

struct app_ban {
    char      key[APP_KEY_MAX];
    ev_tstamp until;
};

/* One slow request, as PROXY SLOWLOG shows it. */
#define SLOW_KEY_MAX 64
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
    struct app_ban   bans[APP_BANS_MAX];
    int              nbans;
    struct peer_cache *peers;
    /* accept-time lookups: how many, what they cost, why some fell back */
    uint64_t         lookups, misses[PEER_MISS_NCAUSES];
    double           lookup_seconds;
    /* hot keys: one request in `sample` on average, at random gaps */
    uint32_t         sample_left, rng;
    /* the slowlog: a ring of the latest slow requests */
    struct slow_entry *slow;
    unsigned         slow_cap, slow_n, slow_head;
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
/* A connection of app a opened (its process entry, NULL when its pid is
 * unknown, into *proc) or closed. */
void apps_attach(struct sidecar *sc, struct app *a, const struct peer_id *id,
                 struct app_proc **proc);
void apps_detach(struct sidecar *sc, struct app *a, struct app_proc *p);
/* An app by its key; NULL if none. */
struct app *apps_find(struct apps *t, const char *key, size_t len);
/* Ban a key until `until` (again: the new deadline). -1 when the list is full. */
int apps_ban(struct apps *t, const char *key, size_t len, ev_tstamp until);
int apps_unban(struct apps *t, const char *key, size_t len);
double apps_banned_for(struct apps *t, const char *key, ev_tstamp now);
/* Every app, for listings; the caller sorts. */
unsigned apps_all(const struct apps *t, struct app **out, unsigned max);
/* Percentile q (0..1) of an app's latency, in seconds; 0 with none. */
double apps_percentile(const struct app_latency *l, double q);

struct app_latency *apps_latency_new(struct app *a);

static inline unsigned apps_bucket(uint32_t us)
{
    if (us < 8)
        return us;
    unsigned e = 31u - (unsigned)__builtin_clz(us);          /* 3..26 */
    return (e - 2) * 8 + ((us >> (e - 3)) & 7);
}

/* The upper bound (exclusive), in seconds, of latency bucket i. */
static inline double apps_bucket_upper(int i)
{
    if (i < 8)
        return (i + 1) / 1e6;
    unsigned e = (unsigned)i / 8 + 2, sub = (unsigned)i % 8;
    return (double)((8u + sub + 1) << (e - 3)) / 1e6;
}

/* A reply left for a request that arrived `s` seconds before. */
static inline void apps_latency(struct app *a, double s)
{
    struct app_latency *l = a->lat;

    if (__builtin_expect(l == NULL, 0) && (l = apps_latency_new(a)) == NULL)
        return;
    uint32_t us = s <= 0 ? 0 : s >= 134.0 ? (1u << 27) - 1 : (uint32_t)(s * 1e6);
    l->n[apps_bucket(us)]++;
    l->count++;
    l->sum += s;
}

#endif
