/* IPv4/IPv6 addresses and CIDR ranges, for allow/deny lists, bans and the
 * per-IP table. IPv4 is kept as an IPv4-mapped IPv6 address, so one
 * comparison serves both families. */
#ifndef SIDECAR_CIDR_H
#define SIDECAR_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ip {
    uint8_t b[16];            /* IPv6, or ::ffff:a.b.c.d for IPv4 */
};

struct cidr {
    struct ip net;
    int       bits;           /* prefix length over the 128-bit form */
};

#define CIDR_LIST_MAX 64

struct cidr_list {
    int         n;
    struct cidr item[CIDR_LIST_MAX];
};

/* "10.0.0.0/8", "127.0.0.2", "::1", "fd00::/8". 0 or -1. */
int cidr_parse(const char *s, struct cidr *out);
/* Comma-separated, appended to the list. 0, or -1 with the bad item in why. */
int cidr_list_parse(struct cidr_list *l, const char *s, char *why, size_t whylen);
int cidr_match(const struct cidr *c, const struct ip *ip);
int cidr_list_match(const struct cidr_list *l, const struct ip *ip);
/* The peer's address; -1 (and all zeros) for a unix socket peer. */
int ip_from_sockaddr(const struct sockaddr *sa, struct ip *out);
int ip_equal(const struct ip *a, const struct ip *b);
void ip_format(const struct ip *ip, char *out, size_t outlen);
void cidr_format(const struct cidr *c, char *out, size_t outlen);

#endif
