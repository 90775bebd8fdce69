/* Framing a stream whole, in pieces and byte by byte, and comparing the
 * outcomes; shared by the request and reply targets. */
#include "stream.h"

#include <string.h>

/* One framer going through the payload as reads arrive. */
struct feed {
    stream_framer            *fn;
    const struct resp_limits *lim;
    unsigned                  flags;
    struct resp_framer        f;
    size_t                    pos;      /* payload bytes consumed (frames, and dropped) */
    size_t                    dropped;  /* of them, skipped bytes of the frame under way */
    long long                 known;    /* resp_known() at most, for that frame */
    int                       ended;    /* RESP_ERR: the proxy closes there */
};

void stream_free(struct stream_run *r)
{
    free(r->ev);
    memset(r, 0, sizeof *r);
}

static struct stream_event *event(struct stream_run *r, int rc)
{
    if (r->nev == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        if (!(r->ev = realloc(r->ev, r->cap * sizeof *r->ev)))
            abort();
    }
    memset(&r->ev[r->nev], 0, sizeof r->ev[0]);
    r->ev[r->nev].rc = rc;
    return &r->ev[r->nev++];
}

static void feed_start(struct feed *s, stream_framer *fn, const struct resp_limits *lim,
                       unsigned flags)
{
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->lim = lim;
    s->flags = flags;
    resp_framer_reset(&s->f);
}

static void frame_done(struct feed *s, size_t avail, struct stream_run *r)
{
    struct stream_event *e = event(r, RESP_DONE);

    FUZZ_REQUIRE(s->f.fr.len <= avail, "frame of %zu bytes, %zu there", s->f.fr.len, avail);
    FUZZ_REQUIRE(s->f.fr.len > 0 || s->dropped > 0, "an empty frame");
    e->fr = s->f.fr;
    e->fr.len += s->dropped;
    e->known = s->known;
    s->pos += s->f.fr.len;
    s->dropped = 0;
    s->known = 0;
}

/* The bytes up to `have` have arrived: frame what they complete. With
 * copy, the framer sees them in a buffer that ends where they do. */
static void feed(struct feed *s, const char *p, size_t have, int copy, struct stream_run *r)
{
    size_t n = have - s->pos;
    char *tmp = NULL;
    const char *b = p + s->pos;

    if (s->ended)
        return;
    if (copy) {
        if (!(tmp = malloc(n ? n : 1)))
            abort();
        memcpy(tmp, b, n);
        b = tmp;
    }
    for (;;) {
        size_t left = have - s->pos;
        int rc = s->fn(&s->f, b + (n - left), left, s->lim);

        if (rc == RESP_DONE) {
            frame_done(s, left, r);
            continue;
        }
        if (rc == RESP_ERR) {
            struct stream_event *e = event(r, RESP_ERR);
            FUZZ_REQUIRE(s->f.err != NULL, "RESP_ERR without a reason");
            snprintf(e->err, sizeof e->err, "%s", s->f.err);
            s->ended = 1;
            break;
        }
        FUZZ_REQUIRE(rc == RESP_MORE, "framer answered %d", rc);
        if (s->flags & STREAM_KNOWN) {
            long long k = resp_known(&s->f) + (long long)s->dropped;
            FUZZ_REQUIRE(resp_known(&s->f) >= 0, "known %lld", resp_known(&s->f));
            if (k > s->known)
                s->known = k;
        }
        if (s->flags & STREAM_SKIP) {
            size_t k = resp_reply_skip(&s->f, left);
            FUZZ_REQUIRE(k <= left, "skipped %zu of %zu", k, left);
            s->pos += k;
            s->dropped += k;
        }
        break;
    }
    free(tmp);
}

static void feed_end(struct feed *s, struct stream_run *r)
{
    if (!s->ended)
        event(r, RESP_MORE);
}

void stream_whole(stream_framer *fn, const char *p, size_t n,
                  const struct resp_limits *lim, struct stream_run *r)
{
    struct feed s;

    feed_start(&s, fn, lim, 0);
    feed(&s, p, n, 0, r);
    feed_end(&s, r);
}

void stream_pieces(stream_framer *fn, const char *p, const struct fuzz_cuts *c,
                   const struct resp_limits *lim, unsigned flags, struct stream_run *r)
{
    struct feed s;

    feed_start(&s, fn, lim, flags);
    for (size_t i = 0; i < c->n; i++)
        feed(&s, p, c->end[i], 1, r);
    feed_end(&s, r);
}

void stream_bytewise(stream_framer *fn, const char *p, size_t n,
                     const struct resp_limits *lim, unsigned flags, struct stream_run *r)
{
    struct feed s;

    feed_start(&s, fn, lim, flags);
    for (size_t have = 0; have <= n && !s.ended; have++)
        feed(&s, p, have, 0, r);
    feed_end(&s, r);
}

void stream_compare(const struct stream_run *a, const struct stream_run *b, const char *how)
{
    size_t n = a->nev < b->nev ? a->nev : b->nev;

    for (size_t i = 0; i < n; i++) {
        const struct stream_event *x = &a->ev[i], *y = &b->ev[i];
        FUZZ_REQUIRE(x->rc == y->rc, "%s: event %zu: rc %d whole, %d (%s/%s)", how, i,
                     x->rc, y->rc, x->err, y->err);
        if (x->rc == RESP_ERR)
            FUZZ_REQUIRE(strcmp(x->err, y->err) == 0, "%s: event %zu: \"%s\" whole, \"%s\"",
                         how, i, x->err, y->err);
        if (x->rc != RESP_DONE)
            continue;
        FUZZ_REQUIRE(x->fr.len == y->fr.len && x->fr.argc == y->fr.argc &&
                     x->fr.name_off == y->fr.name_off && x->fr.name_len == y->fr.name_len &&
                     x->fr.is_inline == y->fr.is_inline && x->fr.type == y->fr.type,
                     "%s: frame %zu: len %zu/%zu argc %lld/%lld name %zu+%zu/%zu+%zu "
                     "inline %d/%d type %d/%d", how, i, x->fr.len, y->fr.len, x->fr.argc,
                     y->fr.argc, x->fr.name_off, x->fr.name_len, y->fr.name_off,
                     y->fr.name_len, x->fr.is_inline, y->fr.is_inline, x->fr.type, y->fr.type);
        /* What a link counts on before the reply is complete. */
        FUZZ_REQUIRE(y->known <= (long long)x->fr.len, "%s: frame %zu: %lld bytes known, "
                     "%zu in all", how, i, y->known, x->fr.len);
    }
    FUZZ_REQUIRE(a->nev == b->nev, "%s: %zu events whole, %zu", how, a->nev, b->nev);
}
