/* lib/tls.c against real TLS-only redis-server processes, with a CA and
 * certificates made by the openssl command for the test: verification
 * (full, CA only, off), its failures as one line each, client
 * certificates, a plaintext server, and session resumption. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/tls.h"
#include "check.h"

static char dir[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_certs(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca && "
             "openssl req -x509 $K -keyout other.key -out other.crt -days 2 -subj /CN=other-ca && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext && "
             "for n in srv nn cli; do openssl req $K -keyout $n.key -out $n.csr -subj /O=$n; done && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out srv.crt -days 2 -extfile san.ext && "
             "openssl x509 -req -in nn.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out nn.crt -days 2 && "
             "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out cli.crt -days 2) >/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int free_port(void)
{
    for (int i = 0; i < 200; i++) {
        int port = 21000 + (int)((unsigned)rand() % 9000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return -1;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* A redis-server: TLS only on port (cert, auth: tls-auth-clients), or
 * plaintext when cert is NULL. */
static pid_t start_redis(int port, const char *cert, int auth)
{
    char p[16], c[128], k[128], ca[128];
    pid_t pid = fork();

    if (pid == 0) {
        snprintf(p, sizeof p, "%d", port);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        if (!cert)
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", (char *)NULL);
        snprintf(c, sizeof c, "%s/%s.crt", dir, cert);
        snprintf(k, sizeof k, "%s/%s.key", dir, cert);
        snprintf(ca, sizeof ca, "%s/ca.crt", dir);
        execlp("redis-server", "redis-server", "--port", "0", "--tls-port", p, "--bind",
               "127.0.0.1", "--save", "", "--appendonly", "no", "--tls-cert-file", c,
               "--tls-key-file", k, "--tls-ca-cert-file", ca, "--tls-auth-clients",
               auth ? "yes" : "no", (char *)NULL);
        _exit(127);
    }
    for (double end = now_s() + 10; now_s() < end; usleep(20000)) {
        int fd = connect_to(port);
        if (fd >= 0) {
            close(fd);
            return pid;
        }
    }
    return pid;
}

/* Waits for what the session wants; 0, or -1 past the deadline. */
static int wait_for(int fd, int want, double end)
{
    struct pollfd p = {.fd = fd, .events = want == TLS_WANT_WRITE ? POLLOUT : POLLIN};
    int ms = (int)((end - now_s()) * 1000);
    return ms > 0 && poll(&p, 1, ms) > 0 ? 0 : -1;
}

/* A session on a new connection to port, its handshake done (*fd its
 * socket); NULL with the reason in err. */
static struct tls_conn *open_tls(struct tls_ctx *ctx, int port, const char *name,
                                 struct tls_resume *resume, int *fd, char *err, size_t errlen)
{
    double end = now_s() + 2;
    struct tls_conn *c;
    int rc;

    err[0] = '\0';
    if ((*fd = connect_to(port)) < 0 || !(c = tls_conn_new(ctx, *fd, name, resume))) {
        snprintf(err, errlen, "no connection");
        if (*fd >= 0)
            close(*fd);
        return NULL;
    }
    while ((rc = tls_handshake(c, err, errlen)) > 0)
        if (wait_for(*fd, rc, end) < 0) {
            snprintf(err, errlen, "handshake timed out");
            break;
        }
    if (rc != 0) {
        tls_conn_free(c);
        close(*fd);
        return NULL;
    }
    return c;
}

/* PING on c: 1 when PONG came back, and the TLS 1.3 tickets sent with it
 * were read; 0 with the reason in err. */
static int ping_on(struct tls_conn *c, int fd, char *err, size_t errlen)
{
    double end = now_s() + 2;
    char buf[64];
    int want = 0;
    ssize_t n;
    size_t got = 0;

    err[0] = '\0';
    while ((n = tls_write(c, "PING\r\n", 6, &want, err, errlen)) < 0 && want)
        if (wait_for(fd, want, end) < 0)
            break;
    while (n == 6 && got < 7) {
        ssize_t r = tls_read(c, buf + got, sizeof buf - 1 - got, &want, err, errlen);
        if (r > 0)
            got += (size_t)r;
        else if (r < 0 && want && wait_for(fd, want, end) == 0)
            continue;
        else
            break;
    }
    buf[got] = '\0';
    int ok = got >= 7 && strncmp(buf, "+PONG\r\n", 7) == 0;
    if (!ok && !err[0])
        snprintf(err, errlen, "no PONG: \"%s\"", buf);
    /* TLS 1.3 tickets come after the handshake: read what is there */
    while (ok && tls_read(c, buf, sizeof buf, &want, err, errlen) > 0)
        ;
    if (ok)
        err[0] = '\0';
    return ok;
}

/* Handshake, then PING: 1 when PONG came back; 0 with the reason in err. */
static int ping(struct tls_ctx *ctx, int port, const char *name, struct tls_resume *resume,
                int *resumed, char *err, size_t errlen)
{
    int fd;
    struct tls_conn *c = open_tls(ctx, port, name, resume, &fd, err, errlen);
    int ok = c && ping_on(c, fd, err, errlen);

    if (resumed)
        *resumed = c && tls_resumed(c);
    if (c) {
        tls_conn_free(c);
        close(fd);
    }
    return ok;
}

/* Handshakes that start one after the other, each after the one before it
 * resumed and before its new ticket was read (links reconnecting together):
 * each resumes on a session of its own while the node has one left (two
 * now), and the tickets they are sent refill it. */
static void handshakes_together(struct tls_ctx *ctx, int port, struct tls_resume *res)
{
    struct tls_conn *c[3];
    int fd[3];
    char err[256];

    for (int i = 0; i < 3; i++) {
        c[i] = open_tls(ctx, port, "localhost", res, &fd[i], err, sizeof err);
        CHECK(c[i] != NULL);
    }
    CHECK(c[0] && tls_resumed(c[0]));
    CHECK(c[1] && tls_resumed(c[1]));
    CHECK(c[2] && !tls_resumed(c[2]));       /* none left: a full handshake */
    CHECK(res->n == 0);
    for (int i = 0; i < 3; i++)
        if (c[i]) {
            CHECK(ping_on(c[i], fd[i], err, sizeof err));
            tls_conn_free(c[i]);
            close(fd[i]);
        }
    CHECK(res->n == 1 + 1 + 2);
}

static struct tls_ctx *ctx_of(const char *ca, const char *cert, enum tls_verify v, char *err,
                              size_t errlen)
{
    char caf[128], crt[128], key[128];
    struct tls_settings s = {.verify = v};

    if (ca) {
        snprintf(caf, sizeof caf, "%s/%s.crt", dir, ca);
        s.ca_file = caf;
    }
    if (cert) {
        snprintf(crt, sizeof crt, "%s/%s.crt", dir, cert);
        snprintf(key, sizeof key, "%s/%s.key", dir, cert);
        s.cert_file = crt;
        s.key_file = key;
    }
    return tls_ctx_new(&s, err, errlen);
}

int main(void)
{
    char err[256];
    int resumed = -1;

    srand((unsigned)getpid());
    snprintf(dir, sizeof dir, "/tmp/sidecar-tls-XXXXXX");
    if (!mkdtemp(dir) || make_certs() < 0) {
        printf("# skip: cannot make certificates with openssl in %s\n", dir);
        return check_done();
    }
    int p_srv = free_port(), p_nn = free_port(), p_auth = free_port(), p_plain = free_port();
    pid_t pids[4] = {start_redis(p_srv, "srv", 0), start_redis(p_nn, "nn", 0),
                     start_redis(p_auth, "srv", 1), start_redis(p_plain, NULL, 0)};

    struct tls_ctx *full = ctx_of("ca", NULL, TLS_VERIFY_FULL, err, sizeof err);
    CHECK(full != NULL);
    struct tls_resume res = {0};
    /* the right CA and name: served; the next handshake resumes */
    CHECK(ping(full, p_srv, "localhost", &res, &resumed, err, sizeof err) && resumed == 0);
    CHECK(res.n == 2);            /* redis (OpenSSL) sends two tickets after a full handshake */
    CHECK(ping(full, p_srv, "localhost", &res, &resumed, err, sizeof err) && resumed == 1);
    CHECK(res.n == 2);            /* one taken, one sent after a resumed handshake */
    handshakes_together(full, p_srv, &res);
    /* a reload's new context: full, even with sessions at hand, and its
     * tickets replace the old context's; the old context's are not kept */
    struct tls_ctx *reloaded = ctx_of("ca", NULL, TLS_VERIFY_FULL, err, sizeof err);
    CHECK(reloaded && ping(reloaded, p_srv, "localhost", &res, &resumed, err, sizeof err) &&
          resumed == 0 && res.n == 2);
    CHECK(ping(full, p_srv, "localhost", &res, &resumed, err, sizeof err) && resumed == 0 &&
          res.n == 2);
    CHECK(reloaded && ping(reloaded, p_srv, "localhost", &res, &resumed, err, sizeof err) &&
          resumed == 1);
    CHECK(ping(full, p_srv, "127.0.0.1", NULL, NULL, err, sizeof err));      /* an IP SAN */
    /* a name the certificate does not have */
    CHECK(!ping(full, p_srv, "other.example", NULL, NULL, err, sizeof err));
    CHECK(strcmp(err, "TLS: certificate verify failed (hostname mismatch)") == 0);
    /* a name-less certificate: refused with full, served with ca */
    CHECK(!ping(full, p_nn, "127.0.0.1", NULL, NULL, err, sizeof err));
    CHECK(strcmp(err, "TLS: certificate verify failed (IP address mismatch)") == 0);
    struct tls_ctx *ca = ctx_of("ca", NULL, TLS_VERIFY_CA, err, sizeof err);
    CHECK(ca && ping(ca, p_nn, "127.0.0.1", NULL, NULL, err, sizeof err));
    /* another CA */
    struct tls_ctx *other = ctx_of("other", NULL, TLS_VERIFY_FULL, err, sizeof err);
    CHECK(other && !ping(other, p_srv, "localhost", NULL, NULL, err, sizeof err));
    /* (redis sends its CA with its certificate: a chain this CA did not sign) */
    CHECK(strcmp(err, "TLS: certificate verify failed (self-signed certificate in "
                 "certificate chain)") == 0 ||
          strcmp(err, "TLS: certificate verify failed (unable to get local issuer "
                 "certificate)") == 0);
    printf("# info: another CA: %s\n", err);
    /* verification off: anything goes (the caller logs a warning) */
    struct tls_ctx *off = ctx_of("other", NULL, TLS_VERIFY_OFF, err, sizeof err);
    CHECK(off && ping(off, p_srv, "other.example", NULL, NULL, err, sizeof err));
    /* tls-auth-clients yes: no certificate, no service; with one, served */
    CHECK(!ping(full, p_auth, "localhost", NULL, NULL, err, sizeof err) &&
          strncmp(err, "TLS: ", 5) == 0);
    struct tls_ctx *cli = ctx_of("ca", "cli", TLS_VERIFY_FULL, err, sizeof err);
    CHECK(cli && ping(cli, p_auth, "localhost", NULL, NULL, err, sizeof err));
    /* two servers, each refusing the other's tickets: every handshake is
     * full and adds two; past TLS_RESUME_MAX the oldest go */
    struct tls_resume two = {0};
    for (int i = 0; i < TLS_RESUME_MAX; i++)
        CHECK(cli && ping(cli, i % 2 ? p_auth : p_srv, "localhost", &two, &resumed, err,
                          sizeof err) && resumed == 0);
    CHECK(two.n == TLS_RESUME_MAX);
    tls_resume_clear(&two);
    CHECK(two.n == 0);
    /* a server that does not speak TLS: redis waits for the end of what
     * it takes for an inline command, so the caller's timeout ends it */
    CHECK(!ping(full, p_plain, "localhost", NULL, NULL, err, sizeof err) && err[0]);
    printf("# info: plaintext server: %s\n", err);
    /* files: missing, or a key that is not the certificate's */
    struct tls_settings bad = {.ca_file = "/nonexistent/ca.crt"};
    CHECK(tls_ctx_new(&bad, err, sizeof err) == NULL && strstr(err, "/nonexistent/ca.crt"));
    char crt[128], key[128];
    snprintf(crt, sizeof crt, "%s/cli.crt", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    struct tls_settings mism = {.cert_file = crt, .key_file = key};
    CHECK(tls_ctx_new(&mism, err, sizeof err) == NULL &&
          (strstr(err, "does not match") || strstr(err, "mismatch")));
    printf("# info: key of another certificate: %s\n", err);
    struct tls_settings half = {.cert_file = crt};
    CHECK(tls_ctx_new(&half, err, sizeof err) == NULL && strstr(err, "both"));

    tls_resume_clear(&res);
    tls_ctx_unref(full);
    tls_ctx_unref(reloaded);
    tls_ctx_unref(ca);
    tls_ctx_unref(other);
    tls_ctx_unref(off);
    tls_ctx_unref(cli);
    for (int i = 0; i < 4; i++) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return check_done();
}
