/* What the Sentinels say about one monitored master: its address, its
 * replicas, and the other sentinels. Every sentinel is polled (the
 * backstop) and subscribed to (+switch-master and friends: an event polls
 * at once); the view of the sentinel with the highest config epoch wins,
 * so a sentinel cut off from the others cannot bring back an old master.
 * Confirming the master (ROLE) and acting on the view is the owner's job. */
#ifndef SIDECAR_SENTINEL_H
#define SIDECAR_SENTINEL_H

#include <ev.h>
#include <stdint.h>

#include "../lib/tls.h"

struct hconn;
struct tls_ctx;

#define SENTINEL_MAX          16   /* configured and discovered */
#define SENTINEL_MAX_REPLICAS 16
#define SENTINEL_ADDR         128  /* "host:port" */

struct sentinel_config {
    const char *const *addrs;      /* host:port, from proxy.ini */
    int         naddrs;
    const char *master_name;
    const char *password;          /* NULL: no AUTH */
    double      interval;          /* poll every this many seconds; an answer
                                    * must come within it */
    struct tls_ctx *tls;           /* NULL: plaintext (sentinel_tls) */
    const char *tls_name;          /* NULL: each sentinel's host */
};

/* The view one sentinel gave in its last answer. */
struct sentinel_report {
    char      master[SENTINEL_ADDR];   /* "" when it does not know the name */
    long long epoch;                   /* the master's config-epoch */
    int       master_down;             /* it flags the master o_down/s_down */
    char      replicas[SENTINEL_MAX_REPLICAS][SENTINEL_ADDR];
    int       nreplicas;
    char      peers[SENTINEL_MAX][SENTINEL_ADDR];   /* other sentinels it knows */
    int       npeers;
};

struct sentinel {
    struct sentinels         *set;
    char                      addr[SENTINEL_ADDR];
    char                      host[100];
    int                       port;
    int                       configured;   /* from proxy.ini: never dropped */
    int                       active;       /* polled; a discovered one that
                                             * nobody lists any more is not */
    struct hconn             *cmd;          /* polls */
    struct hconn             *sub;          /* events */
    int                       subscribed;
    int                       sub_waited;   /* ticks without the SUBSCRIBE answer */
    int                       polling;      /* replies still owed by its polls */
    ev_tstamp                 owed_since;   /* when the oldest of them went out */
    int                       up;           /* its last poll was answered */
    int                       unknown_logged;  /* "no such master" said once */
    struct sentinel_report    rep, next;    /* last complete answer; one being read */
    ev_tstamp                 answered_at;
    char                      last_err[160];
    uint64_t                  events;
    struct tls_resume         resume;       /* its TLS sessions */
    struct tls_stats          tls_stats;
};

struct sentinels {
    struct ev_loop        *loop;
    char                   master_name[128];
    char                   password[128];
    int                    has_password;
    double                 interval;
    struct tls_ctx        *tls;            /* a reference */
    char                   tls_name[256];
    struct sentinel        s[SENTINEL_MAX];
    int                    n;
    ev_timer               tick;
    ev_timer               soon;          /* a poll asked for by an event */
    int                    nup;           /* sentinels answering */
    int                    all_down_logged; /* every sentinel tried, none answers */
    char                   last_event[200];
    uint64_t               switches_seen; /* +switch-master messages */
    /* The winning view, after every complete answer: its master ("" if no
     * sentinel knows one) and replicas; the owner compares. */
    void                 (*on_view)(void *arg, const struct sentinel_report *view,
                                    const char *from);
    void                  *arg;
};

int health_sentinels_start(struct sentinels *ss, struct ev_loop *loop,
                           const struct sentinel_config *cfg,
                           void (*on_view)(void *arg, const struct sentinel_report *view,
                                           const char *from),
                           void *arg, char *err, size_t errlen);
void health_sentinels_stop(struct sentinels *ss);
/* TLS files reloaded: connections opened from now on use ctx (NULL:
 * plaintext) and name (NULL: each sentinel's host); open ones keep theirs. */
void health_sentinels_set_tls(struct sentinels *ss, struct tls_ctx *ctx, const char *name);
/* Every sentinel was tried and none answers. */
int health_sentinels_none_answer(const struct sentinels *ss);
/* Ask every sentinel again now (the node set looks wrong: a master that
 * says it is a replica, a write refused with READONLY). */
void health_sentinels_poll_soon(struct sentinels *ss);

#endif
