/* Who is at the other end of an accepted local connection: uid, pid,
 * process name, and the systemd unit or container it runs in. Asked once
 * per accept, never on the request path. A unix socket answers from
 * SO_PEERCRED; loopback TCP from one sock_diag query (the peer socket's
 * uid, inode and cgroup), then a bounded search of /proc for the process
 * holding that inode. Everything else is keyed by IP by the caller. */
#ifndef SIDECAR_PEER_H
#define SIDECAR_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PEER_COMM_MAX     16    /* the kernel's TASK_COMM_LEN, with the NUL */
#define PEER_SERVICE_MAX  96
#define PEER_READLINK_MAX 4096  /* /proc/<pid>/fd/N read per peer_identify() */
#define PEER_PROCS_MAX    4096  /* processes looked at per peer_identify() */

/* Why something is missing; the caller counts them. */
enum peer_miss {
    PEER_MISS_NONE,       /* everything found that exists */
    PEER_MISS_NO_SOCKET,  /* loopback TCP: no full peer socket (gone, in
                           * TIME_WAIT, or sock_diag failed): only the address */
    PEER_MISS_NO_PID,     /* uid known, pid not found within the budget, or the
                           * peer socket is orphaned (its process closed it) */
    PEER_MISS_PROC_GONE,  /* pid known, /proc/<pid> gone or unreadable */
    PEER_MISS_NCAUSES
};

struct peer_id {
    int            has_uid;
    uint32_t       uid;
    uint32_t       gid;                       /* unix sockets only, else 0 */
    int32_t        pid;                       /* 0: unknown */
    char           comm[PEER_COMM_MAX];       /* "" unknown */
    char           service[PEER_SERVICE_MAX]; /* unit or "container:<12 hex>"; "" none */
    /* cgroup2 id (the directory's inode number), 0 unknown. TCP: the cgroup
     * the peer socket was created in; unix: the process's cgroup now. */
    uint64_t       cgroup_id;
    uint32_t       ino;       /* TCP: the peer socket's inode, for peer_forget(); else 0 */
    enum peer_miss miss;
};

/* Work done, for the caller's report. */
struct peer_stats {
    uint64_t diag_queries;   /* sock_diag round trips */
    uint64_t readlinks;      /* /proc/<pid>/fd/N links read */
    uint64_t fd_lists;       /* /proc/<pid>/fd directories listed */
    uint64_t proc_lists;     /* /proc listed for a uid's processes */
    uint64_t cgroup_walks;   /* cgroup2 tree walked to name a cgroup id */
    uint64_t inode_hits;     /* pid found by the socket inode cache */
    uint64_t wide_skipped;   /* scans of a uid's processes skipped: over the limit */
};

/* Bounded caches (socket inode -> pid, recent pids per uid and cgroup,
 * cgroup id -> path) and the sock_diag socket. One per event loop. */
struct peer_cache;

/* Finds the cgroup2 mount once. NULL only when out of memory. */
struct peer_cache *peer_cache_new(void);
void peer_cache_free(struct peer_cache *pc);
const struct peer_stats *peer_cache_stats(const struct peer_cache *pc);
/* At most this many scans of a uid's processes (the costly last step of a
 * TCP peer's pid search) per second; past it the pid stays unknown
 * (PEER_MISS_NO_PID). 0: no limit (the default). */
void peer_cache_limit(struct peer_cache *pc, int wide_scans_per_second);
/* The cgroup2 mount point, "" when there is none. */
const char *peer_cgroup_mount(const struct peer_cache *pc);

/* fd: an accepted socket; peer/len: accept()'s address. A unix peer and a
 * TCP peer from 127.0.0.0/8, ::1 or ::ffff:127.x are looked up; any other
 * peer gets has_uid = 0. Blocks on nothing but /proc, cgroupfs and netlink
 * syscalls, within the budgets above. 0, or -1 (errno) when fd itself
 * fails (SO_PEERCRED, getsockname). */
int peer_identify(struct peer_cache *pc, int fd, const struct sockaddr *peer, socklen_t len,
                  struct peer_id *out);

/* The connection whose peer socket had inode ino (peer_id.ino) closed:
 * its process most likely closed that fd too, so the fd is where its next
 * socket will go (a reconnect finds it with one readlink, not a listing). */
void peer_forget(struct peer_cache *pc, uint32_t ino);

/* Pure: the unit or container a cgroup path names. The deepest container
 * component wins ("container:" and its first 12 hex digits); else the
 * deepest .service or .scope, except that a login session's scope gives
 * "". Any length of input; out is always terminated (truncated to fit). */
void peer_service_from_cgroup(const char *path, char *out, size_t outlen);

#endif
