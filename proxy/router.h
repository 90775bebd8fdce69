/* Where a framed request goes, decided and returned, never carried out
 * here: request.c acts on the route. The rules are a function of the
 * command, the topology (master, replicas, their state) and the client's
 * state, so tests/unit/test_router.c walks them without a socket. */
#ifndef SIDECAR_ROUTER_H
#define SIDECAR_ROUTER_H

#include <stdint.h>

#include "../lib/resp.h"
#include "command.h"

struct client;
struct link;
struct node;

enum route_kind {
    ROUTE_LOCAL,       /* answered by the proxy: session.c or admin.c (rt->cmd) */
    ROUTE_ERROR,       /* an error line (rt->err), counted in rt->count */
    ROUTE_SHARED,      /* on rt->link, the client's shared link of rt->node */
    ROUTE_HOLD,        /* held until a master is confirmed (with sentinels) */
    ROUTE_LEASE,       /* on the client's lease, one taken from the master first */
    ROUTE_STREAM,      /* on its lease in stream mode (pub/sub, tracking) */
    ROUTE_LATER,       /* not now: after its requests in flight are answered */
    ROUTE_WAIT_MASTER, /* not now: it needs a lease, and no master is confirmed */
    ROUTE_PAUSED,      /* not now: PROXY PAUSE holds it until PROXY RESUME */
    ROUTE_SPLIT,       /* a cluster's: carried out as several (rt->split, split.c) */
    ROUTE_MULTI_HERE,  /* a cluster's MULTI, or EXEC/DISCARD of an empty one: answered
                        * here (the MULTI goes out with the next command) */
};

struct route {
    enum route_kind kind;
    unsigned        flags;     /* REQ_* of its slot (SHARED, HOLD, LEASE) */
    float           block;     /* LEASE: seconds a blocking call may wait (req.h) */
    struct node    *node;      /* SHARED, and LEASE/STREAM: the node of the lease to take */
    struct link    *link;      /* SHARED */
    const struct command *cmd; /* NULL: unknown to the table */
    const char     *frame;     /* the request, as router_route was given it */
    const struct resp_frame *fr;
    uint64_t       *count;     /* a counter the decision adds one to, or NULL */
    int             fanout;    /* SHARED: SCRIPT LOAD, also to every replica */
    int             reuse;     /* SHARED: the same command right after, from the same
                                * read, goes the same way (router_reuse) */
    int             split;     /* SPLIT: enum split_kind */
    int             send_multi; /* LEASE: the client's deferred MULTI goes first */
    int             abort_multi; /* ERROR inside MULTI: the transaction fails at EXEC,
                                  * as redis fails one with a refused command */
    long long       db;        /* SELECT's database (LEASE: what it leaves held) */
    int             db_ok;     /* SELECT's argument parsed */
    char            err[300];  /* ERROR: the line, without '-' and CRLF */
};

/* Decide for the request in frame (fr framed it); c->last_cmd is set.
 * A plain command (no state, no key-dependent route) routed to a shared
 * link says so in rt->reuse: see router_reuse. */
void router_route(struct client *c, const char *frame, const struct resp_frame *fr,
                  struct route *rt);

/* Whether the client's next request in the same batch, with the same
 * command as one routed to link l with flags (rt->reuse), may go the same
 * way without asking: not when its way depends on what the requests
 * before it changed (a replica picked by load and read-your-writes, a
 * script on the link, a link retiring, a CLIENT PAUSE) or on its key (a
 * cluster). Asked only then: a batch of one pays nothing for it. */
struct sidecar;
struct link;
int router_reuse(const struct sidecar *sc, const struct link *l, unsigned flags);

#endif
