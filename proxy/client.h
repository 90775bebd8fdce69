/* One app connection: its socket, its output, its FIFO of reply slots,
 * the encoders of the proxy's own replies, and its close. Reading and
 * carrying out requests is request.c's; this is what everyone below it
 * may call. */
#ifndef SIDECAR_CLIENT_H
#define SIDECAR_CLIENT_H

#include <stdarg.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sidecar.h"

/* Input that ends inside a request: its bytes and the framer's state.
 * Only a client in the middle of a request has one; every complete request
 * is framed straight from the loop's shared read buffer. */
struct client_input {
    struct buf         buf;
    struct resp_framer fr;
};

/* What a paused client waits for; it sits on that thing's list (the
 * pool's waiters, sc->master_waiters, sc->resume_waiters) until woken. */
enum client_wait { WAIT_NONE, WAIT_LEASE, WAIT_MASTER, WAIT_RESUME };

/* What only some clients need: read-your-writes tracking (with replicas),
 * waiting, held requests, a name. Allocated on first use, so an idle
 * connection does not pay for it. */
struct client_ext {
    struct client *c;
    unsigned   writes_pending; /* writes sent, not answered yet */
    unsigned   replica_reads;  /* reads on replicas, not answered yet */
    unsigned   nheld;          /* requests held for a master (hold.c) */
    unsigned   hold_pass;      /* a cluster's: the release pass that kept one held */
    struct pool_waiter wait;   /* its place on a wait list (c->wait says which) */
    ev_tstamp  wait_deadline;  /* waiting for a lease or a master until then; 0: not */
    ev_tstamp  retry_since;    /* leases dying unready in a row: the first's time */
    ev_tstamp  retry_last;     /* and the last's */
    size_t     taken_back;     /* bytes of requests put back in its input so far */
    ev_tstamp  wrote_at;       /* last write's reply: read-your-writes from here */
    long long  wrote_offset;   /* master offset covering it; -1 until sampled */
    char      *name;           /* CLIENT SETNAME / HELLO SETNAME */
    char      *hello_name;     /* HELLO ... AUTH ... SETNAME: set once Redis says yes */
    struct user *user;         /* the ACL user Redis accepted its AUTH for;
                                * NULL: the [upstream] credentials' */
    /* What CLIENT LIST shows of it, as redis would (clientcmd.c) */
    int        db;             /* its database while other_db */
    int        sub, psub, ssub; /* subscriptions, from its stream's confirmations */
    int        multi;          /* commands queued in its MULTI */
    long long  redir;          /* CLIENT TRACKING ... REDIRECT: an app connection's id */
    unsigned   tracking : 1;
    unsigned   monitor : 1, no_evict : 1;
    /* On its stream: replies owed, and how many are owed ahead of each
     * GETREDIR/TRACKINGINFO reply still to translate (clientcmd.c) */
    unsigned   owed, xlate_at[4];
    const char *client_sub;    /* its last CLIENT subcommand: cmd=client|<it> */
    size_t     qbuf_now;       /* bytes of the request it is running (CLIENT LIST's qbuf) */
    long long  pause_in_multi; /* ms of a CLIENT PAUSE queued in its MULTI */
    unsigned   redirect_target : 1; /* a RESP3 tracking redirect names it: its lease stays */
    unsigned   nxlate : 3, uncounted : 1, reply_off : 1, reply_skip : 1;
};

/* Allocated by client_new(); freed only by the loop's flush step after
 * the iteration that closed it, never inside its own callbacks. Kept
 * small: an idle connection costs this struct and nothing else. */
struct client {
    uint64_t        id;
    ev_io           io;           /* its fd; EV_READ unless paused or closing,
                                   * EV_WRITE while output waits; io.data is
                                   * the sidecar (client_sc) */
    struct client_input *partial; /* NULL unless a request is half read */
    struct buf     *out;          /* replies to write; NULL whenever it drains */
    struct req_fifo pending;      /* reply slots in request order */
    uint32_t        parked;       /* reply bytes parked in slots, behind earlier ones */
    uint32_t        inflight;     /* request bytes sent upstream, not yet answered */
    struct client_ext *x;         /* NULL until needed */
    struct ipstat  *ips;          /* its address's entry; counts it in current */
    struct app_proc *proc;        /* its process and, proc->app, its app (apps.c):
                                   * both count it */
    struct link    *lease;        /* its own master link, while it holds server state */
    const struct command *last_cmd;  /* NULL: none yet, or unknown to the table */
    ev_tstamp       created;
    ev_tstamp       last_active;  /* last bytes read from the app */
    TAILQ_ENTRY(client) tqe;      /* sc->clients or sc->closed */
    unsigned        npending;     /* slots on pending (checked in make asan) */
    uint16_t        port;         /* the peer's; its address is ips->ip */
    uint32_t        peer_ino;     /* loopback TCP: the peer socket's inode (apps.c) */
    unsigned        authed : 1;
    unsigned        admin : 1;    /* PROXY commands: [admin] allow or admin AUTH */
    unsigned        admin_auth : 1; /* ... by admin AUTH, which RESET takes back */
    unsigned        is_unix : 1;  /* came over a unix socket: no address */
    unsigned        in_multi : 1; /* lease state: MULTI sent, no EXEC/DISCARD yet */
    unsigned        multi_deferred : 1; /* a cluster's: MULTI answered here, sent on the
                                   * lease of the first command after it, to its node */
    unsigned        multi_aborted : 1; /* ... and a command refused since: EXEC gets
                                   * EXECABORT, as from redis */
    unsigned        watching : 1; /* lease state: WATCH sent, not cleared */
    unsigned        other_db : 1; /* lease state: SELECT of another database */
    unsigned        barrier : 1;  /* paused until its requests in flight are answered */
    unsigned        stream : 1;   /* pub/sub: its lease streams frames straight to it */
    unsigned        closing : 1;  /* reads stopped; close once replies are out */
    unsigned        closed : 1;
    unsigned        paused : 1;   /* not reading: back-pressure, or waiting */
    unsigned        dirty : 1;    /* on sc->dirty; closed ones stay until the flush step */
    unsigned        readable : 1; /* on sc->readable: input to read this iteration */
    unsigned        resp3 : 1;    /* HELLO 3: its links and the proxy's replies speak RESP3 */
    unsigned        wait : 2;     /* enum client_wait */
};

/* client_set_add's rare way: the set grows first (or, failing, is lost). */
void client_set_add_grown(struct client_set *s, struct client *c) __attribute__((cold, noinline));
/* Shrinks an emptied set that had grown far past this iteration's use. */
void client_set_trim(struct client_set *s, unsigned used);

/* c at the set's end; the caller has set c's bit for it. */
static inline void client_set_add(struct client_set *s, struct client *c)
{
    if (__builtin_expect(s->n == s->cap, 0))
        client_set_add_grown(s, c);
    else
        s->v[s->n++] = c;
}

static inline struct sidecar *client_sc(const struct client *c)
{
    return c->io.data;
}

/* The client whose watcher w is. */
static inline struct client *client_of_io(ev_io *w)
{
    return (struct client *)((char *)w - offsetof(struct client, io));
}

/* Reply bytes in its output, not yet written. */
static inline size_t client_out_used(const struct client *c)
{
    return c->out ? buf_used(c->out) : 0;
}

/* Server-side state on its lease (a transaction, WATCH, another
 * database): a drain lets it finish instead of cutting it off. */
static inline int client_holds_state(const struct client *c)
{
    return (c->lease && (c->in_multi || c->watching || c->other_db ||
                         (c->x && c->x->redirect_target))) || c->multi_deferred;
}

/* Its stream (a lease in stream mode) owes it no reply and answers the
 * next request: a CLIENT command answered here comes in order. */
static inline int client_stream_settled(const struct client *c)
{
    const struct client_ext *x = c->x;

    return x && !x->uncounted && !x->owed && !x->reply_off && !x->reply_skip;
}

/* The pool of node n that c's requests use: its ACL user's (users.c) or,
 * for apps that never authenticated as another user, the node's own.
 * NULL when the user has none there (a node its AUTH has not reached). */
static inline struct pool *client_pool(const struct client *c, const struct node *n)
{
    const struct user *u = c->x ? c->x->user : NULL;

    return __builtin_expect(u == NULL, 1) ? n->pool : n->upool[u->idx];
}

/* The counts kept beside c's slot FIFO (npending, writes and reads in
 * flight, held requests) match it: asserted, in make asan's build. */
void client_check_counts(const struct client *c);

/* c->x, allocated if need be; NULL only when out of memory. */
struct client_ext *client_ext(struct client *c);

/* A new connection reading with `on_io` (request.c's). */
void client_new(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                const struct origin *o, int admin,
                void (*on_io)(struct ev_loop *loop, ev_io *w, int revents));
/* The watcher follows the client's state (paused, closing, output). */
void client_watch(struct client *c);
/* On the flush list: written (and, if paused, looked at) at the end of
 * this loop iteration. */
void client_mark_dirty(struct client *c);
/* Write what its output holds; after the last reply a closing (or
 * draining) client is closed. */
void client_write(struct client *c);
void client_close(struct client *c, const char *why);
/* Free what client_close left, after the iteration that closed it. */
void client_free_closed(struct sidecar *sc);
/* "ip:port" of the listening socket it came in by. */
const char *client_laddr(const struct client *c, char *out, size_t outlen);
/* "ip:port" of the peer, for logs. */
const char *client_addr(const struct client *c, char *out, size_t outlen);
void client_close_all(struct sidecar *sc);
/* Draining: nothing in flight, nothing to send, no half request, no
 * server-side state. */
int client_drained(const struct client *c);
/* Close clients idle (nothing read, nothing pending) past idle_timeout,
 * and those that hung up while not read. */
void client_sweep(struct sidecar *sc);
/* How often the sweep runs: every second, more often for a short
 * idle_timeout. */
double client_sweep_period(const struct config *cfg);
/* One CLIENT LIST line about c: redis 7.0's fields, with the app
 * connection's own values, then the proxy's (pending, obuf, admin). */
void client_describe(struct buf *b, const struct client *c, ev_tstamp now);
/* The same, for PROXY CLIENT LIST: with its app key, pid and process name. */
void client_describe_app(struct buf *b, const struct client *c, ev_tstamp now);
/* The ACL user c runs as: its AUTH's, or the [upstream] one. */
const char *client_user(const struct client *c);
/* Close the clients (other than self) whose id is v, whose "ip:port" is v,
 * whose app key is v, or whose address is in range; how many. */
enum client_match { MATCH_ID, MATCH_ADDR, MATCH_CIDR, MATCH_APP };
long long client_kill(struct client *self, enum client_match by, const char *v, size_t vl,
                      const struct cidr *range, const char *why);

/* A frame from its streaming lease (pub/sub): out as it comes. */
void client_stream(struct client *c, const char *p, size_t n);
/* Part of a large reply passed on as it came, the next bytes the client
 * is owed: written at once if nothing waits before it. */
void client_pass(struct client *c, const char *p, size_t n);
/* A reply slot for a request about to go upstream, after the others. */
struct req *client_slot(struct client *c, unsigned flags);
/* A request's answer: its reply bytes, or err (sent as -ERR err). Fills
 * its slot (sent in order), settles the client's tallies, and gives back
 * a lease that holds nothing any more. */
void client_answer(struct client *c, struct req *r, const char *p, size_t n, const char *err);
/* Replies for v[0..k) (plain requests, no reply an error), len[i] bytes
 * each from p, the requests' bytes at req[i]: answered as client_answer
 * would answer each, with one append or write, when they are the head of
 * c's FIFO in that order (0); else -1 and nothing done (the caller
 * answers them one by one). */
int client_answer_run(struct client *c, struct req *const *v, const char *const *req,
                      const size_t *len, unsigned k, const char *p);

/* Replies made by the proxy, sent in order after earlier ones, counted
 * under the class of the command just read. */
void client_reply(struct client *c, const char *p, size_t n);
void client_reply_error(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void client_reply_ok(struct client *c);
void client_reply_int(struct client *c, long long v);
void client_reply_simple(struct client *c, const char *text);
void client_reply_bulk(struct client *c, const char *p, size_t n);
void client_reply_null(struct client *c);
/* Text for people (INFO-style, CLIENT LIST): verbatim in RESP3, bulk in RESP2. */
void client_reply_text(struct client *c, const char *p, size_t n);
/* Send this reply after earlier ones, then close (QUIT). */
void client_reply_and_close(struct client *c, const char *p, size_t n);
/* No more requests read; closed once the replies due are out. */
void client_close_after_replies(struct client *c, const char *why);
/* A malformed request: one error line after earlier replies, then close;
 * counted as a close, not as a reply. */
void client_protocol_error(struct client *c, const char *why);
/* A slot for an answer the proxy gives later (PROXY PAUSE once quiet);
 * answered with client_answer_deferred, which also frees it if its
 * client is gone. NULL when out of memory. */
struct req *client_defer(struct client *c);
void client_answer_deferred(struct sidecar *sc, struct req *r, const char *p, size_t n);

#endif
