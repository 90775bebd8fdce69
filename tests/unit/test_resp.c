/* Unit tests for lib/resp.c. Each case states the framer's whole answer:
 * return code, frame length, argc, command name, and on error the reason,
 * in redis's words where redis has fixed ones (networking.c), so that the
 * proxy refuses what redis would, as redis would. Every message is also
 * fed split at every point and byte by byte: the proxy hands the framer
 * whatever one read() brought. */
#include "../../lib/resp.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { REQ, REP };

/* A string literal as (pointer, length), NULs inside included. */
#define S(lit) (lit), (sizeof(lit) - 1)

#define KIB 1024

static const struct resp_limits lim = {
    .max_bulk = 64LL * KIB * KIB,
    .max_line = 64 * KIB,
};

/* A framer's whole answer for one message. len 0 means the whole message
 * (a frame is never empty). */
struct want {
    int         rc;
    size_t      len;
    long long   argc;
    size_t      name_off, name_len;
    int         is_inline;
    char        type;
    const char *err;
};

#define WANT_REQ(len, argc, off, nlen) \
    (&(struct want){ RESP_DONE, (len), (argc), (off), (nlen), 0, 0, NULL })
#define WANT_INLINE(len) (&(struct want){ RESP_DONE, (len), 0, 0, 0, 1, 0, NULL })
#define WANT_REPLY(t)    (&(struct want){ RESP_DONE, 0, 0, 0, 0, 0, (t), NULL })
#define WANT_MORE        (&(struct want){ RESP_MORE, 0, 0, 0, 0, 0, 0, NULL })
#define WANT_ERR(why)    (&(struct want){ RESP_ERR, 0, 0, 0, 0, 0, 0, (why) })

#define E_MBULK  "Protocol error: invalid multibulk length"
#define E_BULK   "Protocol error: invalid bulk length"
#define E_DOLLAR "Protocol error: expected '$', got '*'"

static int run_lim(int dir, struct resp_framer *f, const char *p, size_t n,
                   const struct resp_limits *l)
{
    return dir == REP ? resp_frame_reply(f, p, n, l)
                      : resp_frame_request(f, p, n, l);
}

static int run(int dir, struct resp_framer *f, const char *p, size_t n)
{
    return run_lim(dir, f, p, n, &lim);
}

/* Whether answer rc of framer f, fed n bytes, is w; if not, says what came
 * instead, ahead of the CHECK's own line. */
static int matches(const struct resp_framer *f, int rc, size_t n,
                   const struct want *w)
{
    const struct resp_frame *fr = &f->fr;
    int ok = rc == w->rc;

    if (ok && rc == RESP_DONE)
        ok = fr->len == (w->len ? w->len : n) && fr->argc == w->argc &&
             fr->name_off == w->name_off && fr->name_len == w->name_len &&
             fr->is_inline == w->is_inline && fr->type == w->type;
    if (ok && rc == RESP_ERR)
        ok = f->err && strcmp(f->err, w->err) == 0;
    if (!ok)
        printf("  got rc %d len %zu argc %lld name %zu+%zu inline %d "
               "type 0x%02x err \"%s\"\n", rc, fr->len, fr->argc,
               fr->name_off, fr->name_len, fr->is_inline,
               (unsigned char)fr->type,
               rc == RESP_ERR && f->err ? f->err : "");
    return ok;
}

static int frames_as_lim(int dir, const char *p, size_t n,
                         const struct resp_limits *l, const struct want *w)
{
    struct resp_framer f;

    resp_framer_reset(&f);
    return matches(&f, run_lim(dir, &f, p, n, l), n, w);
}

static int frames_as(int dir, const char *p, size_t n, const struct want *w)
{
    return frames_as_lim(dir, p, n, &lim, w);
}

/* The answer for message p must not depend on how it arrives. Split at k
 * (every k below 16 or within 16 of the end, and every stride-th one
 * between), a fresh framer asks for more for p[0..k) and then, fed the
 * whole, answers w. And one framer fed one byte more per call, as the
 * proxy feeds its growing query buffer, ends with w. A message that fails
 * may fail at an earlier k, but with the same reason. */
static int splits_as_lim(int dir, const char *p, size_t n, size_t stride,
                         const struct resp_limits *l, const struct want *w)
{
    struct resp_framer f;
    int rc;

    for (size_t k = 0; k < n; k++) {
        if (k >= 16 && k + 16 < n && k % stride != 0)
            continue;
        resp_framer_reset(&f);
        rc = run_lim(dir, &f, p, k, l);
        if (rc == RESP_MORE)
            rc = run_lim(dir, &f, p, n, l);
        if (!matches(&f, rc, n, w)) {
            printf("  fresh framer split at %zu of %zu\n", k, n);
            return 0;
        }
    }
    resp_framer_reset(&f);
    for (size_t k = 0; k <= n; k++) {
        rc = run_lim(dir, &f, p, k, l);
        if (rc == RESP_MORE && k < n)
            continue;
        if (!matches(&f, rc, n, w)) {
            printf("  one framer fed byte by byte, at %zu of %zu\n", k, n);
            return 0;
        }
        break;
    }
    return 1;
}

static int splits_as(int dir, const char *p, size_t n, size_t stride,
                     const struct want *w)
{
    return splits_as_lim(dir, p, n, stride, &lim, w);
}

static int splits_as1(int dir, const char *p, size_t n, const struct want *w)
{
    return splits_as(dir, p, n, 1, w);
}

/* Whole and at every split point; the arguments after dir are p, n and w,
 * variadic so that S() may give the first two. */
#define CHECK_FRAMES(dir, ...) do { \
    CHECK(frames_as((dir), __VA_ARGS__)); \
    CHECK(splits_as1((dir), __VA_ARGS__)); \
} while (0)

/* A stream framed as the proxy frames it: after RESP_DONE the frame's
 * bytes are consumed and the framer is called again on what follows. */
struct stream {
    struct resp_frame *fr;  /* one per frame; room for as many as bytes */
    size_t nfr;
    size_t used;            /* bytes the frames took */
    int    rc;              /* the answer that ended it: MORE or ERR */
    int    bad;             /* a frame was empty or ran past the bytes */
    char   err[64];
};

/* bytewise: the bytes arrive one per call into the same framer. */
static void stream_frames(int dir, const char *p, size_t n, int bytewise,
                          struct stream *s)
{
    struct resp_framer f;
    size_t have = bytewise ? 0 : n;

    resp_framer_reset(&f);
    s->nfr = s->used = 0;
    s->bad = 0;
    s->err[0] = '\0';
    for (;;) {
        int rc = run(dir, &f, p + s->used, have - s->used);
        if (rc == RESP_DONE) {
            if (f.fr.len == 0 || f.fr.len > have - s->used) {
                s->bad = 1;
                s->rc = rc;
                return;
            }
            s->fr[s->nfr++] = f.fr;
            s->used += f.fr.len;
            continue;
        }
        if (rc == RESP_MORE && have < n) {
            have++;
            continue;
        }
        s->rc = rc;
        if (rc == RESP_ERR)
            snprintf(s->err, sizeof s->err, "%s", f.err ? f.err : "(none)");
        return;
    }
}

static int same_frame(const struct resp_frame *a, const struct resp_frame *b)
{
    return a->len == b->len && a->argc == b->argc &&
           a->name_off == b->name_off && a->name_len == b->name_len &&
           a->is_inline == b->is_inline && a->type == b->type;
}

static int same_stream(const struct stream *a, const struct stream *b)
{
    if (a->nfr != b->nfr || a->used != b->used || a->rc != b->rc ||
        a->bad != b->bad || strcmp(a->err, b->err) != 0)
        return 0;
    for (size_t i = 0; i < a->nfr; i++)
        if (!same_frame(&a->fr[i], &b->fr[i]))
            return 0;
    return 1;
}

static char *repeat(const char *unit, size_t units, const char *tail,
                    size_t *n)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *p = malloc(ul * units + tl);

    for (size_t i = 0; i < units; i++)
        memcpy(p + i * ul, unit, ul);
    memcpy(p + ul * units, tail, tl);
    *n = ul * units + tl;
    return p;
}

/* xorshift64*: fixed seeds make every failure reproducible. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void test_request_multibulk(void)
{
    CHECK_FRAMES(REQ, S("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
                 WANT_REQ(0, 3, 8, 3));
    /* Bulk data is counted, never scanned: CR, LF and NUL inside. */
    CHECK_FRAMES(REQ, S("*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$5\r\n\r\n\0\n\r\r\n"),
                 WANT_REQ(0, 3, 8, 3));
    CHECK_FRAMES(REQ, S("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"), WANT_REQ(0, 2, 8, 4));
    CHECK_FRAMES(REQ, S("*1\r\n$0\r\n\r\n"), WANT_REQ(0, 1, 8, 0));
    CHECK_FRAMES(REQ, S("*1\r\n$10\r\n0123456789\r\n"), WANT_REQ(0, 1, 9, 10));
    CHECK_FRAMES(REQ, S("*1\r\n$4\r\nPI\r\n\r\n"), WANT_REQ(0, 1, 8, 4));
    /* redis ignores these; the proxy must not forward them. */
    CHECK_FRAMES(REQ, S("*0\r\n"), WANT_REQ(0, 0, 0, 0));
    CHECK_FRAMES(REQ, S("*-1\r\n"), WANT_REQ(0, 0, 0, 0));
    /* The frame ends where the request does, whatever follows. */
    CHECK(frames_as(REQ, S("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI"),
                    WANT_REQ(14, 1, 8, 4)));
    CHECK(frames_as(REQ, S("*0\r\nPING\r\n"), WANT_REQ(4, 0, 0, 0)));
    /* A count redis accepts: the arguments are then owed. */
    CHECK(frames_as(REQ, S("*2147483647\r\n"), WANT_MORE));
    CHECK(frames_as(REQ, S("*1\r\n$67108864\r\n"), WANT_MORE));
    CHECK(frames_as(REQ, S(""), WANT_MORE));
}

static void test_request_inline(void)
{
    CHECK_FRAMES(REQ, S("PING\r\n"), WANT_INLINE(0));
    CHECK_FRAMES(REQ, S("PING\n"), WANT_INLINE(0));
    CHECK_FRAMES(REQ, S("\r\n"), WANT_INLINE(0));
    CHECK_FRAMES(REQ, S("\n"), WANT_INLINE(0));
    CHECK_FRAMES(REQ, S("set k \"a b\"\r\n"), WANT_INLINE(0));
    CHECK(frames_as(REQ, S("PING\r\nPING\r\n"), WANT_INLINE(6)));
    CHECK(frames_as(REQ, S("PING\r"), WANT_MORE));
    /* The first byte decides, as in redis: '$' is not an array. */
    CHECK(frames_as(REQ, S("$4\r\nPING\r\n"), WANT_INLINE(4)));
    /* A NUL before the line's end would hide it from redis (strchr) for
     * good: the error at once, also when it came in an earlier piece. */
    static const char nul_err[] = "Protocol error: NUL byte in an inline request";
    CHECK_FRAMES(REQ, S("GET k\0\r\n"), WANT_ERR(nul_err));
    CHECK(frames_as(REQ, S("GET\0k\r\nPING\r\n"), WANT_ERR(nul_err)));
    CHECK(frames_as(REQ, S("GET\0"), WANT_ERR(nul_err)));
    CHECK(frames_as(REQ, S("PING\r\nGET\0k\r\n"), WANT_INLINE(6)));
    struct resp_framer f;
    resp_framer_reset(&f);
    CHECK(run(REQ, &f, S("GE")) == RESP_MORE && run(REQ, &f, S("GE\0T k\r\n")) == RESP_ERR &&
          strcmp(f.err, nul_err) == 0);
}

static void test_request_pipeline(void)
{
    static const char p[] =
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"  /* 27 */
        "PING\r\n"                                 /* 6 */
        "*0\r\n"                                   /* 4 */
        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"           /* 20 */
        "\r\n"                                     /* 2 */
        "*-1\r\n"                                  /* 5 */
        "*1\r\n$4\r\nPI";                          /* incomplete */
    static const struct resp_frame want[] = {
        { .len = 27, .argc = 3, .name_off = 8, .name_len = 3 },
        { .len = 6, .is_inline = 1 },
        { .len = 4 },
        { .len = 20, .argc = 2, .name_off = 8, .name_len = 3 },
        { .len = 2, .is_inline = 1 },
        { .len = 5 },
    };
    struct resp_frame fr[sizeof p];

    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        struct stream s = { .fr = fr };
        stream_frames(REQ, p, sizeof p - 1, bytewise, &s);
        CHECK(s.nfr == 6);
        CHECK(s.rc == RESP_MORE);
        CHECK(!s.bad);
        CHECK(s.used == 64);
        for (size_t i = 0; i < 6 && i < s.nfr; i++)
            if (!CHECK(same_frame(&s.fr[i], &want[i])))
                printf("  frame %zu, bytewise %d\n", i, bytewise);
    }
}

static void test_request_errors(void)
{
    size_t n;
    char *p;

    CHECK_FRAMES(REQ, S("*99999999999\r\n"), WANT_ERR(E_MBULK));
    /* A bulk limit near LLONG_MAX: its length plus CRLF must not overflow. */
    static const struct resp_limits huge = { .max_bulk = LLONG_MAX, .max_line = 64 };
    CHECK(frames_as_lim(REQ, S("*1\r\n$9223372036854775806\r\n"), &huge, WANT_ERR(E_BULK)));
    CHECK(frames_as_lim(REQ, S("*1\r\n$9223372036854775805\r\n"), &huge, WANT_MORE));
    CHECK_FRAMES(REQ, S("*2147483648\r\n"), WANT_ERR(E_MBULK));
    CHECK_FRAMES(REQ, S("*abc\r\n"), WANT_ERR(E_MBULK));
    CHECK_FRAMES(REQ, S("*\r\n"), WANT_ERR(E_MBULK));
    CHECK_FRAMES(REQ, S("*01\r\n"), WANT_ERR(E_MBULK));
    CHECK_FRAMES(REQ, S("*-0\r\n"), WANT_ERR(E_MBULK));
    CHECK_FRAMES(REQ, S("*1\r\n$-5\r\n"), WANT_ERR(E_BULK));
    CHECK_FRAMES(REQ, S("*1\r\n$-1\r\n"), WANT_ERR(E_BULK));
    CHECK_FRAMES(REQ, S("*1\r\n$-0\r\n\r\n"), WANT_ERR(E_BULK));
    CHECK_FRAMES(REQ, S("*1\r\n$x\r\n"), WANT_ERR(E_BULK));
    /* Over the cap: refused on the header, before the data arrives. */
    CHECK_FRAMES(REQ, S("*1\r\n$600000000\r\n"), WANT_ERR(E_BULK));
    CHECK_FRAMES(REQ, S("*1\r\n$67108865\r\n"), WANT_ERR(E_BULK));
    CHECK_FRAMES(REQ, S("*1\r\n*1\r\n"), WANT_ERR(E_DOLLAR));
    CHECK_FRAMES(REQ, S("*2\r\n$3\r\nGET\r\n:1\r\n"),
                 WANT_ERR("Protocol error: expected '$', got ':'"));

    /* Nesting is not a request: the second header already fails. */
    p = repeat("*1\r\n", 100000, "", &n);
    CHECK(frames_as(REQ, p, n, WANT_ERR(E_DOLLAR)));
    CHECK(splits_as(REQ, p, n, 4099, WANT_ERR(E_DOLLAR)));
    free(p);

    /* Lines without end, over 64 KiB of unconsumed bytes (redis's
     * PROTO_INLINE_MAX_SIZE, counted from the line's start). */
    p = repeat("a", 70 * KIB, "", &n);
    CHECK(frames_as(REQ, p, n, WANT_ERR("Protocol error: too big inline request")));
    CHECK(frames_as(REQ, p, 64 * KIB, WANT_MORE));
    CHECK(frames_as(REQ, p, 64 * KIB + 1,
                    WANT_ERR("Protocol error: too big inline request")));
    CHECK(splits_as(REQ, p, n, 1021,
                    WANT_ERR("Protocol error: too big inline request")));
    /* With its LF: the same cap, however the line arrives (a line over it
     * was taken whole and refused in pieces). */
    memcpy(p + 64 * KIB, "\n", 1);
    CHECK(frames_as(REQ, p, 64 * KIB + 1, WANT_INLINE(0)));
    CHECK(splits_as(REQ, p, 64 * KIB + 1, 1021, WANT_INLINE(0)));
    memcpy(p + 64 * KIB, "a\r\n", 3);
    CHECK(frames_as(REQ, p, 64 * KIB + 3, WANT_ERR("Protocol error: too big inline request")));
    CHECK(splits_as(REQ, p, 64 * KIB + 3, 1021,
                    WANT_ERR("Protocol error: too big inline request")));
    free(p);

    p = repeat("7", 70 * KIB, "", &n);
    p[0] = '*';
    CHECK(frames_as(REQ, p, n, WANT_ERR("Protocol error: too big mbulk count string")));
    CHECK(frames_as(REQ, p, 64 * KIB, WANT_MORE));
    CHECK(frames_as(REQ, p, 64 * KIB + 1,
                    WANT_ERR("Protocol error: too big mbulk count string")));
    CHECK(splits_as(REQ, p, n, 1021,
                    WANT_ERR("Protocol error: too big mbulk count string")));
    free(p);

    p = repeat("7", 70 * KIB, "", &n);
    memcpy(p, "*1\r\n$", 5);
    CHECK(frames_as(REQ, p, n, WANT_ERR("Protocol error: too big bulk count string")));
    CHECK(frames_as(REQ, p, 4 + 64 * KIB, WANT_MORE));
    CHECK(frames_as(REQ, p, 4 + 64 * KIB + 1,
                    WANT_ERR("Protocol error: too big bulk count string")));
    CHECK(splits_as(REQ, p, n, 1021,
                    WANT_ERR("Protocol error: too big bulk count string")));
    free(p);
}

static void test_request_big(void)
{
    size_t n = 1024 * KIB + 64;
    char *p = malloc(n);
    uint64_t seed = 7;
    int h = snprintf(p, n, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", 1024 * KIB);

    for (size_t i = (size_t)h; i < n; i++)
        p[i] = (char)rnd(&seed);
    n = (size_t)h + 1024 * KIB + 2;
    memcpy(p + n - 2, "\r\n", 2);
    CHECK(frames_as(REQ, p, n, WANT_REQ(0, 3, 8, 3)));
    CHECK(splits_as(REQ, p, n, 4099, WANT_REQ(0, 3, 8, 3)));
    free(p);
}

static void test_reply_types(void)
{
    CHECK_FRAMES(REP, S("+OK\r\n"), WANT_REPLY('+'));
    CHECK_FRAMES(REP, S("-ERR x\r\n"), WANT_REPLY('-'));
    CHECK_FRAMES(REP, S(":1\r\n"), WANT_REPLY(':'));
    CHECK_FRAMES(REP, S(":-9223372036854775808\r\n"), WANT_REPLY(':'));
    CHECK_FRAMES(REP, S("$3\r\nabc\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("$0\r\n\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("$6\r\na\r\n\0\r\n\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("$-1\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("*-1\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*0\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*3\r\n:1\r\n$-1\r\n*-1\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n$1\r\na\r\n*0\r\n"),
                 WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("_\r\n"), WANT_REPLY('_'));
    CHECK_FRAMES(REP, S(",3.14\r\n"), WANT_REPLY(','));
    CHECK_FRAMES(REP, S(",-inf\r\n"), WANT_REPLY(','));
    CHECK_FRAMES(REP, S("#t\r\n"), WANT_REPLY('#'));
    CHECK_FRAMES(REP, S("(12345678901234567890\r\n"), WANT_REPLY('('));
    CHECK_FRAMES(REP, S("=15\r\ntxt:Some string\r\n"), WANT_REPLY('='));
    CHECK_FRAMES(REP, S("!21\r\nSYNTAX invalid syntax\r\n"), WANT_REPLY('!'));
    /* A map owes two items per entry. */
    CHECK_FRAMES(REP, S("%2\r\n+a\r\n:1\r\n+b\r\n*2\r\n:2\r\n:3\r\n"),
                 WANT_REPLY('%'));
    CHECK_FRAMES(REP, S("%0\r\n"), WANT_REPLY('%'));
    CHECK(frames_as(REP, S("%2\r\n+a\r\n:1\r\n+b\r\n"), WANT_MORE));
    CHECK_FRAMES(REP, S("~3\r\n:1\r\n:2\r\n:3\r\n"), WANT_REPLY('~'));
    CHECK_FRAMES(REP, S(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
                 WANT_REPLY('>'));
    /* An attribute and the reply it describes are one frame (the RESP3
     * spec's example), also inside an aggregate, where it is no element. */
    CHECK_FRAMES(REP, S("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n"
                        "$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n"),
                 WANT_REPLY('|'));
    CHECK(frames_as(REP, S("|1\r\n+a\r\n+b\r\n"), WANT_MORE));
    CHECK_FRAMES(REP, S("*2\r\n|1\r\n+ttl\r\n:3\r\n:1\r\n:2\r\n"), WANT_REPLY('*'));
    CHECK(frames_as(REP, S("*2\r\n|1\r\n+ttl\r\n:3\r\n:1\r\n"), WANT_MORE));
    /* Streamed strings and aggregates (RESP3 spec), at every split. */
    CHECK_FRAMES(REP, S("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"),
                 WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("$?\r\n;0\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("$?\r\n;3\r\n;0\r\r\n;0\r\n"), WANT_REPLY('$'));
    CHECK_FRAMES(REP, S("*?\r\n:1\r\n:2\r\n:3\r\n.\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*?\r\n.\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n"), WANT_REPLY('%'));
    CHECK_FRAMES(REP, S("~?\r\n$?\r\n;1\r\nx\r\n;0\r\n*2\r\n:1\r\n*?\r\n.\r\n.\r\n"),
                 WANT_REPLY('~'));
    /* A streamed aggregate is one element of a counted one, and back. */
    CHECK_FRAMES(REP, S("*2\r\n*?\r\n:1\r\n*1\r\n:2\r\n.\r\n:3\r\n"), WANT_REPLY('*'));
    CHECK(frames_as(REP, S("*2\r\n*?\r\n:1\r\n.\r\n"), WANT_MORE));
    CHECK(frames_as(REP, S("*?\r\n:1\r\n:2\r\n"), WANT_MORE));
    CHECK(frames_as(REP, S("$?\r\n;2\r\nab\r\n"), WANT_MORE));
    /* The frame ends where the reply does. */
    CHECK(frames_as(REP, S("+OK\r\n:1\r\n"),
                    &(struct want){ RESP_DONE, 5, 0, 0, 0, 0, '+', NULL }));
    CHECK(frames_as(REP, S(""), WANT_MORE));
    /* Not in the caps: a long length line is MORE until 64 KiB. */
    CHECK(frames_as(REP, S("$9223372036854775805\r\n"), WANT_MORE));
}

static void test_reply_pipeline(void)
{
    static const char p[] = "+OK\r\n:1\r\n*2\r\n$1\r\nx\r\n_\r\n>1\r\n+p\r\n$1\r\n";
    static const size_t lens[] = { 5, 4, 14, 8 };
    static const char types[] = { '+', ':', '*', '>' };
    struct resp_frame fr[sizeof p];

    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        struct stream s = { .fr = fr };
        stream_frames(REP, p, sizeof p - 1, bytewise, &s);
        CHECK(s.nfr == 4);
        CHECK(s.rc == RESP_MORE);
        CHECK(s.used == 31);
        for (size_t i = 0; i < 4 && i < s.nfr; i++)
            CHECK(s.fr[i].len == lens[i] && s.fr[i].type == types[i]);
    }
}

static void test_reply_errors(void)
{
    static const struct resp_limits small = { .max_bulk = 16, .max_line = 16 };

    CHECK_FRAMES(REP, S("X\r\n"), WANT_ERR("unknown reply type byte 0x58"));
    CHECK_FRAMES(REP, S("*2\r\n:1\r\n\x01\r\n"),
                 WANT_ERR("unknown reply type byte 0x01"));
    CHECK_FRAMES(REP, S("$-2\r\n"), WANT_ERR("bad bulk length in reply"));
    CHECK_FRAMES(REP, S("$abc\r\n"), WANT_ERR("bad bulk length in reply"));
    CHECK_FRAMES(REP, S("=01\r\n"), WANT_ERR("bad bulk length in reply"));
    /* Owing the length plus CRLF must not overflow. */
    CHECK_FRAMES(REP, S("$9223372036854775806\r\n"),
                 WANT_ERR("bad bulk length in reply"));
    CHECK_FRAMES(REP, S("$9223372036854775807\r\n"),
                 WANT_ERR("bad bulk length in reply"));
    CHECK_FRAMES(REP, S("*-2\r\n"), WANT_ERR("bad aggregate length in reply"));
    CHECK_FRAMES(REP, S("%x\r\n"), WANT_ERR("bad aggregate length in reply"));
    CHECK_FRAMES(REP, S("*2147483648\r\n"), WANT_ERR("bad aggregate length in reply"));
    /* max_line bounds a simple line still without its end. */
    CHECK(frames_as_lim(REP, S("+0123456789abcde"), &small, WANT_MORE));
    CHECK(frames_as_lim(REP, S("+0123456789abcdef"), &small,
                        WANT_ERR("reply line too long")));
    CHECK(frames_as_lim(REP, S("-0123456789abcdef"), &small,
                        WANT_ERR("reply line too long")));
    CHECK(frames_as_lim(REP, S(":0123456789abcdefX"), &small, WANT_MORE));
    /* A line's length is its bytes before the CR, complete or not: whole
     * and in any pieces the same answer (fuzzing found a line at the cap
     * refused when its LF came later, and one over it taken whole). */
    CHECK(splits_as_lim(REP, S("+0123456789abcde\r\n"), 1, &small, WANT_REPLY('+')));
    CHECK(splits_as_lim(REP, S("*2\r\n:1\r\n-0123456789abcde\r\n"), 1, &small,
                        WANT_REPLY('*')));
    CHECK(frames_as_lim(REP, S("+0123456789abcdef\r\n"), &small,
                        WANT_ERR("reply line too long")));
    CHECK(splits_as_lim(REP, S("+0123456789abcdef\r\n"), 1, &small,
                        WANT_ERR("reply line too long")));
    CHECK(splits_as_lim(REP, S("*1\r\n-0123456789abcdef\r\n"), 1, &small,
                        WANT_ERR("reply line too long")));
    size_t big;
    char *line = repeat("7", RESP_MAX_HEADER, "\r\n", &big);
    line[0] = ':';
    CHECK(frames_as(REP, line, big, WANT_REPLY(':')));
    CHECK(splits_as(REP, line, big, 4093, WANT_REPLY(':')));
    free(line);
    line = repeat("7", RESP_MAX_HEADER + 1, "\r\n", &big);
    line[0] = '(';
    CHECK(frames_as(REP, line, big, WANT_ERR("reply line too long")));
    CHECK(splits_as(REP, line, big, 4093, WANT_ERR("reply line too long")));
    free(line);
    /* Streamed types, malformed. */
    CHECK_FRAMES(REP, S(".\r\n"), WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("*1\r\n.\r\n"), WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("*?\r\n.x\r\n"), WANT_ERR("unexpected '.' in reply"));
    /* The end of a streamed aggregate while an element of it is half read. */
    CHECK_FRAMES(REP, S("*?\r\n*2\r\n.\r\n"), WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("*?\r\n*2\r\n:1\r\n.\r\n"), WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("~?\r\n%1\r\n:1\r\n.\r\n"), WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("*?\r\n*?\r\n:1\r\n.\r\n:2\r\n*1\r\n.\r\n"),
                 WANT_ERR("unexpected '.' in reply"));
    CHECK_FRAMES(REP, S("*?\r\n*2\r\n:1\r\n:2\r\n.\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*?\r\n*?\r\n:1\r\n.\r\n%?\r\n.\r\n.\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("*2\r\n*?\r\n$?\r\n;1\r\na\r\n;0\r\n.\r\n:1\r\n"), WANT_REPLY('*'));
    CHECK_FRAMES(REP, S("$?x\n"), WANT_ERR("bad streamed string header in reply"));
    CHECK_FRAMES(REP, S("*?\rx"), WANT_ERR("bad streamed aggregate header in reply"));
    CHECK_FRAMES(REP, S("$?\r\n:1\r\n"), WANT_ERR("bad streamed string chunk in reply"));
    CHECK_FRAMES(REP, S("$?\r\n;-1\r\n"), WANT_ERR("bad streamed string chunk in reply"));
    CHECK_FRAMES(REP, S(">?\r\n"), WANT_ERR("bad aggregate length in reply"));
    size_t n;
    char *deep = repeat("*?\r\n", RESP_MAX_STREAMED, "", &n);
    CHECK(frames_as(REP, deep, n, WANT_MORE));
    free(deep);
    deep = repeat("*?\r\n", RESP_MAX_STREAMED + 1, "", &n);
    CHECK(frames_as(REP, deep, n, WANT_ERR("streamed aggregates nested too deep in reply")));
    free(deep);
}

static void test_reply_deep(void)
{
    size_t n;
    char *p = repeat("*1\r\n", 10000, ":1\r\n", &n);

    CHECK(n == 40004);
    CHECK(frames_as(REP, p, n, WANT_REPLY('*')));
    CHECK(splits_as(REP, p, n, 97, WANT_REPLY('*')));
    CHECK(frames_as(REP, p, n - 1, WANT_MORE));
    free(p);

    p = repeat("%1\r\n:0\r\n", 10000, "_\r\n", &n);
    CHECK(frames_as(REP, p, n, WANT_REPLY('%')));
    CHECK(splits_as(REP, p, n, 997, WANT_REPLY('%')));
    free(p);
}

/* A reply nobody will read, dropped as it comes: what the framer says it
 * is known to hold, and the frame ending in the right place afterwards. */
static void test_reply_skip(void)
{
    static const char msg[] = "*2\r\n$10\r\n0123456789\r\n:7\r\n+NEXT\r\n";
    struct resp_framer f;
    size_t dropped = 0, have = 9;            /* "*2\r\n$10\r\n": the body begins */

    resp_framer_reset(&f);
    CHECK(resp_frame_reply(&f, msg, have, &lim) == RESP_MORE);
    CHECK(resp_known(&f) == 9 + 12);
    {   /* a request: its header and the whole of the bulk being read */
        static const char req[] = "*2\r\n$3\r\nGET\r\n$1000\r\nab";
        struct resp_framer q;
        resp_framer_reset(&q);
        CHECK(resp_frame_request(&q, req, sizeof req - 1, &lim) == RESP_MORE);
        CHECK(resp_known(&q) == 20 + 1002);   /* "*2..$1000\r\n" is 20 */
    }
    /* Fed 3 bytes of body at a time, each time dropped. */
    while (have < 21) {
        size_t n = have - dropped;
        int rc = resp_frame_reply(&f, msg + dropped, n, &lim);
        CHECK(rc == RESP_MORE);
        dropped += resp_reply_skip(&f, n);
        have += 3;
    }
    have = sizeof msg - 1;
    CHECK(resp_frame_reply(&f, msg + dropped, have - dropped, &lim) == RESP_DONE);
    CHECK(dropped + f.fr.len == 25);         /* the frame ends before "+NEXT" */
    resp_framer_reset(&f);
    CHECK(frames_as(REP, msg + 25, have - 25, WANT_REPLY('+')));
    /* A header line not complete yet is not dropped. */
    resp_framer_reset(&f);
    CHECK(resp_frame_reply(&f, S("*2\r\n$10"), &lim) == RESP_MORE);
    CHECK(resp_reply_skip(&f, 8) == 4);
}

static void test_reply_big(void)
{
    size_t n = 1024 * KIB + 64;
    char *p = malloc(n);
    uint64_t seed = 11;
    int h = snprintf(p, n, "$%d\r\n", 1024 * KIB);

    for (size_t i = (size_t)h; i < n; i++)
        p[i] = (char)rnd(&seed);
    n = (size_t)h + 1024 * KIB + 2;
    memcpy(p + n - 2, "\r\n", 2);
    CHECK(frames_as(REP, p, n, WANT_REPLY('$')));
    CHECK(splits_as(REP, p, n, 4099, WANT_REPLY('$')));
    CHECK(frames_as(REP, p, n - 1, WANT_MORE));
    free(p);
}

/* Random valid RESP, with where each frame ends and what it is. */
struct gen {
    struct buf b;
    struct resp_frame *fr;  /* the frames made so far */
    size_t nfr;
};

static void gen_bulk(struct buf *b, uint64_t *s, char type)
{
    static const char bytes[] = "ab\r\n$*:";
    unsigned len = (unsigned)(rnd(s) % 9);

    if (type == ';' && len == 0)        /* a streamed string's chunk: ;0 ends it */
        len = 1;
    buf_appendf(b, "%c%u\r\n", type, len);
    for (unsigned i = 0; i < len; i++)
        buf_append(b, &bytes[rnd(s) % (sizeof bytes - 1)], 1);
    buf_append(b, "\r\n", 2);
}

static void gen_reply(struct buf *b, uint64_t *s, int depth)
{
    static const char types[] = "+-:_,#($!=*~>%|";
    char t = types[rnd(s) % (sizeof types - 1)];
    unsigned n = (unsigned)(rnd(s) % 4);

    if (depth >= 4 && strchr("*~>%|", t))
        t = ':';
    switch (t) {
    case '_':
        buf_append(b, "_\r\n", 3);
        break;
    case '$': case '!': case '=':
        if (t == '$' && n == 0) {
            buf_append(b, "$-1\r\n", 5);
        } else if (t == '$' && n == 1) {         /* streamed, in chunks */
            buf_append(b, "$?\r\n", 4);
            for (unsigned k = (unsigned)(rnd(s) % 3); k > 0; k--)
                gen_bulk(b, s, ';');
            buf_append(b, ";0\r\n", 4);
        } else {
            gen_bulk(b, s, t);
        }
        break;
    case '*': case '~': case '>': case '%': case '|':
        if (t == '*' && rnd(s) % 5 == 0) {
            buf_append(b, "*-1\r\n", 5);
            break;
        }
        if (t != '>' && t != '|' && rnd(s) % 5 == 0) {   /* streamed */
            buf_appendf(b, "%c?\r\n", t);
            for (unsigned i = 0; i < (t == '%' ? 2 * n : n); i++)
                gen_reply(b, s, depth + 1);
            buf_append(b, ".\r\n", 3);
            break;
        }
        buf_appendf(b, "%c%u\r\n", t, n);
        for (unsigned i = 0; i < (t == '%' || t == '|' ? 2 * n : n); i++)
            gen_reply(b, s, depth + 1);
        if (t == '|')
            gen_reply(b, s, depth);
        break;
    default:
        buf_appendf(b, "%c%u\r\n", t, (unsigned)(rnd(s) % 1000));
    }
}

static void gen_request(struct gen *g, uint64_t *s)
{
    struct resp_frame *fr = &g->fr[g->nfr];
    size_t start = buf_used(&g->b);
    unsigned argc = (unsigned)(rnd(s) % 5);

    memset(fr, 0, sizeof *fr);
    switch (rnd(s) % 6) {
    case 0:
        buf_appendf(&g->b, "get k%u%s", argc, argc % 2 ? "\r\n" : "\n");
        fr->is_inline = 1;
        break;
    case 1:
        buf_append(&g->b, argc % 2 ? "\r\n" : "*-1\r\n", argc % 2 ? 2 : 5);
        fr->is_inline = argc % 2;
        break;
    default:
        buf_appendf(&g->b, "*%u\r\n", argc);
        fr->argc = argc;
        for (unsigned i = 0; i < argc; i++) {
            gen_bulk(&g->b, s, '$');
            if (i == 0) {
                fr->name_off = (size_t)(strchr(buf_start(&g->b) + start + 4, '\n')
                                        - buf_start(&g->b)) + 1 - start;
                fr->name_len = buf_used(&g->b) - start - fr->name_off - 2;
            }
        }
    }
    fr->len = buf_used(&g->b) - start;
    g->nfr++;
}

/* Frames until at least n bytes; those ending past n are cut off. */
static void gen_stream(int dir, struct gen *g, size_t n, uint64_t *s)
{
    buf_reset(&g->b);
    g->nfr = 0;
    while (buf_used(&g->b) < n) {
        size_t start = buf_used(&g->b);
        if (dir == REQ) {
            gen_request(g, s);
        } else {
            gen_reply(&g->b, s, 0);
            memset(&g->fr[g->nfr], 0, sizeof g->fr[g->nfr]);
            g->fr[g->nfr].len = buf_used(&g->b) - start;
            g->fr[g->nfr].type = buf_start(&g->b)[start];
            g->nfr++;
        }
        if (buf_used(&g->b) > n)
            g->nfr--;
    }
}

/* Framed the same whether the bytes came at once or one by one, and never
 * a frame that is empty or longer than the bytes. */
static int consistent(const struct stream *a, const struct stream *b)
{
    return !a->bad && (a->rc == RESP_MORE || a->rc == RESP_ERR) &&
           same_stream(a, b);
}

static void fuzz_report(int dir, const char *what, uint64_t seed,
                        const struct stream *a, const struct stream *b)
{
    printf("  %s, %s, seed %llu: %zu/%zu frames, %zu/%zu bytes, rc %d/%d, "
           "bad %d/%d, err \"%s\"/\"%s\"\n", dir == REP ? "reply" : "request",
           what, (unsigned long long)seed, a->nfr, b->nfr, a->used, b->used,
           a->rc, b->rc, a->bad, b->bad, a->err, b->err);
}

/* Per seed and direction: 4 KiB of random bytes; a stream of valid frames,
 * which must come out exactly as made; the same with a few bytes changed. */
static void test_fuzz(void)
{
    enum { N = 4 * KIB, SEEDS = 200 };
    char *p = malloc(N);
    struct stream a = { .fr = malloc(N * sizeof *a.fr) };
    struct stream b = { .fr = malloc(N * sizeof *b.fr) };
    struct gen g = { .fr = malloc(N * sizeof *g.fr) };

    for (int dir = REQ; dir <= REP; dir++) {
        int bad_random = 0, bad_valid = 0, bad_mutated = 0;
        for (uint64_t seed = 1; seed <= SEEDS; seed++) {
            uint64_t s = seed * 0x9E3779B97F4A7C15ULL;

            for (size_t i = 0; i < N; i++)
                p[i] = (char)rnd(&s);
            stream_frames(dir, p, N, 0, &a);
            stream_frames(dir, p, N, 1, &b);
            if (!consistent(&a, &b) && !bad_random++)
                fuzz_report(dir, "random", seed, &a, &b);

            gen_stream(dir, &g, N, &s);
            stream_frames(dir, buf_start(&g.b), N, 0, &a);
            stream_frames(dir, buf_start(&g.b), N, 1, &b);
            int ok = consistent(&a, &b) && a.rc == RESP_MORE && a.nfr == g.nfr;
            for (size_t i = 0; ok && i < g.nfr; i++)
                ok = same_frame(&a.fr[i], &g.fr[i]);
            if (!ok && !bad_valid++)
                fuzz_report(dir, "valid", seed, &a, &b);

            for (unsigned m = 0, k = 1 + (unsigned)(rnd(&s) % 3); m < k; m++)
                buf_start(&g.b)[rnd(&s) % N] = (char)rnd(&s);
            stream_frames(dir, buf_start(&g.b), N, 0, &a);
            stream_frames(dir, buf_start(&g.b), N, 1, &b);
            if (!consistent(&a, &b) && !bad_mutated++)
                fuzz_report(dir, "mutated", seed, &a, &b);
        }
        CHECK(bad_random == 0);
        CHECK(bad_valid == 0);
        CHECK(bad_mutated == 0);
    }
    buf_free(&g.b);
    free(g.fr);
    free(a.fr);
    free(b.fr);
    free(p);
}

/* resp_inline_to_multibulk on line, appended after "x" already in out. */
static int inline_as(const char *line, long long argc, const char *want_out,
                     const char *want_err)
{
    struct buf out = {0};
    const char *err = NULL;
    size_t wl = strlen(want_out);

    buf_append(&out, "x", 1);
    long long got = resp_inline_to_multibulk(line, strlen(line), &out, &err);
    int ok = got == argc && buf_used(&out) == 1 + wl &&
             memcmp(buf_start(&out) + 1, want_out, wl) == 0 &&
             (want_err ? err && strcmp(err, want_err) == 0 : err == NULL);
    /* And the result frames as the request it is (argc below 10 here:
     * the name's length line starts at byte 4). */
    if (ok && argc > 0) {
        size_t name_off = (size_t)(strchr(want_out + 4, '\n') - want_out) + 1;
        ok = frames_as(REQ, buf_start(&out) + 1, wl,
                       WANT_REQ(0, argc, name_off, (size_t)atoi(want_out + 5)));
    }
    if (!ok)
        printf("  got %lld, \"%.*s\", err %s\n", got, (int)buf_used(&out),
               buf_start(&out), err ? err : "none");
    buf_free(&out);
    return ok;
}

static void test_inline_to_multibulk(void)
{
    static const char unbalanced[] = "Protocol error: unbalanced quotes in request";

    CHECK(inline_as("set \"a b\" 'c d'", 3,
                    "*3\r\n$3\r\nset\r\n$3\r\na b\r\n$3\r\nc d\r\n", NULL));
    CHECK(inline_as("\"\\x41\\n\"", 1, "*1\r\n$2\r\nA\n\r\n", NULL));
    CHECK(inline_as("\"\\x4g\"", 1, "*1\r\n$3\r\nx4g\r\n", NULL));
    CHECK(inline_as("\"\\r\\t\\b\\a\\\"\\\\\\q\"", 1,
                    "*1\r\n$7\r\n\r\t\b\a\"\\q\r\n", NULL));
    CHECK(inline_as("'it\\'s' '\\n'", 2, "*2\r\n$4\r\nit's\r\n$2\r\n\\n\r\n", NULL));
    CHECK(inline_as("  get\tk  ", 2, "*2\r\n$3\r\nget\r\n$1\r\nk\r\n", NULL));
    CHECK(inline_as("a\"b c\"", 1, "*1\r\n$4\r\nab c\r\n", NULL));
    CHECK(inline_as("\"\" ''", 2, "*2\r\n$0\r\n\r\n$0\r\n\r\n", NULL));
    CHECK(inline_as("set \"a", -1, "", unbalanced));
    CHECK(inline_as("set 'a", -1, "", unbalanced));
    CHECK(inline_as("\"a\"b", -1, "", unbalanced));
    CHECK(inline_as("'a'b", -1, "", unbalanced));
    CHECK(inline_as("\"a\\\"", -1, "", unbalanced));
    /* Bare tokens end at space, tab, CR, LF only (redis's sdssplitargs);
     * between tokens and after a quote any isspace() byte separates. */
    CHECK(inline_as("SET k a\vb", 3, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\vb\r\n", NULL));
    CHECK(inline_as("\fGET\vk", 1, "*1\r\n$5\r\nGET\vk\r\n", NULL));
    CHECK(inline_as("'a'\vb \f c", 3, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", NULL));
    CHECK(inline_as("   ", 0, "", NULL));
    CHECK(inline_as("", 0, "", NULL));
}

/* resp_frame_head: the frame of a request framed before, from its head;
 * the same name and count as the framer's, short or long numbers. */
static void test_frame_head(void)
{
    static const char *ok[] = {
        "*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
        "*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n",
        "*1\r\n$4\r\nPING\r\n",
        "*12\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n"
        "$1\r\nb\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n",
    };
    struct resp_limits lim = { .max_bulk = 1 << 20, .max_line = 1 << 16 };

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct resp_framer f;
        struct resp_frame fr;
        size_t n = strlen(ok[i]);
        resp_framer_reset(&f);
        CHECK(resp_frame_request(&f, ok[i], n, &lim) == RESP_DONE && f.fr.len == n);
        CHECK(resp_frame_head(ok[i], n, &fr) == 1);
        CHECK(fr.len == n && fr.argc == f.fr.argc && fr.name_off == f.fr.name_off &&
              fr.name_len == f.fr.name_len && !fr.is_inline);
    }
    {
        struct resp_frame fr;
        char big[200];
        int n = snprintf(big, sizeof big, "*2\r\n$100\r\n%0100d\r\n", 0);
        CHECK(resp_frame_head(big, (size_t)n, &fr) == 1 && fr.name_off == 10 && fr.name_len == 100);
        CHECK(resp_frame_head("*2\r\n$123\r\n", 10, &fr) == 0);   /* name past the end */
        CHECK(resp_frame_head("PING\r\n", 6, &fr) == 0);
        CHECK(resp_frame_head("*0\r\n", 4, &fr) == 0);
        CHECK(resp_frame_head("*1\r\n:4\r\nPING\r\n", 14, &fr) == 0);
        CHECK(resp_frame_head("*1\r", 4, &fr) == 0);
    }
}

/* resp_arg1: argument 1 whatever its length's digits (the framer has
 * checked them): none, one, two, three. */
static void test_arg1(void)
{
    static const char *const reqs[] = {
        "*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        "*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$1\r\nv\r\n",
        "*2\r\n$3\r\nGET\r\n$120\r\n"
        "012345678901234567890123456789012345678901234567890123456789"
        "012345678901234567890123456789012345678901234567890123456789\r\n",
    };
    static const size_t want[] = { 0, 1, 16, 120 };
    struct resp_limits lim = { .max_bulk = 1 << 20, .max_line = 1 << 16 };

    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        struct resp_framer f;
        struct resp_args a;
        const char *p;
        size_t n;
        resp_framer_reset(&f);
        CHECK(resp_frame_request(&f, reqs[i], strlen(reqs[i]), &lim) == RESP_DONE);
        resp_collect_args(reqs[i], &f.fr, &a);
        resp_arg1(reqs[i], &f.fr, &p, &n);
        CHECK(n == want[i] && p == a.v[1] && n == a.l[1]);
    }
}

static void test_next_arg(void)
{
    static const char f[] = "*4\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$1\r\nv\r\n";
    static const char *const want[] = { "SET", "a\r\nb", "", "v" };
    size_t pos = 0, len, i = 0;
    const char *arg;

    while (i < 5 && resp_next_arg(f, sizeof f - 1, &pos, &arg, &len)) {
        if (CHECK(i < 4))
            CHECK(len == strlen(want[i]) && memcmp(arg, want[i], len) == 0);
        i++;
    }
    CHECK(i == 4);
    CHECK(pos == sizeof f - 1);
    CHECK(resp_next_arg(f, sizeof f - 1, &pos, &arg, &len) == 0);

    pos = 0;
    CHECK(resp_next_arg(S("*0\r\n"), &pos, &arg, &len) == 0);
    pos = 0;
    CHECK(resp_next_arg(S("*1\r\n$3\r\nab"), &pos, &arg, &len) == 0);
}

static int ll_is(const char *s, long long want)
{
    long long v = 12345;
    return resp_parse_ll(s, strlen(s), &v) == 0 && v == want;
}

static int ll_fails(const char *s)
{
    long long v;
    return resp_parse_ll(s, strlen(s), &v) == -1;
}

static void test_parse_ll(void)
{
    CHECK(ll_is("0", 0));
    CHECK(ll_is("7", 7));
    CHECK(ll_is("-7", -7));
    CHECK(ll_is("100", 100));
    CHECK(ll_is("9223372036854775807", LLONG_MAX));
    CHECK(ll_is("-9223372036854775808", LLONG_MIN));
    CHECK(ll_fails(""));
    CHECK(ll_fails("-"));
    /* string2ll: the only number starting with 0 is "0". */
    CHECK(ll_fails("-0"));
    CHECK(ll_fails("00"));
    CHECK(ll_fails("01"));
    CHECK(ll_fails("-01"));
    CHECK(ll_fails("9223372036854775808"));
    CHECK(ll_fails("-9223372036854775809"));
    CHECK(ll_fails("18446744073709551616"));
    CHECK(ll_fails("99999999999999999999"));
    CHECK(ll_fails("100000000000000000000"));
    CHECK(ll_fails("+1"));
    CHECK(ll_fails(" 1"));
    CHECK(ll_fails("1 "));
    CHECK(ll_fails("12a"));
    CHECK(ll_fails("1.0"));
    long long v;
    CHECK(resp_parse_ll("12", 1, &v) == 0 && v == 1);
}

/* Bytes put back in front of a client's unread input, in order, after a
 * consumed prefix (lease.c's take-back). */
static void test_buf_insert(void)
{
    struct buf b = {0};

    buf_append(&b, "xxrest", 6);
    buf_consume(&b, 2);
    CHECK(buf_insert(&b, 0, "one ", 4) == 0);
    CHECK(buf_insert(&b, 4, "two ", 4) == 0);
    CHECK(buf_used(&b) == 12 && memcmp(buf_start(&b), "one two rest", 12) == 0);
    CHECK(buf_insert(&b, 12, "!", 1) == 0 && memcmp(buf_start(&b), "one two rest!", 13) == 0);
    struct buf e = {0};
    CHECK(buf_insert(&e, 0, "a", 1) == 0 && buf_used(&e) == 1 && buf_start(&e)[0] == 'a');
    buf_free(&b);
    buf_free(&e);
}

int main(void)
{
    test_buf_insert();
    test_request_multibulk();
    test_request_inline();
    test_request_pipeline();
    test_request_errors();
    test_request_big();
    test_reply_types();
    test_reply_pipeline();
    test_reply_errors();
    test_reply_deep();
    test_reply_big();
    test_reply_skip();
    test_fuzz();
    test_inline_to_multibulk();
    test_next_arg();
    test_frame_head();
    test_arg1();
    test_parse_ll();
    CHECK_DONE();
}
