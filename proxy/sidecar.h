/* The one context of a loop: everything the proxy owns hangs off it and
 * it is passed to every proxy call (no file-scope state). */
#ifndef SIDECAR_SIDECAR_H
#define SIDECAR_SIDECAR_H

#include <ev.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "../lib/buf.h"
#include "../lib/resp.h"
#include "../pool/link.h"
#include "../health/checker.h"
#include "../health/sentinel.h"
#include "../health/topology.h"
#include "../pool/pool.h"
#include "command.h"
#include "config.h"
#include "apps.h"
#include "iptable.h"

#define SIDECAR_VERSION "0.1.0"
#define SIDECAR_RBUF    (16 * 1024)

struct client;
struct held;
struct http_conn;
struct listener;
struct sidecar;

/* Clients the loop's flush step visits, each at most once (its dirty or
 * readable bit says it is on): an array in the sidecar rather than a link
 * in every client, so an idle connection pays nothing for it. Should the
 * array fail to grow (out of memory only), `lost` has the flush step look
 * at every client's bit instead, in the order they connected
 * (client_set_add). */
struct client_set {
    struct client **v;
    unsigned        n, cap;
    int             lost;
};

/* An ACL user an app authenticated as (without [proxy] password, Redis
 * checks AUTH): its requests run on pools of its own, one per node, whose
 * links authenticate as it (users.c). */
struct user {
    char      *name;
    char      *pass;          /* the last one Redis accepted: for reconnects */
    int        idx;           /* in sc->users and every node's upool */
    unsigned   clients;       /* app connections authenticated as it now */
    int        verified;      /* Redis accepted it once: every node has its pool */
    int        refused;       /* Redis refused it on a reconnect: found no more */
    ev_tstamp  idle_since;    /* no clients since then */
    uint64_t   auths, auth_failures;
};

/* A Redis node: its links and its health checks. Which one is the master
 * is the sidecar's business (sc->master); the rest may serve reads. */
struct node {
    struct sidecar *sc;
    struct pool    *pool;      /* the [upstream] credentials' */
    struct pool    *upool[USERS_MAX]; /* each app user's, by its idx (NULL: none) */
    struct pool_stats users_gone; /* the counters of users' pools closed since */
    struct checker  health;
    struct tls_resume tls_resume; /* its TLS sessions, for every pool's links */
    struct tls_stats  tls_stats;  /* handshakes with it: links and health checks */
    ev_tstamp         deposed_at; /* a cluster's master the map stopped naming, with
                                   * requests in flight: when (its ROLE decides) */
    struct topology  *topo;       /* a cluster's shard master with replicas that serve
                                   * reads: its offsets, for their lag (NULL: none) */
    int             listed;    /* named in the sentinels' latest view */
    ev_tstamp       retire_at; /* retiring (a reload): freed once idle, or from then */
    int             keep_leases; /* retiring, its address still used: leases stay
                                  * until their holders let go */
    TAILQ_ENTRY(node) tqe;     /* sc->nodes or sc->retiring */
};

/* Every pool of node n: its own, then each app user's. */
#define NODE_FOREACH_POOL(sc, n, p)                                              \
    for (int u_ = -1; u_ < (sc)->users_hi; u_++)                                  \
        if (((p) = u_ < 0 ? (n)->pool : (n)->upool[u_]) != NULL)

/* Requests and replies by class and by who answered, for /metrics. */
enum req_class { CLASS_READ, CLASS_WRITE, CLASS_STATEFUL, CLASS_ADMIN, CLASS_N };
enum req_dest { DEST_MASTER, DEST_REPLICA, DEST_PROXY, DEST_N };
#define TALLY(k, d) ((k) * DEST_N + (d))   /* a request's counter: fits REQ_TALLY_MASK */

TAILQ_HEAD(node_list, node);

struct sidecar_stats {
    uint64_t connections_received;
    uint64_t requests;          /* complete requests read from clients */
    uint64_t forwarded;
    uint64_t replies;           /* upstream replies (or errors) for forwarded requests */
    uint64_t reads_to_replicas;
    uint64_t reads_ryw_master;  /* reads kept on the master by read-your-writes */
    uint64_t replica_redirects; /* reads a replica refused (READONLY...), re-sent to the master */
    uint64_t err_no_replica;    /* read_from = replica and none eligible */
    uint64_t local_replies;     /* answered by the proxy itself */
    uint64_t bytes_in;          /* from clients */
    uint64_t bytes_out;         /* to clients */
    uint64_t err_protocol;      /* malformed requests (client closed) */
    uint64_t err_query_buffer;  /* clients closed over max_query_buffer */
    uint64_t err_output_buffer; /* clients closed over max_output_buffer */
    uint64_t err_refused;       /* commands never allowed through */
    uint64_t err_unsupported;   /* commands that need a dedicated link */
    uint64_t err_auth;          /* NOAUTH and WRONGPASS */
    uint64_t err_max_users;     /* AUTH as a new user past max_users */
    uint64_t users_refused;     /* users whose links Redis refused on a reconnect */
    uint64_t err_noperm;        /* PROXY commands without admin rights */
    uint64_t err_node_down;     /* failed fast: the master is down */
    uint64_t idle_closed;       /* clients closed after idle_timeout */
    uint64_t refused[REFUSED_NREASONS];  /* connections refused, by reason */
    uint64_t killed;            /* clients closed by PROXY KILL, BAN, CLIENT KILL */
    uint64_t pipeline_pauses;   /* reads stopped at max_pipeline pending replies */
    uint64_t master_switches;   /* a new master confirmed after another */
    uint64_t master_refusals;   /* READONLY, MASTERDOWN, LOADING from the master: held */
    uint64_t held;              /* requests that waited for a master */
    uint64_t held_failed;       /* ... and got none within failover_wait */
    uint64_t reloads;
    uint64_t requests_by[CLASS_N * DEST_N];        /* by TALLY(class, destination) */
    uint64_t replies_by[CLASS_N * DEST_N][2];      /* the same, [1]: error replies */
};

struct cluster;

struct sidecar {
    struct ev_loop       *loop;
    struct config        *cfg;       /* replaced whole by a reload */
    struct cluster       *cl;        /* [upstream] cluster: the slot map (NULL: none) */
    struct tls_ctx       *tls;       /* from cfg's TLS files (NULL: no TLS); a reload
                                      * replaces it, open links keep theirs */
    const char           *cfg_path;
    struct command_table  cmds;
    struct req_cache      cache;
    struct buf_cache      bufs;       /* drained client output buffers */
    struct node_list      nodes;     /* the master, replicas, a former master */
    struct node_list      retiring;  /* left by a reload: finishing what is in flight */
    ev_timer              retire_w;  /* frees retiring nodes once idle */
    int                   retiring_busy; /* their shared links hold requests: a
                                          * client's next ones may have to wait */
    int                   nnodes;
    int                   nreplicas; /* nodes that are not the master */
    /* Where writes go. Without sentinels, the configured master, always;
     * with them, the node they name once its ROLE confirmed it, and NULL
     * in between: then requests for the master are held. */
    struct node          *master;
    struct sentinels     *sentinels; /* NULL: a static topology */
    struct node          *candidate; /* named by the sentinels, ROLE not yet seen */
    ev_tstamp             candidate_since;
    int                   candidate_named; /* by the sentinels, not just configured */
    ev_tstamp             server_paused_until; /* CLIENT PAUSE or DEBUG SLEEP an app sent */
    ev_tstamp             clients_paused_until; /* CLIENT PAUSE: requests take leases */
    ev_timer              pause_over_w;
    ev_tstamp             master_confirmed_at; /* its last ROLE that said master went out */
    ev_tstamp             switched_at;
    int                   switched_once; /* a master was set before: the next is a switch */
    long long             view_epoch;    /* highest config epoch a sentinel reported */
    char                  no_master_why[400];
    int                   commands_loaded;
    int                   resp3_seen;  /* a client said HELLO 3: nodes have RESP3 links */
    TAILQ_HEAD(, held)    held;      /* requests waiting for a master, in order (hold.c) */
    unsigned              nheld;     /* their count (checked in make asan) */
    unsigned              hold_pass; /* a cluster's release passes (hold.c) */
    ev_tstamp             last_hold_at;
    ev_timer              held_w;    /* fails held requests past failover_wait */
    TAILQ_HEAD(, pool_waiter) master_waiters; /* clients waiting for a master, for a lease */
    TAILQ_HEAD(, pool_waiter) resume_waiters; /* clients held by PROXY PAUSE */
    struct topology       topo;      /* the master's offsets, for replica lag */
    struct user          *users[USERS_MAX]; /* app ACL users, by idx (users.c) */
    int                   users_hi;  /* one past the highest idx in use */
    int                   nusers;
    ev_timer              users_w;   /* closes the pools of users left unused */
    struct listener      *listeners;
    int                   nlisteners;
    /* Where an admitted connection goes (request_accept, set by main). */
    void                (*on_accept)(struct sidecar *sc, int fd,
                                     const struct sockaddr_storage *peer,
                                     const struct origin *o, int admin);
    TAILQ_HEAD(, client)  clients;   /* open */
    struct client_set     dirty;     /* output to write or input to resume */
    struct client_set     readable;  /* input arrived, in the order it did (request.c) */
    TAILQ_HEAD(, client)  closed;    /* freed after this loop iteration */
    unsigned              nclients;  /* open ones (checked in make asan) */
    struct iptable        ips;       /* per-IP accounting and bans */
    struct apps           apps;      /* per-app accounting, bans, slowlog (apps.c) */
    uint64_t              next_client_id;
    ev_prepare            flush_w;
    ev_check              now_w;     /* sets now after each poll */
    ev_tstamp             now;       /* ev_now() of this iteration */
    ev_signal             sig_int, sig_term, sig_hup;
    int                   draining;  /* a stop signal came: finishing, then exit */
    int                   replace_admin_socket; /* --replace-admin-socket: take over
                                                 * a live one (a restart) */
    int                   requests_paused; /* PROXY PAUSE: new requests wait */
    ev_timer              pause_w;   /* PROXY PAUSE with a timeout resumes by itself */
    ev_timer              quiet_w;   /* PROXY PAUSE answers once nothing is in flight */
    int                   http_fd;   /* metrics_listen, -1 when off */
    ev_io                 http_w;
    unsigned              http_conns;
    TAILQ_HEAD(, http_conn) http_open;
    struct req           *pause_reply;
    ev_tstamp             drain_deadline;
    ev_timer              drain_w;   /* closes clients as they go idle */
    ev_timer              idle_w;    /* the client sweep: idle past idle_timeout, hung up */
    ev_timer              trim_w;    /* gives the COMMAND reply's heap back, once */
    struct resp_limits    req_limits;
    char                 *rbuf;       /* every client read lands here first */
    struct resp_framer    rfr;        /* frames requests straight from rbuf */
    struct buf            inline_req; /* an inline request rewritten as RESP */
    struct buf            scratch;    /* replies built by the proxy */
    ev_tstamp             started;
    struct sidecar_stats  st;
};

#endif
