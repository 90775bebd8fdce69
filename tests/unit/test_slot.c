/* The hash slot of a key (health/cluster.c), as Redis Cluster computes
 * it: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384. The
 * expected slots are the ones `CLUSTER KEYSLOT` answers on Redis 7.0. */
#include <stdio.h>
#include <string.h>

#include "../../health/cluster.h"
#include "check.h"

static unsigned slot(const char *k)
{
    return cluster_slot(k, strlen(k));
}

int main(void)
{
    /* CRC16/XMODEM's check value: "123456789" -> 0x31C3 */
    CHECK(slot("123456789") == (0x31C3 & 16383));
    CHECK(slot("foo") == 12182);
    CHECK(slot("bar") == 5061);
    CHECK(slot("") == 0);
    /* a tag: only what is inside the first {...}, if it is not empty */
    CHECK(slot("{user1000}.following") == slot("user1000"));
    CHECK(slot("{user1000}.followers") == slot("{user1000}.following"));
    CHECK(slot("foo{}{bar}") == slot("foo{}{bar}") && slot("foo{}{bar}") != slot("bar"));
    CHECK(slot("foo{{bar}}zap") == slot("{bar"));
    CHECK(slot("foo{bar}{zap}") == slot("bar"));
    CHECK(slot("{}") == cluster_slot("{}", 2));
    CHECK(slot("no-close{brace") != slot("brace"));
    /* binary keys: every byte counts, NULs too */
    CHECK(cluster_slot("a\0b", 3) != cluster_slot("a", 1));
    /* every slot in range */
    char k[16];
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        bad += slot(k) >= CLUSTER_SLOTS;
    }
    CHECK(bad == 0);
    CHECK_DONE();
}
