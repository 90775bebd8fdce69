/* One app connection: its buffers, its FIFO of reply slots, its close. */
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

/* What only some clients need: read-your-writes tracking (with replicas)
 * and lease bookkeeping. Allocated on first use, so an idle connection
 * does not pay for it. */
struct client_ext {
    unsigned   lease_pending;  /* requests on the lease not answered yet */
    unsigned   writes_pending; /* writes sent, not answered yet */
    unsigned   replica_reads;  /* reads on replicas, not answered yet */
    unsigned   held;           /* requests waiting for a master (sc->held) */
    ev_tstamp  lease_deadline; /* waiting for a lease until then */
    ev_tstamp  wrote_at;       /* last write's reply: read-your-writes from here */
    long long  wrote_offset;   /* master offset covering it; -1 until sampled */
    char      *name;           /* CLIENT SETNAME / HELLO SETNAME */
};

/* Allocated by listener_accept(); freed only by the loop's flush step after
 * the iteration that closed it, never inside its own callbacks. Kept small:
 * an idle connection costs this struct and nothing else. */
struct client {
    struct sidecar *sc;
    uint64_t        id;
    ev_io           io;           /* its fd; EV_READ unless paused or closing,
                                   * EV_WRITE while output waits */
    struct client_input *partial; /* NULL unless a request is half read */
    struct buf      out;          /* freed whenever it drains */
    struct req_fifo pending;      /* reply slots in request order */
    uint32_t        held;         /* reply bytes parked in slots */
    uint32_t        inflight;     /* request bytes sent upstream, not yet answered */
    struct client_ext *x;         /* NULL until needed */
    struct ipstat  *ips;          /* its address's entry; counts it in current */
    struct link    *lease;        /* its own master link, while it holds server state */
    const struct command *last_cmd;  /* NULL: none yet, or unknown to the table */
    ev_tstamp       created;
    ev_tstamp       last_active;  /* last bytes read from the app */
    TAILQ_ENTRY(client) tqe;      /* sc->clients or sc->closed */
    STAILQ_ENTRY(client) dirty_tqe; /* closed ones stay until the flush step */
    unsigned        npending;
    uint16_t        port;         /* the peer's; its address is ips->ip */
    unsigned        authed : 1;
    unsigned        admin : 1;    /* PROXY commands: [admin] allow or admin AUTH */
    unsigned        is_unix : 1;  /* came over a unix socket: no address */
    unsigned        in_multi : 1; /* lease state: MULTI sent, no EXEC/DISCARD yet */
    unsigned        watching : 1; /* lease state: WATCH sent, not cleared */
    unsigned        other_db : 1; /* lease state: SELECT of another database */
    unsigned        barrier : 1;  /* paused until its requests in flight are answered */
    unsigned        stream : 1;   /* pub/sub: its lease streams frames straight to it */
    unsigned        lease_wait : 1; /* paused: every lease taken, retried shortly */
    unsigned        closing : 1;  /* reads stopped; close once replies are out */
    unsigned        closed : 1;
    unsigned        paused : 1;   /* too many replies pending: not reading */
    unsigned        dirty : 1;
    unsigned        resp3 : 1;    /* HELLO 3: its links and the proxy's replies speak RESP3 */
    unsigned        pause_wait : 1; /* not read: PROXY PAUSE holds its next request */
};

/* Server-side state on its lease (a transaction, WATCH, another
 * database): a drain lets it finish instead of cutting it off. */
static inline int client_holds_state(const struct client *c)
{
    return c->lease && (c->in_multi || c->watching || c->other_db);
}

/* c->x, allocated if need be; NULL only when out of memory. */
struct client_ext *client_ext(struct client *c);

void client_new(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                struct ipstat *ips, int admin);
/* Pool callback: a reply (or why there is none) for one of c's slots. */
void client_on_reply(struct req *r, const char *req, const char *p, size_t n,
                     const char *err, void *arg);
/* Pool callback: a request that did not run where it went, to run on the
 * master instead (or wait for one). */
void client_on_unrun(struct req *r, const char *req, const char *why, void *arg);
/* Pool callback: a frame from c's streaming lease (pub/sub). */
void client_on_stream(void *lessee, const char *p, size_t n, void *arg);
/* Pool callback: c's lease died; its state went with it. */
void client_lease_lost(void *lessee, void *arg);
/* Hand a request to a link; its reply takes the next slot. With no link,
 * it waits for a master (sentinels only), on sc->held. */
void client_forward(struct client *c, struct link *l, const char *p, size_t n,
                    unsigned req_flags);
/* A master is confirmed: held requests go to it, in the order they came. */
void client_resend_held(struct sidecar *sc);
/* Held requests past failover_wait get an error (from a timer). */
void client_expire_held(struct sidecar *sc);
/* A reply made by the proxy, sent in order after earlier ones. */
void client_reply(struct client *c, const char *p, size_t n);
void client_reply_error(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Send this reply after earlier ones, then close (QUIT, protocol errors). */
void client_reply_and_close(struct client *c, const char *p, size_t n);
void client_close(struct client *c, const char *why);
/* "ip:port" of the peer, for logs. */
const char *client_addr(const struct client *c, char *out, size_t outlen);
void client_close_all(struct sidecar *sc);
/* A slot for an answer the proxy gives later (PROXY PAUSE once quiet);
 * answered with client_answer_deferred, which also frees it if its
 * client is gone. NULL when out of memory. */
struct req *client_defer(struct client *c);
void client_answer_deferred(struct sidecar *sc, struct req *r, const char *p, size_t n);
/* PROXY RESUME: clients held by PROXY PAUSE go on, in arrival order. */
void client_resume_all(struct sidecar *sc);
/* Clients waiting for a lease try again (from a short timer). */
void client_retry_lease_waiters(struct sidecar *sc);
/* Close clients idle (nothing read, nothing pending) past idle_timeout. */
void client_sweep_idle(struct sidecar *sc);
/* Draining: close every client with nothing left to send or receive and
 * no server-side state; 1 when none is left. */
int client_drain_step(struct sidecar *sc);
/* The loop's flush step, once per iteration. */
void client_flush_all(struct sidecar *sc);

#endif
