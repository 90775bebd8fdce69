/* PROXY SLOWLOG and PROXY HOTKEYS: a ring of slow requests, and a
 * Space-Saving sketch per app fed by a random sample of requests. */
#include "slowlog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int slowlog_configure(struct sidecar *sc)
{
    struct apps *t = &sc->apps;
    unsigned cap = (unsigned)sc->cfg->slowlog_max_len;
    struct slow_entry *ring = NULL;
    unsigned n = 0;

    /* a changed hotkeys_sample counts from now */
    t->sample_left = sc->cfg->hotkeys_sample ? 1 : UINT32_MAX;
    /* the ring itself comes with the first slow request (slowlog_add) */
    if (cap != t->slow_cap && cap && t->slow && !(ring = calloc(cap, sizeof *ring)))
        return -1;                       /* the old ring and threshold stay */
    t->slow_after = cap ? sc->cfg->slowlog_slower_than : INFINITY;
    if (cap == t->slow_cap)
        return 0;
    if (!t->slow) {
        t->slow_cap = cap;
        return 0;
    }
    /* the newest entries stay, oldest first */
    for (unsigned i = t->slow_n > cap ? t->slow_n - cap : 0; i < t->slow_n; i++)
        ring[n++] = t->slow[(t->slow_head + t->slow_cap - t->slow_n + i) % t->slow_cap];
    free(t->slow);
    t->slow = ring;
    t->slow_cap = cap;
    t->slow_n = n;
    t->slow_head = cap ? n % cap : 0;
    return 0;
}

/* One in hotkeys_sample on average, at random gaps (xorshift), so that
 * no pattern of requests hides from it. */
void slowlog_sample(struct client *c, const char *frame, const struct resp_frame *fr)
{
    struct sidecar *sc = client_sc(c);
    struct apps *t = &sc->apps;
    uint32_t x = t->rng;
    unsigned every = (unsigned)sc->cfg->hotkeys_sample;
    const char *k;
    size_t n;

    if (!every) {
        t->sample_left = UINT32_MAX;
        return;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    t->rng = x;
    t->sample_left = every > 1 ? 1 + x % (2 * every - 1) : 1;
    if (!command_first_key(c->last_cmd, frame, fr, &k, &n))
        return;
    if (!c->proc->app->hot && !(c->proc->app->hot = calloc(1, sizeof *c->proc->app->hot)))
        return;
    topk_add(c->proc->app->hot, k, n);
}

void slowlog_capture(struct client *c, struct req *r, const char *req)
{
    struct sidecar *sc = client_sc(c);
    struct resp_frame fr;
    const char *k;
    size_t n;

    r->upstream = (float)(sc->now - r->queued_at);
    r->key_len = 0;
    r->flags |= REQ_KEYED;
    if (!resp_frame_head(req, r->len, &fr) || !command_first_key(r->what, req, &fr, &k, &n))
        return;
    r->key_len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    memcpy(r->key, k, n < sizeof r->key ? n : sizeof r->key);
}

void slowlog_add(struct client *c, const struct req *r, double total)
{
    struct apps *t = &client_sc(c)->apps;
    const struct command *cmd = r->what;

    if (!t->slow_cap || (!t->slow && !(t->slow = calloc(t->slow_cap, sizeof *t->slow))))
        return;
    struct slow_entry *e = &t->slow[t->slow_head];
    memset(e, 0, sizeof *e);
    e->id = t->slow_next_id++;
    e->at = ev_now(client_sc(c)->loop);
    e->total = total;
    e->upstream = !(r->flags & REQ_KEYED) ? 0 : r->upstream < total ? r->upstream : total;
    e->client_id = c->id;
    e->pid = c->proc->pid;
    memcpy(e->app, c->proc->app->key, sizeof e->app);
    /* a bounded copy, not snprintf: under load every slow request comes
     * here, and formatting cost about 380 instructions each */
    const char *name = cmd ? cmd->name : "(unknown)";
    memcpy(e->cmd, name, strnlen(name, sizeof e->cmd - 1));   /* e is zeroed */
    e->key_len = r->flags & REQ_KEYED ? r->key_len : 0;
    memcpy(e->key, r->key, e->key_len < sizeof r->key ? e->key_len : sizeof r->key);
    t->slow_head = (t->slow_head + 1) % t->slow_cap;
    if (t->slow_n < t->slow_cap)
        t->slow_n++;
}

/* " key=<bytes>[...] key_len=N" for a text line: printable ASCII as is,
 * the rest as \xNN, "..." when only a prefix was kept. */
static void put_key(struct buf *b, const char *k, size_t kept, size_t whole)
{
    buf_appendf(b, " key=");
    for (size_t i = 0; i < kept; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch > 32 && ch < 127 && ch != '\\' && ch != '"')
            buf_append(b, k + i, 1);
        else
            buf_appendf(b, "\\x%02x", ch);
    }
    buf_appendf(b, "%s key_len=%zu", whole > kept ? "..." : "", whole);
}

static int arg_count(const struct resp_args *a, int i, long long *n)
{
    return i < a->argc && resp_parse_ll(a->v[i], a->l[i], n) == 0 && *n >= 0;
}

void slowlog_command(struct client *c, const struct resp_args *a)
{
    struct apps *t = &client_sc(c)->apps;
    long long want = 10;
    int i = 2;

    if (a->argc == 3 && resp_arg_is(a, 2, "len")) {
        client_reply_int(c, t->slow_n);
        return;
    }
    if (a->argc == 3 && resp_arg_is(a, 2, "reset")) {
        t->slow_n = t->slow_head = 0;
        client_reply_ok(c);
        return;
    }
    if (i < a->argc && resp_arg_is(a, i, "get"))
        i++;
    if (a->argc > i + 1 || (i < a->argc && !arg_count(a, i, &want))) {
        client_reply_error(c, "ERR usage: PROXY SLOWLOG [GET] [n] | LEN | RESET");
        return;
    }
    struct buf b = {0};
    for (long long k = 0; k < want && k < t->slow_n; k++) {
        const struct slow_entry *e = &t->slow[(t->slow_head + t->slow_cap - 1 - k) % t->slow_cap];
        buf_appendf(&b, "id=%llu time=%.3f app=%s pid=%d client=%llu cmd=%s",
                    (unsigned long long)e->id, e->at, e->app, (int)e->pid,
                    (unsigned long long)e->client_id, e->cmd);
        put_key(&b, e->key, e->key_len < sizeof e->key ? e->key_len : sizeof e->key,
                e->key_len);
        buf_appendf(&b, " total_us=%.0f upstream_us=%.0f sidecar_us=%.0f\n", e->total * 1e6,
                    e->upstream * 1e6, (e->total - e->upstream) * 1e6);
    }
    client_reply_text(c, b.data ? buf_start(&b) : "", buf_used(&b));
    buf_free(&b);
}

static int by_hits(const void *x, const void *y)
{
    const struct app *a = *(struct app *const *)x, *b = *(struct app *const *)y;
    uint64_t ha = a->hot ? a->hot->total : 0, hb = b->hot ? b->hot->total : 0;

    return ha < hb ? 1 : ha > hb ? -1 : 0;
}

void slowlog_hotkeys(struct client *c, const struct resp_args *a)
{
    struct sidecar *sc = client_sc(c);
    long long want = 10;
    int i = 2;
    struct app *only = NULL;

    if (i < a->argc && resp_arg_is(a, i, "app") && i + 1 < a->argc) {
        if (!(only = apps_find(&sc->apps, a->v[i + 1], a->l[i + 1]))) {
            client_reply_error(c, "ERR no such app");
            return;
        }
        i += 2;
    }
    if (a->argc > i + 1 || (i < a->argc && (!arg_count(a, i, &want) || want < 1))) {
        client_reply_error(c, "ERR usage: PROXY HOTKEYS [APP key] [n]");
        return;
    }
    struct app **all = malloc((sc->apps.n + 1) * sizeof *all);
    unsigned n = only ? 1 : all ? apps_all(&sc->apps, all, sc->apps.n) : 0;
    if (only && all)
        all[0] = only;
    if (all)
        qsort(all, n, sizeof *all, by_hits);
    struct buf b = {0};
    unsigned every = sc->cfg->hotkeys_sample ? (unsigned)sc->cfg->hotkeys_sample : 1;
    for (unsigned k = 0; all && k < n; k++) {
        const struct topk *h = all[k]->hot;
        const struct topk_slot *top[TOPK_SLOTS];
        if (!h)
            continue;
        unsigned m = topk_sorted(h, top, want < TOPK_SLOTS ? (unsigned)want : TOPK_SLOTS);
        for (unsigned j = 0; j < m; j++) {
            buf_appendf(&b, "app=%s rank=%u", all[k]->key, j + 1);
            put_key(&b, top[j]->key, top[j]->len < TOPK_KEY_MAX ? top[j]->len : TOPK_KEY_MAX,
                    top[j]->len);
            buf_appendf(&b, " sampled=%llu max_error=%llu share=%.4f est_requests=%llu\n",
                        (unsigned long long)top[j]->count, (unsigned long long)top[j]->err,
                        (double)top[j]->count / (double)h->total,
                        (unsigned long long)top[j]->count * every);
        }
    }
    free(all);
    client_reply_text(c, b.data ? buf_start(&b) : "", buf_used(&b));
    buf_free(&b);
}
