/* libFuzzer target: the command classifier (proxy/command.c) and the
 * router (proxy/router.c) on a synthetic topology: nodes, pools and links
 * are structs in the state the input sets, as in tests/unit/test_router.c;
 * nothing connects.
 *
 * Input: STATE_BYTES of state (sentinels, master, replicas and their
 * health, the routing keys, the client's state; see world_build()), then
 * what the client sends. Each request is framed, rewritten as multibulk
 * if it is inline (as request.c does), looked up, optionally learnt as a
 * server's command, and routed. Every route must keep the rules: a write
 * never goes to a replica, a client that has not authenticated reaches no
 * server, a client with a lease never uses a shared link, refused
 * commands are refused, a read on a replica only when reads may go there
 * and the replica is eligible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/buf.h"
#include "../../proxy/client.h"
#include "../../proxy/router.h"
#include "fuzz.h"

#include "../unit/router_stubs.h"

#define STATE_BYTES  8
#define MAX_REPLICAS 3
#define MAX_REQUESTS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One input's sidecar, client and nodes. */
struct world {
    struct config     cfg;
    struct sidecar    sc;
    struct node      *master;      /* configured or last confirmed; sc.master may be NULL */
    struct node      *replica[MAX_REPLICAS];
    int               nreplicas;
    struct node      *retired;     /* on sc.retiring, a request of the client on it */
    struct req        on_retired;
    struct client     c;
    struct client_ext x;
    struct link       lease;
    int               learn;       /* unknown commands are learnt, with learn_flags */
    unsigned          learn_flags; /* HEALTH_CMD_* */
};

/* Only its address matters to the router: sentinels or not. */
static struct sentinels some_sentinels;

static void no_op(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static struct link *links(struct pool *p, int n, int ready)
{
    struct link *l = calloc((size_t)n, sizeof *l);

    if (!l)
        abort();
    for (int i = 0; i < n; i++) {
        l[i].pool = p;
        l[i].state = ready ? LINK_READY : LINK_CONNECTING;
        TAILQ_INIT(&l[i].fifo);
    }
    return l;
}

/* A node with `conns` links per protocol (RESP3 ones if resp3), ready or
 * not; its checker says role and master link. */
static struct node *node(struct world *w, const char *name, int conns, int resp3, int ready,
                         const char *role, const char *link)
{
    struct node *n = calloc(1, sizeof *n);
    struct pool *p = calloc(1, sizeof *p);

    if (!n || !p)
        abort();
    snprintf(p->cfg.name, sizeof p->cfg.name, "%s", name);
    p->cfg.connections = conns;
    p->links[0] = links(p, conns, ready);
    if (resp3)
        p->links[1] = links(p, conns, ready);
    for (int s = 0; s < LEASE_NSTATES; s++)
        TAILQ_INIT(&p->lease_list[s]);
    n->pool = p;
    n->sc = &w->sc;
    n->health.loop = w->sc.loop;
    ev_init(&n->health.soon, no_op);
    snprintf(n->health.role, sizeof n->health.role, "%s", role);
    snprintf(n->health.link, sizeof n->health.link, "%s", link);
    return n;
}

static void node_free(struct world *w, struct node *n)
{
    ev_timer_stop(w->sc.loop, &n->health.soon);
    free(n->pool->links[0]);
    free(n->pool->links[1]);
    free(n->pool);
    free(n);
}

static void world_config(struct world *w, uint8_t b0)
{
    static const enum read_from rf[] = { READ_MASTER, READ_PREFER_REPLICA, READ_REPLICA,
                                         READ_PREFER_REPLICA };
    static const enum ryw ryw[] = { RYW_OFFSET, RYW_WINDOW, RYW_OFF, RYW_OFF };

    w->cfg.read_from = rf[(b0 >> 3) & 3];
    w->cfg.read_your_writes = ryw[(b0 >> 5) & 3];
    w->cfg.replica_max_lag = 5;
    w->cfg.ryw_window = 2;
    w->cfg.failover_wait = 5;
}

/* The nodes: a master, up to MAX_REPLICAS replicas, each with its own
 * state byte, and perhaps a retired node the client still has a request
 * on. */
static void world_nodes(struct world *w, const uint8_t *s)
{
    static const long long offsets[] = { 0, 499, 500, 1000000 };
    struct sidecar *sc = &w->sc;
    int conns = 1 + ((s[7] >> 3) & 3), resp3 = (s[1] >> 4) & 1;
    char name[32];

    w->master = node(w, "10.0.0.1:6379", conns, resp3, 1, "master", "");
    w->master->pool->down = (s[0] >> 2) & 1;
    TAILQ_INSERT_TAIL(&sc->nodes, w->master, tqe);
    /* Without sentinels there is always a master; with them, none while
     * one is being confirmed. */
    sc->master = (s[0] & 1) && (s[0] & 2) ? NULL : w->master;
    w->nreplicas = s[1] & 3;
    for (int i = 0; i < w->nreplicas && i < MAX_REPLICAS; i++) {
        uint8_t r = s[3 + i];
        snprintf(name, sizeof name, "10.0.0.%d:6379", i + 2);
        struct node *n = node(w, name, conns, resp3, !((r >> 4) & 1),
                              (r >> 2) & 1 ? "master" : "slave",
                              (r >> 3) & 1 ? "connecting" : "connected");
        n->pool->down = r & 1;
        n->health.down = (r >> 1) & 1;
        n->health.offset = offsets[(r >> 5) & 3];
        n->pool->st.requests_sent = r >> 7;
        TAILQ_INSERT_TAIL(&sc->nodes, n, tqe);
        w->replica[i] = n;
    }
    sc->nnodes = 1 + w->nreplicas;
    sc->nreplicas = sc->nnodes - (sc->master ? 1 : 0);
    if ((s[1] >> 3) & 1) {
        w->retired = node(w, "10.0.0.9:6379", conns, 0, 1, "master", "");
        w->retired->pool->retiring = 1;
        TAILQ_INSERT_TAIL(&sc->retiring, w->retired, tqe);
        w->on_retired.link = &w->retired->pool->links[0][0];
        TAILQ_INSERT_TAIL(&w->c.pending, &w->on_retired, owner_tqe);
        sc->retiring_busy = 1;
    }
}

/* The client: authenticated or not, RESP3 or not, with a lease (and
 * then perhaps streaming, in a transaction...), requests in flight,
 * read-your-writes history. A lease needs authentication, a stream a
 * lease, as in the proxy. */
static void world_client(struct world *w, const uint8_t *s)
{
    struct client *c = &w->c;
    ev_tstamp now = ev_now(w->sc.loop);

    c->io.data = &w->sc;
    c->id = s[6] & 7;
    c->resp3 = (s[1] >> 5) & 1;
    c->authed = (s[1] >> 6) & 1;
    if (c->authed && (s[2] & 1)) {
        w->lease.state = LINK_READY;
        w->lease.lease = LEASE_HELD;
        w->lease.pool = w->master->pool;
        TAILQ_INIT(&w->lease.fifo);
        c->lease = &w->lease;
        c->stream = (s[2] >> 1) & 1;
        c->in_multi = (s[2] >> 2) & 1;
        c->watching = (s[2] >> 3) & 1;
        c->other_db = (s[2] >> 4) & 1;
    }
    c->inflight = (s[2] >> 5) & 1 ? 10 : 0;
    if ((s[1] >> 7) & 1) {
        struct client_ext *x = &w->x;
        x->c = c;
        x->writes_pending = (s[2] >> 6) & 1;
        x->replica_reads = (s[2] >> 7) & 1;
        x->wrote_at = (s[6] >> 4) & 1 ? 0 : (s[6] >> 3) & 1 ? now - 0.001 : now - 10;
        x->wrote_offset = (s[7] >> 7) & 1 ? 500 : -1;
        x->nheld = (s[6] >> 5) & 1;
        x->wait_deadline = (s[6] >> 6) & 1 ? now - 1 : 0;
        c->x = x;
    }
}

static void world_build(struct world *w, const uint8_t *s, struct ev_loop *loop)
{
    struct sidecar *sc = &w->sc;
    ev_tstamp now = ev_now(loop);

    memset(w, 0, sizeof *w);
    sc->loop = loop;
    sc->cfg = &w->cfg;
    TAILQ_INIT(&sc->nodes);
    TAILQ_INIT(&sc->retiring);
    TAILQ_INIT(&sc->clients);
    TAILQ_INIT(&w->c.pending);
    command_table_init(&sc->cmds);
    world_config(w, s[0]);
    sc->sentinels = s[0] & 1 ? &some_sentinels : NULL;
    sc->draining = (s[0] >> 7) & 1;
    sc->requests_paused = (s[1] >> 2) & 1;
    snprintf(sc->no_master_why, sizeof sc->no_master_why, "failing over");
    if ((s[7] >> 5) & 1) {
        health_record_master(&sc->topo, now - 3, 100);
        health_record_master(&sc->topo, now - 1, 500);
        health_record_master(&sc->topo, now, 700);
    }
    sc->switched_at = (s[7] >> 6) & 1 ? now - 0.5 : 0;
    world_nodes(w, s);
    world_client(w, s);
    w->learn = (s[6] >> 7) & 1;
    w->learn_flags = s[7] & 7;
}

static void world_free(struct world *w)
{
    struct node *n;

    while ((n = TAILQ_FIRST(&w->sc.nodes))) {
        TAILQ_REMOVE(&w->sc.nodes, n, tqe);
        node_free(w, n);
    }
    if (w->retired)
        node_free(w, w->retired);
    command_table_free(&w->sc.cmds);
}

/* The table's answer for a name does not depend on its case, and is a
 * command of that name; an unknown one, learnt, is found with the flags
 * the server gave. */
static const struct command *classify(struct world *w, const char *name, size_t len)
{
    struct command_table *t = &w->sc.cmds;
    const struct command *cmd = command_lookup(t, name, len);
    char *up = malloc(len + 1), *low = malloc(len + 1);

    if (!up || !low)
        abort();
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        up[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
        low[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    FUZZ_REQUIRE(command_lookup(t, up, len) == cmd && command_lookup(t, low, len) == cmd,
                 "\"%.*s\": another command in another case", (int)len, name);
    if (cmd)
        FUZZ_REQUIRE(strlen(cmd->name) <= len && memcmp(cmd->name, low, len) == 0,
                     "\"%.*s\" found as \"%s\"", (int)len, name, cmd->name);
    if (!cmd && w->learn && command_table_learn(t, name, len, w->learn_flags, 1)) {
        cmd = command_lookup(t, name, len);
        unsigned want = w->learn_flags & HEALTH_CMD_BLOCKING ? CMD_BLOCKING | CMD_LEASE
                      : (w->learn_flags & HEALTH_CMD_READONLY) &&
                        !(w->learn_flags & HEALTH_CMD_WRITE) ? CMD_READONLY : 0;
        FUZZ_REQUIRE(cmd && cmd->flags == (want | CMD_FROM_SERVER) &&
                     command_lookup(t, up, len) == cmd, "\"%.*s\" learnt, flags 0x%x",
                     (int)len, name, cmd ? cmd->flags : 0);
    }
    free(up);
    free(low);
    return cmd;
}

static int is_node(const struct sidecar *sc, const struct node *n)
{
    const struct node *m;

    TAILQ_FOREACH(m, &sc->nodes, tqe)
        if (m == n)
            return 1;
    return 0;
}

/* A read on a replica: only where reads may go, on an eligible replica,
 * never for a client whose write is still in flight. */
static void check_replica_read(const struct world *w, unsigned fl, const struct route *rt)
{
    const struct node *n = rt->node;
    const struct client *c = &w->c;

    FUZZ_REQUIRE(fl & CMD_READONLY, "a write (flags 0x%x) on replica %s", fl,
                 n->pool->cfg.name);
    FUZZ_REQUIRE(w->cfg.read_from != READ_MASTER, "read_from = master, read on a replica");
    FUZZ_REQUIRE(rt->flags & REQ_REROUTE, "a read on a replica that cannot go back");
    FUZZ_REQUIRE(!n->pool->down && !n->health.down && strcmp(n->health.role, "slave") == 0 &&
                 strcmp(n->health.link, "connected") == 0 && link_is_ready(rt->link),
                 "replica %s not eligible", n->pool->cfg.name);
    FUZZ_REQUIRE(w->cfg.read_your_writes == RYW_OFF || !c->x || !c->x->writes_pending,
                 "a read on a replica behind the client's own write");
}

static void check_shared(const struct world *w, unsigned fl, const struct route *rt)
{
    const struct sidecar *sc = &w->sc;
    const struct client *c = &w->c;

    FUZZ_REQUIRE(!c->lease && !c->stream, "a client with a lease on a shared link");
    FUZZ_REQUIRE(!(fl & (CMD_LOCAL | CMD_REFUSED | CMD_NOT_YET | CMD_STREAM | CMD_LEASE)),
                 "flags 0x%x on a shared link", fl);
    FUZZ_REQUIRE(!sc->draining && !sc->requests_paused, "forwarded while draining or paused");
    FUZZ_REQUIRE(rt->node && is_node(sc, rt->node), "not a node of the topology");
    FUZZ_REQUIRE(rt->link == pool_link_peek(rt->node->pool, c->id, c->resp3),
                 "not the client's link of its protocol");
    FUZZ_REQUIRE(!!(rt->flags & REQ_READONLY) == !!(fl & CMD_READONLY), "route flags 0x%x, "
                 "command flags 0x%x", rt->flags, fl);
    FUZZ_REQUIRE((fl & CMD_READONLY) || !c->x || !c->x->replica_reads,
                 "a write ahead of the client's reads on replicas");
    if (rt->node != sc->master) {
        check_replica_read(w, fl, rt);
    } else {
        FUZZ_REQUIRE(!(rt->flags & REQ_REROUTE), "rerouted to the master");
        FUZZ_REQUIRE(sc->sentinels || !rt->node->pool->down, "to a master that is down");
    }
}

static void check_route(const struct world *w, const struct command *cmd, const struct route *rt)
{
    const struct sidecar *sc = &w->sc;
    const struct client *c = &w->c;
    unsigned fl = cmd ? cmd->flags : 0;
    enum route_kind k = rt->kind;
    int upstream = k == ROUTE_SHARED || k == ROUTE_HOLD || k == ROUTE_LEASE ||
                   k == ROUTE_STREAM || k == ROUTE_WAIT_MASTER;

    FUZZ_REQUIRE(k <= ROUTE_PAUSED, "kind %d", (int)k);
    FUZZ_REQUIRE(rt->cmd == cmd, "another command in the route");
    FUZZ_REQUIRE(!rt->count || ((const char *)rt->count >= (const char *)&sc->st &&
                                (const char *)(rt->count + 1) <= (const char *)(&sc->st + 1)),
                 "a counter outside the sidecar's");
    FUZZ_REQUIRE(c->authed || !upstream, "unauthenticated, kind %d", (int)k);
    /* inside MULTI, redis refuses SHUTDOWN and SYNC itself (and aborts it) */
    FUZZ_REQUIRE(!(fl & CMD_REFUSED) || k == ROUTE_ERROR || k == ROUTE_PAUSED ||
                 ((fl & CMD_NO_MULTI) && c->in_multi && k != ROUTE_SHARED && k != ROUTE_HOLD),
                 "a refused command, kind %d", (int)k);
    FUZZ_REQUIRE(!rt->abort_multi || (k == ROUTE_ERROR && c->in_multi),
                 "a transaction aborted outside MULTI, kind %d", (int)k);
    FUZZ_REQUIRE(!(fl & CMD_NOT_YET) || (k != ROUTE_SHARED && k != ROUTE_LEASE &&
                                         k != ROUTE_HOLD), "not yet supported, kind %d", (int)k);
    FUZZ_REQUIRE(!sc->draining || client_holds_state(c) || (cmd && cmd->local == LOCAL_QUIT) ||
                 k == ROUTE_ERROR, "draining, kind %d", (int)k);
    switch (k) {
    case ROUTE_SHARED:
        check_shared(w, fl, rt);
        break;
    case ROUTE_HOLD:
    case ROUTE_WAIT_MASTER:
        FUZZ_REQUIRE(sc->sentinels, "waiting for a master without sentinels");
        break;
    case ROUTE_LOCAL:
        FUZZ_REQUIRE(fl & CMD_LOCAL, "answered locally, flags 0x%x", fl);
        break;
    case ROUTE_LEASE:
        /* A blocking call may wait past reply_timeout, for its own
         * timeout read from its arguments; nothing else may. */
        FUZZ_REQUIRE(!isnan(rt->block) && rt->block >= 0 &&
                     !!(rt->flags & REQ_NOTIMEOUT) == (rt->block > 0) &&
                     (rt->block == 0 || (fl & (CMD_BLOCKING | CMD_MAYBLOCK))),
                     "block %g, route flags 0x%x, command flags 0x%x", rt->block,
                     rt->flags, fl);
        /* fall through */
    case ROUTE_STREAM:
        FUZZ_REQUIRE(c->lease || (sc->master && !sc->master->pool->down),
                     "a new lease without a master that is up");
        break;
    case ROUTE_ERROR:
        FUZZ_REQUIRE(rt->err[0] && memchr(rt->err, '\0', sizeof rt->err), "error line");
        break;
    case ROUTE_SPLIT:
    case ROUTE_MULTI_HERE:
        FUZZ_REQUIRE(sc->cl, "a cluster's route without a cluster, kind %d", (int)k);
        break;
    case ROUTE_PAUSED:
        FUZZ_REQUIRE(sc->requests_paused, "paused without PROXY PAUSE");
        break;
    case ROUTE_LATER:
        break;
    }
}

/* One framed request: classified and routed. An inline one is rewritten
 * first and framed again, as request.c's dispatch_inline() does. */
static void route_one(struct world *w, const char *p, const struct resp_frame *fr)
{
    static const struct resp_limits any = { .max_bulk = RESP_MAX_BULK, .max_line = 0 };
    struct buf rewritten = {0};
    struct resp_framer f;
    struct route rt;
    const char *err = NULL;

    if (fr->is_inline) {
        size_t len = fr->len;
        while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
            len--;
        if (resp_inline_to_multibulk(p, len, &rewritten, &err) <= 0)
            goto out;
        resp_framer_reset(&f);
        if (resp_frame_request(&f, buf_start(&rewritten), buf_used(&rewritten), &any) != RESP_DONE)
            goto out;
        p = buf_start(&rewritten);
        fr = &f.fr;
    } else if (fr->argc == 0) {
        return;
    }
    w->c.last_cmd = classify(w, p + fr->name_off, fr->name_len);
    memset(&rt, 0xa5, sizeof rt);
    router_route(&w->c, p, fr, &rt);
    check_route(w, w->c.last_cmd, &rt);
out:
    buf_free(&rewritten);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct resp_limits lim = { .max_bulk = RESP_MAX_BULK, .max_line = 0 };
    static struct ev_loop *loop;
    static struct world world;     /* built afresh for each input */
    struct world *w = &world;
    struct resp_framer f;

    if (size < STATE_BYTES)
        return 0;
    if (!loop && !(loop = ev_default_loop(0)))
        abort();
    world_build(w, data, loop);
    const char *p = (const char *)data + STATE_BYTES;
    size_t n = size - STATE_BYTES, used = 0;
    resp_framer_reset(&f);
    for (int i = 0; i < MAX_REQUESTS && used < n; i++) {
        if (resp_frame_request(&f, p + used, n - used, &lim) != RESP_DONE)
            break;
        route_one(w, p + used, &f.fr);
        used += f.fr.len;
    }
    world_free(w);
    return 0;
}
