/* The command table: what the proxy must know of a command before it
 * forwards it. A compiled-in table for now; unknown commands are treated
 * as writes and forwarded, so redis answers them itself. */
#ifndef SIDECAR_COMMAND_H
#define SIDECAR_COMMAND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../lib/resp.h"

#define CMD_READONLY  0x01   /* never changes data: may be repeated */
#define CMD_LOCAL     0x02   /* answered by the proxy */
#define CMD_BLOCKING  0x08   /* may wait on the server */
#define CMD_REFUSED   0x10   /* never through a proxy */
#define CMD_MAYBLOCK  0x20   /* blocks only with a BLOCK argument (XREAD) */
#define CMD_LEASE     0x40   /* taken on a lease (transactions, blocking calls) */
#define CMD_NOT_YET   0x80   /* needs a lease the proxy cannot manage yet */
#define CMD_STREAM    0x100  /* pub/sub: its lease streams every frame to the client */
#define CMD_FROM_SERVER 0x200 /* learnt from the server's COMMAND reply (allocated) */
#define CMD_SCRIPT_RUN 0x800 /* EVAL, FCALL...: may run past busy-reply-threshold */
#define CMD_NO_MULTI  0x400  /* refused, but inside MULTI redis refuses it itself (and
                              * the transaction with it): sent there */

enum cmd_local {
    LOCAL_NONE, LOCAL_AUTH, LOCAL_HELLO, LOCAL_QUIT, LOCAL_SELECT,
    LOCAL_PROXY, LOCAL_CLIENT, LOCAL_RESET, LOCAL_CLUSTER,
};

/* What a command does to a connection's server-side state, so the proxy
 * knows when a lease holds nothing any more. */
enum cmd_state { STATE_NONE, STATE_MULTI, STATE_END_MULTI, STATE_WATCH, STATE_UNWATCH,
                 STATE_SELECT, STATE_SCRIPT /* SCRIPT: LOAD goes to every node */,
                 STATE_WAIT /* WAIT: counts this connection's writes */,
                 STATE_FUNCTION /* FUNCTION: KILL, as SCRIPT KILL, on a lease */ };

/* Where a command's first key is: 0 (the default) argument 1, a position
 * past it, or one of these. */
#define KEY_NONE    (-1)     /* no key (PING, INFO, PUBLISH's channel...) */
#define KEY_EVAL    (-2)     /* numkeys at 2, the key at 3 (EVAL, FCALL, BLMPOP) */
#define KEY_NUMKEYS (-3)     /* numkeys at 1, the key at 2 (ZUNION, LMPOP) */
#define KEY_STREAMS (-4)     /* after STREAMS (XREAD) */

struct command {
    const char    *name;     /* lower case */
    unsigned       flags;
    enum cmd_local local;
    enum cmd_state state;
    signed char    key;      /* where its first key is (KEY_*) */
    unsigned char  split;    /* cluster mode: how it is split (enum split_kind, split.h) */
};

#define COMMAND_SLOTS 1024   /* power of two, over twice the table */

struct command_table {
    const struct command *slot[COMMAND_SLOTS];
    uint64_t              word[COMMAND_SLOTS];  /* its first 8 bytes (name_word) */
    unsigned char         len[COMMAND_SLOTS];   /* strlen of slot[i]->name */
    unsigned              nused;
    /* The last name command_lookup_hot found, as it was typed (its raw
     * word), and what it is (NULL: unknown): an app repeating one command
     * skips the fold and the hash. Forgotten when the table changes. */
    uint64_t              hot_word;
    size_t                hot_len;                /* 0: nothing */
    const struct command *hot;
};

void command_table_init(struct command_table *t);
/* Add a command the server's COMMAND reply knows and the compiled table
 * does not (new commands, modules), from its flags (HEALTH_CMD_*, as the
 * checker read them): read-only ones may go to replicas, blocking ones
 * take a lease, the rest go to the master. The compiled entries stay as
 * they are. first_key is COMMAND's (0: none, or found by the arguments).
 * 1 if added, 0 if not. */
int command_table_learn(struct command_table *t, const char *name, size_t len,
                        unsigned flags, int first_key);
void command_table_free(struct command_table *t);
/* Case-insensitive; NULL when the proxy does not know the command. */
const struct command *command_lookup(const struct command_table *t,
                                     const char *name, size_t len);
/* The same, where `avail` bytes may be read from name (len or more): a
 * name inside a framed request, with the bytes after it. */
const struct command *command_lookup_in(const struct command_table *t, const char *name,
                                        size_t len, size_t avail);

/* A name of up to 8 bytes as it is, the bytes past it 0; 8 bytes may be
 * read from s. */
static inline uint64_t command_raw_word(const char *s, size_t len)
{
    uint64_t w;

    memcpy(&w, s, 8);
    return len >= 8 ? w : w & (((uint64_t)1 << (8 * len)) - 1);
}

/* command_lookup_in for the request path: the same name of 1 to 8 bytes
 * as the last time (same bytes, same case) is answered from the table's
 * hot entry. */
static inline const struct command *command_lookup_hot(struct command_table *t, const char *name,
                                                       size_t len, size_t avail)
{
    if (len - 1 >= 8 || avail < 8)      /* len 0 wraps */
        return command_lookup_in(t, name, len, avail);
    uint64_t w = command_raw_word(name, len);
    if (w != t->hot_word || len != t->hot_len) {
        t->hot = command_lookup_in(t, name, len, avail);
        t->hot_word = w;
        t->hot_len = len;
    }
    return t->hot;
}

/* The first key of a framed request, by its command's key position (cmd
 * NULL: argument 1); 0 when it has none. The common case, argument 1 of
 * a multibulk request, inline; the others in command_other_key. */
int command_other_key(const struct command *cmd, const char *frame,
                      const struct resp_frame *fr, const char **kp, size_t *kn);

static inline int command_first_key(const struct command *cmd, const char *frame,
                                    const struct resp_frame *fr, const char **kp, size_t *kn)
{
    if ((!cmd || cmd->key == 0) && fr->argc >= 2 && !fr->is_inline) {
        resp_arg1(frame, fr, kp, kn);
        return 1;
    }
    return command_other_key(cmd, frame, fr, kp, kn);
}

#endif
