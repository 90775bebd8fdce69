/* What each app makes Redis do: PROXY SLOWLOG (the slowest recent
 * requests, with their app, command, first key and where the time went)
 * and PROXY HOTKEYS (each app's most frequent keys, from a sample).
 * On the request path: a countdown for the sample, a comparison per reply;
 * the key of a slow request is read from its bytes the link still holds
 * when its reply comes. */
#ifndef SIDECAR_SLOWLOG_H
#define SIDECAR_SLOWLOG_H

#include "client.h"

/* The ring follows [clients] slowlog_max_len, the sample hotkeys_sample
 * (start, reload): 0 or -1. */
int slowlog_configure(struct sidecar *sc);

void slowlog_sample(struct client *c, const char *frame, const struct resp_frame *fr);

/* A request carried out (its client may have closed meanwhile: its app
 * stays until it is freed): one in hotkeys_sample feeds its app's hot
 * keys (a countdown; past the end when sampling is off). */
static inline void slowlog_note(struct client *c, const char *frame,
                                const struct resp_frame *fr)
{
    if (__builtin_expect(--client_sc(c)->apps.sample_left == 0, 0))
        slowlog_sample(c, frame, fr);
}

void slowlog_capture(struct client *c, struct req *r, const char *req);

/* A reply from Redis for r, whose bytes (req) the link still holds: a
 * request that is slow already, or whose reply must wait for earlier ones
 * (it may be slow by the time it leaves), keeps its first key and its
 * time upstream for the slowlog. Nothing else pays more than this test. */
static inline void slowlog_answered(struct client *c, struct req *r, const char *req)
{
    struct sidecar *sc = client_sc(c);

    if (__builtin_expect(sc->now - r->arrived >= sc->apps.slow_after, 0) ||
        (r != TAILQ_FIRST(&c->pending) && sc->apps.slow_cap))
        slowlog_capture(c, r, req);
}

void slowlog_add(struct client *c, const struct req *r, double total);

/* A slot's reply left: the app's latency, and the slowlog if it was slow.
 * A call that waits for data (BLPOP) is neither: its wait is the app's
 * choice. */
static inline void slowlog_reply_out(struct client *c, const struct req *r)
{
    struct sidecar *sc = client_sc(c);
    double t = sc->now - r->arrived;

    if (__builtin_expect((r->flags & (REQ_NOTIMEOUT | REQ_QUIET)) == REQ_NOTIMEOUT, 0))
        return;
    apps_latency(c->proc->app, t);
    if (__builtin_expect(t >= sc->apps.slow_after, 0))
        slowlog_add(c, r, t);
}

/* PROXY SLOWLOG [GET] [n] | LEN | RESET; PROXY HOTKEYS [n] [APP key]. */
void slowlog_command(struct client *c, const struct resp_args *a);
void slowlog_hotkeys(struct client *c, const struct resp_args *a);

#endif
