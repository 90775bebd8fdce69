/* A lease in stream mode (pub/sub, tracking, CLIENT REPLY, MONITOR):
 * every frame from it goes to its client as it comes. The proxy counts
 * the replies the stream still owes its client (one per request, but for
 * CLIENT REPLY OFF/SKIP and, in RESP3, subscriptions), so that it can
 * answer CLIENT itself in order and translate the server's ids in the
 * replies that carry them (GETREDIR, TRACKINGINFO, HELLO) to the app
 * connection's; it counts subscriptions for CLIENT LIST, and drops the
 * MONITOR lines of its own commands. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "clientcmd.h"
#include "nodes.h"

/* A redirect target without a lease of its own gets one now, a ready one
 * whose id is known, in stream mode (as subscribing would give it): the
 * invalidations redis sends it reach it. Only while it has nothing in
 * flight, so that its replies stay in order. */
static void lease_for_redirect(struct client *t)
{
    struct node *m = client_sc(t)->master;
    struct pool *p = m ? client_pool(t, m) : NULL;
    struct link *l;

    /* the leases kept ready are RESP2: a RESP3 target's switches */
    if (!p || t->inflight || !TAILQ_EMPTY(&t->pending) || t->partial || t->closing ||
        !client_ext(t) || !(l = pool_lease(p, t, 0)))
        return;
    if (l->state != LINK_READY || l->server_id <= 0 ||
        (t->resp3 && pool_lease_protocol(l, 1) < 0)) {
        pool_unlease(p, l);              /* a new one: its id comes too late */
        return;
    }
    t->lease = l;
    if (t->resp3) {
        /* invalidations are pushes, which reach a lease's holder as they
         * come: it keeps the lease (as state) and goes on as it was */
        t->x->redirect_target = 1;
        return;
    }
    t->stream = 1;                       /* RESP2: they are pub/sub messages */
    pool_lease_stream(l);
}

int stream_client_cmd(struct client *c, const char *frame, const struct resp_frame *fr,
                      struct buf *out)
{
    struct client_ext *x = client_ext(c);
    const char *p;
    size_t n;

    if (!x || fr->argc < 2 || !resp_arg(frame, fr, 1, &p, &n))
        return 0;
    if (n != 8 || strncasecmp(p, "tracking", 8) != 0 || fr->argc < 3 ||
        !resp_arg(frame, fr, 2, &p, &n))
        return 0;
    int on = n == 2 && strncasecmp(p, "on", 2) == 0;
    long long redir = 0;
    int at = -1;
    size_t pos = 0;
    for (int i = 0; i < 3; i++)                  /* CLIENT TRACKING ON|OFF */
        resp_next_arg(frame, fr->len, &pos, &p, &n);
    /* the options after: REDIRECT's id is what matters here; a PREFIX's
     * argument is skipped, whatever it says */
    for (int i = 3; resp_next_arg(frame, fr->len, &pos, &p, &n); i++) {
        int redirect = n == 8 && strncasecmp(p, "redirect", 8) == 0;
        if (!redirect && (n != 6 || strncasecmp(p, "prefix", 6) != 0))
            continue;
        if (!resp_next_arg(frame, fr->len, &pos, &p, &n))
            break;
        if (redirect && resp_parse_ll(p, n, &redir) < 0)
            return 0;                    /* redis's own error */
        at = redirect ? i + 1 : at;
        i++;
    }
    x->tracking = on;
    x->redir = on ? redir : 0;
    if (at < 0 || redir == 0)
        return 0;
    /* REDIRECT names an app connection: its lease's id on the server */
    struct client *t = clientcmd_find(c, redir);
    if (t && !t->lease)
        lease_for_redirect(t);
    if (!t || !t->lease || t->lease->server_id <= 0) {
        x->tracking = 0;
        client_reply_error(c, "ERR The client ID you want redirect to does not exist%s",
                           t ? " (through redis-sidecar it must hold a server connection "
                               "of its own, e.g. be subscribed to __redis__:invalidate)" : "");
        return -1;
    }
    buf_reset(out);
    buf_appendf(out, "*%lld\r\n", fr->argc);
    pos = 0;
    for (int i = 0; resp_next_arg(frame, fr->len, &pos, &p, &n); i++) {
        char sid[24];
        if (i == at)
            n = (size_t)snprintf(sid, sizeof sid, "%lld", t->lease->server_id), p = sid;
        buf_appendf(out, "$%zu\r\n", n);
        buf_append(out, p, n);
        buf_append(out, "\r\n", 2);
    }
    return 1;
}

void stream_counted(struct client *c, const struct command *cmd, const char *frame,
                    const struct resp_frame *fr)
{
    struct client_ext *x = client_ext(c);
    const char *p;
    size_t n;

    if (!x)
        return;
    /* In RESP3 a subscription's confirmations are pushes; in RESP2 there
     * is one per channel, and MONITOR's lines are no replies: counts end. */
    /* (names compared only for the stream commands, not for every GET) */
    int stream_cmd = cmd && (cmd->flags & CMD_STREAM);
    int subs = stream_cmd && strstr(cmd->name, "subscribe");
    x->monitor |= stream_cmd && strcmp(cmd->name, "monitor") == 0;
    if ((subs && !c->resp3) || x->monitor)
        x->uncounted = 1;
    if (!x->uncounted && cmd && x->nxlate < 4 &&
        ((cmd->local == LOCAL_HELLO) ||
         (cmd->local == LOCAL_CLIENT && resp_arg(frame, fr, 1, &p, &n) &&
          ((n == 8 && strncasecmp(p, "getredir", 8) == 0) ||
           (n == 12 && strncasecmp(p, "trackinginfo", 12) == 0)))))
        x->xlate_at[x->nxlate++] = x->owed;
    /* CLIENT REPLY OFF|SKIP: no reply to it, nor to what it covers */
    int reply = !x->reply_off && !x->reply_skip;
    x->reply_skip = 0;
    if (cmd && cmd->local == LOCAL_CLIENT && resp_arg(frame, fr, 1, &p, &n) && n == 5 &&
        strncasecmp(p, "reply", 5) == 0 && resp_arg(frame, fr, 2, &p, &n)) {
        if (n == 3 && strncasecmp(p, "off", 3) == 0) {
            x->reply_off = 1;
            reply = 0;
        } else if (n == 4 && strncasecmp(p, "skip", 4) == 0) {
            x->reply_skip = !x->reply_off;
            reply = 0;
        } else if (n == 2 && strncasecmp(p, "on", 2) == 0) {
            reply = 1;
            x->reply_off = 0;
        }
    }
    if (!subs && reply)
        x->owed++;
}

int stream_hello(struct client *c, const char *frame, const struct resp_frame *fr)
{
    const char *p;
    size_t n;
    long long ver;

    /* redis answers (an error for a bad version, which changes nothing) */
    if (fr->argc < 2 || !resp_arg(frame, fr, 1, &p, &n) || resp_parse_ll(p, n, &ver) < 0 ||
        ver < 2 || ver > 3 || c->resp3 == (ver == 3))
        return 0;
    /* subscribed in RESP2, redis refuses it */
    if (!c->resp3 && c->x && (c->x->sub || c->x->psub || c->x->ssub))
        return 0;
    if (ver == 3 && nodes_open_resp3(client_sc(c)) < 0) {
        client_reply_error(c, "ERR proxy out of memory");
        return -1;
    }
    c->resp3 = ver == 3;
    c->lease->resp3 = c->resp3;      /* reset in that protocol when it goes back */
    return 0;
}

/* The integer after "redirect" (TRACKINGINFO) or "id" (HELLO), or alone
 * (GETREDIR): a lease's id on the server, shown as the app connection's. */
static void xlate_reply(struct client *c, const char *p, size_t n, struct buf *out)
{
    const char *at = p, *end = p + n;
    /* the key whole: "broken_redirect" is one of TRACKINGINFO's flags */
    const char *key = memmem(p, n, "$8\r\nredirect\r\n", 14);
    int hello = 0;

    if (key)
        at = key + 14;
    else if ((key = memmem(p, n, "$2\r\nid\r\n", 8)) != NULL)
        at = key + 8, hello = 1;
    if (at >= end || *at != ':') {
        buf_append(out, p, n);
        return;
    }
    char *stop;
    long long sid = strtoll(at + 1, &stop, 10);
    /* HELLO's id is its own; a redirect is the one it asked for, even if
     * that connection (and its lease) is gone since */
    long long id = hello ? (long long)c->id : sid > 0 && c->x->redir > 0 ? c->x->redir : sid;
    buf_append(out, p, (size_t)(at - p));
    buf_appendf(out, ":%lld", id);
    buf_append(out, stop, (size_t)(end - stop));
}

/* One bulk string at *pos in a frame; 1 with it in s/sl. */
static int bulk_at(const char *p, size_t n, size_t *pos, const char **s, long long *sl)
{
    char *e;

    if (*pos >= n || p[*pos] != '$')
        return 0;
    *sl = strtoll(p + *pos + 1, &e, 10);
    *s = e + 2;
    *pos = (size_t)(*s - p) + (*sl > 0 ? (size_t)*sl + 2 : 0);
    return *pos <= n;
}

/* A MONITOR line of the proxy's own commands (handshakes, validation
 * PINGs, health checks, WAIT's PUBLISH): not there directly, and not the
 * app's business. */
static int own_line(const struct sidecar *sc, const char *p, size_t n)
{
    static const char *const own[] = {
        "\"CLIENT\" \"SETNAME\" \"sidecar-", "\"CLIENT\" \"ID\"\r", "\"RESET\"\r",
        "\"PING\" \"sidecar\"\r", "\"PUBLISH\" \"__redis-sidecar__:wait\"", "\"HELLO\"\r",
    };
    static const char *const health[] = {"\"ROLE\"\r", "\"COMMAND\"", "\"INFO\" \"server\"\r"};
    const char *cmd = memmem(p, n, "] \"", 3), *colon;
    const struct node *nd;

    if (!cmd)
        return 0;
    size_t left = n - (size_t)(cmd + 2 - p);
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (left >= strlen(own[i]) && memcmp(cmd + 2, own[i], strlen(own[i])) == 0)
            return 1;
    for (size_t i = 0; i < sizeof health / sizeof health[0]; i++)
        if (left >= strlen(health[i]) && memcmp(cmd + 2, health[i], strlen(health[i])) == 0) {
            /* the address before "]" is the health checker's connection */
            for (colon = cmd; colon > p && *colon != ':'; colon--)
                ;
            long port = strtol(colon + 1, NULL, 10);
            TAILQ_FOREACH(nd, &sc->nodes, tqe)
                if (health_local_port(&nd->health) == port)
                    return 1;
        }
    return 0;
}

int stream_frame(struct client *c, const char *p, size_t n, struct buf *out)
{
    struct client_ext *x = c->x;
    const char *s;
    long long sl;
    size_t pos;

    if (!x)
        return 0;
    if (x->monitor && p[0] == '+')
        return own_line(client_sc(c), p, n);
    /* subscribe and friends: *3 (or >3) $kind $channel :count */
    if (n > 4 && (p[0] == '*' || p[0] == '>') && p[1] == '3' && p[2] == '\r' &&
        (pos = 4, bulk_at(p, n, &pos, &s, &sl)) && sl >= 9 && sl <= 12) {
        const char *kind = s;
        long long kl = sl;
        if (!bulk_at(p, n, &pos, &s, &sl) || pos >= n || p[pos] != ':')
            return 0;
        int count = (int)strtol(p + pos + 1, NULL, 10);
        if ((kl == 9 && !strncmp(kind, "subscribe", 9)) || (kl == 11 && !strncmp(kind, "unsubscribe", 11)))
            x->sub = count - x->psub;
        else if ((kl == 10 && !strncmp(kind, "psubscribe", 10)) ||
                 (kl == 12 && !strncmp(kind, "punsubscribe", 12)))
            x->psub = count - x->sub;
        else if ((kl == 10 && !strncmp(kind, "ssubscribe", 10)) ||
                 (kl == 12 && !strncmp(kind, "sunsubscribe", 12)))
            x->ssub = count;
        return 0;
    }
    if (p[0] == '>')
        return 0;                        /* a push answers nothing */
    if (x->uncounted) {
        /* replies not counted: TRACKINGINFO's and HELLO's shapes are their own */
        if (n > 20 && (memcmp(p + 2, "\r\n$5\r\nflags\r\n", 13) == 0 ||
                       memcmp(p + 2, "\r\n$6\r\nserver\r\n", 14) == 0 ||
                       memcmp(p + 3, "\r\n$6\r\nserver\r\n", 14) == 0))
            xlate_reply(c, p, n, out);
        return 0;
    }
    int hit = x->nxlate && x->xlate_at[0] == 0;
    if (hit) {
        x->nxlate--;
        memmove(x->xlate_at, x->xlate_at + 1, x->nxlate * sizeof x->xlate_at[0]);
    }
    for (unsigned i = 0; i < x->nxlate; i++)
        x->xlate_at[i]--;
    if (x->owed)
        x->owed--;
    if (hit && p[0] != '-')
        xlate_reply(c, p, n, out);
    return 0;
}
