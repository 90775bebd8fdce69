/* The links to one Redis node: a few multiplexed connections shared by
 * every client, flushed once per loop iteration. */
#ifndef SIDECAR_POOL_H
#define SIDECAR_POOL_H

#include <ev.h>
#include <stdint.h>

#include "../lib/net.h"
#include "link.h"

struct pool_config {
    char        name[128];        /* "host:port", for logs and errors */
    struct net_addr addr;
    int         connections;      /* multiplexed links */
    double      connect_timeout;  /* seconds */
    double      queue_timeout;    /* how long a request waits for a socket */
    double      reply_timeout;    /* seconds */
    int         database;
    const char *username;         /* NULL: AUTH with the password alone */
    const char *password;         /* NULL: no AUTH */
    int         retry_reads;
    double      validate_after;   /* seconds idle before a PING precedes use; 0 off */
    double      ping_timeout;
    double      ping_interval;    /* idle links are pinged this often; 0 off */
    double      max_link_age;     /* 0 off */
    int         max_leased;       /* leased links at most, busy or idle */
    int         fetch_commands;   /* ask COMMAND once, for on_commands */
    int         tcp_keepalive;    /* seconds, 0 off */
    int         tcp_user_timeout_ms;
};

/* Upper bounds (seconds) of the round-trip histogram's buckets. */
#define POOL_RTT_BUCKETS 16
extern const double pool_rtt_bounds[POOL_RTT_BUCKETS];

struct pool_stats {
    uint64_t links_opened;
    uint64_t link_failures;        /* ready links lost */
    uint64_t connect_failures;
    uint64_t requests_sent;
    uint64_t retried_reads;        /* written reads sent again after link loss */
    uint64_t requeued_unsent;      /* never-written requests moved to a new socket */
    uint64_t failed_unavailable;   /* queued past connect_timeout */
    uint64_t failed_after_send;    /* writes whose link died after sending */
    uint64_t reply_timeouts;
    uint64_t validations;          /* PINGs before reuse or in the background */
    uint64_t validations_failed;
    double   validation_wait;      /* seconds requests spent behind PINGs */
    uint64_t links_retired;        /* max_link_age */
    uint64_t lost[LOST_NCAUSES];   /* links gone, by cause (connect attempts too) */
    uint64_t leases_taken;
    uint64_t leases_refused;       /* max_leased reached */
    uint64_t leases_reset;         /* returned with RESET, reused */
    uint64_t leases_closed;        /* returned busy or lost: closed */
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t pushes_dropped;       /* RESP3 pushes on a link that is no stream */
    uint64_t reconnects;           /* shared links ready again after a loss */
    /* Round trips, from handed to a link to its reply read, by bucket
     * (not cumulative; the last is over the largest bound), and their sum. */
    uint64_t rtt[POOL_RTT_BUCKETS + 1];
    double   rtt_sum;
};

struct pool {
    struct ev_loop    *loop;
    struct pool_config cfg;
    struct link       *links[2];     /* multiplexed: RESP2, and RESP3 once a
                                      * RESP3 client came (NULL until then) */
    struct req_cache  *cache;
    /* A reply (bytes of one RESP frame), or, when err is set, why the
     * request failed; with the request's own r->len bytes, valid during
     * the call (to send it elsewhere). Never called for orphans. */
    void             (*on_reply)(struct req *r, const char *req, const char *p,
                                 size_t n, const char *err, void *arg);
    void              *arg;
    /* The node's COMMAND reply, once (fetch_commands). */
    void             (*on_commands)(const char *p, size_t n, void *arg);
    int                commands_fetched;
    /* A frame on a lease in stream mode (pub/sub), for its holder. */
    void             (*on_stream)(void *lessee, const char *p, size_t n, void *arg);
    /* A lease whose link died; its holder must forget it. */
    void             (*on_lease_lost)(void *lessee, void *arg);
    TAILQ_HEAD(, link) leases;       /* every live lease: held, idle or returning */
    TAILQ_HEAD(, link) lease_idle;   /* ready, waiting for a holder */
    TAILQ_HEAD(, link) lease_dead;   /* freed at the next flush */
    int                nleases;      /* leased links in existence */
    char               lease_failure[160];  /* why the last new lease failed at once */
    int                next_lease_idx;
    ev_prepare         flush_w;
    ev_timer           care_w;        /* background pings and retirement */
    TAILQ_HEAD(, link) dirty;
    struct pool_stats  st;
    char               version[32];  /* redis_version the node reported */
    unsigned           seed;          /* for max_link_age jitter */
    int                down;          /* health checks failed: fail fast */
    int                retiring;      /* its owner sends it nothing new (a reload) */
    char               resp3_refused[120]; /* why the node refused HELLO 3, if it did */
    char               down_reason[160];
};

struct pool *pool_new(struct ev_loop *loop, const struct pool_config *cfg,
                      struct req_cache *cache,
                      void (*on_reply)(struct req *r, const char *req, const char *p,
                                       size_t n, const char *err, void *arg),
                      void *arg);
void pool_free(struct pool *p);
/* The link a client with this key always uses, so its order holds, in
 * the client's protocol; NULL only when the RESP3 set cannot be made. */
struct link *pool_link_resp3(struct pool *p, uint64_t key);   /* opens the set */
static inline struct link *pool_link_for(struct pool *p, uint64_t key, int resp3)
{
    struct link *set = p->links[resp3];

    if (__builtin_expect(set == NULL, 0))
        return pool_link_resp3(p, key);
    return &set[key % (uint64_t)p->cfg.connections];
}
void pool_mark_dirty(struct pool *p, struct link *l);
int pool_ready_links(const struct pool *p);
int pool_ready_links_resp3(const struct pool *p);
/* Requests on the pool's links not yet answered. */
unsigned pool_inflight(const struct pool *p);
/* Links with a socket (shared ones connecting or up, and leases). */
int pool_open_links(const struct pool *p);
/* Leases a client holds now (idle ones not counted). */
int pool_leases_held(const struct pool *p);
/* A link of its own for `lessee`, in its protocol: an idle one, or a new
 * one (requests queue on it while it connects). NULL when max_leased are
 * out. */
struct link *pool_lease(struct pool *p, void *lessee, int resp3);
/* The holder is done: with nothing in flight the link is RESET and kept,
 * otherwise (a blocking call still waiting, say) it is closed. */
void pool_unlease(struct pool *p, struct link *l);
/* For link.c: a returned lease is ready again; a lease died. */
void pool_lease_idle(struct pool *p, struct link *l);
void pool_lease_dead(struct pool *p, struct link *l);

/* Set by the owner from the node's health checks; back up means links
 * waiting out a backoff try again at once. */
void pool_set_down(struct pool *p, int down, const char *why);
/* The node is master no more: every request on its shared links that has
 * not run (never written, or a read) goes back to its owner marked
 * REQ_MOVED, writes that may have run get the retry rule's error, leases
 * are closed, and the shared links reconnect empty. */
void pool_evacuate(struct pool *p, const char *why);
/* The same for the shared links only; leases stay with their holders. */
void pool_evacuate_shared(struct pool *p, const char *why);
/* The same for shared links that are not connected: what waits on them
 * never ran, and goes back to its owner at once. */
void pool_evacuate_unready(struct pool *p, const char *why);
/* A retiring pool with nothing in flight on its shared links closes them
 * (they do not reconnect); its leases go on. */
void pool_close_shared(struct pool *p);

#endif
