/* Address ranges: parsing, matching across families, formatting. */
#include <arpa/inet.h>
#include <string.h>

#include "../../lib/cidr.h"
#include "check.h"

static struct ip v4(const char *s)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct ip ip;
    inet_pton(AF_INET, s, &in.sin_addr);
    ip_from_sockaddr((struct sockaddr *)&in, &ip);
    return ip;
}

static struct ip v6(const char *s)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    struct ip ip;
    inet_pton(AF_INET6, s, &in6.sin6_addr);
    ip_from_sockaddr((struct sockaddr *)&in6, &ip);
    return ip;
}

static int matches(const char *range, struct ip ip)
{
    struct cidr c;
    return cidr_parse(range, &c) == 0 && cidr_match(&c, &ip);
}

int main(void)
{
    struct cidr c;
    struct cidr_list l = {0};
    char why[128], out[96];

    CHECK(matches("127.0.0.0/8", v4("127.1.2.3")));
    CHECK(!matches("127.0.0.0/8", v4("128.0.0.1")));
    CHECK(matches("10.1.2.3/8", v4("10.200.0.1")));       /* host bits ignored */
    CHECK(matches("127.0.0.2", v4("127.0.0.2")));
    CHECK(!matches("127.0.0.2", v4("127.0.0.3")));
    CHECK(matches("127.0.0.2/31", v4("127.0.0.3")));
    CHECK(!matches("127.0.0.2/32", v4("127.0.0.3")));
    CHECK(matches("0.0.0.0/0", v4("8.8.8.8")));
    CHECK(!matches("0.0.0.0/0", v6("::1")));               /* v4 ranges stay v4 */
    CHECK(matches("::1", v6("::1")));
    CHECK(!matches("::1", v4("127.0.0.1")));
    CHECK(matches("fd00::/8", v6("fd12:3456::1")));
    CHECK(!matches("fd00::/8", v6("fe80::1")));
    CHECK(matches("::/0", v6("2001:db8::1")));
    CHECK(matches("192.168.1.0/25", v4("192.168.1.127")));
    CHECK(!matches("192.168.1.0/25", v4("192.168.1.128")));

    CHECK(cidr_parse("", &c) < 0);
    CHECK(cidr_parse("10.0.0.0/33", &c) < 0);
    CHECK(cidr_parse("::1/129", &c) < 0);
    CHECK(cidr_parse("10.0.0.0/", &c) < 0);
    CHECK(cidr_parse("10.0.0.0/x", &c) < 0);
    CHECK(cidr_parse("10.0.0", &c) < 0);
    CHECK(cidr_parse("host.example", &c) < 0);

    CHECK(cidr_list_parse(&l, "127.0.0.0/8, ::1,10.0.0.1", why, sizeof why) == 0 && l.n == 3);
    CHECK(cidr_list_match(&l, &(struct ip){0}) == 0);
    struct ip a = v4("10.0.0.1"), b = v6("::1"), d = v4("11.0.0.1");
    CHECK(cidr_list_match(&l, &a) && cidr_list_match(&l, &b) && !cidr_list_match(&l, &d));
    CHECK(cidr_list_parse(&l, "1.2.3.4, nope", why, sizeof why) < 0 &&
          strcmp(why, "\"nope\" is not an address or CIDR range") == 0);

    cidr_parse("10.9.8.7/16", &c);
    cidr_format(&c, out, sizeof out);
    CHECK(strcmp(out, "10.9.0.0/16") == 0);
    cidr_parse("fd00::1/8", &c);
    cidr_format(&c, out, sizeof out);
    CHECK(strcmp(out, "fd00::/8") == 0);
    ip_format(&a, out, sizeof out);
    CHECK(strcmp(out, "10.0.0.1") == 0);
    CHECK_DONE();
}
