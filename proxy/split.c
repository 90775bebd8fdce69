/* Split requests: the parts are requests of their own (REQ_PART, owned by
 * the split) on the app's links to each node, sent in the loop iteration
 * the request came in, so they batch with everything else. The app's slot
 * (REQ_DEFERRED) is answered once the last part is in. */
#include "split.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "cluster.h"
#include "hold.h"

struct part {
    struct buf reply;              /* MGET: its array, kept until the merge */
    int        nkeys;
};

struct split {
    struct sidecar *sc;
    struct req     *parent;        /* the app's slot; its owner NULL once it left */
    enum split_kind kind;
    int             nparts, owed, nkeys;
    struct part    *parts;
    int            *key_part;      /* each key's part */
    long long       sum;
    struct buf      err;           /* the first part's error, whole */
    struct buf      acc;           /* CONCAT: the elements; FIRST: the first reply */
    long long       nacc;          /* CONCAT: how many; AND: the array's length */
    long long      *and_v;
    unsigned        scan_from, scan_to, scan_gen;   /* SCAN: the slot range, its map */
};

/* SCAN's cursor through the sidecar: bit 62 set (so that only the end
 * of an iteration is 0), bits 48-61 the first slot of the range being
 * scanned, 34-47 its last, 28-33 the map generation it was found in, 0-27
 * the cursor of the node that serves it. A full iteration walks the slots
 * in order, each range on its master, keeping only that range's keys; a
 * range whose owners changed meanwhile (64 map changes between two calls
 * look like none) is scanned again from its start (duplicates, as Redis
 * allows; nothing missed). */
#define SCAN_NODE_BITS 28
#define SCAN_GEN_MASK  63u
#define SCAN_STARTED   (1ULL << 62)

static unsigned long long scan_cursor(unsigned from, unsigned to, unsigned gen,
                                      unsigned long long node)
{
    return SCAN_STARTED | (unsigned long long)from << 48 | (unsigned long long)to << 34 |
           (unsigned long long)(gen & SCAN_GEN_MASK) << SCAN_NODE_BITS | node;
}

/* Keys from argument 1, every `step` arguments. */
static int keys_span_slots(const char *frame, const struct resp_frame *fr, int step)
{
    size_t pos = 0, n;
    const char *a;
    long long i = 0;
    int first = -1;

    resp_next_arg(frame, fr->len, &pos, &a, &n);
    while (resp_next_arg(frame, fr->len, &pos, &a, &n)) {
        if (i++ % step)
            continue;
        int s = (int)cluster_slot(a, n);
        if (first < 0)
            first = s;
        else if (s != first)
            return 1;
    }
    return 0;
}

enum split_kind split_kind(const struct sidecar *sc, const struct command *cmd,
                           const char *frame, const struct resp_frame *fr)
{
    enum split_kind k = cmd ? (enum split_kind)cmd->split : SPLIT_NONE;
    struct resp_args a;

    if (__builtin_expect(k == SPLIT_NONE, 1) || !sc->cl || fr->is_inline)
        return SPLIT_NONE;
    switch (k) {
    case SPLIT_MSET:
        if (fr->argc < 3 || fr->argc % 2 == 0)
            return SPLIT_NONE;           /* redis's own arity error */
        break;
    case SPLIT_SCAN:
        return fr->argc >= 2 ? k : SPLIT_NONE;
    case SPLIT_ALL_SUM:
        return fr->argc == 1 ? k : SPLIT_NONE;
    case SPLIT_ALL_CONCAT:
        return fr->argc == 2 ? k : SPLIT_NONE;
    case SPLIT_ALL_FIRST:
        if (cmd->state != STATE_SCRIPT && cmd->state != STATE_FUNCTION)
            return k;                    /* FLUSHALL, FLUSHDB */
        if (fr->argc < 2)
            return SPLIT_NONE;
        resp_collect_args(frame, fr, &a);
        if (cmd->state == STATE_SCRIPT)
            return resp_arg_is(&a, 1, "exists") ? SPLIT_ALL_AND
                 : resp_arg_is(&a, 1, "flush") || resp_arg_is(&a, 1, "load") ? SPLIT_ALL_FIRST
                 : SPLIT_NONE;
        return resp_arg_is(&a, 1, "load") || resp_arg_is(&a, 1, "flush") ||
               resp_arg_is(&a, 1, "delete") || resp_arg_is(&a, 1, "restore")
               ? SPLIT_ALL_FIRST : SPLIT_NONE;
    default:
        break;
    }
    /* MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: split only across slots */
    if (fr->argc < 3 || !keys_span_slots(frame, fr, k == SPLIT_MSET ? 2 : 1))
        return SPLIT_NONE;
    return k;
}

static void split_free(struct split *s)
{
    for (int i = 0; s->parts && i < s->nparts; i++)   /* none for the ALL kinds */
        buf_free(&s->parts[i].reply);
    free(s->parts);
    free(s->key_part);
    free(s->and_v);
    buf_free(&s->err);
    buf_free(&s->acc);
    free(s);
}

/* p[0..n) is one integer reply (":n"); -1 if not. */
static int int_reply(const char *p, size_t n, long long *v)
{
    return n >= 4 && p[0] == ':' ? resp_parse_ll(p + 1, n - 3, v) : -1;
}

/* The count of an array reply's header and where its elements start. */
static int array_head(const char *p, size_t n, long long *count, size_t *body)
{
    const char *e = memchr(p, '\r', n);

    if (n < 4 || (p[0] != '*' && p[0] != '~') || !e ||
        resp_parse_ll(p + 1, (size_t)(e - p - 1), count) < 0 || *count < 0)
        return -1;
    *body = (size_t)(e - p) + 2;
    return 0;
}

/* Element i's bytes in an array body: framed one after the other. */
static int next_element(const char *p, size_t n, size_t *at, size_t *len)
{
    static const struct resp_limits lim = {.max_bulk = RESP_MAX_BULK, .max_line = SIZE_MAX};
    struct resp_framer f;

    resp_framer_reset(&f);
    if (*at >= n || resp_frame_reply(&f, p + *at, n - *at, &lim) != RESP_DONE)
        return -1;
    *len = f.fr.len;
    return 0;
}

static int merge_mget(struct split *s, struct buf *out)
{
    size_t *off = calloc((size_t)s->nkeys, sizeof *off), *len = calloc((size_t)s->nkeys,
                                                                       sizeof *len);
    int rc = off && len ? 0 : -1;

    for (int i = 0; i < s->nparts && rc == 0; i++) {
        const struct buf *b = &s->parts[i].reply;
        long long count;
        size_t at, l;
        if (array_head(buf_start(b), buf_used(b), &count, &at) < 0 || count != s->parts[i].nkeys) {
            rc = -1;
            break;
        }
        /* the part's k-th element is the k-th key of the request routed to it */
        for (int k = 0, j = 0; j < s->nkeys && rc == 0; j++) {
            if (s->key_part[j] != i)
                continue;
            if (next_element(buf_start(b), buf_used(b), &at, &l) < 0) {
                rc = -1;
                break;
            }
            off[j] = at;
            len[j] = l;
            at += l;
            k++;
        }
    }
    if (rc == 0) {
        buf_appendf(out, "*%d\r\n", s->nkeys);
        for (int j = 0; j < s->nkeys; j++)
            buf_append(out, buf_start(&s->parts[s->key_part[j]].reply) + off[j], len[j]);
    }
    free(off);
    free(len);
    return rc;
}

/* The node's own word (its line in CLUSTER NODES) that the whole range
 * [from, to] is its, and that none of it is migrating away: only then is
 * a range scanned to its end done. A slot being migrated has some of its
 * keys on the importing node already, which a scan of this one misses. */
static int range_settled(const char *p, size_t n, unsigned from, unsigned to)
{
    const char *nl = memchr(p, '\n', n);
    char *line, *save = NULL;
    static unsigned char mine[CLUSTER_SLOTS];
    int ok = 1;

    if ((p[0] != '$' && p[0] != '=') || !nl)    /* RESP3: a verbatim "txt:" string */
        return 0;
    if (p[0] == '=' && n - (size_t)(nl + 1 - p) >= 4)
        nl += 4;
    size_t len = n - (size_t)(nl + 1 - p);
    char *text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, nl + 1, len);
    text[len] = '\0';
    memset(mine, 0, sizeof mine);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[9], *t, *ls = NULL;
        int k = 0;
        for (t = strtok_r(line, " ", &ls); t && k < 8; t = strtok_r(NULL, " ", &ls))
            f[k++] = t;
        if (k < 8 || !strstr(f[2], "myself"))
            continue;
        for (; t; t = strtok_r(NULL, " ", &ls)) {
            if (t[0] == '[') {           /* [slot->-id]: migrating away; [slot-<-id]: coming */
                unsigned m = (unsigned)atoi(t + 1);
                if (strstr(t, "->-") && m >= from && m <= to)
                    ok = 0;
                continue;
            }
            char *dash = strchr(t, '-');
            unsigned a = (unsigned)atoi(t), b = dash ? (unsigned)atoi(dash + 1) : a;
            for (unsigned x = a; x <= b && x < CLUSTER_SLOTS; x++)
                mine[x] = 1;
        }
    }
    free(text);
    for (unsigned x = from; ok && x <= to; x++)
        ok = mine[x];
    return ok;
}

/* The node's [cursor, [keys]]: the keys of the range, and the cursor
 * that goes on from there. */
static int merge_scan(struct split *s, struct buf *out)
{
    const char *p = buf_start(&s->parts[0].reply);
    size_t n = buf_used(&s->parts[0].reply), at, l;
    long long two, count;
    unsigned long long node;
    struct buf keys = {0};
    int kept = 0;

    if (array_head(p, n, &two, &at) < 0 || two != 2 || next_element(p, n, &at, &l) < 0 ||
        p[at] != '$')
        return -1;
    const char *v = memchr(p + at, '\n', l);
    char *end;
    node = v ? strtoull(v + 1, &end, 10) : 0;
    at += l;
    size_t body;
    if (!v || node >> SCAN_NODE_BITS || array_head(p + at, n - at, &count, &body) < 0)
        return -1;
    at += body;
    for (long long i = 0; i < count; i++) {
        if (next_element(p, n, &at, &l) < 0 || p[at] != '$')
            break;
        const char *k = memchr(p + at, '\n', l);
        size_t kl = k ? l - (size_t)(k + 1 - (p + at)) - 2 : 0;
        unsigned slot = k ? cluster_slot(k + 1, kl) : 0;
        if (k && slot >= s->scan_from && slot <= s->scan_to) {
            buf_append(&keys, p + at, l);
            kept++;
        }
        at += l;
    }
    unsigned long long next;
    struct cluster *cl = s->sc->cl;
    if (node) {                                      /* the range goes on */
        next = scan_cursor(s->scan_from, s->scan_to, s->scan_gen, node);
    } else if ((cl->scan_gen & SCAN_GEN_MASK) != (s->scan_gen & SCAN_GEN_MASK) ||
               !range_settled(buf_start(&s->parts[1].reply), buf_used(&s->parts[1].reply),
                              s->scan_from, s->scan_to)) {
        next = scan_cursor(s->scan_from, 0, s->scan_gen, 0);    /* moved: this range again */
        health_cluster_refresh(&cl->src);
    } else if (s->scan_to + 1 < CLUSTER_SLOTS) {
        next = scan_cursor(s->scan_to + 1, 0, s->scan_gen, 0);  /* the next range */
    } else {
        next = 0;                                    /* every slot done */
    }
    char num[24];
    int nl = snprintf(num, sizeof num, "%llu", next);
    buf_appendf(out, "*2\r\n$%d\r\n%s\r\n*%d\r\n", nl, num, kept);
    buf_append(out, buf_start(&keys), buf_used(&keys));
    buf_free(&keys);
    return 0;
}

static void finish(struct split *s)
{
    struct sidecar *sc = s->sc;
    struct buf out = {0};
    static const char bad[] = "-ERR redis-sidecar could not merge the replies of a split "
                              "request\r\n";

    if (buf_used(&s->err)) {
        buf_append(&out, buf_start(&s->err), buf_used(&s->err));
    } else {
        int rc = 0;
        switch (s->kind) {
        case SPLIT_MGET:
            rc = merge_mget(s, &out);
            break;
        case SPLIT_MSET:
            buf_append(&out, "+OK\r\n", 5);
            break;
        case SPLIT_COUNT:
        case SPLIT_ALL_SUM:
            buf_appendf(&out, ":%lld\r\n", s->sum);
            break;
        case SPLIT_ALL_CONCAT:
            buf_appendf(&out, "*%lld\r\n", s->nacc);
            buf_append(&out, buf_start(&s->acc), buf_used(&s->acc));
            break;
        case SPLIT_ALL_FIRST:
            buf_append(&out, buf_start(&s->acc), buf_used(&s->acc));
            break;
        case SPLIT_ALL_AND:
            buf_appendf(&out, "*%lld\r\n", s->nacc);
            for (long long i = 0; i < s->nacc; i++)
                buf_appendf(&out, ":%lld\r\n", s->and_v ? s->and_v[i] : 0);
            break;
        case SPLIT_SCAN:
            rc = merge_scan(s, &out);
            break;
        case SPLIT_NONE:
            break;
        }
        if (rc < 0 || !buf_used(&out)) {
            buf_reset(&out);
            buf_append(&out, bad, sizeof bad - 1);
        }
    }
    client_answer_deferred(sc, s->parent, buf_start(&out), buf_used(&out));
    buf_free(&out);
    split_free(s);
}

/* One part's reply is in (or its error): folded into the split. */
static void fold(struct split *s, int i, const char *p, size_t n, const char *err)
{
    long long v, count;
    size_t body;

    if (err || !n || p[0] == '-' || p[0] == '!') {
        if (!buf_used(&s->err)) {
            if (err)
                buf_appendf(&s->err, "-ERR %s\r\n", err);
            else
                buf_append(&s->err, p, n);
        }
        return;
    }
    switch (s->kind) {
    case SPLIT_MGET:
        buf_append(&s->parts[i].reply, p, n);
        break;
    case SPLIT_COUNT:
    case SPLIT_ALL_SUM:
        if (int_reply(p, n, &v) == 0)
            s->sum += v;
        break;
    case SPLIT_ALL_CONCAT:
        if (array_head(p, n, &count, &body) == 0) {
            s->nacc += count;
            buf_append(&s->acc, p + body, n - body);
        }
        break;
    case SPLIT_ALL_FIRST:
        if (!buf_used(&s->acc))
            buf_append(&s->acc, p, n);
        break;
    case SPLIT_SCAN:                     /* its SCAN, and the node's CLUSTER NODES */
        buf_append(&s->parts[i].reply, p, n);
        break;
    case SPLIT_ALL_AND:
        if (array_head(p, n, &count, &body) == 0) {
            if (!s->and_v) {
                s->nacc = count;
                s->and_v = malloc((size_t)(count ? count : 1) * sizeof *s->and_v);
                for (long long k = 0; s->and_v && k < count; k++)
                    s->and_v[k] = 1;
            }
            size_t at = body, l;
            for (long long k = 0; s->and_v && k < count && k < s->nacc; k++) {
                if (next_element(p, n, &at, &l) < 0)
                    break;
                if (int_reply(p + at, l, &v) == 0 && v == 0)
                    s->and_v[k] = 0;
                at += l;
            }
        }
        break;
    case SPLIT_MSET:
    case SPLIT_NONE:
        break;
    }
}

static void part_done(struct split *s, struct req *r, const char *p, size_t n, const char *err)
{
    fold(s, (int)r->key_len, p, n, err);
    req_release(&s->sc->cache, r);
    if (--s->owed == 0)
        finish(s);
}

struct client *split_part_client(const struct req *r)
{
    return ((const struct split *)r->owner)->parent->owner;
}

struct req *split_part_parent(const struct req *r)
{
    return ((const struct split *)r->owner)->parent;
}

int split_part_holdable(const struct req *r)
{
    const struct split *s = r->owner;

    return s->kind < SPLIT_ALL_SUM && s->parent->owner;
}

/* A part of keys whose master is down (its shard failing over, it seems)
 * waits for the map to name a master, as a client's request would
 * (failover_wait); the others fail at once. 0 if held. */
static int hold_part(struct split *s, struct req *r, const char *p, size_t len)
{
    struct client *c = s->parent->owner;

    if (!split_part_holdable(r))
        return -1;
    if (!r->waiting_since)
        r->waiting_since = ev_now(s->sc->loop);
    health_cluster_refresh(&s->sc->cl->src);
    return hold_request(c, r, p, len);
}

/* A part to node n on the app's link there; answered with an error at
 * once when that cannot be. */
static void send_part(struct split *s, struct client *c, struct node *n, int i,
                      const char *p, size_t len, unsigned flags)
{
    struct req *r = req_alloc(&s->sc->cache);
    struct pool *pl = n ? client_pool(c, n) : NULL;
    struct link *l = pl ? pool_link_for(pl, c->id, c->resp3) : NULL;

    if (!r) {
        fold(s, i, NULL, 0, "proxy out of memory");
        s->owed--;                       /* never the last: the sender holds one */
        return;
    }
    r->owner = s;
    r->flags = REQ_PART | flags;
    r->key_len = (uint32_t)i;            /* which part: the split's, as owner */
    if (cluster_waits_for(s->sc, n) && hold_part(s, r, p, len) == 0)
        return;
    if (!n || n->pool->down || !l || link_send(l, r, p, len) < 0) {
        r->len = len;
        part_done(s, r, NULL, 0, !n ? "no node serves this slot now (CLUSTERDOWN)"
                  : n->pool->down ? n->pool->down_reason : "no link (out of memory)");
    }
}

/* One argument, "$len\r\nbytes\r\n". */
static void bulk_arg(struct buf *b, const char *p, size_t n)
{
    buf_appendf(b, "$%zu\r\n", n);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
}

/* "*N\r\n$len\r\nname\r\n", the part's header before its arguments. */
static void part_head(struct buf *b, long long argc, const char *name, size_t nl)
{
    buf_appendf(b, "*%lld\r\n", argc);
    bulk_arg(b, name, nl);
}

/* The next key of a split request (MSET: and its value, in v). */
static void next_key(const char *frame, const struct resp_frame *fr, size_t *pos, int step,
                     const char **k, size_t *kn, const char **v, size_t *vn)
{
    resp_next_arg(frame, fr->len, pos, k, kn);
    if (step == 2)
        resp_next_arg(frame, fr->len, pos, v, vn);
}

/* The keys grouped by slot, one part per slot, each part's keys (and
 * values) in the request's order. s->owed holds one more than the parts
 * while they go out, so that none finishes the split under this loop. */
static void send_by_slot(struct split *s, struct client *c, const char *frame,
                         const struct resp_frame *fr, unsigned flags)
{
    static unsigned stamp, slot_stamp[CLUSTER_SLOTS];
    static int slot_part[CLUSTER_SLOTS];
    int step = s->kind == SPLIT_MSET ? 2 : 1;
    size_t pos = 0, n, n2 = 0;
    const char *a, *a2 = NULL;
    int *part_slot = malloc((size_t)s->nkeys * sizeof *part_slot);
    struct buf b = {0};

    if (!part_slot || !(s->parts = calloc((size_t)s->nkeys, sizeof *s->parts))) {
        free(part_slot);
        buf_appendf(&s->err, "-ERR proxy out of memory\r\n");
        finish(s);
        return;
    }
    if (++stamp == 0) {
        memset(slot_stamp, 0, sizeof slot_stamp);
        stamp = 1;
    }
    resp_next_arg(frame, fr->len, &pos, &a, &n);          /* the command */
    for (int j = 0; j < s->nkeys; j++) {
        next_key(frame, fr, &pos, step, &a, &n, &a2, &n2);
        unsigned slot = cluster_slot(a, n);
        if (slot_stamp[slot] != stamp) {
            slot_stamp[slot] = stamp;
            slot_part[slot] = s->nparts;
            part_slot[s->nparts++] = (int)slot;
        }
        s->key_part[j] = slot_part[slot];
        s->parts[slot_part[slot]].nkeys++;
    }
    s->owed = s->nparts + 1;
    for (int i = 0; i < s->nparts; i++) {
        buf_reset(&b);
        part_head(&b, 1 + (long long)s->parts[i].nkeys * step, frame + fr->name_off,
                  fr->name_len);
        pos = 0;
        resp_next_arg(frame, fr->len, &pos, &a, &n);
        for (int j = 0; j < s->nkeys; j++) {
            next_key(frame, fr, &pos, step, &a, &n, &a2, &n2);
            if (s->key_part[j] != i)
                continue;
            bulk_arg(&b, a, n);
            if (step == 2)
                bulk_arg(&b, a2, n2);
        }
        send_part(s, c, cluster_slot_node(s->sc, (unsigned)part_slot[i]), i, buf_start(&b),
                  buf_used(&b), flags);
    }
    buf_free(&b);
    free(part_slot);
    if (--s->owed == 0)
        finish(s);
}

/* SCAN: the range the cursor names, checked against the map (its
 * owners changed: from its start again), on the master that serves it,
 * with the node's own cursor and the app's options. */
static void scan_request(struct split *s, struct client *c, const char *frame,
                         const struct resp_frame *fr, unsigned flags)
{
    struct cluster *cl = s->sc->cl;
    size_t pos = 0, n;
    const char *a;
    unsigned long long cur;
    char num[24], *end;
    struct buf b = {0};

    resp_next_arg(frame, fr->len, &pos, &a, &n);
    resp_next_arg(frame, fr->len, &pos, &a, &n);
    memcpy(num, a, n < sizeof num ? n : sizeof num - 1);
    num[n < sizeof num ? n : sizeof num - 1] = '\0';
    cur = strtoull(num, &end, 10);
    if (!n || n >= sizeof num || *end || num[0] == '-' || cur >> 63 ||
        (cur && !(cur & SCAN_STARTED))) {
        buf_appendf(&s->err, "-ERR invalid cursor\r\n");
        finish(s);
        return;
    }
    unsigned from = (unsigned)(cur >> 48) & (CLUSTER_SLOTS - 1), to = (unsigned)(cur >> 34) &
                    (CLUSTER_SLOTS - 1), gen = (unsigned)(cur >> SCAN_NODE_BITS) & SCAN_GEN_MASK;
    unsigned long long node = cur & ((1ULL << SCAN_NODE_BITS) - 1);
    struct node *owner = cluster_slot_node(s->sc, from);
    int valid = cur != 0 && to >= from && gen == (cl->scan_gen & SCAN_GEN_MASK) && owner;
    for (unsigned sl = from; valid && sl <= to; sl++)
        valid = cluster_slot_node(s->sc, sl) == owner;
    if (!valid) {                        /* a range from `from`: as far as its master goes */
        node = 0;
        gen = cl->scan_gen;
        for (to = from; owner && to + 1 < CLUSTER_SLOTS &&
             cluster_slot_node(s->sc, to + 1) == owner; to++)
            ;
    }
    static const char nodes[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n";
    s->scan_from = from;
    s->scan_to = to;
    s->scan_gen = gen;
    if (!(s->parts = calloc(2, sizeof *s->parts))) {
        buf_appendf(&s->err, "-ERR proxy out of memory\r\n");
        finish(s);
        return;
    }
    s->nparts = 2;
    s->owed = 3;                         /* as send_by_slot: one for the sender */
    /* SCAN <node cursor> and the app's options as they came, then the
     * node's view of its slots, on the same link */
    snprintf(num, sizeof num, "%llu", node);
    part_head(&b, fr->argc, "SCAN", 4);
    bulk_arg(&b, num, strlen(num));
    buf_append(&b, frame + pos, fr->len - pos);
    send_part(s, c, owner, 0, buf_start(&b), buf_used(&b), flags);
    send_part(s, c, owner, 1, nodes, sizeof nodes - 1, REQ_READONLY);
    buf_free(&b);
    if (--s->owed == 0)
        finish(s);
}

void split_request(struct client *c, enum split_kind kind, const char *frame,
                   const struct resp_frame *fr)
{
    struct sidecar *sc = client_sc(c);
    int readonly = kind == SPLIT_MGET || kind == SPLIT_ALL_SUM || kind == SPLIT_ALL_CONCAT ||
                   kind == SPLIT_ALL_AND || kind == SPLIT_SCAN || (kind == SPLIT_COUNT && c->last_cmd &&
                                             (c->last_cmd->flags & CMD_READONLY));
    unsigned t = TALLY(readonly ? CLASS_READ : CLASS_WRITE, DEST_MASTER);
    /* a write: the client's reads stay off the replicas until it is seen
     * there (read-your-writes), as for any write */
    unsigned w = !readonly && sc->nreplicas && sc->cfg->read_your_writes != RYW_OFF &&
                 client_ext(c) ? REQ_WRITE : 0;
    struct split *s = calloc(1, sizeof *s);
    struct req *parent = s ? client_slot(c, REQ_DEFERRED | w | t << REQ_TALLY_SHIFT) : NULL;

    if (!parent) {
        free(s);
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    if (w)
        c->x->writes_pending++;
    parent->len = fr->len;
    c->inflight += fr->len;
    sc->st.forwarded++;
    sc->st.requests_by[t]++;
    s->sc = sc;
    s->parent = parent;
    s->kind = kind;
    unsigned flags = readonly ? REQ_READONLY : 0;
    if (kind == SPLIT_SCAN) {
        scan_request(s, c, frame, fr, flags);
        return;
    }
    if (kind >= SPLIT_ALL_SUM) {
        struct cluster *cl = sc->cl;
        if (!(s->nparts = cl->nshards)) {
            buf_appendf(&s->err, "-CLUSTERDOWN the cluster's slot map is not read yet\r\n");
            finish(s);
            return;
        }
        s->owed = s->nparts + 1;         /* as send_by_slot */
        for (int i = 0, n = s->nparts; i < n; i++)
            send_part(s, c, cl->shard_node[i], i, frame, fr->len, flags);
        if (--s->owed == 0)
            finish(s);
        return;
    }
    s->nkeys = (int)((fr->argc - 1) / (kind == SPLIT_MSET ? 2 : 1));
    if (!(s->key_part = malloc((size_t)s->nkeys * sizeof *s->key_part))) {
        buf_appendf(&s->err, "-ERR proxy out of memory\r\n");
        finish(s);
        return;
    }
    send_by_slot(s, c, frame, fr, flags);
}

void split_part_answered(struct req *r, const char *req, const char *p, size_t n,
                         const char *err)
{
    struct split *s = r->owner;
    struct client *c = s->parent->owner;

    /* a slot moved under it: the part goes where the reply says */
    if (c && req && !err && n && p[0] == '-' && cluster_redirect(c, r, req, p, n) == 0)
        return;
    part_done(s, r, p, n, err);
}

void split_part_unrun(struct req *r, const char *req, const char *why)
{
    struct split *s = r->owner;
    struct client *c = s->parent->owner;
    /* a part of keys goes where its slot is now; one for every master (or
     * a SCAN's) was meant for its node only: it fails */
    struct node *n = c && s->kind < SPLIT_ALL_SUM ? cluster_route_bytes(s->sc, req, r->len)
                                                  : NULL;
    struct pool *pl = n ? client_pool(c, n) : NULL;
    struct link *l = pl ? pool_link_for(pl, c->id, c->resp3) : NULL;

    if (c && s->kind < SPLIT_ALL_SUM && cluster_waits_for(s->sc, n) &&
        hold_part(s, r, req, r->len) == 0)
        return;
    if (!l || n->pool->down || link_resend(l, r, req, r->len) < 0)
        part_done(s, r, NULL, 0, why);
}
