/* A health checker per Redis node: PING and ROLE every check_interval over
 * its own hiredis connection on the loop. After down_after failed checks
 * in a row the node is down; the first good check brings it back. Each
 * change is reported once through the callback, never per request. The
 * same connection reads the node's version (INFO server, once per
 * connection) and, when asked, its COMMAND table (once): control-plane
 * questions that the data links never carry. */
#ifndef SIDECAR_CHECKER_H
#define SIDECAR_CHECKER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct hconn;
struct tls_ctx;
struct tls_resume;
struct tls_stats;

#define CHECKER_SENT_MAX 16

struct checker_config {
    char        name[128];      /* "host:port", for logs */
    char        host[100];
    int         port;
    double      interval;       /* seconds; a check must answer within it */
    int         down_after;     /* failed checks in a row */
    const char *username;
    const char *password;
    int         fetch_commands; /* ask COMMAND once, for on_commands */
    struct tls_ctx    *tls;     /* NULL: plaintext; the owner keeps it alive */
    const char        *tls_name;  /* NULL: host */
    struct tls_resume *tls_resume;  /* the node's, shared with its links */
    struct tls_stats  *tls_stats;
};

/* One COMMAND entry: its name and what the proxy routes by. */
#define HEALTH_CMD_READONLY 0x1
#define HEALTH_CMD_WRITE    0x2
#define HEALTH_CMD_BLOCKING 0x4
struct health_command {
    const char *name;
    size_t      len;
    unsigned    flags;
    int         first_key;  /* COMMAND's first key position (0: none) */
};

/* What a checker reports, to its owner's arg. */
struct checker_hooks {
    void (*on_change)(void *arg, int up, const char *why);   /* down, or up again */
    void (*on_role)(void *arg);          /* optional: after each ROLE read */
    /* optional: the node's COMMAND table, once (n = -1: it did not parse) */
    void (*on_commands)(void *arg, const struct health_command *v, int n);
};

struct checker {
    struct ev_loop           *loop;
    struct checker_config     cfg;
    struct hconn             *conn;
    ev_timer                  tick;
    ev_timer                  soon;        /* an extra ROLE, asked for by health_sample_soon */
    int                       in_flight;   /* a check awaits its ROLE reply */
    int                       fails;       /* failed checks in a row */
    int                       down;
    int                       role_refused; /* ROLE not permitted: logged once */
    int                       auth_failed;  /* reconnect on the next tick */
    char                      role[16];    /* "master", "slave", ... */
    char                      link[16];    /* a replica's link to its master: "connected", ... */
    long long                 offset;      /* replication offset ROLE reports */
    ev_tstamp                 role_at;     /* when the ROLE that read them was sent */
    ev_tstamp                 sent_at[CHECKER_SENT_MAX];  /* ROLEs awaiting replies */
    int                       sent_head, nsent;
    char                      last_err[160];
    char                      version[32];  /* redis_version, "" until known */
    int                       commands_asked; /* COMMAND sent (given up after 2) */
    int                       commands_done;
    struct checker_hooks      hooks;
    void                     *arg;
    uint64_t                  checks, failures, downs, ups;
};

/* The same, into cfg. */
int health_config_addr(struct checker_config *cfg, const char *spec);
void health_start(struct checker *ch, struct ev_loop *loop,
                  const struct checker_config *cfg, const struct checker_hooks *hooks,
                  void *arg);
void health_stop(struct checker *ch);
/* New interval, down_after and credentials (a reload); the address stays. */
void health_configure(struct checker *ch, const struct checker_config *cfg);
/* A COMMAND reply (a hiredis redisReply), entry by entry into v (at most
 * max); returns the count, or -1 when it is not a COMMAND reply. */
int health_parse_commands(const void *reply, struct health_command *v, int max);
/* Read ROLE again within `delay` seconds (read-your-writes wants a fresh
 * offset); calls while one is pending cost nothing. */
void health_sample_soon(struct checker *ch, double delay);
/* The local port of its connection (how the node's CLIENT LIST and
 * MONITOR name it), or -1. */
int health_local_port(const struct checker *ch);

#endif
