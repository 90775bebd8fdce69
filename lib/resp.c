/* RESP framers. The request framer follows redis's networking.c
 * (processMultibulkBuffer, processInlineBuffer) so that the proxy refuses
 * exactly what redis would, with redis's words; the reply framer accepts
 * every RESP2 and RESP3 type. */
#include "resp.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Internal: a phase made progress, go on with the next one. */
#define STEP 2

enum {
    P_START, P_MB_COUNT, P_ARG_HDR, P_ARG_BODY, P_INLINE,   /* requests */
    P_ITEM, P_ITEM_BODY, P_CHUNK, P_CHUNK_BODY,             /* replies */
};

void resp_framer_reset(struct resp_framer *f)
{
    f->phase = P_START;
    f->off = f->scan = 0;
    f->owed = f->bulk = f->argi = 0;
    f->nstreamed = 0;
    memset(&f->fr, 0, sizeof f->fr);
    f->err = NULL;
}

int resp_parse_ll(const char *p, size_t n, long long *out)
{
    /* Nearly every header is a short positive number: no sign, no leading
     * zero, and 18 digits cannot overflow. */
    if (n - 1 < 18 && p[0] >= '1' && p[0] <= '9') {
        long long v = 0;
        for (size_t k = 0; k < n; k++) {
            unsigned d = (unsigned)(p[k] - '0');
            if (d > 9)
                return -1;
            v = v * 10 + d;
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0;

    if (n == 0 || n > 20)
        return -1;
    if (p[0] == '-') {
        neg = 1;
        if (++i == n)
            return -1;
    }
    /* As string2ll, the only number starting with 0 is "0": redis refuses
     * "-0" as a length, so the proxy must not pass it upstream. */
    if (p[i] == '0' && (n > i + 1 || neg))
        return -1;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = -(long long)(v - 1) - 1;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return -1;
        *out = (long long)v;
    }
    return 0;
}

static int fail(struct resp_framer *f, const char *why)
{
    f->err = why;
    return RESP_ERR;
}

/* Find the CR of the line starting at f->off; the LF after it must be
 * there too. Resumes where the last search stopped. */
static const char *find_line(struct resp_framer *f, const char *p, size_t n)
{
    size_t from = f->scan > f->off ? f->scan : f->off;
    size_t near = from + 24 < n ? from + 24 : n;
    const char *cr = NULL;

    /* Headers are a few bytes long: look at them before paying for memchr. */
    while (from < near && p[from] != '\r')
        from++;
    if (from < near)
        cr = p + from;
    else if (from < n)
        cr = memchr(p + from, '\r', n - from);
    if (cr && (size_t)(cr - p) + 1 < n)
        return cr;
    f->scan = cr ? (size_t)(cr - p) : n;
    return NULL;
}

/* Parse the number on the line [off+1, cr) and step past the line. */
static int header_number(struct resp_framer *f, const char *p, const char *cr,
                         long long *v)
{
    size_t start = f->off + 1;
    int rc = resp_parse_ll(p + start, (size_t)(cr - p) - start, v);
    f->off = (size_t)(cr - p) + 2;
    return rc;
}

/* A plain number at p[first..]: 1 to 18 digits, no leading zero, then
 * CR and one more byte. Returns the index past its line, or 0 when it is
 * not one (or not all there yet): the strict path decides then. */
static inline size_t plain_number(const char *p, size_t n, size_t first, long long *v)
{
    size_t i = first, lim = first + 18 < n ? first + 18 : n;
    long long x = 0;

    while (i < lim && (unsigned)(p[i] - '0') <= 9)
        x = x * 10 + (p[i++] - '0');
    if (i + 1 >= n || p[i] != '\r' || i == first || (p[first] == '0' && i != first + 1))
        return 0;
    *v = x;
    return i + 2;
}

/* The usual header number, one or two digits (no leading zero), read
 * without the loop; anything else as plain_number reads it. */
static inline size_t short_number(const char *p, size_t n, size_t first, long long *v)
{
    if (first + 3 < n) {
        unsigned d0 = (unsigned)(unsigned char)p[first] - '1';
        unsigned d1 = (unsigned)(unsigned char)p[first + 1] - '0';
        if (d0 <= 8 && p[first + 1] == '\r') {
            *v = d0 + 1;
            return first + 3;
        }
        if (d0 <= 8 && d1 <= 9 && p[first + 2] == '\r') {
            *v = (d0 + 1) * 10 + d1;
            return first + 4;
        }
    }
    return plain_number(p, n, first, v);
}

/* A whole bulk header, "$" and its length, at p[i]: the index past its
 * line with the length in *v, or 0 when it is not one (as short_number
 * reads it). */
static inline size_t bulk_header(const char *p, size_t n, size_t i, long long *v)
{
    return i < n && p[i] == '$' ? short_number(p, n, i + 1, v) : 0;
}

/* A header's number: 1 with f->off past the line, 0 when the line is not
 * complete yet, -1 when it is not a number. Plain digits are read in the
 * same pass that finds the line end; anything else takes the strict path. */
static int read_header(struct resp_framer *f, const char *p, size_t n, long long *v)
{
    size_t end = plain_number(p, n, f->off + 1, v);

    if (end) {
        f->off = end;
        return 1;
    }
    const char *cr = find_line(f, p, n);
    if (!cr)
        return 0;
    return header_number(f, p, cr, v) < 0 ? -1 : 1;
}

static int request_done(struct resp_framer *f, size_t len)
{
    f->fr.len = len;
    f->phase = P_START;
    f->off = f->scan = 0;
    return RESP_DONE;
}

static int request_count(struct resp_framer *f, const char *p, size_t n)
{
    long long v;
    int rc = read_header(f, p, n, &v);

    if (rc == 0) {
        if (n - f->off > RESP_MAX_HEADER)
            return fail(f, "Protocol error: too big mbulk count string");
        return RESP_MORE;
    }
    if (rc < 0 || v > RESP_MAX_ARGS)
        return fail(f, "Protocol error: invalid multibulk length");
    if (v <= 0) {
        f->fr.argc = 0;
        return request_done(f, f->off);
    }
    f->fr.argc = f->owed = v;
    f->argi = 0;
    f->phase = P_ARG_HDR;
    return STEP;
}

static int request_arg_header(struct resp_framer *f, const char *p, size_t n,
                              const struct resp_limits *lim)
{
    if (f->off >= n)
        return RESP_MORE;
    if (p[f->off] != '$') {
        snprintf(f->errbuf, sizeof f->errbuf,
                 "Protocol error: expected '$', got '%c'", p[f->off]);
        return fail(f, f->errbuf);
    }
    long long v;
    int rc = read_header(f, p, n, &v);
    if (rc == 0) {
        if (n - f->off > RESP_MAX_HEADER)
            return fail(f, "Protocol error: too big bulk count string");
        return RESP_MORE;
    }
    if (rc < 0 || v < 0 || v > lim->max_bulk || v > LLONG_MAX - 2)
        return fail(f, "Protocol error: invalid bulk length");
    if (f->argi == 0) {
        f->fr.name_off = f->off;
        f->fr.name_len = (size_t)v;
    }
    f->bulk = v + 2;
    f->phase = P_ARG_BODY;
    return STEP;
}

static int request_inline(struct resp_framer *f, const char *p, size_t n)
{
    size_t from = f->scan;
    const char *nl = from < n ? memchr(p + from, '\n', n - from) : NULL;
    size_t end = nl ? (size_t)(nl - p) : n;

    /* redis finds an inline request's end with strchr: a NUL before it
     * hides it for good, and redis waits until the size limit. Nothing
     * good comes of that wait: the error now. */
    if (from < end && memchr(p + from, '\0', end - from))
        return fail(f, "Protocol error: NUL byte in an inline request");
    /* The cap counts the line's bytes before its LF, found or not: a long
     * line that came in one read is refused as it would be in pieces
     * (redis accepts one whose LF came in the read that crossed it). */
    if (end > RESP_MAX_INLINE)
        return fail(f, "Protocol error: too big inline request");
    if (!nl) {
        f->scan = n;
        return RESP_MORE;
    }
    f->fr.is_inline = 1;
    return request_done(f, (size_t)(nl - p) + 1);
}

/* The common case in one pass: a whole multibulk request, there from
 * its first byte, whose counts and lengths are plain numbers. RESP_DONE
 * with f->fr set, or RESP_MORE for "not this case": the general framer
 * then starts it afresh, and finds what is wrong with it if anything is.
 * It takes exactly what the general framer takes, as that one does not
 * look at the CRLF after a bulk either. */
static int request_whole(struct resp_framer *f, const char *p, size_t n,
                         const struct resp_limits *lim)
{
    size_t name_off = 0, name_len = 0;
    long long argc, v;
    size_t i = short_number(p, n, 1, &argc);

    if (!i || argc <= 0 || argc > RESP_MAX_ARGS)
        return RESP_MORE;
    for (long long a = 0; a < argc; a++) {
        if (!(i = bulk_header(p, n, i, &v)) || v > lim->max_bulk ||
            (unsigned long long)v + 2 > n - i)
            return RESP_MORE;
        if (a == 0) {
            name_off = i;
            name_len = (size_t)v;
        }
        i += (size_t)v + 2;
    }
    f->fr.len = i;
    f->fr.name_off = name_off;
    f->fr.name_len = name_len;
    f->fr.argc = argc;
    f->fr.type = 0;
    f->fr.is_inline = 0;
    return RESP_DONE;
}

int resp_frame_head(const char *p, size_t n, struct resp_frame *fr)
{
    long long argc, v;
    size_t i;

    if (n < 4 || p[0] != '*' || !(i = short_number(p, n, 1, &argc)) || argc <= 0 ||
        !(i = bulk_header(p, n, i, &v)) || (unsigned long long)v + 2 > n - i)
        return 0;
    fr->len = n;
    fr->name_off = i;
    fr->name_len = (size_t)v;
    fr->argc = argc;
    fr->type = 0;
    fr->is_inline = 0;
    return 1;
}

/* The general framer, out of line: the fast path above does not pay for
 * its stack frame. */
static int request_framer(struct resp_framer *f, const char *p, size_t n,
                          const struct resp_limits *lim) __attribute__((noinline));

int resp_frame_request(struct resp_framer *f, const char *p, size_t n,
                       const struct resp_limits *lim)
{
    if (f->phase == P_START && n > 3 && p[0] == '*' && request_whole(f, p, n, lim) == RESP_DONE)
        return RESP_DONE;
    return request_framer(f, p, n, lim);
}

static int request_framer(struct resp_framer *f, const char *p, size_t n,
                          const struct resp_limits *lim)
{
    int rc = RESP_MORE;

    for (;;) {
        switch (f->phase) {
        case P_START:
            if (n == 0)
                return RESP_MORE;
            memset(&f->fr, 0, sizeof f->fr);
            f->off = f->scan = 0;
            if (p[0] == '*') {
                f->phase = P_MB_COUNT;
            } else {
                f->phase = P_INLINE;
            }
            continue;
        case P_MB_COUNT:
            rc = request_count(f, p, n);
            break;
        case P_ARG_HDR:
            rc = request_arg_header(f, p, n, lim);
            break;
        case P_ARG_BODY:
            if ((long long)(n - f->off) < f->bulk)
                return RESP_MORE;
            f->off += (size_t)f->bulk;
            f->argi++;
            if (--f->owed == 0)
                return request_done(f, f->off);
            f->phase = P_ARG_HDR;
            continue;
        case P_INLINE:
            return request_inline(f, p, n);
        default:
            return fail(f, "framer used for the wrong direction");
        }
        if (rc != STEP)
            return rc;
    }
}

/* One reply item is complete: the frame is when nothing more is owed.
 * Counting owed items reaches 0 exactly when a whole value is read; inside
 * a streamed aggregate that is one element: one more is owed then (the
 * next element, or its '.'), and it is between elements. */
static int item_done(struct resp_framer *f)
{
    f->phase = P_ITEM;
    if (--f->owed > 0)
        return STEP;
    if (f->nstreamed) {
        f->owed = 1;
        f->between = 1;
        return STEP;
    }
    f->fr.len = f->off;
    f->phase = P_START;
    f->off = f->scan = 0;
    return RESP_DONE;
}

/* A reply line is not complete yet (find_line left f->scan at its CR or
 * at the end): wait, unless it is already too long. A line's length is
 * its bytes before the CR, type byte included, whether it is complete or
 * not, so that how it arrives never decides. */
static int line_pending(struct resp_framer *f, size_t cap)
{
    if (f->scan - f->off > cap)
        return fail(f, "reply line too long");
    return RESP_MORE;
}

/* "$?", "*?"...: a streamed value (the byte after the type is '?'). */
static int is_streamed(const char *p, size_t n, size_t off)
{
    return off + 1 < n && p[off + 1] == '?';
}

/* One ";len" chunk of a streamed string; ";0" ends the string. */
static int reply_chunk(struct resp_framer *f, const char *p, size_t n)
{
    long long v;
    int rc;

    if (f->off >= n)
        return RESP_MORE;
    if (p[f->off] != ';')
        return fail(f, "bad streamed string chunk in reply");
    if ((rc = read_header(f, p, n, &v)) == 0)
        return line_pending(f, RESP_MAX_HEADER);
    if (rc < 0 || v < 0 || v > LLONG_MAX - 2)
        return fail(f, "bad streamed string chunk in reply");
    if (v == 0)
        return item_done(f);
    f->bulk = v + 2;
    f->phase = P_CHUNK_BODY;
    return STEP;
}

static int reply_item(struct resp_framer *f, const char *p, size_t n,
                      const struct resp_limits *lim)
{
    const char *cr;
    long long v;
    int rc;

    if (f->off >= n)
        return RESP_MORE;
    char t = p[f->off];
    if (t != '.')
        f->between = 0;                  /* an element of a streamed aggregate begins */
    switch (t) {
    case '+': case '-': case ':': case '_': case ',': case '#': case '(': {
        size_t cap = t == '+' || t == '-' ? lim->max_line : RESP_MAX_HEADER;
        if (!(cr = find_line(f, p, n)))
            return line_pending(f, cap);
        /* Complete, the same cap: a long line that came in one read is
         * refused as it would be in pieces. */
        if ((size_t)(cr - p) - f->off > cap)
            return fail(f, "reply line too long");
        f->off = (size_t)(cr - p) + 2;
        return item_done(f);
    }
    case '.':
        /* the end of the innermost streamed aggregate: one item of what
         * holds it */
        if (!(cr = find_line(f, p, n)))
            return line_pending(f, RESP_MAX_HEADER);
        if (f->nstreamed == 0 || !f->between || cr != p + f->off + 1)
            return fail(f, "unexpected '.' in reply");
        f->off = (size_t)(cr - p) + 2;
        f->owed = f->outer_owed[--f->nstreamed];
        f->between = 0;                  /* inside an element of what holds it */
        return item_done(f);
    case '$': case '!': case '=':
        if (t == '$' && is_streamed(p, n, f->off)) {
            if (n - f->off < 4)
                return RESP_MORE;
            if (p[f->off + 2] != '\r' || p[f->off + 3] != '\n')
                return fail(f, "bad streamed string header in reply");
            f->off += 4;
            f->phase = P_CHUNK;
            return STEP;
        }
        if ((rc = read_header(f, p, n, &v)) == 0)
            return line_pending(f, RESP_MAX_HEADER);
        /* v + 2 (the CRLF) must not overflow into a frame length past
         * the buffer. */
        if (rc < 0 || v < -1 || v > LLONG_MAX - 2)
            return fail(f, "bad bulk length in reply");
        if (v == -1)
            return item_done(f);
        f->bulk = v + 2;
        f->phase = P_ITEM_BODY;
        return STEP;
    case '*': case '~': case '>': case '%': case '|':
        if ((t == '*' || t == '~' || t == '%') && is_streamed(p, n, f->off)) {
            if (n - f->off < 4)
                return RESP_MORE;
            if (p[f->off + 2] != '\r' || p[f->off + 3] != '\n')
                return fail(f, "bad streamed aggregate header in reply");
            if (f->nstreamed == RESP_MAX_STREAMED)
                return fail(f, "streamed aggregates nested too deep in reply");
            f->off += 4;
            f->outer_owed[f->nstreamed++] = f->owed;
            f->owed = 1;
            f->between = 1;
            return STEP;
        }
        if ((rc = read_header(f, p, n, &v)) == 0)
            return line_pending(f, RESP_MAX_HEADER);
        if (rc < 0 || v < -1 || v > RESP_MAX_ARGS)
            return fail(f, "bad aggregate length in reply");
        if (v == -1)
            return item_done(f);
        /* The header is an item; its elements (twice for a map) are owed.
         * An attribute precedes the item it describes, which stays owed. */
        if (t == '%' || t == '|')
            v *= 2;
        if (t == '|')
            v += 1;
        if (f->owed > LLONG_MAX / 2)
            return fail(f, "reply nesting too large");
        f->owed += v;
        return item_done(f);
    default:
        snprintf(f->errbuf, sizeof f->errbuf,
                 "unknown reply type byte 0x%02x", (unsigned char)t);
        return fail(f, f->errbuf);
    }
}

/* The common replies in one pass, there whole from their first byte: a
 * short status, error or integer line, or a bulk string with a plain
 * length. RESP_DONE with f->fr set, or RESP_MORE for "not this case"
 * (the general framer then starts it afresh). */
static int reply_whole(struct resp_framer *f, const char *p, size_t n,
                       const struct resp_limits *lim)
{
    size_t i = 1;
    long long v;

    if (n > 4 && (memcmp(p, "+OK\r", 4) == 0 || memcmp(p, "$-1\r", 4) == 0)) {
        i = 5;                          /* SET's reply, and GET's of a missing key */
    } else if (p[0] == '$') {
        if (!(i = short_number(p, n, 1, &v)) || (unsigned long long)v + 2 > n - i)
            return RESP_MORE;
        i += (size_t)v + 2;
    } else if (p[0] == '+' || p[0] == '-' || p[0] == ':') {
        size_t near = n < 64 ? n : 64;
        while (i < near && p[i] != '\r')
            i++;
        if (i + 1 >= near || i > (p[0] == ':' ? RESP_MAX_HEADER : lim->max_line))
            return RESP_MORE;
        i += 2;
    } else {
        return RESP_MORE;
    }
    f->fr.len = i;
    f->fr.type = p[0];
    f->fr.name_off = f->fr.name_len = 0;
    f->fr.argc = 0;
    f->fr.is_inline = 0;
    return RESP_DONE;
}

static int reply_framer(struct resp_framer *f, const char *p, size_t n,
                        const struct resp_limits *lim) __attribute__((noinline));

int resp_frame_reply(struct resp_framer *f, const char *p, size_t n,
                     const struct resp_limits *lim)
{
    if (f->phase == P_START && n > 3 && reply_whole(f, p, n, lim) == RESP_DONE)
        return RESP_DONE;
    return reply_framer(f, p, n, lim);
}

static int reply_framer(struct resp_framer *f, const char *p, size_t n,
                        const struct resp_limits *lim)
{
    int rc;

    for (;;) {
        switch (f->phase) {
        case P_START:
            if (n == 0)
                return RESP_MORE;
            memset(&f->fr, 0, sizeof f->fr);
            f->fr.type = p[0];
            f->off = f->scan = 0;
            f->owed = 1;
            f->nstreamed = 0;
            f->phase = P_ITEM;
            continue;
        case P_ITEM:
            rc = reply_item(f, p, n, lim);
            break;
        case P_ITEM_BODY:
            if ((long long)(n - f->off) < f->bulk)
                return RESP_MORE;
            f->off += (size_t)f->bulk;
            rc = item_done(f);
            break;
        case P_CHUNK:
            rc = reply_chunk(f, p, n);
            break;
        case P_CHUNK_BODY:
            if ((long long)(n - f->off) < f->bulk)
                return RESP_MORE;
            f->off += (size_t)f->bulk;
            f->phase = P_CHUNK;
            rc = STEP;
            break;
        default:
            return fail(f, "framer used for the wrong direction");
        }
        if (rc != STEP)
            return rc;
    }
}

long long resp_known(const struct resp_framer *f)
{
    long long k = (long long)f->off;

    if (f->phase == P_ITEM_BODY || f->phase == P_CHUNK_BODY || f->phase == P_ARG_BODY)
        k += f->bulk;
    return k;
}

size_t resp_reply_skippable(const struct resp_framer *f, size_t n)
{
    size_t k = f->off;

    if ((f->phase == P_ITEM_BODY || f->phase == P_CHUNK_BODY) && n > f->off)
        k += n - f->off < (unsigned long long)f->bulk ? n - f->off : (size_t)f->bulk;
    return k;
}

size_t resp_reply_skip(struct resp_framer *f, size_t n)
{
    size_t k = resp_reply_skippable(f, n);

    if (f->phase == P_ITEM_BODY || f->phase == P_CHUNK_BODY)
        f->bulk -= (long long)(k - f->off);
    f->off = f->scan = 0;
    return k;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Between tokens and after a closing quote, redis's sdssplitargs takes
 * isspace(); a bare token ends only at one of these. */
static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int ends_token(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0';
}

/* One double-quoted token starting after the quote; its decoded bytes go
 * to tok. Returns the index after the closing quote, or 0 when unbalanced. */
static size_t inline_dquoted(const char *s, size_t i, size_t len, struct buf *tok)
{
    static const char esc_from[] = "nrtba", esc_to[] = "\n\r\t\b\a";

    while (i < len) {
        char c = s[i];
        if (c == '\\' && i + 3 < len && s[i + 1] == 'x' &&
            hex_digit(s[i + 2]) >= 0 && hex_digit(s[i + 3]) >= 0) {
            char b = (char)(hex_digit(s[i + 2]) * 16 + hex_digit(s[i + 3]));
            buf_append(tok, &b, 1);
            i += 4;
        } else if (c == '\\' && i + 1 < len) {
            const char *e = strchr(esc_from, s[i + 1]);
            char b = (e && s[i + 1]) ? esc_to[e - esc_from] : s[i + 1];
            buf_append(tok, &b, 1);
            i += 2;
        } else if (c == '"') {
            return (i + 1 < len && !is_space(s[i + 1])) ? 0 : i + 1;
        } else {
            buf_append(tok, &c, 1);
            i++;
        }
    }
    return 0;
}

static size_t inline_squoted(const char *s, size_t i, size_t len, struct buf *tok)
{
    while (i < len) {
        char c = s[i];
        if (c == '\\' && i + 1 < len && s[i + 1] == '\'') {
            buf_append(tok, "'", 1);
            i += 2;
        } else if (c == '\'') {
            return (i + 1 < len && !is_space(s[i + 1])) ? 0 : i + 1;
        } else {
            buf_append(tok, &c, 1);
            i++;
        }
    }
    return 0;
}

long long resp_inline_to_multibulk(const char *line, size_t len,
                                   struct buf *out, const char **err)
{
    struct buf args = {0}, tok = {0};
    long long argc = 0;
    size_t i = 0;

    while (i < len) {
        while (i < len && is_space(line[i]))
            i++;
        if (i == len)
            break;
        buf_reset(&tok);
        /* A token is runs of bare bytes and quoted parts, as sdssplitargs. */
        while (i < len && !ends_token(line[i])) {
            if (line[i] == '"' || line[i] == '\'') {
                size_t next = line[i] == '"'
                    ? inline_dquoted(line, i + 1, len, &tok)
                    : inline_squoted(line, i + 1, len, &tok);
                if (next == 0) {
                    buf_free(&args);
                    buf_free(&tok);
                    *err = "Protocol error: unbalanced quotes in request";
                    return -1;
                }
                i = next;
                break;
            }
            buf_append(&tok, &line[i], 1);
            i++;
        }
        buf_appendf(&args, "$%zu\r\n", buf_used(&tok));
        /* An empty first token ("") has no memory yet: no memcpy from NULL. */
        if (buf_used(&tok))
            buf_append(&args, buf_start(&tok), buf_used(&tok));
        buf_append(&args, "\r\n", 2);
        argc++;
    }
    if (argc > 0) {
        buf_appendf(out, "*%lld\r\n", argc);
        buf_append(out, buf_start(&args), buf_used(&args));
    }
    buf_free(&args);
    buf_free(&tok);
    return argc;
}

int resp_next_arg(const char *frame, size_t frame_len, size_t *pos,
                  const char **arg, size_t *len)
{
    size_t i = *pos;
    long long v;

    if (i == 0) {
        const char *cr = memchr(frame, '\r', frame_len);
        if (!cr)
            return 0;
        i = (size_t)(cr - frame) + 2;
    }
    if (i >= frame_len || frame[i] != '$')
        return 0;
    const char *cr = memchr(frame + i, '\r', frame_len - i);
    if (!cr || resp_parse_ll(frame + i + 1, (size_t)(cr - frame) - i - 1, &v) < 0)
        return 0;
    i = (size_t)(cr - frame) + 2;
    if (v < 0 || i + (size_t)v + 2 > frame_len)
        return 0;
    *arg = frame + i;
    *len = (size_t)v;
    *pos = i + (size_t)v + 2;
    return 1;
}

void resp_collect_args(const char *frame, const struct resp_frame *fr, struct resp_args *a)
{
    size_t pos = 0;
    int i = 0;

    a->argc = fr->argc;
    while (i < RESP_ARGS_MAX && resp_next_arg(frame, fr->len, &pos, &a->v[i], &a->l[i]))
        i++;
}

int resp_arg_is(const struct resp_args *a, int i, const char *s)
{
    size_t n = strlen(s);

    if (i >= RESP_ARGS_MAX || i >= a->argc || a->l[i] != n)
        return 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)a->v[i][k];
        if ((ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) != (unsigned char)s[k])
            return 0;
    }
    return 1;
}

int resp_arg(const char *frame, const struct resp_frame *fr, int i, const char **p, size_t *n)
{
    size_t pos = 0;

    for (int k = 0; k <= i; k++)
        if (!resp_next_arg(frame, fr->len, &pos, p, n))
            return 0;
    return 1;
}
