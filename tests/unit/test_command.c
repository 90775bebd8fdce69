/* Command table: lookups are case-insensitive and classes are right. */
#include <string.h>

#include "../../proxy/command.h"
#include "check.h"

static const struct command *find(const struct command_table *t, const char *s)
{
    return command_lookup(t, s, strlen(s));
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
    CHECK(find(&t, "AUTH")->local == LOCAL_AUTH);
    CHECK(find(&t, "hello")->local == LOCAL_HELLO);
    CHECK(find(&t, "Quit")->local == LOCAL_QUIT);
    CHECK(find(&t, "select")->local == LOCAL_SELECT);
    CHECK(find(&t, "PROXY")->local == LOCAL_PROXY);
    CHECK(find(&t, "client")->local == LOCAL_CLIENT);
    CHECK(find(&t, "multi")->flags & CMD_STATEFUL);
    CHECK(find(&t, "BLPOP")->flags & CMD_BLOCKING);
    CHECK(find(&t, "bzmpop")->flags & CMD_BLOCKING);
    CHECK(find(&t, "wait")->flags & CMD_BLOCKING);
    CHECK(find(&t, "subscribe")->flags & CMD_STATEFUL);
    CHECK(find(&t, "xread")->flags & CMD_MAYBLOCK);
    CHECK(!(find(&t, "xread")->flags & CMD_STATEFUL));
    CHECK(find(&t, "monitor")->flags & CMD_REFUSED);
    CHECK(find(&t, "SHUTDOWN")->flags & CMD_REFUSED);
    CHECK(find(&t, "eval_ro")->flags & CMD_READONLY);
    CHECK(find(&t, "eval") == NULL);             /* EVAL may write */
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
    CHECK_DONE();
}
