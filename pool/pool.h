/* The links to one Redis node: a few multiplexed connections shared by
 * every client, flushed once per loop iteration, and the leases (a
 * client's own connection while it holds server-side state), with the
 * clients waiting for one. */
#ifndef SIDECAR_POOL_H
#define SIDECAR_POOL_H

#include <ev.h>
#include <stdint.h>
#include <string.h>

#include "../lib/net.h"
#include "../lib/tls.h"
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
    size_t      max_reply;        /* a larger reply is dropped as it comes, and
                                   * its request answered with an error */
    int         tcp_keepalive;    /* seconds, 0 off */
    int         tcp_user_timeout_ms;
    int         readonly;         /* a cluster replica's: READONLY after AUTH, so that
                                   * it serves reads of its master's slots (fixed for
                                   * the pool's life) */
    int         auth_final;       /* an app's ACL user: a WRONGPASS to the handshake's
                                   * AUTH ends the pool (on_auth_refused), no retry */
    int         owner_tag;        /* the owner's, for its callbacks (an app user's index + 1) */
    struct tls_ctx    *tls;       /* NULL: plaintext; the pool holds a reference */
    const char        *tls_name;  /* SNI and the name checked; NULL: the host */
    /* The node's (shared by its pools and checker): kept by pool_configure. */
    struct tls_resume *tls_resume;
    struct tls_stats  *tls_stats;
};

/* How the pool hands things back to its owner (set once, at pool_new). */
struct pool_callbacks {
    /* A reply (bytes of one RESP frame), or, when err is set, why the
     * request failed; with the request's own r->len bytes, valid during
     * the call (to send it elsewhere). Never called for unowned requests. */
    void (*on_reply)(struct req *r, const char *req, const char *p, size_t n,
                     const char *err, void *arg);
    /* k (1 to LINK_RUN_MAX) replies in a row on a link, for k
     * requests of one owner none of whose flags are in run_exclude, none
     * an error or a push: v[i]'s reply is len[i] bytes, one after another
     * from p, and its request's bytes are at req[i], all valid during the
     * call. The same as k calls of on_reply, in order: the plain reply's
     * short way, and a pipelined batch pays for its bookkeeping once. */
    void (*on_replies)(struct req *const *v, const char *const *req, const size_t *len,
                       unsigned k, const char *p, void *arg);
    unsigned run_exclude;        /* the owner's REQ_* marks that keep a request out */
    /* A large reply (LINK_STREAM_MIN or more), passed on as it comes:
     * the first call, with the frame's first bytes, may decline (0: the
     * reply is buffered whole and given to on_reply); once accepted, the
     * request is REQ_STREAMED and every later piece comes here, `last`
     * on the one that ends the frame (p, n are only the bytes not passed
     * on before). If the link fails mid-way, on_reply gets err as usual
     * (the owner cannot answer it any more: the frame is cut). */
    int (*on_reply_part)(struct req *r, const char *req, const char *p, size_t n, int last,
                         void *arg);
    /* A request that did not run here and may run elsewhere (its link was
     * closed on purpose, or it is a replica's read whose link failed): its
     * bytes, valid during the call; the owner sends it on. */
    void (*on_unrun)(struct req *r, const char *req, const char *why, void *arg);
    /* A frame on a lease in stream mode (pub/sub, pushes), for its holder. */
    void (*on_stream)(void *lessee, const char *p, size_t n, void *arg);
    /* A held lease died; its holder must forget it. `unrun`: none of the
     * holder's requests went out (it died connecting or in its handshake);
     * the holder may return 1 to have them back (on_unrun, in order)
     * instead of failed. */
    int (*on_lease_lost)(void *lessee, int unrun, void *arg);
    /* After on_lease_lost took them back: bytes a lease in stream mode had
     * for its server (SUBSCRIBE...), which no request slot covers. */
    void (*on_stream_unrun)(void *lessee, const char *p, size_t n, void *arg);
    /* A waiter's turn: l is its lease now, or NULL when the pool stopped
     * waiting for it (its deadline passed, or the node leaves the
     * topology): the owner decides again, later (not from inside this
     * call, where the pool's lists are being walked). */
    void (*on_lease_ready)(void *who, struct link *l, void *arg);
    /* An auth_final pool's credentials were refused (reply: the server's
     * error line): every request it held got that line as its reply, and
     * it connects no more. */
    void (*on_auth_refused)(struct pool *p, const char *reply, size_t n, void *arg);
    void *arg;
};

/* A client waiting for a lease: on the pool's wait list until it gets one
 * (in arrival order, as leases come back) or its deadline passes. */
struct pool_waiter {
    TAILQ_ENTRY(pool_waiter) tqe;
    void      *who;
    ev_tstamp  deadline;
    int        resp3;
    struct pool *on;              /* the pool whose list it is on, or NULL */
};

/* Upper bounds (seconds) of the round-trip histogram's buckets. */
#define POOL_RTT_BUCKETS 16
extern const double pool_rtt_bounds[POOL_RTT_BUCKETS];
/* How many bounds are under 2^e, for e from POOL_RTT_E0 to POOL_RTT_E1:
 * no two bounds share a power of two (each is at least twice the last),
 * so t's own power of two leaves one bound to compare it with. */
#define POOL_RTT_E0 (-14)            /* 2^-14 s < the first bound, 100 µs */
#define POOL_RTT_E1 4                /* 2^5 s > the last bound, 10 s */
extern unsigned char pool_rtt_below[POOL_RTT_E1 - POOL_RTT_E0 + 1];
/* Fills pool_rtt_below from the bounds (pool_new does, once). */
void pool_rtt_init(void);

/* The bucket of a round trip of t seconds: the first bound t is not over,
 * POOL_RTT_BUCKETS (+Inf) when it is over every one; 0 for anything not
 * over the first (NaN included). */
static inline int pool_rtt_bucket(double t)
{
    uint64_t bits;

    if (!(t > pool_rtt_bounds[0]))
        return 0;
    memcpy(&bits, &t, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;      /* t > 0: floor(log2 t) */
    if (e > POOL_RTT_E1)
        return POOL_RTT_BUCKETS;
    int i = pool_rtt_below[e - POOL_RTT_E0];
    return i + (i < POOL_RTT_BUCKETS && t > pool_rtt_bounds[i]);
}

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
    uint64_t lost[LOST_NCAUSES];   /* links gone, by cause (connect attempts too) */
    uint64_t leases_taken;
    uint64_t leases_refused;       /* max_leased reached */
    uint64_t leases_reset;         /* returned with RESET, reused */
    uint64_t leases_closed;        /* returned busy or lost: closed */
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t pushes_dropped;       /* RESP3 pushes on a link that is no stream */
    uint64_t requests_unbuffered;  /* large requests sent from the buffer they were
                                    * read into, not copied (link_send_buf) */
    uint64_t replies_streamed;     /* large replies passed on as they came */
    uint64_t streams_dropped;      /* ... whose client left mid-way: the rest dropped */
    uint64_t reconnects;           /* shared links ready again after a loss */
    /* Round trips, from handed to a link to its reply read, by bucket
     * (not cumulative; the last is over the largest bound), and their sum. */
    uint64_t rtt[POOL_RTT_BUCKETS + 1];
    double   rtt_sum;
};

struct pool {
    struct ev_loop    *loop;
    struct pool_config cfg;          /* pool_configure() changes it */
    struct pool_callbacks cb;
    struct link       *links[2];     /* multiplexed: RESP2, and RESP3 once a
                                      * RESP3 client came (NULL until then) */
    struct req_cache  *cache;
    TAILQ_HEAD(link_list, link) lease_list[LEASE_NSTATES];  /* by lease state */
    int                nlease[LEASE_NSTATES];  /* their lengths (checked in make asan) */
    TAILQ_HEAD(, pool_waiter) waiters;  /* for a lease, oldest first */
    ev_timer           wait_w;       /* the oldest waiter's deadline */
    int                granting;     /* handing out leases to waiters now */
    char               lease_failure[160];  /* why the last new lease failed at once */
    int                next_lease_idx;
    int                keep_idle;     /* leases kept open and reset ahead of need */
    ev_tstamp          quiet_until;   /* a CLIENT PAUSE: silence is no failure until then */
    ev_prepare         flush_w;
    ev_timer           care_w;        /* background pings and retirement */
    TAILQ_HEAD(, link) dirty;
    struct pool_stats  st;
    unsigned           seed;          /* for max_link_age jitter */
    int                down;          /* health checks failed: fail fast */
    int                retiring;      /* its owner sends it nothing new (a reload) */
    char               resp3_refused[120]; /* why the node refused HELLO 3, if it did */
    char               auth_refused[160];  /* auth_final: the server's WRONGPASS line */
    int                name_refused;  /* CLIENT SETNAME refused (an ACL): logged once */
    char               down_reason[160];
    char               connect_err[160]; /* the cause last logged for a link that
                                          * cannot connect: each is logged once */
    char               host[100];     /* of cfg.name: the TLS name by default */
};

/* to += from, counter by counter (a pool closed, its counts kept). */
void pool_stats_add(struct pool_stats *to, const struct pool_stats *from);
struct pool *pool_new(struct ev_loop *loop, const struct pool_config *cfg,
                      struct req_cache *cache, const struct pool_callbacks *cb);
void pool_free(struct pool *p);
/* New timeouts, credentials, limits and TLS files (a reload): links opened
 * from now on use them. The address, database and link count stay:
 * changing those takes a new pool. */
void pool_configure(struct pool *p, const struct pool_config *cfg);
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
/* The same without opening anything: NULL while the protocol's set is
 * not open (the router asks this; pool_open_resp3 opens it). */
static inline struct link *pool_link_peek(const struct pool *p, uint64_t key, int resp3)
{
    struct link *set = p->links[resp3];

    return set ? &set[key % (uint64_t)p->cfg.connections] : NULL;
}
/* Another ready link of l's set with no script in flight, or l itself:
 * for a client with nothing in flight, whose link a script holds. */
struct link *pool_link_free_of_scripts(const struct pool *p, struct link *l);
/* The RESP3 set, opened if it is not: 0, or -1 out of memory. */
int pool_open_resp3(struct pool *p);
/* For link.c: the link has bytes to write in this iteration. */
void pool_mark_dirty(struct pool *p, struct link *l);
/* Shared links of the protocol that are ready. */
int pool_ready_links(const struct pool *p, int resp3);
/* Shared links being validated (a PING before reuse). */
int pool_validating_links(const struct pool *p);
/* Requests on the pool's shared links not yet answered. */
unsigned pool_inflight(const struct pool *p);
/* Links with a socket (shared ones connecting or up, and leases). */
int pool_open_links(const struct pool *p);
/* Leases in existence (held, returning or idle). */
int pool_leases(const struct pool *p);
/* Leases a client holds now. */
static inline int pool_leases_held(const struct pool *p)
{
    return p->nlease[LEASE_HELD] + p->nlease[LEASE_STREAM];
}
/* An auth_final pool whose credentials the server refused: every request
 * on it gets `reply` (an error line) as its answer, its leases close and
 * nothing reconnects. */
void pool_auth_refused(struct pool *p, const char *reply, size_t n);
/* The node stops taking new work (a reload retired it): its waiters go
 * back to their owners. */
void pool_retire(struct pool *p);

/* A link of its own for `who`, in its protocol: an idle one, or a new one
 * (requests queue on it while it connects). NULL when max_leased are out
 * (or earlier waiters are first in line): then pool_lease_wait. */
struct link *pool_lease(struct pool *p, void *who, int resp3);
/* Wait for a lease until w->deadline; on_lease_ready says how it ended. */
void pool_lease_wait(struct pool *p, struct pool_waiter *w);
/* Off the wait list (its client left); nothing is called back. */
void pool_lease_unwait(struct pool_waiter *w);
/* The server holds its replies until then (a CLIENT PAUSE an app sent):
 * no reply timeout, validation or background ping counts it silent. */
void pool_quiet(struct pool *p, ev_tstamp until);
/* Keep n leases (RESP2) open and reset ahead of need, refilled in the
 * background and pinged before they go stale (the master's: a blocking
 * call or MULTI then goes out at once, in arrival order); 0 stops. */
void pool_keep_idle(struct pool *p, int n);
/* The holder is done: with nothing in flight (but its return handshake,
 * sent ahead) the link is RESET and kept, otherwise (a blocking call
 * still waiting, say) it is closed. */
void pool_unlease(struct pool *p, struct link *l);
/* The holder subscribed: from now on every frame goes to it as it comes. */
void pool_lease_stream(struct link *l);
/* The holder switched protocol (HELLO): the lease follows. -1 out of memory. */
int pool_lease_protocol(struct link *l, int resp3);
/* For link.c: a lease's return handshake is done; a lease died. */
void pool_lease_returned(struct pool *p, struct link *l);
int pool_lease_lost(struct pool *p, struct link *l, const char *why, int unrun);

/* Set by the owner from the node's health checks; back up means links
 * waiting out a backoff try again at once. */
void pool_set_down(struct pool *p, int down, const char *why);
/* The node is master no more: every request on its shared links that has
 * not run (never written, or a read) goes back to its owner (on_unrun),
 * writes that may have run get the retry rule's error, leases are
 * closed, waiters released, and the shared links reconnect empty. */
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
