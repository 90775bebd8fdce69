/* The routing rules, walked without a socket: a command, a topology (a
 * master, a replica, sentinels or not, nodes up or down) and a client's
 * state go in; the route comes out. Links are structs in the state a test
 * sets; nothing connects. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proxy/client.h"
#include "../../proxy/router.h"
#include "check.h"

static struct config cfg;

#include "router_stubs.h"
static struct sidecar sc;
static struct sentinels some_sentinels;

static void no_op(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static struct node *node(const char *name, const char *role)
{
    struct node *n = calloc(1, sizeof *n);
    struct pool *p = calloc(1, sizeof *p);

    snprintf(p->cfg.name, sizeof p->cfg.name, "%s", name);
    p->cfg.connections = 2;
    p->links[0] = calloc(2, sizeof *p->links[0]);
    for (int i = 0; i < 2; i++) {
        p->links[0][i].pool = p;
        p->links[0][i].state = LINK_READY;
        TAILQ_INIT(&p->links[0][i].fifo);
    }
    for (int s = 0; s < LEASE_NSTATES; s++)
        TAILQ_INIT(&p->lease_list[s]);
    n->pool = p;
    n->sc = &sc;
    n->health.loop = sc.loop;
    ev_init(&n->health.soon, no_op);
    snprintf(n->health.role, sizeof n->health.role, "%s", role);
    snprintf(n->health.link, sizeof n->health.link, "connected");
    TAILQ_INSERT_TAIL(&sc.nodes, n, tqe);
    sc.nnodes++;
    return n;
}

/* The route for a command given as words. */
static struct route route(struct client *c, ...)
{
    char frame[512];
    struct buf b = {0};
    const char *w[8];
    int argc = 0;
    va_list ap;
    struct resp_framer f;
    struct route rt;

    va_start(ap, c);
    while (argc < 8 && (w[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    buf_appendf(&b, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        buf_appendf(&b, "$%zu\r\n%s\r\n", strlen(w[i]), w[i]);
    memcpy(frame, buf_start(&b), buf_used(&b));
    resp_framer_reset(&f);
    resp_frame_request(&f, frame, buf_used(&b), &sc.req_limits);
    c->last_cmd = command_lookup(&sc.cmds, frame + f.fr.name_off, f.fr.name_len);
    memset(&rt, 0xa5, sizeof rt);
    router_route(c, frame, &f.fr, &rt);
    buf_free(&b);
    return rt;
}

#define KIND(c, k, ...) (route(c, __VA_ARGS__, (const char *)NULL).kind == (k))

static struct client *client(void)
{
    struct client *c = calloc(1, sizeof *c);

    c->io.data = &sc;
    c->id = 7;
    c->authed = 1;
    TAILQ_INIT(&c->pending);
    return c;
}

int main(void)
{
    sc.loop = ev_default_loop(0);
    sc.cfg = &cfg;
    cfg.read_from = READ_MASTER;
    cfg.read_your_writes = RYW_OFF;
    cfg.replica_max_lag = 5;
    cfg.failover_wait = 5;
    sc.req_limits.max_bulk = RESP_MAX_BULK;
    command_table_init(&sc.cmds);
    TAILQ_INIT(&sc.nodes);
    TAILQ_INIT(&sc.retiring);
    TAILQ_INIT(&sc.clients);
    struct node *m = node("10.0.0.1:6379", "master");
    sc.master = m;
    struct client *c = client();
    struct route rt;

    /* One master: reads and writes to it, on the client's shared link. */
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.node == m && rt.link == &m->pool->links[0][7 % 2]);
    CHECK(rt.flags == REQ_READONLY);
    rt = route(c, "SET", "k", "v", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.node == m && rt.flags == 0);
    CHECK(KIND(c, ROUTE_SHARED, "UNKNOWN.CMD", "x"));        /* unknown: a write, to the master */
    CHECK(KIND(c, ROUTE_SHARED, "get", "k"));                /* any case */
    rt = route(c, "SCRIPT", "LOAD", "return 1", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.fanout);
    rt = route(c, "SCRIPT", "FLUSH", NULL);
    CHECK(rt.kind == ROUTE_SHARED && !rt.fanout);

    /* A RESP3 client on its node's RESP3 links, opened when it said HELLO 3:
     * the router never opens them. */
    c->resp3 = 1;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_ERROR && m->pool->links[1] == NULL);
    m->pool->links[1] = calloc(2, sizeof *m->pool->links[1]);
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.link == &m->pool->links[1][1]);
    c->resp3 = 0;

    /* The proxy's own, refused and not yet supported. */
    CHECK(KIND(c, ROUTE_LOCAL, "PING", "x") == 0);           /* PING goes upstream */
    CHECK(KIND(c, ROUTE_LOCAL, "AUTH", "pw"));
    CHECK(KIND(c, ROUTE_LOCAL, "HELLO", "3"));
    CHECK(KIND(c, ROUTE_LOCAL, "QUIT"));
    CHECK(KIND(c, ROUTE_LOCAL, "CLIENT", "SETNAME", "x"));
    CHECK(KIND(c, ROUTE_LOCAL, "PROXY", "INFO"));
    CHECK(KIND(c, ROUTE_LOCAL, "SELECT", "0"));              /* the configured database */
    rt = route(c, "SYNC", NULL);
    CHECK(rt.kind == ROUTE_ERROR && rt.count == &sc.st.err_refused);
    CHECK(strstr(rt.err, "'SYNC' is not allowed through redis-sidecar") != NULL);
    CHECK(KIND(c, ROUTE_LOCAL, "RESET"));

    /* State on the server: a lease, or a stream. */
    rt = route(c, "MULTI", NULL);
    CHECK(rt.kind == ROUTE_LEASE && (rt.flags & REQ_LEASED) && !(rt.flags & REQ_NOTIMEOUT));
    rt = route(c, "BLPOP", "q", "0", NULL);
    CHECK(rt.kind == ROUTE_LEASE && (rt.flags & REQ_NOTIMEOUT));
    CHECK(KIND(c, ROUTE_LEASE, "WATCH", "k"));
    rt = route(c, "SELECT", "3", NULL);
    CHECK(rt.kind == ROUTE_LEASE && rt.db == 3 && rt.db_ok);
    CHECK(KIND(c, ROUTE_SHARED, "XREAD", "STREAMS", "block", "0"));  /* a key named block */
    CHECK(KIND(c, ROUTE_LEASE, "XREAD", "BLOCK", "10", "STREAMS", "s", "0"));
    CHECK(KIND(c, ROUTE_STREAM, "SUBSCRIBE", "ch"));
    CHECK(KIND(c, ROUTE_STREAM, "CLIENT", "TRACKING", "on"));
    CHECK(KIND(c, ROUTE_LOCAL, "CLIENT", "ID"));
    /* ... after the client's requests in flight. */
    c->inflight = 10;
    CHECK(KIND(c, ROUTE_LATER, "MULTI"));
    CHECK(KIND(c, ROUTE_LATER, "SUBSCRIBE", "ch"));
    CHECK(KIND(c, ROUTE_LATER, "HELLO", "3"));
    CHECK(KIND(c, ROUTE_SHARED, "GET", "k"));
    c->inflight = 0;
    /* Holding a lease, everything goes on it, GET too. */
    struct link lease = {.state = LINK_READY, .lease = LEASE_HELD};
    c->lease = &lease;
    CHECK(KIND(c, ROUTE_LEASE, "GET", "k"));
    CHECK(KIND(c, ROUTE_LEASE, "SELECT", "0"));              /* its database must be known */
    CHECK(KIND(c, ROUTE_LOCAL, "PROXY", "INFO"));
    /* ... and a subscriber's lease is its stream, but for QUIT, PROXY, HELLO. */
    c->stream = 1;
    CHECK(KIND(c, ROUTE_STREAM, "GET", "k"));
    CHECK(KIND(c, ROUTE_STREAM, "PING"));
    CHECK(KIND(c, ROUTE_LOCAL, "QUIT"));
    CHECK(KIND(c, ROUTE_STREAM, "HELLO", "2"));      /* its lease switches with redis */
    CHECK(KIND(c, ROUTE_LOCAL, "HELLO", "2", "AUTH", "u", "p"));
    CHECK(KIND(c, ROUTE_ERROR, "SYNC"));
    CHECK(KIND(c, ROUTE_LOCAL, "RESET"));
    c->stream = 0;
    /* Inside MULTI, what redis itself refuses there goes to it (its error,
     * and EXECABORT); what the proxy refuses fails the transaction too. */
    c->in_multi = 1;
    rt = route(c, "SHUTDOWN", NULL);
    CHECK(rt.kind == ROUTE_LEASE && !rt.abort_multi);
    CHECK(KIND(c, ROUTE_LEASE, "SYNC"));
    rt = route(c, "REPLICAOF", "NO", "ONE", NULL);
    CHECK(rt.kind == ROUTE_ERROR && rt.abort_multi && rt.count == &sc.st.err_refused);
    c->in_multi = 0;
    rt = route(c, "REPLICAOF", "NO", "ONE", NULL);
    CHECK(rt.kind == ROUTE_ERROR && !rt.abort_multi);
    CHECK(KIND(c, ROUTE_ERROR, "SHUTDOWN"));
    c->lease = NULL;

    /* Authentication first: only AUTH, HELLO and QUIT before it. */
    c->authed = 0;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_ERROR && rt.count == &sc.st.err_auth &&
          strncmp(rt.err, "NOAUTH", 6) == 0);
    CHECK(KIND(c, ROUTE_ERROR, "PROXY", "INFO"));
    CHECK(KIND(c, ROUTE_LOCAL, "AUTH", "pw"));
    CHECK(KIND(c, ROUTE_LOCAL, "HELLO", "3", "AUTH", "u", "p"));
    CHECK(KIND(c, ROUTE_LOCAL, "QUIT"));
    c->authed = 1;

    /* PROXY PAUSE: everything waits but PROXY and QUIT. */
    sc.requests_paused = 1;
    CHECK(KIND(c, ROUTE_PAUSED, "GET", "k"));
    CHECK(KIND(c, ROUTE_PAUSED, "MULTI"));
    CHECK(KIND(c, ROUTE_LOCAL, "PROXY", "RESUME"));
    CHECK(KIND(c, ROUTE_LOCAL, "QUIT"));
    sc.requests_paused = 0;

    /* Draining: nothing new starts, a transaction under way finishes. */
    sc.draining = 1;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_ERROR && strcmp(rt.err, "ERR proxy is shutting down") == 0);
    CHECK(KIND(c, ROUTE_LOCAL, "QUIT"));
    c->lease = &lease;
    c->in_multi = 1;
    CHECK(KIND(c, ROUTE_LEASE, "SET", "k", "v"));
    CHECK(KIND(c, ROUTE_LEASE, "EXEC"));
    c->in_multi = 0;
    c->lease = NULL;
    sc.draining = 0;

    /* The master down, no sentinels: at once, a clear error. */
    m->pool->down = 1;
    snprintf(m->pool->down_reason, sizeof m->pool->down_reason, "3 checks failed");
    rt = route(c, "SET", "k", "v", NULL);
    CHECK(rt.kind == ROUTE_ERROR && rt.count == &sc.st.err_node_down &&
          strcmp(rt.err, "ERR upstream 10.0.0.1:6379 is down (3 checks failed)") == 0);
    CHECK(KIND(c, ROUTE_ERROR, "MULTI"));
    m->pool->down = 0;

    /* A replica, eligible: reads go to it with prefer-replica, writes not. */
    struct node *r = node("10.0.0.2:6379", "slave");
    sc.nreplicas = 1;
    CHECK(KIND(c, ROUTE_SHARED, "GET", "k") && route(c, "GET", "k", NULL).node == m);
    cfg.read_from = READ_PREFER_REPLICA;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.node == r && (rt.flags & REQ_REROUTE) &&
          rt.count == &sc.st.reads_to_replicas);
    rt = route(c, "SET", "k", "v", NULL);
    CHECK(rt.kind == ROUTE_SHARED && rt.node == m && !(rt.flags & REQ_REROUTE));
    CHECK(route(c, "INFO", NULL).node == m);                 /* the master's answer */
    /* Not eligible: its link to its master is down, or it is down itself. */
    snprintf(r->health.link, sizeof r->health.link, "connecting");
    CHECK(route(c, "GET", "k", NULL).node == m);
    snprintf(r->health.link, sizeof r->health.link, "connected");
    r->pool->down = 1;
    CHECK(route(c, "GET", "k", NULL).node == m);
    cfg.read_from = READ_REPLICA;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.kind == ROUTE_ERROR && rt.count == &sc.st.err_no_replica);
    r->pool->down = 0;
    CHECK(route(c, "GET", "k", NULL).node == r);
    /* Its link not ready: the master. */
    r->pool->links[0][1].state = LINK_CONNECTING;
    cfg.read_from = READ_PREFER_REPLICA;
    CHECK(route(c, "GET", "k", NULL).node == m);
    r->pool->links[0][1].state = LINK_READY;

    /* Read-your-writes: after a write, its reads stay on the master until
     * the replica has the offset that covers it (or for ryw_window). */
    struct client_ext x = {.c = c, .wrote_offset = -1};
    c->x = &x;
    cfg.read_your_writes = RYW_OFFSET;
    rt = route(c, "SET", "k", "v", NULL);
    CHECK(rt.flags & REQ_WRITE);
    x.writes_pending = 1;
    rt = route(c, "GET", "k", NULL);
    CHECK(rt.node == m && rt.count == &sc.st.reads_ryw_master);
    x.writes_pending = 0;
    x.wrote_at = ev_now(sc.loop) - 0.001;
    CHECK(route(c, "GET", "k", NULL).node == m);              /* offset not sampled yet */
    health_record_master(&sc.topo, ev_now(sc.loop), 500);
    r->health.offset = 499;
    CHECK(route(c, "GET", "k", NULL).node == m && x.wrote_offset == 500);
    r->health.offset = 500;
    CHECK(route(c, "GET", "k", NULL).node == r);
    cfg.read_your_writes = RYW_WINDOW;
    cfg.ryw_window = 2;
    CHECK(route(c, "GET", "k", NULL).node == m);
    x.wrote_at = ev_now(sc.loop) - 3;
    CHECK(route(c, "GET", "k", NULL).node == r);
    /* A write waits for the client's reads on replicas (one may have to be
     * re-sent to the master, before it). */
    x.replica_reads = 1;
    CHECK(KIND(c, ROUTE_LATER, "SET", "k", "v"));
    CHECK(KIND(c, ROUTE_LATER, "SCRIPT", "LOAD", "return 1"));
    CHECK(KIND(c, ROUTE_SHARED, "GET", "k"));
    x.replica_reads = 0;
    cfg.read_your_writes = RYW_OFF;

    /* Sentinels, no master confirmed: writes are held, reads may still go
     * to a replica, a lease waits for the master until failover_wait. */
    sc.sentinels = &some_sentinels;
    sc.master = NULL;
    snprintf(sc.no_master_why, sizeof sc.no_master_why, "failing over");
    CHECK(KIND(c, ROUTE_HOLD, "SET", "k", "v"));
    CHECK(route(c, "GET", "k", NULL).node == r);
    cfg.read_from = READ_MASTER;
    CHECK(KIND(c, ROUTE_HOLD, "GET", "k"));
    CHECK(KIND(c, ROUTE_WAIT_MASTER, "MULTI"));
    CHECK(KIND(c, ROUTE_WAIT_MASTER, "SUBSCRIBE", "ch"));
    x.wait_deadline = ev_now(sc.loop) - 1;                    /* it waited its time */
    rt = route(c, "MULTI", NULL);
    CHECK(rt.kind == ROUTE_ERROR &&
          strcmp(rt.err, "ERR no master confirmed within failover_wait (5s): failing over") == 0);
    x.wait_deadline = 0;
    /* With a master again, but the client's earlier requests still held:
     * its next ones are held behind them, in order. */
    sc.master = m;
    x.nheld = 1;
    CHECK(KIND(c, ROUTE_HOLD, "SET", "k", "v"));
    x.nheld = 0;
    CHECK(KIND(c, ROUTE_SHARED, "SET", "k", "v"));
    /* A master that is down is waited for, not failed: the sentinels may
     * be replacing it. */
    m->pool->down = 1;
    CHECK(KIND(c, ROUTE_SHARED, "SET", "k", "v"));
    CHECK(KIND(c, ROUTE_WAIT_MASTER, "MULTI"));
    m->pool->down = 0;
    sc.sentinels = NULL;

    /* Behind a request still on a node a reload retired: later. */
    struct node *old = node("10.0.0.3:6379", "master");
    TAILQ_REMOVE(&sc.nodes, old, tqe);
    TAILQ_INSERT_TAIL(&sc.retiring, old, tqe);
    old->pool->retiring = 1;
    struct req q = {.link = &old->pool->links[0][0]};
    TAILQ_INSERT_TAIL(&c->pending, &q, owner_tqe);
    c->inflight = 3;
    sc.retiring_busy = 1;
    CHECK(KIND(c, ROUTE_LATER, "SET", "k", "v"));
    sc.retiring_busy = 0;
    CHECK(KIND(c, ROUTE_SHARED, "SET", "k", "v"));

    c->x = NULL;
    free(c);
    command_table_free(&sc.cmds);
    CHECK_DONE();
}
