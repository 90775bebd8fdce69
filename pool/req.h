/* A request slot and the bounded cache slots are recycled through. */
#ifndef SIDECAR_REQ_H
#define SIDECAR_REQ_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/queue.h>

#include "../lib/buf.h"

struct link;

#define REQ_KEY_SNAP 32

#define REQ_READONLY  0x01  /* safe to run twice: retried once if its link dies */
#define REQ_RETRIED   0x02
#define REQ_DONE      0x04  /* reply held in r->reply, waiting for earlier ones */
#define REQ_CLOSE     0x08  /* owner closes once this reply is sent (QUIT) */
#define REQ_WRITE     0x20  /* owner's mark: may change data (read-your-writes) */
#define REQ_LEASED    0x40  /* owner's mark: sent on its lease */
#define REQ_NOTIMEOUT 0x80  /* a blocking call: may wait `block` past reply_timeout */
#define REQ_REROUTE   0x10  /* the owner can send it elsewhere (a read on a replica):
                             * when its link dies, fail it at once, never hold it */
#define REQ_AUTH      0x100 /* owner's mark: an app's AUTH checked by Redis (parked:
                             * its user) */
#define REQ_QUIET     0x400 /* owner's mark: CLIENT PAUSE or DEBUG SLEEP, whose answer
                             * starts (or ends) the master's quiet window */
#define REQ_HELD      0x200 /* owner's mark: waiting for a master (r->parked) */
#define REQ_DEFERRED  0x800 /* owner's mark: a local answer that comes later; whoever
                             * holds it frees it once its client is gone */
/* Bits 12-15 are the owner's too: which of its counters the reply goes to. */
#define REQ_TALLY_SHIFT 12
#define REQ_TALLY_MASK  (0xfu << REQ_TALLY_SHIFT)
/* The pool's own, unowned: a lease's return handshake sent right behind
 * its holder's last request; bits 17-19 say which command it is. */
#define REQ_HANDSHAKE   0x10000
#define REQ_HS_SHIFT    17
/* A script (EVAL, FCALL...): while one is on a link, clients with nothing
 * in flight take another (it may run past busy-reply-threshold). */
#define REQ_SCRIPT      0x400000
/* Owner's: key_len, upstream and key[] are set (slowlog.c). */
#define REQ_KEYED       0x800000
/* Owner's: a part of a split request (proxy/split.c), owned by the split
 * (owner), its index in key_len. */
#define REQ_PART        0x1000000
/* Owner's: how many times a cluster redirected it (MOVED, ASK), bits 25-27. */
#define REQ_REDIR_SHIFT 25
#define REQ_REDIR_MASK  (7u << REQ_REDIR_SHIFT)
/* The pool's: part of its reply went to the owner as it came (a large
 * one, on_reply_part): it can no longer be sent again or elsewhere. */
#define REQ_STREAMED    0x10000000
/* Owner's again: an AUTH sent for HELLO (REQ_AUTH), and HELLO's protocol. */
#define REQ_HELLO       0x100000
#define REQ_HELLO3      0x200000

/* A request slot. It sits on its owner's reply FIFO (owner_tqe, the
 * owner's business) and, until answered, on its link's FIFO (link_tqe). */
struct req {
    TAILQ_ENTRY(req) link_tqe;
    TAILQ_ENTRY(req) owner_tqe;
    void       *owner;      /* NULL once the owner left: the reply is dropped */
    struct link *link;      /* NULL when not (or no longer) upstream */
    uint64_t    off;        /* first byte in the link's output stream */
    size_t      len;
    ev_tstamp   queued_at;  /* ev_now() when handed to the link */
    ev_tstamp   waiting_since; /* owner's: when it first waited for a master */
    void       *parked;     /* owner's: its entry while it waits for a master */
    struct buf  reply;      /* reply bytes, when they came before earlier ones */
    unsigned    flags;
    float       block;      /* REQ_NOTIMEOUT: seconds it may wait for data (INFINITY) */
    /* The owner's, for its reports (PROXY SLOWLOG), and not cleared by
     * req_alloc(): when the request's bytes came and its command (set
     * with each slot), and once REQ_KEYED its first key (a prefix) and
     * the seconds from handing it to a link to its reply. */
    ev_tstamp   arrived;
    const void *what;
    uint32_t    key_len;
    float       upstream;
    char        key[REQ_KEY_SNAP];
};

TAILQ_HEAD(req_fifo, req);

/* req_alloc clears the fields before `arrived` one by one: any field
 * added there must be cleared there too. */
#define REQ_FIELD_SIZE(f) sizeof(((struct req *)0)->f)
_Static_assert(offsetof(struct req, arrived) ==
                   REQ_FIELD_SIZE(link_tqe) + REQ_FIELD_SIZE(owner_tqe) + REQ_FIELD_SIZE(owner) +
                   REQ_FIELD_SIZE(link) + REQ_FIELD_SIZE(off) + REQ_FIELD_SIZE(len) +
                   REQ_FIELD_SIZE(queued_at) + REQ_FIELD_SIZE(waiting_since) +
                   REQ_FIELD_SIZE(parked) + REQ_FIELD_SIZE(reply) + REQ_FIELD_SIZE(flags) +
                   REQ_FIELD_SIZE(block),
               "a field before arrived that req_alloc does not clear");
#undef REQ_FIELD_SIZE

/* Freed slots are kept for reuse up to a bound, so a burst costs no
 * malloc per request and memory returns once the burst is over. */
struct req_cache {
    struct req *free;
    unsigned    nfree;
    unsigned    max_free;
};

/* A slot with all before `arrived` cleared (the owner sets the rest),
 * but for the FIFO links, which inserting sets: field by field, fewer
 * stores than a memset. Inline: it is paid on every request. */
static inline struct req *req_alloc(struct req_cache *rc)
{
    struct req *r = rc->free;

    if (r) {
        rc->free = r->owner;
        rc->nfree--;
    } else if (!(r = malloc(sizeof *r))) {
        return NULL;
    }
    r->owner = NULL;
    r->link = NULL;
    r->off = 0;
    r->len = 0;
    r->queued_at = r->waiting_since = 0;
    r->parked = NULL;
    r->reply = (struct buf){0};
    r->flags = 0;
    r->block = 0;
    return r;
}
void req_release(struct req_cache *rc, struct req *r);
void req_cache_clear(struct req_cache *rc);

#endif
