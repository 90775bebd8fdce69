/* Socket helpers. Everything here is non-blocking and close-on-exec. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int net_resolve(const char *spec, struct net_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        const char *path = spec + 5;
        if (*path == '\0' || strlen(path) >= sizeof un->sun_path) {
            snprintf(err, errlen, "bad unix socket path \"%s\"", path);
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        out->len = sizeof *un;
        return 0;
    }
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || colon[1] == '\0') {
        snprintf(err, errlen, "\"%s\" is not host:port", spec);
        return -1;
    }
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof host) {
        snprintf(err, errlen, "host name too long");
        return -1;
    }
    memcpy(host, spec, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) {
        snprintf(err, errlen, "bad port \"%s\"", colon + 1);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int net_is_unix(const struct net_addr *a)
{
    return a->ss.ss_family == AF_UNIX;
}

int net_listen(const struct net_addr *a, int backlog, char *err, size_t errlen)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (net_is_unix(a)) {
        unlink(((const struct sockaddr_un *)&a->ss)->sun_path);
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* a new process (an upgrade) may listen here while this one drains */
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (a->ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
        listen(fd, backlog) < 0) {
        snprintf(err, errlen, "bind/listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect(const struct net_addr *a, int *fd, char *err, size_t errlen)
{
    int s = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (s < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(s, (const struct sockaddr *)&a->ss, a->len) < 0 &&
        errno != EINPROGRESS) {
        snprintf(err, errlen, "connect: %s", strerror(errno));
        close(s);
        return -1;
    }
    *fd = s;
    return 0;
}

int net_connect_result(int fd, char *err, size_t errlen)
{
    int e = 0;
    socklen_t l = sizeof e;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
        e = errno;
    if (e) {
        snprintf(err, errlen, "connect: %s", strerror(e));
        return -1;
    }
    return 0;
}

void net_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void net_set_keepalive(int fd, int idle_s, int user_timeout_ms)
{
    if (idle_s > 0) {
        int one = 1, intvl = idle_s / 3 > 0 ? idle_s / 3 : 1, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    if (user_timeout_ms > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
                   sizeof user_timeout_ms);
}

int net_unix_live(const struct net_addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int live;

    if (fd < 0)
        return 0;
    /* a unix connect answers at once: accepted (or a full backlog, which
     * is as live) unless nobody listens there or the file is gone */
    live = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 || errno == EAGAIN;
    close(fd);
    return live;
}

int net_split_addr(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(spec, ':');
    size_t hl;

    if (!colon || strncmp(spec, "unix:", 5) == 0)
        return -1;
    hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2) {
        spec++;
        hl -= 2;
    }
    if (hl >= hostlen)
        return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    *port = atoi(colon + 1);
    return 0;
}
