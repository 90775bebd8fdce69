/* Non-blocking sockets: listen, accept, connect, and the TCP options the
 * pool relies on to find dead peers. On -1 the reason is in err. */
#ifndef SIDECAR_NET_H
#define SIDECAR_NET_H

#include <stddef.h>
#include <sys/socket.h>

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* "host:port" or "[v6]:port" split into the host (brackets off) and the
 * port; -1 when spec is not a TCP address or the host does not fit. */
int net_split_addr(const char *spec, char *host, size_t hostlen, int *port);
/* "host:port", "[v6]:port" or "unix:/path". */
int net_resolve(const char *spec, struct net_addr *out, char *err, size_t errlen);
int net_listen(const struct net_addr *a, int backlog, char *err, size_t errlen);
/* Starts a non-blocking connect: 0 connected or in progress (check with
 * net_connect_result once writable), -1 failed at once. */
int net_connect(const struct net_addr *a, int *fd, char *err, size_t errlen);
int net_connect_result(int fd, char *err, size_t errlen);
void net_set_nodelay(int fd);
/* idle_s: keepalive idle time (0 leaves it off); user_timeout_ms: 0 off. */
void net_set_keepalive(int fd, int idle_s, int user_timeout_ms);
int net_is_unix(const struct net_addr *a);
/* 1 if a process listens on this unix socket path (a connect succeeds). */
int net_unix_live(const struct net_addr *a);

#endif
