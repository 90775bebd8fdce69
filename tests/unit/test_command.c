/* Command table: lookups are case-insensitive and classes are right. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "../../health/checker.h"
#include "../../proxy/command.h"
#include "check.h"

static const struct command *find(const struct command_table *t, const char *s)
{
    return command_lookup(t, s, strlen(s));
}

/* The reply as hiredis's reader builds it, entry by entry; -1 if it does
 * not parse as a COMMAND reply. */
static int parse(const char *raw, struct health_command *v, int max)
{
    static void *last;               /* the entries point into it */
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;

    if (last)
        freeReplyObject(last);
    redisReaderFeed(rd, raw, strlen(raw));
    if (redisReaderGetReply(rd, &reply) != REDIS_OK || !reply) {
        redisReaderFree(rd);
        return -1;
    }
    redisReaderFree(rd);
    last = reply;
    return health_parse_commands(reply, v, max);
}

static int learn(struct command_table *t, const struct health_command *v, int n)
{
    int added = 0;

    for (int i = 0; i < n; i++)
        added += command_table_learn(t, v[i].name, v[i].len, v[i].flags, v[i].first_key);
    return added;
}

int main(void)
{
    struct command_table t;
    command_table_init(&t);

    CHECK(find(&t, "get") && (find(&t, "get")->flags & CMD_READONLY));
    CHECK(find(&t, "GeT") == find(&t, "get"));
    CHECK(find(&t, "GET") == find(&t, "get"));
    CHECK(find(&t, "set") == NULL);              /* unknown = write, forwarded */
    CHECK(command_lookup(&t, "getx", 3) == find(&t, "get"));  /* length counts */
    CHECK(command_lookup(&t, "ge", 2) == NULL);
    CHECK(find(&t, "") == NULL);
    /* the bytes next to 'A' and 'Z', and high bytes, are not letters: only
     * A-Z fold to a-z */
    CHECK(find(&t, "g@t") == NULL && find(&t, "G[T") == NULL && find(&t, "ge\x54") == find(&t, "get"));
    CHECK(find(&t, "G\xc5T") == NULL && find(&t, "\xc7" "ET") == NULL && find(&t, "GE\xf4") == NULL);
    /* names past 8 bytes: the rest is compared too, folded */
    CHECK(find(&t, "GEORADIUS_RO") && find(&t, "GeoRadius_ro") == find(&t, "georadius_ro"));
    CHECK(find(&t, "georadius_rx") == NULL && find(&t, "georadiuS_RO\x80") == NULL);
    CHECK(find(&t, "GEORADIUSBYMEMBER_RO") == find(&t, "georadiusbymember_ro"));
    CHECK(find(&t, "georadiusbymember_rO") != find(&t, "georadius_ro"));
    /* a name inside a request, read 8 bytes at a time: what follows it
     * does not count */
    CHECK(command_lookup_in(&t, "GET\r\n$16\r\n", 3, 11) == find(&t, "get"));
    CHECK(command_lookup_in(&t, "GETDEL\r\n$1\r\n", 3, 13) == find(&t, "get"));
    CHECK(command_lookup_in(&t, "getdel\r\n$1\r\n", 6, 13) == find(&t, "getdel"));
    CHECK(command_lookup_in(&t, "GEORADIUS_RO\r\n", 12, 14) == find(&t, "georadius_ro"));
    CHECK(command_lookup_in(&t, "GE\r\n$1\r\nT", 2, 10) == NULL);
    /* the hot entry: the last name as typed; another length, case or name
     * is looked up afresh, and an unknown one is forgotten when learnt */
    CHECK(command_lookup_hot(&t, "GET\r\n$1\r\nk", 3, 10) == find(&t, "get"));
    CHECK(command_lookup_hot(&t, "GET\r\n$1\r\nk", 3, 10) == find(&t, "get"));
    CHECK(command_lookup_hot(&t, "GET\0\r\n$1\r\n", 4, 10) == NULL);   /* same word, longer */
    CHECK(command_lookup_hot(&t, "GET\r\n$1\r\nk", 3, 10) == find(&t, "get"));
    CHECK(command_lookup_hot(&t, "GETDEL\r\n$1\r\n", 6, 12) == find(&t, "getdel"));
    CHECK(command_lookup_hot(&t, "GETDEL\r\n$1\r\n", 3, 12) == find(&t, "get"));
    CHECK(command_lookup_hot(&t, "get\r\n$1\r\nk", 3, 10) == find(&t, "get"));
    CHECK(command_lookup_hot(&t, "GEX\r\n$1\r\nk", 3, 10) == NULL);
    CHECK(command_lookup_hot(&t, "PFCOUNT\r\n$1\r\nk", 7, 14) == NULL);
    CHECK(command_lookup_hot(&t, "ECHO\r\n", 4, 6) == find(&t, "echo"));     /* 6 bytes: no word */
    CHECK(command_lookup_hot(&t, "GEORADIUS_RO\r\n", 12, 14) == find(&t, "georadius_ro"));
    CHECK(command_lookup_hot(&t, "PFCOUNT\r\n$1\r\nk", 7, 14) == NULL);
    CHECK(find(&t, "AUTH")->local == LOCAL_AUTH);
    CHECK(find(&t, "hello")->local == LOCAL_HELLO);
    CHECK(find(&t, "Quit")->local == LOCAL_QUIT);
    CHECK(find(&t, "select")->local == LOCAL_SELECT);
    CHECK(find(&t, "PROXY")->local == LOCAL_PROXY);
    CHECK(find(&t, "client")->local == LOCAL_CLIENT);
    CHECK(find(&t, "multi")->flags & CMD_LEASE);
    CHECK(find(&t, "BLPOP")->flags & CMD_BLOCKING);
    CHECK(find(&t, "bzmpop")->flags & CMD_BLOCKING);
    CHECK(find(&t, "wait")->flags & CMD_BLOCKING);
    CHECK(find(&t, "subscribe")->flags & CMD_STREAM);
    CHECK(find(&t, "xread")->flags & CMD_MAYBLOCK);
    CHECK(!(find(&t, "xread")->flags & CMD_LEASE));
    CHECK(find(&t, "monitor")->flags & CMD_STREAM);
    CHECK(find(&t, "debug")->flags & CMD_LEASE);
    CHECK(find(&t, "reset")->local == LOCAL_RESET);
    CHECK(find(&t, "SHUTDOWN")->flags & CMD_REFUSED);
    CHECK(find(&t, "eval_ro")->flags & CMD_READONLY);
    /* EVAL may write; a script may outlast busy-reply-threshold */
    CHECK(!(find(&t, "eval")->flags & CMD_READONLY) && (find(&t, "eval")->flags & CMD_SCRIPT_RUN));
    CHECK((find(&t, "fcall_ro")->flags & (CMD_READONLY | CMD_SCRIPT_RUN)) ==
          (CMD_READONLY | CMD_SCRIPT_RUN));
    CHECK(find(&t, "georadiusbymember_ro")->flags & CMD_READONLY);
    /* Every name in the table is found again by its upper-case spelling. */
    const char *names[] = {"mget", "zrevrangebyscore", "lolwut", "bitfield_ro",
                           "punsubscribe", "brpoplpush", "replicaof"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char up[64];
        size_t n = strlen(names[i]);
        for (size_t j = 0; j <= n; j++)
            up[j] = (char)(names[i][j] >= 'a' && names[i][j] <= 'z'
                           ? names[i][j] - 32 : names[i][j]);
        CHECK(find(&t, up) != NULL && find(&t, up) == find(&t, names[i]));
    }
    /* A COMMAND reply, read by hiredis as the checker reads it, adds what
     * the compiled table lacks; the table keeps its own entries. */
    static const char reply[] =
        "*4\r\n"
        "*10\r\n$7\r\npfcount\r\n:-2\r\n*1\r\n+readonly\r\n:1\r\n:-1\r\n:1\r\n"
        "*2\r\n+@read\r\n+@hyperloglog\r\n*0\r\n*1\r\n*4\r\n$5\r\nflags\r\n*1\r\n$2\r\nRW\r\n"
        "$5\r\nnotes\r\n$1\r\nx\r\n*0\r\n"
        "*3\r\n$9\r\nMOD.BWAIT\r\n:2\r\n*2\r\n+write\r\n+blocking\r\n"
        "*3\r\n$3\r\nget\r\n:2\r\n*1\r\n+write\r\n"          /* ours wins */
        "*3\r\n$6\r\nmod.rw\r\n:2\r\n*2\r\n+readonly\r\n+write\r\n";
    struct health_command v[8];
    CHECK(find(&t, "pfcount") == NULL);
    CHECK(parse(reply, v, 8) == 4);
    CHECK(learn(&t, v, 4) == 3);
    CHECK(find(&t, "PFCOUNT") && (find(&t, "pfcount")->flags & CMD_READONLY));
    CHECK(command_lookup_hot(&t, "PFCOUNT\r\n$1\r\nk", 7, 14) == find(&t, "pfcount"));
    CHECK(find(&t, "mod.bwait") && (find(&t, "mod.bwait")->flags & CMD_LEASE) &&
          !(find(&t, "mod.bwait")->flags & CMD_READONLY));
    CHECK(find(&t, "mod.rw") && !(find(&t, "mod.rw")->flags & CMD_READONLY));
    CHECK(find(&t, "get")->flags & CMD_READONLY);
    CHECK(learn(&t, v, 4) == 0);                                  /* idempotent */
    CHECK(parse("*2\r\n*1\r\n$3\r\nabc\r\n*1\r\n$3\r\nxyz\r\n", v, 8) == -1); /* short entries */
    CHECK(parse("+OK\r\n", v, 8) == -1);
    CHECK(parse("*1\r\n*3\r\n:1\r\n:2\r\n*0\r\n", v, 8) == -1);  /* a name that is no string */
    CHECK(parse(reply, v, 2) == 2);                               /* bounded by the room */
    command_table_free(&t);
    CHECK_DONE();
}
