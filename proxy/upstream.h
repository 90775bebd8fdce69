/* What the pools hand back for clients: replies, matched to their slots
 * (a read a replica refused goes to the master instead, a request the
 * master refused as only a replica would is held); requests that did not
 * run where they went (sent to the master); frames of a streaming lease. */
#ifndef SIDECAR_UPSTREAM_H
#define SIDECAR_UPSTREAM_H

#include <stddef.h>

struct req;

/* The pool callbacks (struct pool_callbacks), arg the sidecar. */
void upstream_on_reply(struct req *r, const char *req, const char *p, size_t n,
                       const char *err, void *arg);
/* Requests whose reply the proxy reads before (or instead of) the client:
 * an AUTH Redis checks, CLIENT PAUSE or DEBUG SLEEP, a split's part. */
#define UPSTREAM_READ_BY_PROXY (REQ_AUTH | REQ_QUIET | REQ_PART)
/* Replies in a row for one client's plain requests (the pool's
 * on_replies; UPSTREAM_RUN_EXCLUDE: the requests kept out of runs, those
 * upstream_on_reply does not answer in its common case or whose answer
 * does more than fill the slot). */
#define UPSTREAM_RUN_EXCLUDE (UPSTREAM_READ_BY_PROXY | REQ_REROUTE | REQ_LEASED | REQ_CLOSE | \
                              REQ_HELD | REQ_DEFERRED)
void upstream_on_replies(struct req *const *v, const char *const *req, const size_t *len,
                         unsigned k, const char *p, void *arg);
int upstream_on_reply_part(struct req *r, const char *req, const char *p, size_t n, int last,
                           void *arg);
void upstream_on_unrun(struct req *r, const char *req, const char *why, void *arg);
void upstream_on_stream(void *lessee, const char *p, size_t n, void *arg);

#endif
