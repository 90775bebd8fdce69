/* The app table: a chained hash on the app key, bounded by forgetting the
 * apps that have no connection, oldest first; the bans on app keys; and
 * the accept-time identity lookup that picks a connection's key. */
#include "apps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/hash.h"
#include "../lib/log.h"
#include "sidecar.h"

int apps_init(struct apps *t)
{
    memset(t, 0, sizeof *t);
    t->nbuckets = 256;
    t->bucket = calloc(t->nbuckets, sizeof *t->bucket);
    snprintf(t->fallback.key, sizeof t->fallback.key, "unknown");
    t->fallback.kind = APP_KEY_IP;
    t->fallback_proc.app = &t->fallback;
    t->rng = 0x9e3779b9u;
    t->sample_left = 1;
    t->peers = peer_cache_new();
    if (t->peers)
        peer_cache_limit(t->peers, APPS_WIDE_SCANS);
    return t->bucket ? 0 : -1;
}

static void free_app(struct app *a)
{
    struct app_proc *p, *next;

    for (p = a->procs; p; p = next) {
        next = p->next;
        free(p);
    }
    free(a->lat);
    free(a->hot);
    free(a);
}

void apps_free(struct apps *t)
{
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct app *a = t->bucket[i], *next;
        for (; a; a = next) {
            next = a->next;
            free_app(a);
        }
    }
    free(t->bucket);
    free(t->fallback.lat);
    free(t->fallback.hot);
    free(t->slow);
    if (t->peers)
        peer_cache_free(t->peers);
    memset(t, 0, sizeof *t);
}

struct app *apps_find(struct apps *t, const char *key, size_t len)
{
    if (len >= APP_KEY_MAX)
        return NULL;
    for (struct app *a = t->bucket[hash_fnv1a(key, len) & (t->nbuckets - 1)]; a; a = a->next)
        if (strlen(a->key) == len && memcmp(a->key, key, len) == 0)
            return a;
    return NULL;
}

static int by_last_seen(const void *x, const void *y)
{
    const struct app *a = *(struct app *const *)x, *b = *(struct app *const *)y;

    return a->last_seen < b->last_seen ? -1 : a->last_seen > b->last_seen;
}

/* At the bound: the oldest quarter of the apps with no connection go. */
static void forget_idle(struct apps *t)
{
    struct app **idle = malloc(t->n * sizeof *idle);
    unsigned n = 0;

    if (!idle)
        return;
    for (unsigned i = 0; i < t->nbuckets; i++)
        for (struct app *a = t->bucket[i]; a; a = a->next)
            if (a->current == 0 && !a->procs)   /* no client, closed or not, points here */
                idle[n++] = a;
    qsort(idle, n, sizeof *idle, by_last_seen);
    for (unsigned k = 0; k < n && k < APPS_MAX / 4; k++) {
        struct app **pp = &t->bucket[hash_fnv1a(idle[k]->key, strlen(idle[k]->key)) &
                                     (t->nbuckets - 1)];
        while (*pp != idle[k])
            pp = &(*pp)->next;
        *pp = idle[k]->next;
        free_app(idle[k]);
        t->n--;
    }
    free(idle);
}

static void grow(struct apps *t)
{
    unsigned nb = t->nbuckets * 2;
    struct app **b = calloc(nb, sizeof *b);

    if (!b)
        return;
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct app *a = t->bucket[i], *next;
        for (; a; a = next) {
            next = a->next;
            unsigned h = hash_fnv1a(a->key, strlen(a->key)) & (nb - 1);
            a->next = b[h];
            b[h] = a;
        }
    }
    free(t->bucket);
    t->bucket = b;
    t->nbuckets = nb;
}

static struct app *get(struct apps *t, const char *key, ev_tstamp now)
{
    size_t len = strlen(key);
    struct app *a = apps_find(t, key, len);

    if (a)
        return a;
    if (t->n >= APPS_MAX) {
        forget_idle(t);
        if (t->n >= APPS_MAX)
            return &t->fallback;
    }
    if (t->n >= t->nbuckets * 2)
        grow(t);
    if (!(a = calloc(1, sizeof *a)))
        return &t->fallback;
    memcpy(a->key, key, len + 1);
    a->first_seen = now;
    unsigned h = hash_fnv1a(key, len) & (t->nbuckets - 1);
    a->next = t->bucket[h];
    t->bucket[h] = a;
    t->n++;
    return a;
}

unsigned apps_all(const struct apps *t, struct app **out, unsigned max)
{
    unsigned n = 0;

    for (unsigned i = 0; i < t->nbuckets && n < max; i++)
        for (struct app *a = t->bucket[i]; a && n < max; a = a->next)
            out[n++] = a;
    return n;
}

/* Names from the kernel and /proc go into keys, CLIENT LIST lines and
 * label values: anything but a plain character becomes '_'. */
static void sanitize(char *dst, size_t cap, const char *src)
{
    size_t i = 0;

    for (; src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 strchr("._-@:+", ch) ? (char)ch : '_';
    }
    dst[i] = '\0';
}


static double mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct app *apps_identify(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                          socklen_t len, const struct ip *ip, int is_unix,
                          struct peer_id *id)
{
    struct apps *t = &sc->apps;
    enum app_key_kind kind = (enum app_key_kind)sc->cfg->app_key;
    char key[APP_KEY_MAX], comm[PEER_COMM_MAX], service[PEER_SERVICE_MAX];
    struct app *a;

    memset(id, 0, sizeof *id);
    if (t->peers) {
        /* peer.c decides who is local: a remote peer comes back at once,
         * with no uid and nothing missing, and is not counted */
        double t0 = mono();
        if (peer_identify(t->peers, fd, (const struct sockaddr *)peer, len, id) < 0)
            id->miss = PEER_MISS_NO_SOCKET;
        if (id->has_uid || id->miss != PEER_MISS_NONE) {
            t->lookup_seconds += mono() - t0;
            t->misses[id->miss]++;
        }
    }
    sanitize(comm, sizeof comm, id->comm);
    sanitize(service, sizeof service, id->service);
    memcpy(id->comm, comm, sizeof comm);
    /* Each key falls back to the next that is known: the uid, then the address. */
    if (kind == APP_KEY_PROCESS && (!id->pid || !comm[0]))
        kind = APP_KEY_UID;
    if (kind == APP_KEY_SERVICE && !service[0])
        kind = APP_KEY_UID;
    if (kind == APP_KEY_UID && !id->has_uid)
        kind = APP_KEY_IP;
    switch (kind) {
    case APP_KEY_SERVICE:
        snprintf(key, sizeof key, "%s", service);
        break;
    case APP_KEY_UID:
        snprintf(key, sizeof key, "uid:%u", (unsigned)id->uid);
        break;
    case APP_KEY_PROCESS:
        snprintf(key, sizeof key, "%s[%d]", comm, (int)id->pid);
        break;
    case APP_KEY_IP:
        if (is_unix)
            snprintf(key, sizeof key, "unix");
        else
            ip_format(ip, key, sizeof key);
        break;
    }
    a = get(t, key, ev_now(sc->loop));
    a->kind = kind;
    a->last_seen = ev_now(sc->loop);
    if (id->has_uid) {
        a->has_uid = 1;
        a->uid = id->uid;
    }
    if (service[0])
        memcpy(a->service, service, sizeof service);
    return a;
}

double apps_banned_for(struct apps *t, const char *key, ev_tstamp now)
{
    double left = 0;

    for (int i = 0; i < t->nbans; i++) {
        if (t->bans[i].until <= now) {          /* expired: drop it */
            t->bans[i--] = t->bans[--t->nbans];
            continue;
        }
        if (strcmp(t->bans[i].key, key) == 0)
            left = t->bans[i].until - now;
    }
    return left;
}

const char *apps_admit(struct sidecar *sc, struct app *a, char *line, size_t len,
                       enum refusal *why)
{
    int cap = sc->cfg->max_connections_per_app;
    double ban;

    if (sc->apps.nbans && (ban = apps_banned_for(&sc->apps, a->key, ev_now(sc->loop))) > 0) {
        *why = REFUSED_BANNED;
        snprintf(line, len, "-ERR app %s is banned for another %.0fs\r\n", a->key, ban + 0.5);
    } else if (cap && (int)a->current >= cap && a != &sc->apps.fallback) {
        *why = REFUSED_PER_APP;
        if (a->has_uid && (a->kind == APP_KEY_SERVICE || a->kind == APP_KEY_PROCESS))
            snprintf(line, len, "-ERR max connections per app reached (%s, uid %u, limit %d)\r\n",
                     a->key, (unsigned)a->uid, cap);
        else
            snprintf(line, len, "-ERR max connections per app reached (%s, limit %d)\r\n",
                     a->key, cap);
    } else {
        return NULL;
    }
    return line;
}

/* Its process entry: one per pid with connections open, and one for its
 * connections whose pid is unknown (pid 0, not listed as a process). */
static struct app_proc *proc_of(struct app *a, int32_t pid, const char *comm)
{
    struct app_proc *p;

    for (p = a->procs; p && p->pid != pid; p = p->next)
        ;
    if (!p && (p = calloc(1, sizeof *p)) != NULL) {
        p->pid = pid;
        p->app = a;
        p->next = a->procs;
        a->procs = p;
    }
    if (p && pid)
        memcpy(p->comm, comm, sizeof p->comm);
    return p;
}

struct app_proc *apps_attach(struct sidecar *sc, struct app *a, const struct peer_id *id)
{
    struct app_proc *p = proc_of(a, id->pid, id->comm);

    if (!p) {                            /* out of memory: counted as nobody's */
        a = &sc->apps.fallback;
        p = &sc->apps.fallback_proc;
    }
    a->accepted++;
    if (++a->current > a->peak)
        a->peak = a->current;
    p->conns++;
    p->refs++;
    return p;
}

void apps_detach(struct sidecar *sc, struct app_proc *p)
{
    p->app->current--;
    p->app->last_seen = ev_now(sc->loop);
    p->conns--;
}

void apps_release(struct sidecar *sc, struct app_proc *p)
{
    struct app *a = p->app;

    if (--p->refs == 0 && p != &sc->apps.fallback_proc) {
        struct app_proc **pp = &a->procs;
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        free(p);
    }
}

int apps_ban(struct apps *t, const char *key, size_t len, ev_tstamp until)
{
    char clean[APP_KEY_MAX];

    if (len == 0 || len >= APP_KEY_MAX)
        return -2;
    /* only what a key can hold (sanitize()): no NUL, no spaces in PROXY BANS */
    memcpy(clean, key, len);
    clean[len] = '\0';
    sanitize(clean, sizeof clean, clean);
    if (strlen(clean) != len || memcmp(clean, key, len) != 0)
        return -2;
    for (int i = 0; i < t->nbans; i++) {
        if (strlen(t->bans[i].key) == len && memcmp(t->bans[i].key, key, len) == 0) {
            t->bans[i].until = until;
            return 0;
        }
    }
    if (t->nbans == APP_BANS_MAX)
        return -1;
    memcpy(t->bans[t->nbans].key, key, len);
    t->bans[t->nbans].key[len] = '\0';
    t->bans[t->nbans++].until = until;
    return 0;
}

int apps_unban(struct apps *t, const char *key, size_t len)
{
    for (int i = 0; i < t->nbans; i++) {
        if (strlen(t->bans[i].key) == len && memcmp(t->bans[i].key, key, len) == 0) {
            t->bans[i] = t->bans[--t->nbans];
            return 1;
        }
    }
    return 0;
}

uint64_t apps_latency_count(const struct app_latency *l)
{
    uint64_t n = 0;

    for (int i = 0; l && i < APP_LAT_BUCKETS; i++)
        n += l->n[i];
    return n;
}

struct app_latency *apps_latency_new(struct app *a)
{
    return a->lat = calloc(1, sizeof *a->lat);
}

double apps_percentile(const struct app_latency *l, double q)
{
    uint64_t want, seen = 0;

    if (!l || !apps_latency_count(l))
        return 0;
    want = (uint64_t)(q * (double)apps_latency_count(l) + 0.5);
    if (want == 0)
        want = 1;
    for (int i = 0; i < APP_LAT_BUCKETS; i++) {
        seen += l->n[i];
        if (seen >= want)
            return apps_bucket_upper(i);
    }
    return apps_bucket_upper(APP_LAT_BUCKETS - 1);
}
