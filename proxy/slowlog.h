/* What each app makes Redis do: PROXY SLOWLOG (the slowest recent
 * requests, with their app, command, first key and where the time went)
 * and PROXY HOTKEYS (each app's most frequent keys, from a sample).
 * On the request path: one key found per request while the slowlog is on,
 * one countdown for the sample, one comparison per reply. */
#ifndef SIDECAR_SLOWLOG_H
#define SIDECAR_SLOWLOG_H

#include "client.h"

/* The ring follows [clients] slowlog_max_len (start, reload): 0 or -1. */
int slowlog_configure(struct sidecar *sc);

void slowlog_find_key(struct client *c, const char *frame, const struct resp_frame *fr);
void slowlog_sample(struct client *c);

/* A request about to be carried out: its first key, for the slot it will
 * take (sc->key_p, cleared after it by slowlog_done), and the sample. */
static inline void slowlog_note(struct client *c, const char *frame,
                                const struct resp_frame *fr)
{
    struct sidecar *sc = c->sc;
    const struct command *cmd = c->last_cmd;
    int sampled = sc->cfg->hotkeys_sample && --sc->apps.sample_left == 0;

    if (!sc->cfg->slowlog_max_len && !sampled)
        return;
    if (__builtin_expect((!cmd || cmd->key == 0) && fr->argc >= 2 && !fr->is_inline, 1))
        resp_arg1(frame, fr, &sc->key_p, &sc->key_n);
    else
        slowlog_find_key(c, frame, fr);
    if (__builtin_expect(sampled, 0))
        slowlog_sample(c);
}

static inline void slowlog_done(struct sidecar *sc)
{
    sc->key_p = NULL;
}

void slowlog_add(struct client *c, const struct req *r, double total);

/* A slot's reply left: the app's latency, and the slowlog if it was slow.
 * A call that waits for data (BLPOP) is neither: its wait is the app's
 * choice. */
static inline void slowlog_reply_out(struct client *c, const struct req *r)
{
    struct sidecar *sc = c->sc;
    double t = ev_now(sc->loop) - r->arrived;

    if (__builtin_expect((r->flags & (REQ_NOTIMEOUT | REQ_QUIET)) == REQ_NOTIMEOUT, 0))
        return;
    apps_latency(c->app, t);
    if (__builtin_expect(t >= sc->cfg->slowlog_slower_than, 0) && sc->apps.slow_cap)
        slowlog_add(c, r, t);
}

/* PROXY SLOWLOG [GET] [n] | LEN | RESET; PROXY HOTKEYS [n] [APP key]. */
void slowlog_command(struct client *c, const struct resp_args *a);
void slowlog_hotkeys(struct client *c, const struct resp_args *a);

#endif
