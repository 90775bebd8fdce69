/* Peer identification: SO_PEERCRED and sock_diag answers, the bounded
 * /proc search for a socket's process, and the caches that keep that
 * search short when one process opens connection after connection. */
#include "peer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PEER_SOCKS        8192   /* socket inode -> (pid, fd) slots, 2 per set */
#define PEER_MARKS        128    /* processes whose fd table we remember listing */
#define PEER_MARK_FDS     16384  /* fds tracked per process; higher ones: full rescans only */
#define PEER_PROBES       8      /* fds opened since the last look, read without listing */
#define PEER_RECENT       64     /* (uid, cgroup) keys with their recent pids */
#define PEER_RECENT_PIDS  16
#define PEER_WALK_DIRS    4096   /* cgroup directories per walk */
#define PEER_DIRBUF       8192   /* getdents64 buffer for /proc listings */
#define PEER_WALK_EVERY_MS 1000

/* A socket seen in a process's fd table. A newer one takes the slot:
 * entries are hints, checked with one readlink before use. */
struct peer_sock {
    uint32_t ino;
    int32_t  pid;
    int32_t  fd;
};

/* The fds a process had open when its table was last listed. A number
 * not there before is new and worth a readlink; one there before may have
 * been closed and reused since, which only a rescan of the whole table
 * sees. Not "above the highest fd seen": a process holding one high fd
 * (a shell's 255) opens its sockets below it, in the lowest free slots. */
struct peer_mark {
    int32_t  pid;
    uint64_t gen;      /* the call that last read the whole table */
    uint64_t open[PEER_MARK_FDS / 64];
};

/* The pids last found for one (uid, socket cgroup), most recent first. */
struct peer_recent {
    uint32_t uid;
    uint64_t cgid;
    int32_t  pid[PEER_RECENT_PIDS];
};

struct peer_cgroup {
    uint64_t id;
    char    *path;     /* below the mount: "/a.slice/b.service" */
};

struct peer_cache {
    int                 nl;             /* sock_diag socket, -1 until needed or after an error */
    uint32_t            seq;
    uint64_t            gen;            /* pid searches: a mark read whole in this one is done */
    char                mount[PATH_MAX]; /* cgroup2 mount point, "" none */
    uint64_t            root_id;        /* the mount's root cgroup id */
    struct peer_cgroup *cgroups;        /* the last walk (not the root), sorted by id */
    size_t              ncgroups;
    char                walk[PATH_MAX]; /* the walk's current directory */
    int64_t             walked_ms;      /* CLOCK_MONOTONIC, 0 never */
    int                 wide_per_s;     /* scans of all /proc allowed per second (0: any) */
    int                 wide_left;      /* in the second that started at wide_ms */
    int64_t             wide_ms;
    struct peer_stats   stats;
    /* Working space of one search, kept: an accept allocates nothing that
     * the client structs allocated meanwhile would strand in the heap. */
    char                dirbuf[PEER_DIRBUF];
    int32_t             pids[PEER_PROCS_MAX];
    int32_t             seen[PEER_PROCS_MAX];
    struct peer_mark    marks[PEER_MARKS];
    struct peer_recent  recent[PEER_RECENT];
    struct peer_sock    socks[PEER_SOCKS];
};

/* One lookup's budget and answer. */
struct peer_search {
    uint32_t ino;
    int32_t  self;     /* never a candidate: we hold no app's socket, but thousands of ours */
    int      readlinks_left;
    int      procs_left;
    int32_t  found;
};

/* One end of a TCP connection as inet_diag wants it: network order, an
 * IPv4-mapped IPv6 address as IPv4 (the peer socket may be either). */
struct peer_end {
    int      family;
    uint32_t addr[4];
    uint16_t port;
};

struct peer_diag {
    uint32_t uid;
    uint32_t ino;
    uint64_t cgid;
    int      minisock;  /* TIME_WAIT: the kernel kept neither uid nor cgroup */
};

/* ---- peer_service_from_cgroup ---- */

enum unit_kind { UNIT_NONE, UNIT_SERVICE, UNIT_SESSION, UNIT_CONTAINER };

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

static int starts_with(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* s[0..n) is one path component; *id is set to a container's id. */
static enum unit_kind unit_kind(const char *s, size_t n, const char **id)
{
    static const char *const runtimes[] = {"docker-", "cri-containerd-", "crio-", "libpod-"};

    if (n == 64 && all_hex(s, n)) {          /* /docker/<id>, /kubepods/.../<id> */
        *id = s;
        return UNIT_CONTAINER;
    }
    if (ends_with(s, n, ".scope")) {
        size_t stem = n - 6;
        for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++) {
            size_t k = strlen(runtimes[i]);
            if (starts_with(s, stem, runtimes[i]) && stem - k >= 12 && all_hex(s + k, stem - k)) {
                *id = s + k;
                return UNIT_CONTAINER;
            }
        }
        return starts_with(s, stem, "session-") ? UNIT_SESSION : UNIT_SERVICE;
    }
    return ends_with(s, n, ".service") ? UNIT_SERVICE : UNIT_NONE;
}

void peer_service_from_cgroup(const char *path, char *out, size_t outlen)
{
    const char *unit = NULL, *id = NULL;
    size_t unit_len = 0;
    enum unit_kind unit_is = UNIT_NONE;

    if (outlen == 0)
        return;
    out[0] = '\0';
    for (const char *p = path; *p;) {
        const char *e = p, *cid;
        while (*e && *e != '/')
            e++;
        enum unit_kind k = unit_kind(p, (size_t)(e - p), &cid);
        if (k == UNIT_CONTAINER) {
            id = cid;
        } else if (k != UNIT_NONE) {
            unit = p;
            unit_len = (size_t)(e - p);
            unit_is = k;
        }
        p = *e ? e + 1 : e;
    }
    /* whatever runs inside a container (even its own systemd) is that container */
    if (id)
        snprintf(out, outlen, "container:%.12s", id);
    else if (unit && unit_is == UNIT_SERVICE)
        snprintf(out, outlen, "%.*s", (int)(unit_len < outlen ? unit_len : outlen - 1), unit);
}

/* ---- /proc ---- */

/* "/proc/<pid>/<tail>[/<fd>]" into out (48 bytes do): paid per readlink,
 * so digits by hand, not printf. */
static const char *proc_path(char *out, int32_t pid, const char *tail, long fd)
{
    char digits[24], *p = out;
    int n;

    memcpy(p, "/proc/", 6);
    p += 6;
    for (int k = 0; k < 2; k++) {
        unsigned long v = k == 0 ? (unsigned long)pid : (unsigned long)fd;
        if (k == 1) {
            if (fd < 0)
                break;
            *p++ = '/';
        }
        n = 0;
        do
            digits[n++] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        while (n)
            *p++ = digits[--n];
        if (k == 0) {
            *p++ = '/';
            size_t t = strlen(tail);
            memcpy(p, tail, t);
            p += t;
        }
    }
    *p = '\0';
    return out;
}

/* The decimal number at p (an fd's name, a socket's inode); digits only. */
static uint64_t decimal(const char *p)
{
    uint64_t v = 0;

    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

/* Up to len-1 bytes of a small file, terminated; -1 if it can't be read. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* The paths of the cgroup2 line ("0::/path") and the name=systemd line,
 * cut in place; NULL when absent or cut off by the buffer's end. */
static void cgroup_lines(char *buf, char **v2, char **named)
{
    static const char deleted[] = " (deleted)";  /* a removed cgroup holding a zombie */
    char *nl;

    *v2 = *named = NULL;
    for (char *line = buf; (nl = strchr(line, '\n')); line = nl + 1) {
        char *c = strchr(line, ':');
        *nl = '\0';
        if (c && c < nl && strncmp(c, "::", 2) == 0) {
            *v2 = c + 2;
            size_t k = strlen(*v2);
            if (k >= sizeof deleted - 1 && strcmp(*v2 + k - (sizeof deleted - 1), deleted) == 0)
                (*v2)[k - (sizeof deleted - 1)] = '\0';
        } else if (c && c < nl && strncmp(c, ":name=systemd:", 14) == 0) {
            *named = c + 14;
        }
    }
}

/* comm, service and (want_cgid) cgroup_id of out->pid; -1 if /proc/<pid> is gone. */
static int proc_fill(struct peer_cache *pc, struct peer_id *out, int want_cgid)
{
    char path[64], buf[8192], *v2, *named;
    struct stat st;

    /* up to 15 bytes: the whole name, without the newline after a long one */
    proc_path(path, out->pid, "comm", -1);
    if (read_file(path, out->comm, sizeof out->comm) < 0)
        return -1;
    out->comm[strcspn(out->comm, "\n")] = '\0';
    proc_path(path, out->pid, "cgroup", -1);
    if (read_file(path, buf, sizeof buf) < 0) {
        out->comm[0] = '\0';
        return -1;
    }
    cgroup_lines(buf, &v2, &named);
    /* hybrid hierarchies may keep the units in name=systemd and leave 0::
     * at "/": the first that says more wins */
    if (v2 && *v2 && strcmp(v2, "/") != 0)
        peer_service_from_cgroup(v2, out->service, sizeof out->service);
    else if (named)
        peer_service_from_cgroup(named, out->service, sizeof out->service);
    if (want_cgid && v2 && pc->mount[0]) {
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof dir, "%s%s", pc->mount, v2) < (int)sizeof dir && stat(dir, &st) == 0)
            out->cgroup_id = st.st_ino;
    }
    return 0;
}

/* ---- cgroup2: the mount and id -> path ---- */

static void find_mount(struct peer_cache *pc)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    struct stat st;

    if (!f)
        return;
    while (getline(&line, &cap, f) > 0) {
        char *dash = strstr(line, " - "), *p = line;
        if (!dash || strncmp(dash + 3, "cgroup2 ", 8) != 0)
            continue;
        for (int field = 0; field < 4 && p; field++)   /* id parent dev root */
            p = strchr(p, ' '), p = p ? p + 1 : NULL;
        size_t k = p ? strcspn(p, " ") : 0;
        /* a backslash is mountinfo's escape of a space or tab: no sane cgroup mount */
        if (!k || k >= sizeof pc->mount || memchr(p, '\\', k))
            continue;
        memcpy(pc->mount, p, k);
        pc->mount[k] = '\0';
        if (stat(pc->mount, &st) == 0) {
            pc->root_id = st.st_ino;
            break;
        }
        pc->mount[0] = '\0';
    }
    free(line);
    fclose(f);
}

/* Depth-first below pc->walk (the mount point and a cgroup's path, len
 * bytes), as deep as the cgroup tree goes. */
static void walk_dir(struct peer_cache *pc, size_t len)
{
    DIR *d = opendir(pc->walk);
    size_t base = strlen(pc->mount);
    struct dirent *de;

    if (!d)
        return;
    while (pc->ncgroups < PEER_WALK_DIRS && (de = readdir(d))) {
        size_t k = strlen(de->d_name);
        char *rel;
        if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            len + 1 + k >= sizeof pc->walk)
            continue;
        pc->walk[len] = '/';
        memcpy(pc->walk + len + 1, de->d_name, k + 1);
        /* a cgroup2 directory's inode number is its cgroup id */
        if ((rel = strdup(pc->walk + base))) {
            pc->cgroups[pc->ncgroups++] = (struct peer_cgroup){de->d_ino, rel};
            walk_dir(pc, len + 1 + k);
        }
        pc->walk[len] = '\0';
    }
    closedir(d);
}

static int cgroup_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct peer_cgroup *)a)->id, y = ((const struct peer_cgroup *)b)->id;
    return x < y ? -1 : x > y;
}

static void cgroups_clear(struct peer_cache *pc)
{
    while (pc->ncgroups)
        free(pc->cgroups[--pc->ncgroups].path);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replaces the id -> path table with the tree as it is now. */
static void cgroup_walk(struct peer_cache *pc)
{
    cgroups_clear(pc);
    if (!pc->cgroups && !(pc->cgroups = malloc(PEER_WALK_DIRS * sizeof *pc->cgroups)))
        return;
    pc->stats.cgroup_walks++;
    strcpy(pc->walk, pc->mount);
    walk_dir(pc, strlen(pc->walk));
    qsort(pc->cgroups, pc->ncgroups, sizeof *pc->cgroups, cgroup_cmp);
}

/* The path of cgroup `id`, NULL if unknown. A miss re-walks the tree, at
 * most once a second: cgroups come and go all the time, and a walk costs
 * a readdir per cgroup. */
static const char *cgroup_path(struct peer_cache *pc, uint64_t id)
{
    struct peer_cgroup key = {.id = id}, *hit = NULL;

    for (int walked = 0;; walked = 1) {
        if (pc->ncgroups)
            hit = bsearch(&key, pc->cgroups, pc->ncgroups, sizeof key, cgroup_cmp);
        if (hit || walked || !pc->mount[0] ||
            (pc->walked_ms && now_ms() - pc->walked_ms < PEER_WALK_EVERY_MS))
            return hit ? hit->path : NULL;
        pc->walked_ms = now_ms();
        cgroup_walk(pc);
    }
}

/* ---- sock_diag ---- */

static int end_from(const struct sockaddr *sa, socklen_t len, struct peer_end *e)
{
    memset(e, 0, sizeof *e);
    if (len >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        e->family = AF_INET;
        e->addr[0] = in->sin_addr.s_addr;
        e->port = in->sin_port;
        return 0;
    }
    if (len >= sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        int mapped = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
        e->family = mapped ? AF_INET : AF_INET6;
        memcpy(e->addr, mapped ? in6->sin6_addr.s6_addr + 12 : in6->sin6_addr.s6_addr,
               mapped ? 4 : 16);
        e->port = in6->sin6_port;
        return 0;
    }
    return -1;
}

static int end_is_loopback(const struct peer_end *e)
{
    if (e->family == AF_INET)
        return (ntohl(e->addr[0]) >> 24) == 127;
    return !e->addr[0] && !e->addr[1] && !e->addr[2] && e->addr[3] == htonl(1);
}

static int diag_parse(const struct nlmsghdr *h, struct peer_diag *d)
{
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    int left = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m);

    if (left < 0)
        return -1;
    d->uid = m->idiag_uid;
    d->ino = m->idiag_inode;
    /* a TIME_WAIT mini-socket (timer 3) reports uid 0 and no attributes;
     * its state may read FIN_WAIT2, the sub-state it was closed in */
    d->minisock = m->idiag_state == TCP_TIME_WAIT || m->idiag_timer == 3;
    /* INET_DIAG_CGROUP_ID comes unasked with every full socket (kernel 5.9+) */
    for (const struct rtattr *a = (const struct rtattr *)((const char *)m + NLMSG_ALIGN(sizeof *m));
         RTA_OK(a, left); a = RTA_NEXT(a, left))
        if (a->rta_type == INET_DIAG_CGROUP_ID && RTA_PAYLOAD(a) >= sizeof d->cgid)
            memcpy(&d->cgid, RTA_DATA(a), sizeof d->cgid);
    return 0;
}

/* The socket whose own end is `them` and whose remote end is `us`: 1 found,
 * 0 none, -1 error (the netlink socket is dropped so that no late answer
 * can be taken for a later question's). */
static int diag_query(struct peer_cache *pc, const struct peer_end *them,
                      const struct peer_end *us, struct peer_diag *d)
{
    struct {
        struct nlmsghdr         h;
        struct inet_diag_req_v2 r;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
              .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = ++pc->seq},
        .r = {.sdiag_family = (uint8_t)them->family, .sdiag_protocol = IPPROTO_TCP,
              .idiag_states = ~0u,
              .id = {.idiag_sport = them->port, .idiag_dport = us->port,
                     .idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}}},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    long buf[1024];

    memcpy(req.r.id.idiag_src, them->addr, sizeof them->addr);
    memcpy(req.r.id.idiag_dst, us->addr, sizeof us->addr);
    memset(d, 0, sizeof *d);
    if (pc->nl < 0 && (pc->nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0)
        return -1;
    pc->stats.diag_queries++;
    if (sendto(pc->nl, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        goto drop;
    /* the kernel answers inside sendto(): the reply is queued already */
    int n = (int)recv(pc->nl, buf, sizeof buf, MSG_DONTWAIT);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    if (n > 0 && NLMSG_OK(h, n) && h->nlmsg_seq == pc->seq) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) &&
            e->error == -ENOENT)
            return 0;
        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && diag_parse(h, d) == 0)
            return 1;
    }
drop:
    close(pc->nl);
    pc->nl = -1;
    return -1;
}

/* ---- the process holding a socket inode ---- */

/* A /proc directory listed with getdents64 into the cache's buffer: no
 * opendir() allocation per listing. */
struct peer_dir {
    int  fd;
    char *buf;
    long n, pos;
};

struct peer_dirent64 {             /* the kernel's linux_dirent64 */
    uint64_t       ino;
    int64_t        off;
    unsigned short reclen;
    unsigned char  type;
    char           name[];
};

static int dir_open(struct peer_cache *pc, struct peer_dir *d, const char *path)
{
    d->buf = pc->dirbuf;
    d->n = d->pos = 0;
    return (d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ? -1 : 0;
}

/* The next entry's name; NULL at the end (or on an error). */
static const char *dir_next(struct peer_dir *d)
{
    if (d->pos >= d->n) {
        d->n = syscall(SYS_getdents64, d->fd, d->buf, PEER_DIRBUF);
        d->pos = 0;
        if (d->n <= 0)
            return NULL;
    }
    const struct peer_dirent64 *e = (const struct peer_dirent64 *)(d->buf + d->pos);
    d->pos += e->reclen;
    return e->name;
}

/* One fd's link: -1 no such fd, else the socket inode it names (0: none). */
static int64_t read_fd(struct peer_cache *pc, struct peer_search *s, int dirfd, const char *name)
{
    char link[64];
    ssize_t n;

    s->readlinks_left--;
    pc->stats.readlinks++;
    if ((n = readlinkat(dirfd, name, link, sizeof link - 1)) < 0)
        return -1;
    link[n] = '\0';
    return memcmp(link, "socket:[", n >= 8 ? 8 : (size_t)n + 1) == 0 ? (int64_t)decimal(link + 8)
                                                                      : 0;
}

/* The inode cache is 2-way: a socket's set is its inode's, and a newcomer
 * pushes the set's older entry out (inodes of one burst land far apart
 * when other files are made between them). */
static struct peer_sock *sock_find(struct peer_cache *pc, uint32_t ino)
{
    struct peer_sock *set = &pc->socks[(ino % (PEER_SOCKS / 2)) * 2];

    return set[0].ino == ino ? &set[0] : set[1].ino == ino ? &set[1] : NULL;
}

static void sock_note(struct peer_cache *pc, uint32_t ino, int32_t pid, int32_t fd)
{
    struct peer_sock *set = &pc->socks[(ino % (PEER_SOCKS / 2)) * 2];

    if (set[0].ino != ino)
        set[1] = set[0];                 /* the older one goes, or itself moves up */
    set[0] = (struct peer_sock){ino, pid, fd};
}

static void note_fd(struct peer_cache *pc, struct peer_search *s, struct peer_mark *m, long fd,
                    int64_t ino)
{
    if (fd < PEER_MARK_FDS)
        m->open[fd / 64] |= 1ull << (fd % 64);
    if (ino > 0)
        sock_note(pc, (uint32_t)ino, m->pid, (int32_t)fd);
    if (ino == s->ino)
        s->found = m->pid;
}

/* The lowest fds free at the last look, where the kernel put whatever
 * the process opened since: no listing, a readlink or two. The first
 * still free ends it. */
static void scan_probe(struct peer_cache *pc, struct peer_search *s, struct peer_mark *m)
{
    char name[48];
    int tries = 0;

    for (long fd = 0; fd < PEER_MARK_FDS && tries < PEER_PROBES && !s->found; fd++) {
        if (m->open[fd / 64] == ~0ull)
            fd |= 63;
        if (m->open[fd / 64] & (1ull << (fd % 64)))
            continue;
        int64_t ino = read_fd(pc, s, AT_FDCWD, proc_path(name, m->pid, "fd", fd));
        if (ino < 0)
            return;
        note_fd(pc, s, m, fd, ino);
        tries++;
    }
}

/* Lists a process's fds and reads the new ones (whole: all of them) until
 * the target or the end of the budget. The listing goes on after that:
 * fds known stay known, new ones not read stay new. */
static void scan_list(struct peer_cache *pc, struct peer_search *s, struct peer_mark *m, int whole)
{
    uint64_t known[PEER_MARK_FDS / 64];
    char dir[32];
    const char *name;
    struct peer_dir d;

    if (dir_open(pc, &d, proc_path(dir, m->pid, "fd", -1)) < 0)
        return;
    pc->stats.fd_lists++;
    memcpy(known, m->open, sizeof known);
    memset(m->open, 0, sizeof m->open);
    while ((name = dir_next(&d))) {
        if (!isdigit((unsigned char)name[0]))
            continue;
        long fd = (long)decimal(name);
        uint64_t bit = 1ull << (fd % 64);
        int tracked = fd < PEER_MARK_FDS, old = tracked && (known[fd / 64] & bit);
        if ((whole || (tracked && !old)) && !s->found && s->readlinks_left > 0)
            note_fd(pc, s, m, fd, read_fd(pc, s, d.fd, name));
        else if (old)
            m->open[fd / 64] |= bit;
    }
    close(d.fd);
}

/* The inode cache's guess, confirmed by one readlink. */
static void scan_cached(struct peer_cache *pc, struct peer_search *s)
{
    const struct peer_sock *e = sock_find(pc, s->ino);
    char name[48];

    if (!e)
        return;
    if (read_fd(pc, s, AT_FDCWD, proc_path(name, e->pid, "fd", e->fd)) == s->ino) {
        s->found = e->pid;
        pc->stats.inode_hits++;
    }
}

/* Cheapest first, over all the candidates. A process that held a peer
 * socket before has a mark: where its next fds go (pass 0), then its fds
 * new since the last listing (1), then its whole table, for an fd closed
 * and reused in between (2). Any other process is read whole in pass 1
 * and gets a mark only if it holds the socket, or if the budget ran out
 * inside its table (the next call goes on from there): the hundreds a
 * /proc scan goes through must not push out the few that connect. */
static void scan_pids(struct peer_cache *pc, struct peer_search *s, const int32_t *pids, size_t n)
{
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < n && !s->found && s->readlinks_left > 0; i++) {
            struct peer_mark *m = &pc->marks[(uint32_t)pids[i] % PEER_MARKS], fresh;
            if (pids[i] == s->self || (m->pid == pids[i] && m->gen == pc->gen))
                continue;
            if (m->pid != pids[i]) {
                if (pass != 1)
                    continue;
                memset(&fresh, 0, sizeof fresh);
                fresh.pid = pids[i];
                scan_list(pc, s, &fresh, 1);
                if (s->found || s->readlinks_left <= 0)
                    *m = fresh, m->gen = pc->gen;
            } else if (pass == 0) {
                scan_probe(pc, s, m);
            } else {
                scan_list(pc, s, m, pass == 2);
                m->gen = pass == 2 ? pc->gen : m->gen;
            }
        }
}

static size_t cgroup_pids(struct peer_cache *pc, struct peer_search *s, const char *path,
                          int32_t *pids)
{
    char file[PATH_MAX];
    size_t n = 0;
    int pid;
    FILE *f;

    if (snprintf(file, sizeof file, "%s%s/cgroup.procs", pc->mount, path) >= (int)sizeof file ||
        !(f = fopen(file, "re")))
        return 0;
    while (s->procs_left > 0 && fscanf(f, "%d", &pid) == 1) {
        pids[n++] = pid;
        s->procs_left--;
    }
    fclose(f);
    return n;
}

/* A process that changed its uid is not dumpable, and /proc shows it as
 * root's: its status has the real ids. */
static int status_has_uid(int pid, uint32_t uid)
{
    char path[64], buf[1024];
    unsigned long id[4];
    const char *u;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_file(path, buf, sizeof buf) < 0 || !(u = strstr(buf, "\nUid:")) ||
        sscanf(u + 5, "%lu %lu %lu %lu", &id[0], &id[1], &id[2], &id[3]) != 4)
        return 0;
    return id[0] == uid || id[1] == uid || id[2] == uid || id[3] == uid;
}

static size_t uid_pids(struct peer_cache *pc, struct peer_search *s, uint32_t uid, int32_t *pids)
{
    int32_t *seen = pc->seen;
    struct peer_dir d;
    struct stat st;
    size_t n = 0, total = 0;
    const char *e;
    char name[16];

    if (dir_open(pc, &d, "/proc") < 0)
        return 0;
    pc->stats.proc_lists++;
    /* the highest pids, in a ring: listing is cheap, looking is not */
    while ((e = dir_next(&d)))
        if (isdigit((unsigned char)e[0]))
            seen[total++ % PEER_PROCS_MAX] = (int32_t)decimal(e);
    /* newest first, within the budget: a process connecting for the first
     * time most likely just started (pids only wrap after pid_max) */
    for (size_t i = 0; i < total && i < PEER_PROCS_MAX && s->procs_left > 0; i++) {
        int32_t pid = seen[(total - 1 - i) % PEER_PROCS_MAX];
        s->procs_left--;
        snprintf(name, sizeof name, "%d", (int)pid);
        if (fstatat(d.fd, name, &st, 0) == 0 &&
            (st.st_uid == uid || (st.st_uid == 0 && status_has_uid(pid, uid))))
            pids[n++] = pid;
    }
    close(d.fd);
    return n;
}

static struct peer_recent *recent_of(struct peer_cache *pc, uint32_t uid, uint64_t cgid)
{
    uint64_t h = (cgid ^ (uint64_t)uid << 32) * 0x9e3779b97f4a7c15u;
    return &pc->recent[(h >> 32) % PEER_RECENT];
}

static void recent_note(struct peer_cache *pc, uint32_t uid, uint64_t cgid, int32_t pid)
{
    struct peer_recent *r = recent_of(pc, uid, cgid);
    size_t i = 0;

    if (r->uid != uid || r->cgid != cgid)
        *r = (struct peer_recent){.uid = uid, .cgid = cgid};
    while (i < PEER_RECENT_PIDS - 1 && r->pid[i] && r->pid[i] != pid)
        i++;
    memmove(r->pid + 1, r->pid, i * sizeof r->pid[0]);
    r->pid[0] = pid;
}

/* A scan of a cgroup's or a uid's processes is what grows with the host:
 * a flood of connections from new processes must not turn into a flood of
 * them (those connections are keyed without their pid). */
static int wide_allowed(struct peer_cache *pc)
{
    int64_t now = now_ms();

    if (pc->wide_per_s <= 0)
        return 1;
    if (now - pc->wide_ms >= 1000) {
        pc->wide_ms = now;
        pc->wide_left = pc->wide_per_s;
    }
    if (pc->wide_left <= 0) {
        pc->stats.wide_skipped++;
        return 0;
    }
    pc->wide_left--;
    return 1;
}

/* Candidates in order: the inode cache; the pids last found for this uid
 * and cgroup; the socket's cgroup (the root holds everyone); every process
 * of the uid. 0 when not found within the budgets. */
static int32_t find_pid(struct peer_cache *pc, uint32_t uid, uint64_t cgid, uint32_t ino)
{
    struct peer_search s = {.ino = ino, .self = getpid(), .readlinks_left = PEER_READLINK_MAX,
                            .procs_left = PEER_PROCS_MAX};
    struct peer_recent *r = recent_of(pc, uid, cgid);
    const char *path;
    size_t n = 0;

    pc->gen++;
    scan_cached(pc, &s);
    if (!s.found && r->uid == uid && r->cgid == cgid) {
        while (n < PEER_RECENT_PIDS && r->pid[n])
            n++;
        scan_pids(pc, &s, r->pid, n);
    }
    int32_t *pids = s.found ? NULL : pc->pids;
    /* the two searches that grow with the host share one budget per second */
    if (pids && cgid && cgid != pc->root_id && wide_allowed(pc) && (path = cgroup_path(pc, cgid)))
        scan_pids(pc, &s, pids, cgroup_pids(pc, &s, path, pids));
    /* the process may have moved since it made the socket */
    if (pids && !s.found && s.readlinks_left > 0 && wide_allowed(pc))
        scan_pids(pc, &s, pids, uid_pids(pc, &s, uid, pids));
    if (s.found)
        recent_note(pc, uid, cgid, s.found);
    return s.found;
}

/* ---- entry points ---- */

static void service_of_cgid(struct peer_cache *pc, struct peer_id *out)
{
    const char *path = out->cgroup_id && out->cgroup_id != pc->root_id ?
                       cgroup_path(pc, out->cgroup_id) : NULL;
    if (path)
        peer_service_from_cgroup(path, out->service, sizeof out->service);
}

static int identify_unix(struct peer_cache *pc, int fd, struct peer_id *out)
{
    struct ucred cr;
    socklen_t l = sizeof cr;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
        return -1;
    out->has_uid = 1;
    out->uid = cr.uid;
    out->gid = cr.gid;
    out->pid = cr.pid;
    /* pid 0: the peer is in a pid namespace we can't see into */
    if (cr.pid <= 0)
        out->miss = PEER_MISS_NO_PID;
    else if (proc_fill(pc, out, 1) < 0)
        out->miss = PEER_MISS_PROC_GONE;
    return 0;
}

static int identify_tcp(struct peer_cache *pc, int fd, const struct peer_end *them,
                        struct peer_id *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct peer_end us;
    struct peer_diag d;

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    out->miss = PEER_MISS_NO_SOCKET;
    if (end_from((struct sockaddr *)&ss, sl, &us) < 0 || us.family != them->family ||
        diag_query(pc, them, &us, &d) <= 0 || d.minisock)
        return 0;
    out->has_uid = 1;
    out->uid = d.uid;
    out->cgroup_id = d.cgid;
    out->ino = d.ino;
    out->miss = PEER_MISS_NO_PID;
    /* inode 0: orphaned, its process closed it (or exited) */
    if (d.ino && (out->pid = find_pid(pc, d.uid, d.cgid, d.ino)) != 0)
        out->miss = proc_fill(pc, out, 0) < 0 ? PEER_MISS_PROC_GONE : PEER_MISS_NONE;
    if (out->miss != PEER_MISS_NONE)
        service_of_cgid(pc, out);
    return 0;
}

int peer_identify(struct peer_cache *pc, int fd, const struct sockaddr *peer, socklen_t len,
                  struct peer_id *out)
{
    struct peer_end them;

    memset(out, 0, sizeof *out);
    if (len >= sizeof(sa_family_t) && peer->sa_family == AF_UNIX)
        return identify_unix(pc, fd, out);
    if (end_from(peer, len, &them) < 0 || !end_is_loopback(&them))
        return 0;
    return identify_tcp(pc, fd, &them, out);
}

struct peer_cache *peer_cache_new(void)
{
    struct peer_cache *pc = calloc(1, sizeof *pc);

    if (!pc)
        return NULL;
    pc->nl = -1;
    find_mount(pc);
    return pc;
}

void peer_cache_free(struct peer_cache *pc)
{
    if (!pc)
        return;
    if (pc->nl >= 0)
        close(pc->nl);
    cgroups_clear(pc);
    free(pc->cgroups);
    free(pc);
}

const struct peer_stats *peer_cache_stats(const struct peer_cache *pc)
{
    return &pc->stats;
}

void peer_forget(struct peer_cache *pc, uint32_t ino)
{
    struct peer_sock *e = ino ? sock_find(pc, ino) : NULL;
    struct peer_mark *m;

    if (!e)
        return;
    m = &pc->marks[(uint32_t)e->pid % PEER_MARKS];
    if (m->pid == e->pid && e->fd >= 0 && e->fd < PEER_MARK_FDS)
        m->open[e->fd / 64] &= ~(1ull << (e->fd % 64));
    e->ino = 0;
}

void peer_cache_limit(struct peer_cache *pc, int wide_scans_per_second)
{
    pc->wide_per_s = wide_scans_per_second;
}

const char *peer_cgroup_mount(const struct peer_cache *pc)
{
    return pc->mount;
}
