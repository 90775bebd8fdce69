/* libFuzzer target: the request framer (lib/resp.c), multibulk and
 * inline, and what the proxy does with a framed request before routing
 * it: walking its arguments, rewriting an inline one as multibulk.
 *
 * Input: the header of fuzz.h, then what a client sends. Options: bits
 * 0-1 the bulk cap (16 bytes, 1 KiB, 64 KiB, RESP_MAX_BULK). The stream
 * is framed whole, in the header's pieces and byte by byte, and must
 * frame the same way each time; each frame must hold what it says. */
#include <limits.h>
#include <string.h>

#include "../../lib/buf.h"
#include "../../lib/resp.h"
#include "fuzz.h"
#include "stream.h"

#define BYTEWISE_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An argument resp_parse_ll() takes is a number written the one way
 * redis writes it: no sign but '-', no leading zero, no "-0". */
static void check_number(const char *a, size_t n)
{
    long long v;
    char back[32];

    if (resp_parse_ll(a, n, &v) < 0)
        return;
    int k = snprintf(back, sizeof back, "%lld", v);
    FUZZ_REQUIRE((size_t)k == n && memcmp(back, a, n) == 0, "\"%.*s\" read as %lld",
                 (int)n, a, v);
}

/* A multibulk frame: its argc arguments, the first at name_off, and
 * nothing after the last. */
static void check_multibulk(const char *f, const struct resp_frame *fr)
{
    size_t pos = 0, n;
    const char *a;
    long long k = 0;
    struct resp_args args;

    while (resp_next_arg(f, fr->len, &pos, &a, &n)) {
        FUZZ_REQUIRE(a >= f && a + n <= f + fr->len, "argument %lld outside its frame", k);
        if (k == 0)
            FUZZ_REQUIRE(a == f + fr->name_off && n == fr->name_len,
                         "name at %zu+%zu, first argument at %zu+%zu", fr->name_off,
                         fr->name_len, (size_t)(a - f), n);
        check_number(a, n);
        k++;
    }
    FUZZ_REQUIRE(k == fr->argc && pos == fr->len, "%lld arguments walked to %zu, "
                 "argc %lld len %zu", k, pos, fr->argc, fr->len);
    resp_collect_args(f, fr, &args);
    FUZZ_REQUIRE(args.argc == fr->argc, "collected argc %lld", args.argc);
    for (long long i = 0; i < args.argc && i < RESP_ARGS_MAX; i++)
        FUZZ_REQUIRE(args.v[i] >= f && args.v[i] + args.l[i] <= f + fr->len,
                     "collected argument %lld outside its frame", i);
    /* the request path's quick read of argument 1 (a request's first key) */
    if (fr->argc >= 2) {
        resp_arg1(f, fr, &a, &n);
        FUZZ_REQUIRE(a == args.v[1] && n == args.l[1], "argument 1 read at %zu+%zu, "
                     "collected at %zu+%zu", (size_t)(a - f), n, (size_t)(args.v[1] - f),
                     args.l[1]);
    }
    /* the slowlog's read of a request framed before: its head alone */
    struct resp_frame head;
    if (fr->argc > 0 && resp_frame_head(f, fr->len, &head))
        FUZZ_REQUIRE(head.argc == fr->argc && head.name_off == fr->name_off &&
                     head.name_len == fr->name_len && head.len == fr->len,
                     "head read as %lld args, name at %zu+%zu", head.argc, head.name_off,
                     head.name_len);
}

/* An inline frame, as request.c takes it: the line without its end,
 * rewritten as multibulk, which then frames whole with as many
 * arguments. */
static void check_inline(const char *f, const struct resp_frame *fr)
{
    static const struct resp_limits any = { .max_bulk = LLONG_MAX - 2, .max_line = 0 };
    size_t len = fr->len;
    struct buf out = {0};
    const char *err = NULL;
    struct resp_framer rf;

    while (len && (f[len - 1] == '\n' || f[len - 1] == '\r'))
        len--;
    long long argc = resp_inline_to_multibulk(f, len, &out, &err);
    if (argc < 0) {
        FUZZ_REQUIRE(err && strncmp(err, "Protocol error: ", 16) == 0, "error \"%s\"",
                     err ? err : "(none)");
    } else if (argc == 0) {
        FUZZ_REQUIRE(buf_used(&out) == 0, "no arguments, %zu bytes", buf_used(&out));
    } else {
        resp_framer_reset(&rf);
        int rc = resp_frame_request(&rf, buf_start(&out), buf_used(&out), &any);
        FUZZ_REQUIRE(rc == RESP_DONE && rf.fr.len == buf_used(&out) && rf.fr.argc == argc &&
                     !rf.fr.is_inline, "rewritten: rc %d len %zu of %zu argc %lld of %lld",
                     rc, rf.fr.len, buf_used(&out), rf.fr.argc, argc);
        check_multibulk(buf_start(&out), &rf.fr);
    }
    buf_free(&out);
}

static void check_frames(const char *p, const struct stream_run *r)
{
    size_t at = 0;

    for (size_t i = 0; i < r->nev && r->ev[i].rc == RESP_DONE; i++) {
        const struct resp_frame *fr = &r->ev[i].fr;
        if (fr->is_inline)
            check_inline(p + at, fr);
        else if (fr->argc > 0)
            check_multibulk(p + at, fr);
        else
            FUZZ_REQUIRE(p[at] == '*', "frame %zu: no arguments, not an array", i);
        at += fr->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long long bulk_caps[] = { 16, 1024, 64 * 1024, RESP_MAX_BULK };
    struct fuzz_cuts c;
    struct stream_run whole = {0}, split = {0}, bytes = {0};

    if (fuzz_header(&data, &size, &c) < 0)
        return 0;
    const char *p = (const char *)data;
    const struct resp_limits lim = { .max_bulk = bulk_caps[c.opts & 3], .max_line = 0 };

    stream_whole(resp_frame_request, p, size, &lim, &whole);
    check_frames(p, &whole);
    stream_pieces(resp_frame_request, p, &c, &lim, 0, &split);
    stream_compare(&whole, &split, "pieces");
    if (size <= BYTEWISE_MAX) {
        stream_bytewise(resp_frame_request, p, size, &lim, 0, &bytes);
        stream_compare(&whole, &bytes, "byte by byte");
        stream_free(&bytes);
    }
    stream_free(&whole);
    stream_free(&split);
    return 0;
}
