/* Address ranges. */
#include "cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void map_v4(const void *v4, struct ip *out)
{
    memset(out->b, 0, 10);
    out->b[10] = out->b[11] = 0xff;
    memcpy(out->b + 12, v4, 4);
}

static int is_v4_mapped(const struct ip *ip)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ip->b, prefix, 12) == 0;
}

int cidr_parse(const char *s, struct cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    struct in_addr v4;
    int max_bits, offset;

    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, &v4) == 1) {
        map_v4(&v4, &out->net);
        max_bits = 32;
        offset = 96;
    } else if (inet_pton(AF_INET6, host, out->net.b) == 1) {
        max_bits = 128;
        offset = 0;
    } else {
        return -1;
    }
    int bits = max_bits;
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || v < 0 || v > max_bits)
            return -1;
        bits = (int)v;
    }
    out->bits = bits + offset;
    /* Clear host bits, so "10.1.2.3/8" means 10.0.0.0/8. */
    for (int i = out->bits; i < 128; i++)
        out->net.b[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
    return 0;
}

int cidr_list_parse(struct cidr_list *l, const char *s, char *why, size_t whylen)
{
    const char *p = s;

    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ',' && !isspace((unsigned char)*e))
            e++;
        char item[80];
        size_t n = (size_t)(e - p);
        if (l->n == CIDR_LIST_MAX) {
            snprintf(why, whylen, "more than %d ranges", CIDR_LIST_MAX);
            return -1;
        }
        snprintf(item, sizeof item, "%.*s", (int)(n < sizeof item ? n : sizeof item - 1), p);
        if (n >= sizeof item || cidr_parse(item, &l->item[l->n]) < 0) {
            snprintf(why, whylen, "\"%s\" is not an address or CIDR range", item);
            return -1;
        }
        l->n++;
        p = e;
    }
    return 0;
}

int cidr_match(const struct cidr *c, const struct ip *ip)
{
    int full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->net.b, ip->b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->net.b[full] & mask) == (ip->b[full] & mask);
}

int cidr_list_match(const struct cidr_list *l, const struct ip *ip)
{
    for (int i = 0; i < l->n; i++)
        if (cidr_match(&l->item[i], ip))
            return 1;
    return 0;
}

int ip_from_sockaddr(const struct sockaddr *sa, struct ip *out)
{
    if (sa->sa_family == AF_INET) {
        map_v4(&((const struct sockaddr_in *)sa)->sin_addr, out);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    memset(out, 0, sizeof *out);
    return -1;
}

int ip_equal(const struct ip *a, const struct ip *b)
{
    return memcmp(a->b, b->b, 16) == 0;
}

void ip_format(const struct ip *ip, char *out, size_t outlen)
{
    char s[INET6_ADDRSTRLEN] = "?";

    if (is_v4_mapped(ip))
        inet_ntop(AF_INET, ip->b + 12, s, sizeof s);
    else
        inet_ntop(AF_INET6, ip->b, s, sizeof s);
    snprintf(out, outlen, "%s", s);
}

void cidr_format(const struct cidr *c, char *out, size_t outlen)
{
    char s[INET6_ADDRSTRLEN];

    ip_format(&c->net, s, sizeof s);
    snprintf(out, outlen, "%s/%d", s, is_v4_mapped(&c->net) ? c->bits - 96 : c->bits);
}
