/* libFuzzer target: the reply framer (lib/resp.c), every RESP2 and RESP3
 * type, streamed strings and aggregates, attributes, pushes.
 *
 * Input: the header of fuzz.h, then what a server sends. Options: bits
 * 0-1 the simple line cap (4, 16, 256 bytes, or the links' 64 MB); bit 2
 * drops, in the pieces run, what resp_reply_skip() lets go after each
 * RESP_MORE, as a link drops a reply nobody will read. The stream is
 * framed whole, in the header's pieces and byte by byte: the frames and
 * the end (more wanted, or the same error) must be the same, and what
 * resp_known() claims before a reply is complete must not exceed
 * its length. */
#include <string.h>

#include "../../lib/resp.h"
#include "fuzz.h"
#include "stream.h"

#define BYTEWISE_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every frame starts with its type byte, and none is shorter than a type
 * and a line end. */
static void check_frames(const char *p, const struct stream_run *r)
{
    size_t at = 0;

    for (size_t i = 0; i < r->nev && r->ev[i].rc == RESP_DONE; i++) {
        const struct resp_frame *fr = &r->ev[i].fr;
        FUZZ_REQUIRE(fr->type == p[at], "frame %zu: type 0x%02x, first byte 0x%02x", i,
                     (unsigned char)fr->type, (unsigned char)p[at]);
        FUZZ_REQUIRE(fr->len >= 3, "frame %zu: %zu bytes", i, fr->len);
        at += fr->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = { 4, 16, 256, 64 * 1024 * 1024 };
    struct fuzz_cuts c;
    struct stream_run whole = {0}, split = {0}, bytes = {0};

    if (fuzz_header(&data, &size, &c) < 0)
        return 0;
    const char *p = (const char *)data;
    const struct resp_limits lim = { .max_bulk = RESP_MAX_BULK, .max_line = caps[c.opts & 3] };

    stream_whole(resp_frame_reply, p, size, &lim, &whole);
    check_frames(p, &whole);
    stream_pieces(resp_frame_reply, p, &c, &lim,
                  STREAM_KNOWN | (c.opts & 4 ? STREAM_SKIP : 0), &split);
    stream_compare(&whole, &split, c.opts & 4 ? "pieces, skipping" : "pieces");
    if (size <= BYTEWISE_MAX) {
        stream_bytewise(resp_frame_reply, p, size, &lim, STREAM_KNOWN, &bytes);
        stream_compare(&whole, &bytes, "byte by byte");
        stream_free(&bytes);
    }
    stream_free(&whole);
    stream_free(&split);
    return 0;
}
