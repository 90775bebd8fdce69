/* Replies from upstream, for the clients that asked. */
#include "upstream.h"

#include <string.h>

#include "client.h"
#include "cluster.h"
#include "clientcmd.h"
#include "stream.h"
#include "hold.h"
#include "lease.h"
#include "session.h"
#include "slowlog.h"
#include "split.h"

/* Errors that say the request did not run: the node is a master's
 * replica no more (or never was), lost its master, is loading, or (a
 * replica) lacks a script the master has, whose cache is per node. */
static int refused(const char *p, size_t n, int by_master)
{
    static const char *const codes[] = {"-READONLY", "-MASTERDOWN", "-LOADING", "-NOSCRIPT"};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0] - (by_master != 0); i++) {
        size_t l = strlen(codes[i]);
        if (n > l && memcmp(p, codes[i], l) == 0 && (p[l] == ' ' || p[l] == '\r'))
            return 1;
    }
    return 0;
}

/* To the master, in the same slot, behind the client's held requests. */
static int to_master(struct client *c, struct req *r, const char *req)
{
    struct sidecar *sc = client_sc(c);
    /* a cluster's: the master of the request's slot now */
    struct node *m = sc->cl ? cluster_route_bytes(sc, req, r->len) : sc->master;

    if (sc->sentinels && (!m || (c->x && c->x->nheld)))
        return hold_request(c, r, req, r->len);
    if (sc->cl && (cluster_waits_for(sc, m) || (m && c->x && c->x->nheld)))
        return hold_request(c, r, req, r->len);      /* its shard may be failing over */
    struct pool *p = m ? client_pool(c, m) : NULL;
    struct link *l = p ? pool_link_for(p, c->id, c->resp3) : NULL;

    if (!l || (m->pool->down && !sc->sentinels))
        return -1;
    return link_resend(l, r, req, r->len);
}

/* A read a replica refused, going to the master. */
static void redirected(struct client *c, struct req *r)
{
    r->flags &= ~(unsigned)REQ_REROUTE;
    c->x->replica_reads--;
    client_sc(c)->st.replica_redirects++;
}

/* A request that did not run where it went runs on the master instead,
 * in the same slot, so order holds: a read a replica refused, or (with
 * sentinels) one the master refused because it is one no more. 0 if so;
 * -1: answer it as it is. */
static int send_again(struct client *c, struct req *r, const char *req, const char *p,
                      size_t n, const char *err)
{
    struct sidecar *sc = client_sc(c);

    if (r->flags & REQ_REROUTE) {
        if (!err && !refused(p, n, 0))
            return -1;
        redirected(c, r);
        return to_master(c, r, req);
    }
    if (sc->sentinels && !err && !(r->flags & REQ_LEASED) && refused(p, n, 1)) {
        sc->st.master_refusals++;
        /* the master moved, it seems: ask the sentinels and its ROLE now */
        health_sentinels_poll_soon(sc->sentinels);
        if (sc->master)
            health_sample_soon(&sc->master->health, 0);
        return hold_request(c, r, req, r->len);
    }
    return -1;
}


/* A reply passed on as it came was cut off by its link's failure: the
 * client has part of a frame, and nothing can follow it. */
static void cut_off(struct client *c, const char *err) __attribute__((cold, noinline));

static void cut_off(struct client *c, const char *err)
{
    char a[64];

    c->proc->app->errors[APP_ERR_CLOSED]++;
    log_warn("client %s closed: its reply was cut off mid-way (%s)",
             client_addr(c, a, sizeof a), err ? err : "link lost");
    client_close(c, "reply cut off");
}

/* A reply the proxy reads first, or one that may say the request must go
 * elsewhere (a replica's refusal, a failover, a cluster's redirection). */
__attribute__((noinline))
static void special_reply(struct client *c, struct req *r, const char *req, const char *p,
                          size_t n, const char *err)
{
    if (__builtin_expect(r->flags & (UPSTREAM_READ_BY_PROXY | REQ_STREAMED), 0)) {
        if (r->flags & REQ_STREAMED) {   /* only ever an error now */
            cut_off(c, err);
            return;
        }
        if (r->flags & REQ_PART) {       /* owned by its split, not a client */
            split_part_answered(r, req, p, n, err);
            return;
        }
        if (r->flags & REQ_AUTH) {
            session_auth_answered(c, r, req, p, n, err);
            return;
        }
        clientcmd_quiet_answered(c, req, r->len, p, err ? 0 : n);
    }
    if (req && ((r->flags & REQ_REROUTE) || client_sc(c)->sentinels) &&
        send_again(c, r, req, p, n, err) == 0)
        return;
    /* a cluster's redirections: the request did not run, it goes on */
    if (__builtin_expect(client_sc(c)->cl != NULL, 0) && req && !err && n && p[0] == '-' &&
        cluster_redirect(c, r, req, p, n) == 0)
        return;
    if (req)
        slowlog_answered(c, r, req);
    client_answer(c, r, p, n, err);
}

void upstream_on_reply(struct req *r, const char *req, const char *p, size_t n,
                       const char *err, void *arg)
{
    struct client *c = r->owner;     /* not a client for a split's part */
    (void)arg;

    /* The common case, out of special_reply's stack frame: a plain
     * request's reply that is not an error reply of a master that may have
     * moved (Sentinel) or of a cluster node (redirections). Its last two
     * lines are special_reply's too, on purpose: with special_reply saying
     * "not mine" and this function going on, the common case kept r, p, n
     * and err in saved registers around the call (11 instructions a reply
     * more under callgrind); this way special_reply is a tail call. */
    if (__builtin_expect(!(r->flags & (UPSTREAM_READ_BY_PROXY | REQ_STREAMED | REQ_REROUTE)) &&
                         (err || !n || p[0] != '-' ||
                          (!client_sc(c)->sentinels && !client_sc(c)->cl)), 1)) {
        if (req)
            slowlog_answered(c, r, req);
        client_answer(c, r, p, n, err);
        return;
    }
    special_reply(c, r, req, p, n, err);
}

void upstream_on_replies(struct req *const *v, const char *const *req, const size_t *len,
                         unsigned k, const char *p, void *arg)
{
    struct client *c = v[0]->owner;

    /* a cluster's or a failover's error replies are never in a run: the
     * common case of upstream_on_reply for each */
    if (client_answer_run(c, v, req, len, k, p) == 0)
        return;
    for (unsigned i = 0; i < k; i++) {
        upstream_on_reply(v[i], req[i], p, len[i], NULL, arg);
        p += len[i];
    }
}

int upstream_on_reply_part(struct req *r, const char *req, const char *p, size_t n, int last,
                           void *arg)
{
    struct client *c = r->owner;
    (void)arg;

    /* Taken only as the next reply the client is owed, and only where
     * the proxy does not read the reply first. */
    if (!(r->flags & REQ_STREAMED) &&
        ((r->flags & UPSTREAM_READ_BY_PROXY) || r != TAILQ_FIRST(&c->pending)))
        return 0;
    if (!last) {
        client_pass(c, p, n);            /* may close it (output limit): the rest is dropped */
        return 1;
    }
    slowlog_answered(c, r, req);
    client_answer(c, r, p, n, NULL);
    return 1;
}

void upstream_on_unrun(struct req *r, const char *req, const char *why, void *arg)
{
    struct client *c = r->owner;
    (void)arg;

    if (r->flags & REQ_PART) {
        split_part_unrun(r, req, why);
        return;
    }
    if (r->flags & REQ_AUTH) {           /* checked on its user's links, or not at all */
        session_auth_answered(c, r, req, NULL, 0, why);
        return;
    }
    if (r->flags & REQ_LEASED) {         /* its lease died before it went out */
        lease_unrun(c, r, req);
        return;
    }
    if (r->flags & REQ_REROUTE)
        redirected(c, r);
    if (to_master(c, r, req) < 0)
        client_answer(c, r, NULL, 0, why);
}

void upstream_on_stream(void *lessee, const char *p, size_t n, void *arg)
{
    struct client *c = lessee;
    struct buf *b = &client_sc(c)->scratch;
    (void)arg;

    if (c->x) {                          /* subscription counts, ids to translate */
        buf_reset(b);
        if (stream_frame(c, p, n, b))
            return;
        if (buf_used(b)) {
            p = buf_start(b);
            n = buf_used(b);
        }
    }
    struct sidecar *sc = client_sc(c);

    sc->st.replies++;
    sc->st.replies_by[TALLY(CLASS_STATEFUL, DEST_MASTER)][n && (p[0] == '-' || p[0] == '!')]++;
    client_stream(c, p, n);
}
