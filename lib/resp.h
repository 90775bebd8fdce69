/* RESP framers: find where a request or a reply ends, without copying it,
 * allocating, or recursing. No I/O here.
 *
 * A framer is fed the unconsumed bytes of a buffer, from the start of the
 * frame, as often as more arrive; it keeps offsets, never pointers, so the
 * buffer may move between calls. Nesting costs one counter (items still
 * owed), so depth is limited only by the bytes a peer may send. */
#ifndef SIDECAR_RESP_H
#define SIDECAR_RESP_H

#include <stddef.h>

#include "buf.h"

enum { RESP_ERR = -1, RESP_DONE = 0, RESP_MORE = 1 };

#define RESP_MAX_HEADER    (64 * 1024)   /* a count or length line, as redis */
#define RESP_MAX_INLINE    (64 * 1024)   /* an inline command without newline */
#define RESP_MAX_BULK      (512LL * 1024 * 1024)
#define RESP_MAX_ARGS      2147483647LL  /* redis: INT_MAX */
#define RESP_MAX_STREAMED  16            /* streamed aggregates open in one reply */

struct resp_limits {
    long long max_bulk;     /* a request argument; also bounded by the query buffer */
    size_t    max_line;     /* a reply's simple line (+, -, :, ...) */
};

/* What a complete frame is; offsets are from the frame's first byte. */
struct resp_frame {
    size_t    len;
    size_t    name_off;     /* request: first argument (multibulk form only) */
    size_t    name_len;
    long long argc;         /* request: 0 = nothing to do (empty line, "*0") */
    char      type;         /* reply: first type byte ('>' = push) */
    int       is_inline;
};

struct resp_framer {
    int       phase;
    size_t    off;          /* bytes of this frame parsed so far */
    size_t    scan;         /* where the search for the next line end resumes */
    long long owed;         /* arguments or items still owed */
    long long bulk;         /* bytes of the current bulk still owed, CRLF included */
    long long argi;         /* request: index of the argument being read */
    int       nstreamed;    /* reply: streamed aggregates (*?, %?, ~?) open */
    int       between;      /* reply: the innermost streamed aggregate is between
                             * elements (its '.' may come) */
    long long outer_owed[RESP_MAX_STREAMED];  /* what was owed around each */
    struct resp_frame fr;
    const char *err;        /* reason, on RESP_ERR */
    char      errbuf[64];
};

void resp_framer_reset(struct resp_framer *f);

/* A client request: RESP array of bulk strings, or an inline line. */
int resp_frame_request(struct resp_framer *f, const char *p, size_t n,
                       const struct resp_limits *lim);

/* A request the proxy framed before, whole in p[0..n): its frame from
 * its head alone (argument count and name), without walking the rest.
 * 0 when p does not start as a multibulk request. */
int resp_frame_head(const char *p, size_t n, struct resp_frame *fr);

/* A server reply of any RESP2 or RESP3 type, any depth, with attributes
 * (|) ahead of a value and streamed strings ($? with ;n chunks) and
 * aggregates (*?, %?, ~? closed by .); at most RESP_MAX_STREAMED streamed
 * aggregates may be open at once (counted ones nest without limit). */
int resp_frame_reply(struct resp_framer *f, const char *p, size_t n,
                     const struct resp_limits *lim);

/* While a frame (request or reply) is incomplete: the bytes it is known
 * to hold at least (what is parsed, and the rest of the bulk being read). */
long long resp_known(const struct resp_framer *f);
/* For a reply nobody will read, or one passed on as it comes: forget
 * what is parsed of it and as much of the bulk being read as p[0..n)
 * holds. Returns how many bytes of p that is, to drop (or pass on);
 * framing goes on as if the frame began after them (its length, once
 * done, counts only what follows). */
size_t resp_reply_skip(struct resp_framer *f, size_t n);
/* What resp_reply_skip(f, n) would return, f unchanged. */
size_t resp_reply_skippable(const struct resp_framer *f, size_t n);
/* Split an inline line (without its line end) the way redis does
 * (quotes, \xHH escapes) and append it to `out` as a RESP array of bulk
 * strings. Returns the argument count, or -1 with *err set. */
long long resp_inline_to_multibulk(const char *line, size_t len,
                                   struct buf *out, const char **err);

/* Walk the arguments of a complete multibulk frame: call with *pos = 0
 * first. Returns 1 with the argument in arg and len, 0 at the end. */
int resp_next_arg(const char *frame, size_t frame_len, size_t *pos,
                  const char **arg, size_t *len);

/* The first RESP_ARGS_MAX arguments of a complete multibulk frame, for
 * commands the proxy answers itself. */
#define RESP_ARGS_MAX 16
struct resp_args {
    long long   argc;             /* all of them, even past RESP_ARGS_MAX */
    const char *v[RESP_ARGS_MAX];
    size_t      l[RESP_ARGS_MAX];
};
/* Argument 1 of a framed multibulk request with argc >= 2: the framer
 * checked its header (digits up to its CR, no sign, no leading zero),
 * so this only reads its length. */
static inline void resp_arg1(const char *frame, const struct resp_frame *fr, const char **p,
                             size_t *n)
{
    const char *s = frame + fr->name_off + fr->name_len + 3;    /* past "\r\n$" */
    size_t v = 0;

    while (*s != '\r')
        v = v * 10 + (size_t)(*s++ - '0');
    *p = s + 2;
    *n = v;
}

void resp_collect_args(const char *frame, const struct resp_frame *fr, struct resp_args *a);
/* Argument i of a framed request (0 is the command's name): 1 with it
 * in p/n, 0 when there is none. */
int resp_arg(const char *frame, const struct resp_frame *fr, int i, const char **p, size_t *n);
/* Argument i is s (given in lower case), case-insensitively. */
int resp_arg_is(const struct resp_args *a, int i, const char *s);


/* Strict decimal parse of p[0..n), as redis's string2ll. 0 or -1. */
int resp_parse_ll(const char *p, size_t n, long long *out);

#endif
