/* One upstream socket to a Redis node and the requests riding on it.
 *
 * A request's bytes stay in the link's output stream until its reply is in,
 * so a link that dies can hand every request it still holds to the retry
 * rule: never written, or written and safe to repeat, goes out again (on the
 * reconnected socket, or back to its owner to send elsewhere); a write that
 * may have run gets an error. */
#ifndef SIDECAR_LINK_H
#define SIDECAR_LINK_H

#include <ev.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../lib/buf.h"
#include "../lib/resp.h"
#include "../lib/tls.h"
#include "req.h"

struct pool;

/* A reply known to be this large or more goes to its owner as it comes
 * (pool's on_reply_part), not buffered whole first. */
#define LINK_STREAM_MIN (64 * 1024)
/* After its first piece, such a reply is passed on in pieces of at least
 * this much (or its end): each piece is a write to the client and a
 * wake-up of the app. 1 MB GETs at -c 10, the app on the proxy's core:
 * 5% less proxy CPU and 4-5% more req/s than passing on every read
 * (~6 pieces a reply, now ~3); buffering the rest whole did less well. */
#define LINK_STREAM_BATCH (512 * 1024)
/* The most replies handed over in one on_replies call. */
#define LINK_RUN_MAX 64

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_TLS, LINK_HANDSHAKE, LINK_READY };
enum hs_kind { HS_RESET, HS_HELLO, HS_AUTH, HS_SELECT, HS_NAME, HS_PING, HS_ID, HS_READONLY };
/* Why a link went down, for the counters. */
enum link_loss { LOST_CLOSED, LOST_ERROR, LOST_PROTOCOL, LOST_VALIDATION,
                 LOST_REPLY_TIMEOUT, LOST_HANDSHAKE, LOST_CONNECT, LOST_RETIRED,
                 LOST_TLS, LOST_NCAUSES };
/* A leased link is one client's own connection while it holds server-side
 * state (a transaction, WATCH, a blocking call, another database, pub/sub).
 * Its state is the pool list it sits on; pool.c's lease_move() is the one
 * place it changes. */
enum lease_state {
    LEASE_NONE,       /* a shared (multiplexed) link, on no lease list */
    LEASE_HELD,       /* a holder's; its handshake may still be under way */
    LEASE_STREAM,     /* a holder's, in stream mode (pub/sub): never reused */
    LEASE_RETURNING,  /* given back: RESET and handshake under way */
    LEASE_IDLE,       /* ready for the next holder */
    LEASE_DEAD,       /* closed; freed at the pool's next flush */
    LEASE_NSTATES
};

/* Bytes of the output stream before `out`: a large request taken whole
 * from the buffer it was read into (link_send_buf), or what `out` held
 * when one was. Each holds whole requests. */
#define LINK_SEGS 8
struct link_seg {
    struct buf b;
    uint64_t   base;            /* stream offset of buf_start(&b) */
};

struct link {
    struct pool *pool;
    int          idx;           /* position in the pool, for logs: addr#idx */
    int          resp3;         /* opened with HELLO 3: replies (and pushes) in RESP3 */
    int          fd;
    enum link_state state;
    struct tls_conn *tls;       /* the TLS session (pool's cfg.tls); NULL: plaintext,
                                 * or no socket or session yet */
    unsigned char tls_rd_wants_write, tls_wr_wants_read;  /* a TLS read or write
                                 * waits for the other direction */
    ev_io        rio, wio;
    ev_timer     conn_timer;    /* connect+handshake deadline, then backoff */
    ev_timer     watchdog;      /* reply_timeout and queued-wait checks */
    struct buf   out;           /* bytes of every request on the FIFO, but
                                 * for those in seg[] */
    uint64_t     out_base;      /* stream offset of buf_start(&out) */
    unsigned     nseg;          /* seg[0..nseg) come before out, in order
                                 * (plaintext shared links only) */
    uint64_t     sent;          /* stream offset written so far */
    struct buf   hs;            /* handshake (or validation PING), sent before `out` */
    int          hs_pending;    /* handshake replies still expected */
    int          hs_total;
    enum hs_kind hs_kind[8];    /* what each handshake command was */
    int          validating;    /* hs holds a validation PING */
    int          skipping;      /* the reply being read is dropped as it comes */
    int          streaming;     /* the reply being read goes to its owner as it comes */
    unsigned     ahead;         /* return handshake requests in the FIFO (a lease's,
                                 * sent behind its holder's last request) */
    uint64_t     ahead_end;     /* where they end: nothing after is written before
                                 * their replies are in */
    ev_tstamp    validate_started;
    struct buf   in;
    struct resp_framer fr;
    struct req_fifo fifo;       /* requests not yet answered, oldest first */
    unsigned     nfifo;         /* their count (checked against fifo in make asan) */
    unsigned     scripts;       /* REQ_SCRIPT requests among them */
    double       backoff;       /* next reconnect delay, seconds */
    int          dirty;         /* on the pool's flush list */
    TAILQ_ENTRY(link) dirty_tqe;
    enum lease_state lease;
    void        *lessee;        /* its holder while LEASE_HELD or LEASE_STREAM */
    TAILQ_ENTRY(link) lease_tqe;  /* on the pool's list for its lease state */
    ev_tstamp    opened_at;     /* when the socket became ready (0: never yet) */
    ev_tstamp    last_rx;       /* when bytes last arrived: idle since */
    ev_tstamp    last_tx;       /* when request bytes were last written */
    double       age_limit;     /* max_link_age with this link's jitter */
    char         last_err[160]; /* why the last connect or link failed */
    long long    server_id;     /* a lease's CLIENT ID on its server (0: unknown) */
    struct link_seg seg[LINK_SEGS];  /* rarely used: last */
};

void link_init(struct link *l, struct pool *p, int idx, int resp3);
void link_start(struct link *l);
/* Queue a request's bytes; they go out at the end of this loop iteration.
 * -1 (out of memory): the request was not queued. */
int link_send(struct link *l, struct req *r, const char *p, size_t n);
/* The same for a request that is all of *b (a large one, in the buffer
 * it was read into): the link takes the buffer instead of copying the
 * bytes, and *b is left empty. The bytes stay where they are, never freed
 * or moved within this call, until the request's reply is in (the caller
 * may still read them). 1: not on this link (a TLS pool, a lease, too many
 * taken already), nothing done: link_send it instead. */
int link_send_buf(struct link *l, struct req *r, struct buf *b);
/* Requests whose bytes follow one another in the caller's buffer (a
 * pipelined batch): each is queued as link_send would queue it, with room
 * made for its bytes but nothing copied, and link_batch_end copies them
 * all in one go. Until then nothing else may be sent on that link and the
 * caller's bytes must stay where they are. A request on another link, or
 * not right after the last one, ends the batch and starts another. An
 * idle link is not validated here: a batch follows a request link_send
 * queued on the same link. */
struct link_batch {
    struct link *l;
    const char  *from;
    size_t       len;
};
int link_batch_add(struct link_batch *b, struct link *l, struct req *r, const char *p,
                   size_t n);
void link_batch_copy(struct link_batch *b);
static inline void link_batch_end(struct link_batch *b)
{
    if (b->l) {
        if (b->len)
            link_batch_copy(b);
        b->l = NULL;
        b->len = 0;
    }
}
/* The same for bytes that may live in this link's own buffer (a request
 * handed back by it, sent to its node again). */
int link_resend(struct link *l, struct req *r, const char *p, size_t n);
/* A request of the proxy's own whose reply nobody reads (the HELLO that
 * switches a lease, SCRIPT LOAD on a replica): it keeps the link's order. */
int link_send_unowned(struct link *l, const char *p, size_t n);
/* A link waiting out its reconnect backoff tries again now. */
void link_retry_now(struct link *l);
/* A lease in stream mode (pub/sub): bytes out as they are, every frame
 * in to the holder through the pool's on_stream. -1 out of memory. */
int link_stream_send(struct link *l, const char *p, size_t n);
/* PING before trusting an idle link; requests wait behind it. */
void link_validate(struct link *l, const char *why);
/* A lease going back to the pool: RESET, re-authenticate, re-SELECT, and
 * it is idle again once all that answered. */
void link_return(struct link *l);
/* The same, sent now, right behind the holder's last request (it holds
 * nothing after that one): the lease comes back in the round trip of that
 * request. Bytes queued after it wait for its replies. -1 out of memory. */
int link_return_ahead(struct link *l);
/* One write of everything pending; called once per loop iteration. */
void link_flush(struct link *l);
/* Closed; every request on it fails with "proxy is shutting down". */
void link_stop(struct link *l);
/* Closed for good; every request on it gets `reply` (an error line). */
void link_fail_all(struct link *l, const char *reply, size_t n);
/* Closed on purpose (its node is master no more, or left the topology):
 * what may run elsewhere goes back to its owner (on_unrun), the rest gets
 * the retry rule's error; a shared link reconnects, a lease is gone. */
void link_evacuate(struct link *l, const char *why);
/* Background care, from the pool's timer: ping idle links, retire old ones. */
void link_tend(struct link *l, ev_tstamp now);
static inline int link_is_ready(const struct link *l) { return l->state == LINK_READY; }
static inline int link_is_lease(const struct link *l) { return l->lease != LEASE_NONE; }
/* Frees the output stream's buffers (out and seg[]). */
void link_out_free(struct link *l);

#endif
