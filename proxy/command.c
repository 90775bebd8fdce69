/* Compiled-in command table and its case-insensitive hash index. */
#include "command.h"
#include "split.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../health/checker.h"
#include "../lib/resp.h"

#define R CMD_READONLY
#define S CMD_LEASE
#define N CMD_NOT_YET
#define P CMD_STREAM
#define B (CMD_BLOCKING | CMD_LEASE)

/* Most entries leave `split` out (0: none). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct command commands[] = {
    /* answered by the proxy */
    {"auth", CMD_LOCAL, LOCAL_AUTH, 0, KEY_NONE},
    {"hello", CMD_LOCAL, LOCAL_HELLO, 0, KEY_NONE},
    {"quit", CMD_LOCAL, LOCAL_QUIT, 0, KEY_NONE},
    /* answered by the proxy in cluster mode (a one-node cluster), else
     * forwarded (redis: "cluster support disabled") */
    {"cluster", CMD_LOCAL, LOCAL_CLUSTER, 0, KEY_NONE},
    {"readonly", CMD_LOCAL, LOCAL_CLUSTER, 0, KEY_NONE},
    {"readwrite", CMD_LOCAL, LOCAL_CLUSTER, 0, KEY_NONE},
    {"asking", CMD_LOCAL, LOCAL_CLUSTER, 0, KEY_NONE},
    {"select", CMD_LOCAL, LOCAL_SELECT, STATE_SELECT, KEY_NONE},
    {"proxy", CMD_LOCAL, LOCAL_PROXY, 0, KEY_NONE},
    {"client", CMD_LOCAL, LOCAL_CLIENT, 0, KEY_NONE},
    /* connection state that a shared link must never carry */
    {"multi", S, 0, STATE_MULTI, KEY_NONE}, {"exec", S, 0, STATE_END_MULTI, KEY_NONE},
    {"discard", S, 0, STATE_END_MULTI, KEY_NONE}, {"watch", S, 0, STATE_WATCH, 0},
    {"unwatch", S, 0, STATE_UNWATCH, KEY_NONE}, {"reset", CMD_LOCAL, LOCAL_RESET, 0, KEY_NONE},
    /* pub/sub: one request may get many replies, and messages come unasked */
    {"subscribe", P, 0, 0, KEY_NONE}, {"psubscribe", P, 0, 0, KEY_NONE},
    {"ssubscribe", P, 0, 0, 0}, {"unsubscribe", P, 0, 0, KEY_NONE},
    {"punsubscribe", P, 0, 0, KEY_NONE}, {"sunsubscribe", P, 0, 0, 0},
    {"blpop", B, 0, 0, 0}, {"brpop", B, 0, 0, 0}, {"brpoplpush", B, 0, 0, 0},
    {"blmove", B, 0, 0, 0},
    {"blmpop", B, 0, 0, KEY_EVAL}, {"bzpopmin", B, 0, 0, 0}, {"bzpopmax", B, 0, 0, 0},
    {"bzmpop", B, 0, 0, KEY_EVAL},
    {"wait", B, 0, STATE_WAIT, KEY_NONE}, {"waitaof", B, 0, STATE_WAIT, KEY_NONE},
    {"xread", R | CMD_MAYBLOCK, 0, 0, KEY_STREAMS}, {"xreadgroup", CMD_MAYBLOCK, 0, 0, KEY_STREAMS},
    /* replication and server control belong to the operator, not an app */
    {"monitor", P, 0, 0, KEY_NONE}, {"sync", CMD_REFUSED | CMD_NO_MULTI, 0, 0, KEY_NONE},
    {"psync", CMD_REFUSED | CMD_NO_MULTI, 0, 0, KEY_NONE},
    {"replicaof", CMD_REFUSED, 0, 0, KEY_NONE}, {"slaveof", CMD_REFUSED, 0, 0, KEY_NONE},
    {"shutdown", CMD_REFUSED | CMD_NO_MULTI, 0, 0, KEY_NONE}, {"debug", B, 0, 0, KEY_NONE},
    {"failover", CMD_REFUSED, 0, 0, KEY_NONE},
    /* the answer is the node's own: the master's, not a replica's */
    {"info", 0, 0, 0, KEY_NONE}, {"time", 0, 0, 0, KEY_NONE}, {"command", 0, 0, 0, KEY_NONE},
    {"lolwut", 0, 0, 0, KEY_NONE},
    /* a cursor means something on one node only */
    {"scan", 0, 0, 0, KEY_NONE, SPLIT_SCAN}, {"hscan", 0, 0, 0, 0}, {"sscan", 0, 0, 0, 0},
    {"zscan", 0, 0, 0, 0},
    {"script", 0, 0, STATE_SCRIPT, KEY_NONE, SPLIT_ALL_FIRST},
    {"function", 0, 0, STATE_FUNCTION, KEY_NONE, SPLIT_ALL_FIRST},
    /* read-only: safe to run again after a lost link */
    /* writes learnt from COMMAND otherwise; here for how a cluster splits them */
    {"mset", 0, 0, 0, 0, SPLIT_MSET}, {"del", 0, 0, 0, 0, SPLIT_COUNT},
    {"unlink", 0, 0, 0, 0, SPLIT_COUNT}, {"flushall", 0, 0, 0, KEY_NONE, SPLIT_ALL_FIRST},
    {"flushdb", 0, 0, 0, KEY_NONE, SPLIT_ALL_FIRST},
    {"get", R, 0, 0, 0}, {"mget", R, 0, 0, 0, SPLIT_MGET}, {"getrange", R, 0, 0, 0},
    {"substr", R, 0, 0, 0}, {"strlen", R, 0, 0, 0}, {"exists", R, 0, 0, 0, SPLIT_COUNT},
    {"type", R, 0, 0, 0}, {"ttl", R, 0, 0, 0},
    {"pttl", R, 0, 0, 0}, {"expiretime", R, 0, 0, 0}, {"pexpiretime", R, 0, 0, 0},
    {"keys", R, 0, 0, KEY_NONE, SPLIT_ALL_CONCAT},
    {"randomkey", R, 0, 0, KEY_NONE}, {"dbsize", R, 0, 0, KEY_NONE, SPLIT_ALL_SUM},
    {"touch", R, 0, 0, 0, SPLIT_COUNT},
    {"hget", R, 0, 0, 0}, {"hmget", R, 0, 0, 0}, {"hgetall", R, 0, 0, 0}, {"hkeys", R, 0, 0, 0},
    {"hvals", R, 0, 0, 0}, {"hlen", R, 0, 0, 0}, {"hexists", R, 0, 0, 0}, {"hstrlen", R, 0, 0, 0},
    {"hrandfield", R, 0, 0, 0},
    {"lrange", R, 0, 0, 0}, {"lindex", R, 0, 0, 0}, {"llen", R, 0, 0, 0}, {"lpos", R, 0, 0, 0},
    {"smembers", R, 0, 0, 0}, {"sismember", R, 0, 0, 0}, {"smismember", R, 0, 0, 0},
    {"scard", R, 0, 0, 0}, {"srandmember", R, 0, 0, 0}, {"sinter", R, 0, 0, 0},
    {"sintercard", R, 0, 0, KEY_NUMKEYS}, {"sunion", R, 0, 0, 0}, {"sdiff", R, 0, 0, 0},
    {"zrange", R, 0, 0, 0}, {"zrangebyscore", R, 0, 0, 0}, {"zrevrange", R, 0, 0, 0},
    {"zrevrangebyscore", R, 0, 0, 0}, {"zrangebylex", R, 0, 0, 0}, {"zrevrangebylex", R, 0, 0, 0},
    {"zscore", R, 0, 0, 0}, {"zmscore", R, 0, 0, 0}, {"zrank", R, 0, 0, 0},
    {"zrevrank", R, 0, 0, 0},
    {"zcard", R, 0, 0, 0}, {"zcount", R, 0, 0, 0}, {"zlexcount", R, 0, 0, 0},
    {"zrandmember", R, 0, 0, 0}, {"zdiff", R, 0, 0, KEY_NUMKEYS}, {"zinter", R, 0, 0, KEY_NUMKEYS},
    {"zunion", R, 0, 0, KEY_NUMKEYS}, {"zintercard", R, 0, 0, KEY_NUMKEYS},
    {"xrange", R, 0, 0, 0}, {"xrevrange", R, 0, 0, 0}, {"xlen", R, 0, 0, 0},
    {"xpending", R, 0, 0, 0},
    {"xinfo", R, 0, 0, 2},
    {"getbit", R, 0, 0, 0}, {"bitcount", R, 0, 0, 0}, {"bitpos", R, 0, 0, 0},
    {"bitfield_ro", R, 0, 0, 0},
    {"geopos", R, 0, 0, 0}, {"geodist", R, 0, 0, 0}, {"geohash", R, 0, 0, 0},
    {"georadius_ro", R, 0, 0, 0}, {"georadiusbymember_ro", R, 0, 0, 0}, {"geosearch", R, 0, 0, 0},
    {"dump", R, 0, 0, 0}, {"object", R, 0, 0, 2}, {"lcs", R, 0, 0, 0}, {"sort_ro", R, 0, 0, 0},
    {"eval_ro", R | CMD_SCRIPT_RUN, 0, 0, KEY_EVAL},
    {"evalsha_ro", R | CMD_SCRIPT_RUN, 0, 0, KEY_EVAL},
    {"fcall_ro", R | CMD_SCRIPT_RUN, 0, 0, KEY_EVAL},
    {"eval", CMD_SCRIPT_RUN, 0, 0, KEY_EVAL}, {"evalsha", CMD_SCRIPT_RUN, 0, 0, KEY_EVAL},
    {"fcall", CMD_SCRIPT_RUN, 0, 0, KEY_EVAL},
    {"ping", R, 0, 0, KEY_NONE}, {"echo", R, 0, 0, KEY_NONE},
};
#pragma GCC diagnostic pop

#undef R
#undef S
#undef N
#undef P
#undef B

/* A name's first 8 bytes, lower-cased, in one word (bytes past its end
 * 0): a name of up to 8 bytes is compared by it alone, a longer one by it
 * and the rest. Upper case is found for all 8 bytes at once: a byte is
 * 'A'..'Z' when it is under 0x80, 'A' or more and not over 'Z'. */
static inline uint64_t name_word(const char *s, size_t n, size_t avail)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x80 * ones;
    uint64_t w = 0;
    size_t k = n < 8 ? n : 8;

    if (avail >= 8) {             /* one load, the bytes past the name masked off */
        memcpy(&w, s, 8);
        if (k < 8)
            w &= ((uint64_t)1 << (8 * k)) - 1;
    } else {
        for (size_t i = 0; i < k; i++)
            w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    }
    uint64_t low7 = w & ~high;
    uint64_t ge_a = low7 + (0x80 - 'A') * ones, gt_z = low7 + (0x7f - 'Z') * ones;
    return w | ((ge_a & ~gt_z & ~w & high) >> 2);
}

static inline unsigned slot_of(uint64_t w, size_t n)
{
    return (unsigned)(((w ^ n) * 0x9e3779b97f4a7c15ull) >> 40);
}

/* The bytes past the first 8: a loop beats a call to strncasecmp. */
static int same_rest(const char *lower, const char *s, size_t n)
{
    for (size_t i = 8; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static void index_command(struct command_table *t, const struct command *c, size_t n)
{
    uint64_t w = name_word(c->name, n, n);
    unsigned h = slot_of(w, n);

    while (t->slot[h & (COMMAND_SLOTS - 1)])
        h++;
    t->slot[h & (COMMAND_SLOTS - 1)] = c;
    t->word[h & (COMMAND_SLOTS - 1)] = w;
    t->len[h & (COMMAND_SLOTS - 1)] = (unsigned char)n;
    t->nused++;
}

void command_table_init(struct command_table *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        index_command(t, &commands[i], strlen(commands[i].name));
}

const struct command *command_lookup(const struct command_table *t,
                                     const char *name, size_t len)
{
    return command_lookup_in(t, name, len, len);
}

const struct command *command_lookup_in(const struct command_table *t, const char *name,
                                        size_t len, size_t avail)
{
    uint64_t w = name_word(name, len, avail);

    for (unsigned h = slot_of(w, len);; h++) {
        unsigned i = h & (COMMAND_SLOTS - 1);
        const struct command *c = t->slot[i];
        if (!c)
            return NULL;
        if (t->word[i] == w && t->len[i] == len && (len <= 8 || same_rest(c->name, name, len)))
            return c;
    }
}

static int add_command(struct command_table *t, const char *name, size_t len, unsigned flags,
                       int key)
{
    struct command *c = NULL;
    char *lower = NULL;

    if (len == 0 || len > 200 || command_lookup(t, name, len) ||
        t->nused >= COMMAND_SLOTS * 3 / 4)
        return 0;
    if (!(c = calloc(1, sizeof *c)) || !(lower = malloc(len + 1))) {
        free(c);
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lower[len] = '\0';
    c->name = lower;
    c->flags = flags | CMD_FROM_SERVER;
    c->key = (signed char)key;
    index_command(t, c, len);
    return 1;
}

int command_table_learn(struct command_table *t, const char *name, size_t len,
                        unsigned flags, int first_key)
{
    unsigned f = 0;

    t->hot_len = 0;                      /* what it knew of a name may change */
    if (flags & HEALTH_CMD_BLOCKING)
        f |= CMD_BLOCKING | CMD_LEASE;
    else if ((flags & HEALTH_CMD_READONLY) && !(flags & HEALTH_CMD_WRITE))
        f |= CMD_READONLY;
    /* key 0 is argument 1 here; COMMAND's 0 is no key (or keys found by
     * parsing, which only the compiled entries do) */
    return add_command(t, name, len, f, first_key <= 0 ? KEY_NONE : first_key > 127 ? 127
                                        : first_key == 1 ? 0 : first_key);
}

void command_table_free(struct command_table *t)
{
    for (unsigned i = 0; i < COMMAND_SLOTS; i++) {
        if (t->slot[i] && (t->slot[i]->flags & CMD_FROM_SERVER)) {
            free((char *)t->slot[i]->name);
            free((struct command *)t->slot[i]);
        }
    }
    memset(t, 0, sizeof *t);
}

/* A numkeys argument at i; its key comes after it. */
static int numkeys_at(const char *frame, const struct resp_frame *fr, int i)
{
    const char *p;
    size_t n;
    long long k;

    return resp_arg(frame, fr, i, &p, &n) && resp_parse_ll(p, n, &k) == 0 && k > 0;
}

int command_other_key(const struct command *cmd, const char *frame,
                      const struct resp_frame *fr, const char **kp, size_t *kn)
{
    int at = cmd ? cmd->key : 0;
    const char *p;
    size_t n;

    if (at == KEY_EVAL)
        at = numkeys_at(frame, fr, 2) ? 3 : KEY_NONE;
    else if (at == KEY_NUMKEYS)
        at = numkeys_at(frame, fr, 1) ? 2 : KEY_NONE;
    else if (at == 0)
        at = 1;
    if (at == KEY_STREAMS) {
        size_t pos = 0;
        int after = 0;
        while (resp_next_arg(frame, fr->len, &pos, &p, &n)) {
            if (after) {
                *kp = p;
                *kn = n;
                return 1;
            }
            after = n == 7 && strncasecmp(p, "streams", 7) == 0;
        }
        return 0;
    }
    if (at > 0 && at < fr->argc && resp_arg(frame, fr, at, kp, kn))
        return 1;
    return 0;
}
