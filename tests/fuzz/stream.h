/* A stream of requests or replies framed the way the proxy frames it:
 * after RESP_DONE the frame is consumed and the framer called again on
 * what follows; after RESP_MORE it waits for the next read. Framed whole,
 * in pieces and byte by byte, a stream must give the same frames and end
 * the same way: how bytes arrive never decides. */
#ifndef SIDECAR_FUZZ_STREAM_H
#define SIDECAR_FUZZ_STREAM_H

#include "../../lib/resp.h"
#include "fuzz.h"

typedef int stream_framer(struct resp_framer *f, const char *p, size_t n,
                          const struct resp_limits *lim);

/* One frame (RESP_DONE), or how the stream ended (RESP_MORE, RESP_ERR). */
struct stream_event {
    int               rc;
    struct resp_frame fr;      /* its len counts the bytes skipped of it too */
    long long         known;   /* most resp_known() said before it was done */
    char              err[64];
};

struct stream_run {
    struct stream_event *ev;
    size_t               nev, cap;
};

#define STREAM_SKIP  1         /* replies: drop what resp_reply_skip() lets go */
#define STREAM_KNOWN 2         /* replies: note resp_known() */

void stream_free(struct stream_run *r);
/* All of p[0..n) in one read. */
void stream_whole(stream_framer *fn, const char *p, size_t n,
                  const struct resp_limits *lim, struct stream_run *r);
/* In the reads c says, each appended to what is left unconsumed in a
 * buffer of exactly that size, so that ASan sees a read past what has
 * arrived. */
void stream_pieces(stream_framer *fn, const char *p, const struct fuzz_cuts *c,
                   const struct resp_limits *lim, unsigned flags, struct stream_run *r);
/* One byte more per call, into the same framer. */
void stream_bytewise(stream_framer *fn, const char *p, size_t n,
                     const struct resp_limits *lim, unsigned flags, struct stream_run *r);
/* Abort unless b, framed the way `how` says, matches a, framed whole. */
void stream_compare(const struct stream_run *a, const struct stream_run *b, const char *how);

#endif
