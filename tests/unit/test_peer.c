/* Peer identification: the cgroup path table, then real peers over unix
 * and loopback TCP from forked children (named, moved to a cgroup, made
 * nobody, exited early, reusing an fd, holding more fds than one call may
 * read), and the cost of 1,000 connections. The parts that need root or
 * a writable cgroup2 print a "# skip:" line instead. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/peer.h"
#include "check.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int service_is(const char *path, const char *want)
{
    char out[PEER_SERVICE_MAX];

    peer_service_from_cgroup(path, out, sizeof out);
    if (strcmp(out, want) != 0)
        printf("# %s -> \"%s\", want \"%s\"\n", path, out, want);
    return strcmp(out, want) == 0;
}

/* A malloc'd copy sized to the byte, so ASan sees any read past the NUL. */
static char *exact(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(malloc(n), s, n);
}

static void test_service_table(void)
{
    static const char *const table[][2] = {
        {"/system.slice/billing.service", "billing.service"},
        {"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service"},
        {"/user.slice/user-1000.slice/user@1000.service", "user@1000.service"},
        {"/user.slice/user-1000.slice/user@1000.service/app.slice", "user@1000.service"},
        {"/user.slice/user-1000.slice/session-3.scope", ""},
        {"/user.slice/user-1000.slice/session-c12.scope", ""},
        {"/system.slice/billing.scope", "billing.scope"},
        {"/init.scope", "init.scope"},
        {"/system.slice/foo.service/payload", "foo.service"},
        {"/docker/" HEX64, "container:0123456789ab"},
        {"/system.slice/docker-" HEX64 ".scope", "container:0123456789ab"},
        {"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/"
         "cri-containerd-" HEX64 ".scope", "container:0123456789ab"},
        {"/machine.slice/libpod-" HEX64 ".scope", "container:0123456789ab"},
        {"/kubepods.slice/crio-fedcba9876543210.scope", "container:fedcba987654"},
        {"/kubepods/burstable/pod0b7c-11/" HEX64, "container:0123456789ab"},
        {"/docker/" HEX64 "/init.scope", "container:0123456789ab"},   /* systemd in a container */
        {"/docker/" HEX64 "/system.slice/nginx.service", "container:0123456789ab"},
        {"/", ""},
        {"", ""},
        {"//a.service//", "a.service"},
        {"a.service", "a.service"},
        {"/system.slice/.service", ""},
        {"/system.slice/.scope", ""},
        {"/system.slice", ""},
        {"/service", ""},
        {"/x.services", ""},
        {"/docker/" HEX64 "0", ""},                      /* 65 hex: not an id */
        {"/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", ""},
        {"/system.slice/docker-0123.scope", "docker-0123.scope"},      /* too short an id */
        {"/system.slice/docker-" HEX64 "x.scope", "docker-" HEX64 "x.scope"},
        {"/session-3.scope/x.service", "x.service"},
        {"/a.service (deleted)", ""},
        {"/\xff\xfe.service", "\xff\xfe.service"},
    };
    char out[PEER_SERVICE_MAX];

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char *in = exact(table[i][0]);
        CHECK(service_is(in, table[i][1]));
        free(in);
    }

    /* long input: deep, wide, and one name longer than the output */
    size_t big = 200000;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i += 2)
        memcpy(s + i, "a/", 2);
    strcpy(s + big - 20, "/deep.service");
    CHECK(service_is(s, "deep.service"));
    memset(s, '/', big);
    s[big] = '\0';
    CHECK(service_is(s, ""));
    memset(s, 'x', big);
    strcpy(s + big - 8, ".service");
    peer_service_from_cgroup(s, out, sizeof out);
    CHECK(strlen(out) == PEER_SERVICE_MAX - 1 && out[0] == 'x');
    free(s);

    /* small outputs are cut, always terminated; outlen 0 is not written */
    peer_service_from_cgroup("/docker/" HEX64, out, 5);
    CHECK(strcmp(out, "cont") == 0);
    peer_service_from_cgroup("/a.service", out, 1);
    CHECK(out[0] == '\0');
    out[0] = '#';
    peer_service_from_cgroup("/a.service", out, 0);
    CHECK(out[0] == '#');

    /* random strings of the characters that matter, sized to the byte */
    static const char alphabet[] = "/.-@scopeservicdkr0123456789abcdef";
    unsigned seed = 12345;
    int ok = 1;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand_r(&seed) % 300);
        char *r = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            r[i] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
        r[n] = '\0';
        size_t outlen = (size_t)(rand_r(&seed) % (sizeof out)) + 1;
        memset(out, 'x', sizeof out);
        peer_service_from_cgroup(r, out, outlen);
        ok &= strnlen(out, outlen) < outlen;     /* terminated within what it was given */
        free(r);
    }
    CHECK(ok);
}

/* ---- real peers ---- */

enum kid_mode { KID_HOLD, KID_EXIT, KID_STUFF, KID_REUSE };

/* A child that, for each byte read from ctl, opens one connection to
 * `to`, then holds them all until ctl closes, or exits at once (KID_EXIT),
 * or exits with unsent data queued (KID_STUFF: the socket outlives it),
 * or closes each before opening the next, in the same fd (KID_REUSE). */
struct kid {
    const struct sockaddr *to;
    socklen_t      tolen;
    const char    *name;
    const char    *cgroup;   /* a cgroup2 directory to move into, or NULL */
    uid_t          uid;      /* 0: stay root */
    int            fill;     /* fds opened before the sockets */
    enum kid_mode  mode;
    int            n;
    pid_t          pid;
    int            ctl;
};

static void kid_run(const struct kid *k, int ctl)
{
    char c, path[4200];

    if (k->cgroup) {
        snprintf(path, sizeof path, "%s/cgroup.procs", k->cgroup);
        int fd = open(path, O_WRONLY);
        if (fd < 0 || write(fd, "0", 1) != 1)
            _exit(2);
        close(fd);
    }
    if (k->uid && (setresgid(k->uid, k->uid, k->uid) < 0 || setresuid(k->uid, k->uid, k->uid) < 0))
        _exit(3);
    prctl(PR_SET_NAME, k->name);
    for (int i = 0; i < k->fill; i++)
        if (dup(0) < 0)
            _exit(5);
    for (int i = 0, s = -1; i < k->n; i++) {
        if (read(ctl, &c, 1) != 1)
            _exit(0);
        if (k->mode == KID_REUSE && s >= 0)
            close(s);
        s = socket(k->to->sa_family, SOCK_STREAM, 0);
        if (s < 0 || connect(s, k->to, k->tolen) < 0)
            _exit(4);
        if (k->mode == KID_EXIT)
            _exit(0);
        if (k->mode == KID_STUFF) {
            char junk[65536] = {0};
            fcntl(s, F_SETFL, O_NONBLOCK);
            while (write(s, junk, sizeof junk) > 0)
                ;
            _exit(0);
        }
    }
    while (read(ctl, &c, 1) > 0)
        ;
    _exit(0);
}

static void kid_start(struct kid *k)
{
    int p[2];

    if (pipe(p) < 0)
        abort();
    k->pid = fork();
    if (k->pid == 0) {
        close(p[1]);
        kid_run(k, p[0]);
    }
    close(p[0]);
    k->ctl = p[1];
}

static void kid_go(struct kid *k)
{
    if (write(k->ctl, "c", 1) != 1)
        abort();
}

static void kid_reap(struct kid *k)
{
    close(k->ctl);
    waitpid(k->pid, NULL, 0);
}

struct listener {
    int                     fd;
    struct sockaddr_storage addr;   /* where to connect */
    socklen_t               len;
};

/* "127.0.0.1", "::1", "::" (dual stack; the kids connect to 127.0.0.1),
 * or "unix" (an abstract name). */
static int listen_on(const char *where, struct listener *l)
{
    memset(l, 0, sizeof *l);
    if (strcmp(where, "unix") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
        un->sun_family = AF_UNIX;
        l->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                             (size_t)snprintf(un->sun_path + 1, sizeof un->sun_path - 1,
                                              "peertest-%d", (int)getpid()));
    } else if (strchr(where, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
        in6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, where, &in6->sin6_addr);
        l->len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;
        in->sin_family = AF_INET;
        inet_pton(AF_INET, where, &in->sin_addr);
        l->len = sizeof *in;
    }
    l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int zero = 0;
    if (strcmp(where, "::") == 0)
        setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&l->addr, l->len) < 0 || listen(l->fd, 2048) < 0)
        return -1;
    getsockname(l->fd, (struct sockaddr *)&l->addr, &l->len);
    if (strcmp(where, "::") == 0) {   /* connect over IPv4 to the dual-stack port */
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = ((struct sockaddr_in6 *)&l->addr)->sin6_port};
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        memcpy(&l->addr, &in, sizeof in);
        l->len = sizeof in;
    }
    return 0;
}

static int accept_identify(struct peer_cache *pc, int lfd, struct peer_id *id)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept(lfd, (struct sockaddr *)&ss, &len);

    if (fd < 0)
        return -1;
    int rc = peer_identify(pc, fd, (struct sockaddr *)&ss, len, id);
    close(fd);
    return rc;
}

/* One connection from a new child: identified while the child holds it,
 * or after it exited (KID_EXIT, KID_STUFF). */
static int one_peer(struct peer_cache *pc, const char *where, struct kid *k, struct peer_id *id)
{
    struct listener l;
    int rc;

    if (listen_on(where, &l) < 0)
        return -1;
    k->to = (struct sockaddr *)&l.addr;
    k->tolen = l.len;
    k->n = 1;
    kid_start(k);
    kid_go(k);
    if (k->mode != KID_HOLD)
        waitpid(k->pid, NULL, 0);
    rc = accept_identify(pc, l.fd, id);
    if (k->mode == KID_HOLD)
        kid_reap(k);
    else
        close(k->ctl);
    close(l.fd);
    return rc;
}

static void test_self(struct peer_cache *pc)
{
    int sv[2];
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_in fake = {.sin_family = AF_INET, .sin_port = htons(5000)};
    struct peer_id id;

    prctl(PR_SET_NAME, "peer-self");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(peer_identify(pc, sv[0], (struct sockaddr *)&un, sizeof(sa_family_t), &id) == 0);
    CHECK(id.has_uid && id.uid == geteuid() && id.gid == getegid() && id.pid == getpid());
    CHECK(strcmp(id.comm, "peer-self") == 0 && id.miss == PEER_MISS_NONE);
    CHECK(id.cgroup_id != 0 || !peer_cgroup_mount(pc)[0]);

    /* not loopback: nothing looked up, the caller keys it by address */
    inet_pton(AF_INET, "10.0.0.5", &fake.sin_addr);
    CHECK(peer_identify(pc, sv[0], (struct sockaddr *)&fake, sizeof fake, &id) == 0);
    CHECK(!id.has_uid && id.pid == 0 && id.miss == PEER_MISS_NONE);
    close(sv[0]);
    close(sv[1]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A listener on 127.0.0.1 and a child started and told to connect to it. */
static int kid_to_listener(struct kid *k, struct listener *l)
{
    if (listen_on("127.0.0.1", l) < 0)
        return -1;
    k->to = (struct sockaddr *)&l->addr;
    k->tolen = l->len;
    kid_start(k);
    kid_go(k);
    return 0;
}

/* A peer socket in TIME_WAIT: the child closed first, then we did. */
static void test_time_wait(struct peer_cache *pc, uid_t nobody)
{
    struct kid k = {.name = "peer-tw", .mode = KID_EXIT, .uid = nobody, .n = 1};
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct listener l;
    struct peer_id id = {0};

    if (!CHECK(kid_to_listener(&k, &l) == 0))
        return;
    waitpid(k.pid, NULL, 0);
    close(k.ctl);
    int fd = accept(l.fd, (struct sockaddr *)&ss, &len);
    shutdown(fd, SHUT_WR);
    for (double end = now_s() + 2; now_s() < end;)
        if (peer_identify(pc, fd, (struct sockaddr *)&ss, len, &id) < 0 || !id.has_uid)
            break;
    if (!CHECK(!id.has_uid && id.uid == 0 && id.miss == PEER_MISS_NO_SOCKET))
        printf("# time-wait: has_uid %d uid %u miss %d\n", id.has_uid, id.uid, id.miss);
    close(fd);
    close(l.fd);
}

/* A process that closes its connection and opens the next in the same fd
 * number: nothing new in its fd table but the link. */
static void test_reuse(struct peer_cache *pc)
{
    struct kid k = {.name = "peer-reuse", .mode = KID_REUSE, .n = 5};
    struct listener l;
    struct peer_id id;
    int found = 0;

    if (!CHECK(listen_on("127.0.0.1", &l) == 0))
        return;
    k.to = (struct sockaddr *)&l.addr;
    k.tolen = l.len;
    kid_start(&k);
    for (int i = 0; i < k.n; i++) {
        kid_go(&k);
        found += accept_identify(pc, l.fd, &id) == 0 && id.pid == k.pid;
    }
    CHECK(found == k.n);
    kid_reap(&k);
    close(l.fd);
}

/* A process with more fds than one call may read: the first call gives up
 * at the budget, the next goes on where it stopped. */
static void test_budget(struct peer_cache *pc)
{
    struct kid k = {.name = "peer-fds", .fill = PEER_READLINK_MAX + 500, .n = 1};
    const struct peer_stats *st = peer_cache_stats(pc);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct listener l;
    struct peer_id id;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < (rlim_t)k.fill + 100) {
        printf("# skip: a process with %d fds (RLIMIT_NOFILE)\n", k.fill);
        return;
    }
    if (!CHECK(kid_to_listener(&k, &l) == 0))
        return;
    int fd = accept(l.fd, (struct sockaddr *)&ss, &len);
    uint64_t before = st->readlinks;
    CHECK(peer_identify(pc, fd, (struct sockaddr *)&ss, len, &id) == 0);
    CHECK(id.has_uid && id.pid == 0 && id.miss == PEER_MISS_NO_PID);
    CHECK(st->readlinks - before <= PEER_READLINK_MAX);
    CHECK(peer_identify(pc, fd, (struct sockaddr *)&ss, len, &id) == 0);
    CHECK(id.pid == k.pid && id.miss == PEER_MISS_NONE);
    close(fd);
    kid_reap(&k);
    close(l.fd);
}

static void test_children(struct peer_cache *pc)
{
    static const char *const wheres[] = {"unix", "127.0.0.1", "::1", "::"};
    struct peer_id id;

    for (size_t i = 0; i < sizeof wheres / sizeof wheres[0]; i++) {
        struct kid k = {.name = "peer-kid"};
        if (!CHECK(one_peer(pc, wheres[i], &k, &id) == 0))
            continue;
        if (!CHECK(id.has_uid && id.uid == geteuid() && id.pid == k.pid && id.miss == PEER_MISS_NONE))
            printf("# %s: uid %u pid %d (kid %d) miss %d\n", wheres[i], id.uid, id.pid, k.pid, id.miss);
        CHECK(strcmp(id.comm, "peer-kid") == 0);
        CHECK(id.cgroup_id != 0);   /* unix: from the mount; TCP: from sock_diag */
    }

    /* gone before we look: unix keeps SO_PEERCRED, TCP finds no process */
    struct kid k = {.name = "peer-exit", .mode = KID_EXIT};
    CHECK(one_peer(pc, "unix", &k, &id) == 0);
    CHECK(id.has_uid && id.pid == k.pid && id.miss == PEER_MISS_PROC_GONE && !id.comm[0]);
    /* a plain exit closes the socket: by the time we look it is either an
     * orphan in FIN_WAIT2 (uid kept) or already a TIME_WAIT mini-socket,
     * which keeps no uid (sock_diag says 0: never to be taken for root) */
    uid_t nobody = geteuid() == 0 ? 65534 : 0;
    int orphans = 0;
    for (int i = 0; i < 20; i++) {
        k = (struct kid){.name = "peer-exit", .mode = KID_EXIT, .uid = nobody};
        CHECK(one_peer(pc, "127.0.0.1", &k, &id) == 0);
        if (!CHECK(id.has_uid ? id.uid == (nobody ? nobody : geteuid()) && id.miss == PEER_MISS_NO_PID
                              : id.miss == PEER_MISS_NO_SOCKET))
            printf("# exited: has_uid %d uid %u miss %d\n", id.has_uid, id.uid, id.miss);
        orphans += id.has_uid;
    }
    printf("# info: TCP peer exited before identify, 20 tries: %d orphaned (uid kept), "
           "%d in TIME_WAIT (no uid)\n", orphans, 20 - orphans);
    test_time_wait(pc, nobody);
    /* with unsent data it lingers orphaned (inode 0) and keeps its uid */
    k = (struct kid){.name = "peer-stuff", .mode = KID_STUFF, .uid = nobody};
    CHECK(one_peer(pc, "127.0.0.1", &k, &id) == 0);
    CHECK(id.has_uid && id.uid == (k.uid ? k.uid : geteuid()) && id.pid == 0 &&
          id.miss == PEER_MISS_NO_PID && id.cgroup_id != 0);

    if (geteuid() != 0) {
        printf("# skip: a peer that became nobody (needs root)\n");
        return;
    }
    /* a process that changed uid is not dumpable: /proc shows it as root's */
    for (size_t i = 0; i < 2; i++) {
        k = (struct kid){.name = "peer-nobody", .uid = 65534};
        CHECK(one_peer(pc, wheres[i], &k, &id) == 0);
        if (!CHECK(id.has_uid && id.uid == 65534 && id.pid == k.pid && id.miss == PEER_MISS_NONE))
            printf("# nobody %s: uid %u pid %d (kid %d) miss %d\n", wheres[i], id.uid, id.pid, k.pid,
                   id.miss);
        CHECK(strcmp(id.comm, "peer-nobody") == 0);
    }
}

/* Its own cache: another test's walk less than a second ago would leave
 * the new cgroup unnamed. */
static void test_cgroup(void)
{
    struct peer_cache *pc = peer_cache_new();
    char slice[4096], dir[4200];
    struct stat st;
    struct peer_id id;
    struct kid k;

    if (geteuid() != 0 || !peer_cgroup_mount(pc)[0]) {
        printf("# skip: a peer in a fresh cgroup (needs root and cgroup2)\n");
        peer_cache_free(pc);
        return;
    }
    snprintf(slice, sizeof slice, "%s/peertest-%d.slice", peer_cgroup_mount(pc), (int)getpid());
    snprintf(dir, sizeof dir, "%s/billing.service", slice);
    if ((mkdir(slice, 0755) < 0 || mkdir(dir, 0755) < 0) && errno != EEXIST) {
        printf("# skip: a peer in a fresh cgroup (mkdir %s: %s)\n", dir, strerror(errno));
        rmdir(slice);
        peer_cache_free(pc);
        return;
    }
    CHECK(stat(dir, &st) == 0);
    for (int i = 0; i < 2; i++) {
        uint64_t lists = peer_cache_stats(pc)->proc_lists;
        k = (struct kid){.name = "peer-billing", .cgroup = dir, .uid = 65534};
        CHECK(one_peer(pc, i ? "127.0.0.1" : "unix", &k, &id) == 0);
        /* TCP: found among the cgroup's processes, no /proc scan */
        CHECK(peer_cache_stats(pc)->proc_lists == lists);
        if (!CHECK(strcmp(id.service, "billing.service") == 0 && id.pid == k.pid &&
                   id.uid == 65534 && id.cgroup_id == st.st_ino))
            printf("# billing %d: service \"%s\" pid %d (kid %d) cgroup %llu (dir %llu)\n", i,
                   id.service, id.pid, k.pid, (unsigned long long)id.cgroup_id,
                   (unsigned long long)st.st_ino);
    }
    /* no process left: the service comes from the socket's cgroup id */
    k = (struct kid){.name = "peer-billing", .cgroup = dir, .uid = 65534, .mode = KID_STUFF};
    CHECK(one_peer(pc, "127.0.0.1", &k, &id) == 0);
    CHECK(id.miss == PEER_MISS_NO_PID && id.uid == 65534 && id.cgroup_id == st.st_ino);
    if (!CHECK(strcmp(id.service, "billing.service") == 0))
        printf("# orphan in billing: service \"%s\"\n", id.service);
    CHECK(rmdir(dir) == 0 && rmdir(slice) == 0);
    peer_cache_free(pc);
}

/* nkids children open 1,000 connections between them and keep them
 * open: in turn, each accepted and identified before the next is opened;
 * or (burst) all opened and accepted before the first is identified. */
static void measure(int nkids, int burst)
{
    enum { CONNS = 1000 };
    struct conn {
        int                     fd;
        struct sockaddr_storage ss;
        socklen_t               len;
    } *c = calloc(CONNS, sizeof *c);
    struct peer_cache *pc = peer_cache_new();
    struct listener l;
    struct kid kids[10];
    double spent = 0, worst = 0;
    int right = 0;

    if (!CHECK(c && pc && listen_on("127.0.0.1", &l) == 0))
        return;
    for (int i = 0; i < nkids; i++) {
        kids[i] = (struct kid){.to = (struct sockaddr *)&l.addr, .tolen = l.len,
                               .name = "peer-many", .n = CONNS / nkids};
        kid_start(&kids[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        struct kid *k = &kids[i % nkids];
        struct peer_id id;
        for (int j = i; j < (burst ? (i ? i : CONNS) : i + 1); j++) {
            kid_go(&kids[j % nkids]);
            c[j].len = sizeof c[j].ss;
            c[j].fd = accept(l.fd, (struct sockaddr *)&c[j].ss, &c[j].len);
        }
        double t0 = now_s();
        peer_identify(pc, c[i].fd, (struct sockaddr *)&c[i].ss, c[i].len, &id);
        t0 = now_s() - t0;
        spent += t0;
        worst = t0 > worst ? t0 : worst;
        for (int j = 0; j < nkids; j++)   /* a burst is accepted in any order */
            right += id.pid == kids[j].pid && (burst || k == &kids[j]);
    }
    const struct peer_stats *st = peer_cache_stats(pc);
    printf("# info: %d connections from %d process%s, %s: %.1f ms, %.1f us per identify "
           "(slowest %.1f us), %llu readlinks, %llu fd lists, %llu /proc lists, "
           "%llu inode cache hits\n",
           CONNS, nkids, nkids > 1 ? "es" : "", burst ? "all opened first" : "one by one",
           spent * 1e3, spent * 1e6 / CONNS, worst * 1e6, (unsigned long long)st->readlinks,
           (unsigned long long)st->fd_lists, (unsigned long long)st->proc_lists,
           (unsigned long long)st->inode_hits);
    CHECK(right == CONNS);
    /* rereading whole tables would cost at least CONNS * CONNS / 2 / nkids */
    CHECK(st->readlinks < 20 * CONNS);
    /* later kids hold earlier kids' ctl pipes: close all, then wait */
    for (int i = 0; i < nkids; i++)
        close(kids[i].ctl);
    for (int i = 0; i < nkids; i++)
        waitpid(kids[i].pid, NULL, 0);
    for (int i = 0; i < CONNS; i++)
        close(c[i].fd);
    free(c);
    close(l.fd);
    peer_cache_free(pc);
}

int main(void)
{
    struct peer_cache *pc = peer_cache_new();
    struct rlimit rl;

    signal(SIGPIPE, SIG_IGN);
    /* 1,000 connections on each side, a child with 4,600 fds */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    test_service_table();
    if (!CHECK(pc != NULL))
        CHECK_DONE();
    printf("# info: cgroup2 mount \"%s\"\n", peer_cgroup_mount(pc));
    test_self(pc);
    test_children(pc);
    test_reuse(pc);
    test_budget(pc);
    peer_cache_free(pc);
    test_cgroup();

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < 2200) {
        printf("# skip: 1,000 connections (RLIMIT_NOFILE %llu)\n", (unsigned long long)rl.rlim_cur);
    } else {
        measure(1, 0);
        measure(10, 0);
        measure(1, 1);
        measure(10, 1);
    }
    CHECK_DONE();
}
