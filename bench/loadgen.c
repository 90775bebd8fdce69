/* An open-loop load generator for `make bench`: requests go out on a fixed
 * schedule (a rate, spread round-robin over the connections) whatever the
 * replies do, and each one's latency runs from the time it was scheduled,
 * not from when it went out: a stall shows as the queueing it causes
 * (no coordinated omission). The schedule is kept by a timerfd armed for
 * the next due request (microsecond wakeups, timer slack 1 ns); what is
 * due is sent at each wakeup.
 *
 *   loadgen -p PORT [-h 127.0.0.1] [-c 50] [-r 10000] [-t 5] [-w 1]
 *           [-T get|set] [-d 3] [-k 10000] [-o FILE]
 *   loadgen -p PORT --populate [-d 3] [-k 10000]
 *   loadgen --merge FILE
 *
 * Prints one line: rate, requests sent, answered, errors, lost (no reply
 * within 2 s of the end), and the latency percentiles p50, p90, p99,
 * p99.9 and the max, in microseconds, of the requests scheduled after the
 * warm-up (-w seconds, not counted). Exit 1 when it could not run.
 * -o appends those latencies to FILE (raw floats), and --merge prints the
 * count and percentiles of all a FILE holds: several runs pooled (make
 * bench alternates the targets in rounds, so a slow spell of the machine
 * falls on all of them). */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "../lib/resp.h"

struct conn {
    int     fd;
    ev_io   rw, ww;
    char   *out;              /* bytes to write */
    size_t  out_len, out_cap;
    char   *in;               /* bytes read, not parsed yet */
    size_t  in_len, in_cap;
    struct resp_framer fr;    /* the reply at in[0] */
    double *due;              /* each request in flight: its scheduled time */
    size_t  due_head, due_n, due_cap;
};

static struct {
    const char *host;
    int         port, nconns, populate, keys, size;
    double      rate, secs, warm;
    int         set;
} opt = {"127.0.0.1", 0, 50, 0, 10000, 3, 10000, 5, 1, 0};

static struct conn *conns;
static struct ev_loop *loop;
static double start, end_at, warm_until;
static long long sent, answered, errors, counted, lat_cap;
static float *lat;             /* microseconds, of the counted requests */
static char *value;
static int tfd;
static ev_io tw;
static ev_timer drain_w;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static void grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    if (!(*p = realloc(*p, c)))
        die("out of memory");
    *cap = c;
}

static void append(struct conn *c, const char *p, size_t n)
{
    grow(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void push_due(struct conn *c, double t)
{
    if (c->due_n == c->due_cap) {
        size_t cap = c->due_cap ? c->due_cap * 2 : 256;
        double *d = malloc(cap * sizeof *d);
        if (!d)
            die("out of memory");
        for (size_t i = 0; i < c->due_n; i++)
            d[i] = c->due[(c->due_head + i) % c->due_cap];
        free(c->due);
        c->due = d;
        c->due_head = 0;
        c->due_cap = cap;
    }
    c->due[(c->due_head + c->due_n++) % c->due_cap] = t;
}

/* Request number i: GET or SET of key:(i mod keys). */
static void add_request(struct conn *c, long long i)
{
    char head[96];
    char key[32];
    int kl = snprintf(key, sizeof key, "key:%lld", i % opt.keys);
    int n;

    if (opt.set || opt.populate) {
        n = snprintf(head, sizeof head, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", kl, key,
                     opt.size);
        append(c, head, (size_t)n);
        append(c, value, (size_t)opt.size);
        append(c, "\r\n", 2);
    } else {
        n = snprintf(head, sizeof head, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, key);
        append(c, head, (size_t)n);
    }
}

static void want_write(struct conn *c)
{
    if (c->out_len && !ev_is_active(&c->ww))
        ev_io_start(loop, &c->ww);
}

/* One reply framed at p by the proxy's own framer: its length, 0 if not
 * all here yet (f keeps what it read of it); *err set for an error reply. */
static size_t frame(struct resp_framer *f, const char *p, size_t n, int *err)
{
    static const struct resp_limits lim = {.max_bulk = RESP_MAX_BULK, .max_line = 1 << 20};
    int rc = resp_frame_reply(f, p, n, &lim);

    if (rc == RESP_ERR) {
        errno = EPROTO;
        die("a reply that does not parse");
    }
    if (rc != RESP_DONE)
        return 0;
    *err = p[0] == '-';
    size_t len = f->fr.len;
    resp_framer_reset(f);
    return len;
}

static void record(double due, double t)
{
    if (due < warm_until || due >= end_at || counted >= lat_cap)
        return;
    lat[counted++] = (float)((t - due) * 1e6);
}

static void on_read(struct ev_loop *l, ev_io *w, int revents)
{
    struct conn *c = w->data;
    (void)l;
    (void)revents;

    grow(&c->in, &c->in_cap, c->in_len + 65536);
    ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        errno = r == 0 ? ECONNRESET : errno;
        die("read");
    }
    c->in_len += (size_t)r;
    double t = now_s();
    size_t at = 0, k;
    int err;
    while (at < c->in_len && (k = frame(&c->fr, c->in + at, c->in_len - at, &err)) > 0) {
        at += k;
        if (!c->due_n)
            die("a reply nobody asked for");
        double due = c->due[c->due_head];
        c->due_head = (c->due_head + 1) % c->due_cap;
        c->due_n--;
        answered++;
        errors += err;
        if (!opt.populate)
            record(due, t);
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

static void on_write(struct ev_loop *l, ev_io *w, int revents)
{
    struct conn *c = w->data;
    (void)revents;

    ssize_t r = write(c->fd, c->out, c->out_len);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        die("write");
    }
    memmove(c->out, c->out + r, c->out_len - (size_t)r);
    c->out_len -= (size_t)r;
    if (!c->out_len)
        ev_io_stop(l, w);
}

/* Everything due by now goes out, each on its connection in turn; the
 * timer is armed for the next one. */
static void send_due(void)
{
    double t = now_s();
    long long due_by = t >= end_at ? (long long)llround((end_at - start) * opt.rate)
                                   : (long long)((t - start) * opt.rate) + 1;

    for (; sent < due_by; sent++) {
        struct conn *c = &conns[sent % opt.nconns];
        add_request(c, sent);
        push_due(c, start + (double)sent / opt.rate);
    }
    for (int i = 0; i < opt.nconns; i++)
        if (conns[i].out_len) {
            on_write(loop, &conns[i].ww, 0);    /* at once, not a loop turn later */
            want_write(&conns[i]);
        }
    if (t >= end_at) {
        ev_io_stop(loop, &tw);
        ev_timer_start(loop, &drain_w);
        return;
    }
    double next = start + (double)sent / opt.rate;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)next;
    its.it_value.tv_nsec = (long)((next - floor(next)) * 1e9);
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        die("timerfd_settime");
}

static void on_timer(struct ev_loop *l, ev_io *w, int revents)
{
    uint64_t n;
    (void)l;
    (void)w;
    (void)revents;

    if (read(tfd, &n, sizeof n) < 0 && errno != EAGAIN)
        die("timerfd read");
    send_due();
}

/* After the last send: replies for up to 2 s, then the figures. */
static void on_drain(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;

    if (answered < sent && now_s() < end_at + 2)
        return;
    ev_break(l, EVBREAK_ALL);
}

static int by_value(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!counted)
        return NAN;
    long long i = (long long)ceil(p / 100.0 * (double)counted) - 1;
    return lat[i < 0 ? 0 : i];
}

static void print_percentiles(void)
{
    qsort(lat, (size_t)counted, sizeof *lat, by_value);
    printf("counted=%lld p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f\n", counted, pct(50),
           pct(90), pct(99), pct(99.9), counted ? lat[counted - 1] : NAN);
}

/* --merge FILE: the percentiles of every latency -o appended to it. */
static int merge(const char *path)
{
    FILE *f = fopen(path, "rb");
    long size = -1;

    if (!f || fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
        fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    counted = size / (long)sizeof *lat;
    if (size % (long)sizeof *lat || !(lat = malloc((size_t)counted * sizeof *lat + 1)) ||
        fread(lat, sizeof *lat, (size_t)counted, f) != (size_t)counted) {
        fprintf(stderr, "loadgen: cannot read %s (or not whole latencies)\n", path);
        fclose(f);
        return 1;
    }
    fclose(f);
    print_percentiles();
    return 0;
}

/* -o FILE: this run's counted latencies appended, for --merge. */
static void save(const char *path)
{
    FILE *f = fopen(path, "ab");

    if (!f || fwrite(lat, sizeof *lat, (size_t)counted, f) != (size_t)counted || fclose(f)) {
        fprintf(stderr, "loadgen: cannot write %s\n", path);
        exit(1);
    }
}

static int connect_to(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0 || inet_pton(AF_INET, opt.host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* --populate: every key set once, 1,000 at a time on one connection. */
static void populate(void)
{
    struct conn c = {.fd = connect_to()};

    resp_framer_reset(&c.fr);
    char buf[65536];

    for (long long i = 0; i < opt.keys;) {
        long long batch = 0;
        for (; batch < 1000 && i < opt.keys; batch++, i++)
            add_request(&c, i);
        for (size_t off = 0; off < c.out_len;) {
            ssize_t w = write(c.fd, c.out + off, c.out_len - off);
            if (w < 0)
                die("write");
            off += (size_t)w;
        }
        c.out_len = 0;
        size_t have = 0, at;
        for (long long got = 0; got < batch;) {
            ssize_t r = read(c.fd, buf + have, sizeof buf - have);
            if (r <= 0)
                die("read");
            have += (size_t)r;
            at = 0;
            size_t k;
            int err;
            while (at < have && (k = frame(&c.fr, buf + at, have - at, &err)) > 0) {
                at += k;
                got++;
                errors += err;
            }
            memmove(buf, buf + at, have - at);
            have -= at;
        }
    }
    printf("populated=%d size=%d errors=%lld\n", opt.keys, opt.size, errors);
    exit(errors ? 1 : 0);
}

int main(int argc, char **argv)
{
    const char *out = NULL;

    if (argc == 3 && !strcmp(argv[1], "--merge"))
        return merge(argv[2]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--populate")) {
            opt.populate = 1;
            continue;
        }
        if (!v || a[0] != '-' || strlen(a) != 2) {
            fprintf(stderr, "usage: loadgen -p PORT [-h HOST] [-c CONNS] [-r RATE] [-t SECS] "
                    "[-w WARMUP] [-T get|set] [-d SIZE] [-k KEYS] [-o FILE] [--populate]\n"
                    "       loadgen --merge FILE\n");
            return 1;
        }
        switch (a[1]) {
        case 'h': opt.host = v; break;
        case 'p': opt.port = atoi(v); break;
        case 'c': opt.nconns = atoi(v); break;
        case 'r': opt.rate = atof(v); break;
        case 't': opt.secs = atof(v); break;
        case 'w': opt.warm = atof(v); break;
        case 'T': opt.set = !strcmp(v, "set"); break;
        case 'd': opt.size = atoi(v); break;
        case 'k': opt.keys = atoi(v); break;
        case 'o': out = v; break;
        default: fprintf(stderr, "loadgen: unknown option %s\n", a); return 1;
        }
        i++;
    }
    if (opt.port <= 0 || opt.nconns <= 0 || opt.rate <= 0 || opt.secs <= 0 || opt.keys <= 0 ||
        opt.size < 0) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 1;
    }
    if (!(value = malloc((size_t)opt.size + 1)))
        die("out of memory");
    memset(value, 'x', (size_t)opt.size);
    if (opt.populate)
        populate();
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);   /* wake when asked, not 50 µs later */
    loop = ev_default_loop(0);
    if (!(conns = calloc((size_t)opt.nconns, sizeof *conns)))
        die("out of memory");
    for (int i = 0; i < opt.nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_to();
        resp_framer_reset(&c->fr);
        ev_io_init(&c->rw, on_read, c->fd, EV_READ);
        ev_io_init(&c->ww, on_write, c->fd, EV_WRITE);
        c->rw.data = c->ww.data = c;
        ev_io_start(loop, &c->rw);
    }
    lat_cap = (long long)(opt.rate * opt.secs) + 16;
    if (!(lat = malloc((size_t)lat_cap * sizeof *lat)))
        die("out of memory");
    if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)) < 0)
        die("timerfd_create");
    ev_io_init(&tw, on_timer, tfd, EV_READ);
    ev_io_start(loop, &tw);
    ev_timer_init(&drain_w, on_drain, 0.05, 0.05);
    start = now_s();
    warm_until = start + opt.warm;
    end_at = warm_until + opt.secs;
    send_due();
    ev_run(loop, 0);
    if (out)
        save(out);
    printf("rate=%.0f sent=%lld answered=%lld errors=%lld lost=%lld ", opt.rate, sent, answered,
           errors, sent - answered);
    print_percentiles();
    return answered < sent || errors ? 1 : 0;
}
