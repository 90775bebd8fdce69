/* The hash slot of a key (health/cluster.c), as Redis Cluster computes
 * it: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384. The
 * expected slots are the ones `CLUSTER KEYSLOT` answers on Redis 7.0.
 * And the config epoch of a node's CLUSTER NODES, which decides whether
 * its slot map is newer than the one in use. */
#include <stdio.h>
#include <string.h>

#include "../../health/cluster.h"
#include "check.h"

static unsigned slot(const char *k)
{
    return cluster_slot(k, strlen(k));
}

/* CRC16/XMODEM bit by bit, as its definition reads */
static unsigned crc16_bits(const unsigned char *k, size_t n)
{
    unsigned crc = 0;

    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)k[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

/* The slot by Redis's rule, bit by bit: the first '{', the next '}' after
 * it, and what is between when it is not empty. */
static unsigned slot_by_rule(const unsigned char *k, size_t n)
{
    const unsigned char *open = memchr(k, '{', n);
    if (open) {
        size_t from = (size_t)(open - k) + 1;
        const unsigned char *close = memchr(k + from, '}', n - from);
        if (close && close > k + from)
            return crc16_bits(k + from, (size_t)(close - (k + from))) & 16383;
    }
    return crc16_bits(k, n) & 16383;
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
    /* keys of every length up to 64, odd and even, any bytes (no braces):
     * the same slot as the definition gives */
    unsigned char key[64];
    unsigned x = 12345;
    bad = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)i % 65;
        for (size_t j = 0; j < n; j++) {
            x = x * 1103515245u + 12345u;
            key[j] = (unsigned char)(x >> 16);
            if (key[j] == '{')
                key[j] = 'x';
        }
        bad += cluster_slot((const char *)key, n) != (crc16_bits(key, n) & 16383);
    }
    CHECK(bad == 0);
    /* braces anywhere, a word at a time or not: keys of up to 64 bytes
     * with '{' and '}' at random places (none, one of each, several) */
    bad = 0;
    for (int i = 0; i < 50000; i++) {
        size_t n = (size_t)i % 65;
        for (size_t j = 0; j < n; j++) {
            x = x * 1103515245u + 12345u;
            unsigned r = (x >> 16) & 0xff;
            key[j] = (unsigned char)(r < 12 ? '{' : r < 24 ? '}' : r);
        }
        bad += cluster_slot((const char *)key, n) != slot_by_rule(key, n);
    }
    CHECK(bad == 0);
    CHECK(slot("0123456789abcdef{tag}") == slot("tag"));       /* past two words */
    CHECK(slot("01234567{tag}") == slot("tag") && slot("0123456{tag}") == slot("tag"));
    CHECK(slot("0123456789abcdef{}x") ==
          (crc16_bits((const unsigned char *)"0123456789abcdef{}x", 19) & 16383));

    /* the highest epoch of a master that serves slots: replicas, masters
     * without slots, and malformed lines do not count */
    static const char nodes[] =
        "07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected\n"
        "67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922\n"
        "292f 127.0.0.1:30003@40003 master - 0 1426238318243 3 connected 10923-16383\n"
        "6ec2 127.0.0.1:30005@40005 slave 67ed 0 1426238316232 9 connected\n"
        "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n"
        "aaaa 127.0.0.1:30007@40007 master - 0 0 12 connected\n";
    CHECK(cluster_nodes_epoch(nodes, sizeof nodes - 1) == 3);
    /* a failover: the promoted replica's new epoch wins; the failed
     * master keeps its old one and no slots */
    static const char after[] =
        "07c3 127.0.0.1:30004@40004 master - 0 1 7 connected 0-5460\n"
        "e7d1 127.0.0.1:30001@40001 master,fail - 0 0 1 disconnected\n"
        "292f 127.0.0.1:30003@40003 master - 0 1 3 connected 10923-16383 [16000->-67ed]";
    CHECK(cluster_nodes_epoch(after, sizeof after - 1) == 7);
    CHECK(cluster_nodes_epoch("", 0) == -1);
    CHECK(cluster_nodes_epoch("garbage line\n\n", 14) == -1);
    CHECK_DONE();
}
