/* libFuzzer target: the config parser (proxy/config.c, on libinih).
 *
 * Input: a proxy.ini. It is parsed from a string (config_load_string)
 * and from a file (config_load, on a memfd): both must agree, a success
 * must leave a config the proxy can run with, a failure one
 * "fuzz.ini:line: reason" line, and config_free() everything.
 *
 * No DNS in a fuzzer: net_resolve()'s getaddrinfo() is wrapped at link
 * time (-Wl,--wrap=getaddrinfo) to resolve numeric addresses and
 * "localhost" only, without a look-up. */
#include <netdb.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../lib/buf.h"
#include "../../proxy/config.h"
#include "fuzz.h"

#define NAME "fuzz.ini"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    struct addrinfo h = {0};

    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    if (node && strcmp(node, "localhost") == 0)
        node = "127.0.0.1";
    return __real_getaddrinfo(node, service, &h, res);
}

/* What a config that loaded must be for the proxy to start with it. */
static void check_loaded(struct config *c)
{
    struct buf b = {0};

    FUZZ_REQUIRE(c->listen.n >= 1 && c->listen.n <= CONFIG_MAX_ADDRS, "%d listen", c->listen.n);
    for (int i = 0; i < c->listen.n; i++)
        FUZZ_REQUIRE(c->listen.v[i] && c->listen.v[i][0], "listen %d empty", i);
    FUZZ_REQUIRE(c->master || c->sentinels.n, "neither master nor sentinels");
    FUZZ_REQUIRE(!c->sentinels.n || c->master_name, "sentinels without master_name");
    FUZZ_REQUIRE(c->read_from == READ_MASTER || c->read_from == READ_PREFER_REPLICA ||
                 c->read_from == READ_REPLICA, "read_from %d", (int)c->read_from);
    FUZZ_REQUIRE(c->connections >= 1 && c->connections <= 64, "%d connections",
                 c->connections);
    FUZZ_REQUIRE(c->max_query_buffer >= 1024 && c->max_query_buffer <= 2047u * 1024 * 1024,
                 "max_query_buffer %zu", c->max_query_buffer);
    FUZZ_REQUIRE(c->max_output_buffer >= 1024 &&
                 c->max_output_buffer <= 4095ull * 1024 * 1024,
                 "max_output_buffer %zu", c->max_output_buffer);
    FUZZ_REQUIRE(c->connect_timeout >= 0.01 && c->connect_timeout <= 60, "connect_timeout %g",
                 c->connect_timeout);
    config_dump(c, &b);
    FUZZ_REQUIRE(buf_used(&b) > 2 && memcmp(buf_start(&b) + buf_used(&b) - 2, "\r\n", 2) == 0,
                 "dump of %zu bytes", buf_used(&b));
    buf_free(&b);
}

/* The same text from a file; fd is a memfd kept for the whole run. */
static int load_file(int fd, const uint8_t *data, size_t size, struct config *c,
                     char *err, size_t errlen)
{
    char path[64];

    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int rc = config_load(c, path, err, errlen);
    /* The reason after the name, which differs. */
    size_t pl = strlen(path);
    FUZZ_REQUIRE(strncmp(err, path, pl) == 0 || rc == 0, "file error \"%s\"", err);
    if (rc < 0)
        memmove(err, err + pl, strlen(err + pl) + 1);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    char err_s[512] = "", err_f[512] = "";
    struct config s, f;
    char *text = malloc(size + 1);

    if (fd < 0 && (fd = memfd_create("fuzz.ini", 0)) < 0)
        abort();
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    config_defaults(&s);
    int rc_s = config_load_string(&s, text, NAME, err_s, sizeof err_s);
    if (rc_s == 0)
        check_loaded(&s);
    else
        FUZZ_REQUIRE(rc_s == -1 && strncmp(err_s, NAME ":", strlen(NAME) + 1) == 0 &&
                     err_s[strlen(NAME) + 1], "rc %d error \"%s\"", rc_s, err_s);

    config_defaults(&f);
    int rc_f = load_file(fd, data, size, &f, err_f, sizeof err_f);
    if (memchr(data, '\0', size)) {
        FUZZ_REQUIRE(rc_f < 0 && strcmp(err_f, ": contains a NUL byte") == 0,
                     "a NUL: rc %d \"%s\"", rc_f, err_f);
    } else {
        FUZZ_REQUIRE(rc_s == rc_f && strcmp(err_s + strlen(NAME), err_f) == 0,
                     "string: %d \"%s\", file: %d \"%s\"", rc_s, err_s, rc_f, err_f);
        if (rc_s == 0)
            FUZZ_REQUIRE(!config_nodes_changed(&s, &f) && !config_links_changed(&s, &f) &&
                         !config_sentinels_changed(&s, &f), "string and file differ");
    }
    config_free(&s);
    config_free(&f);
    free(text);
    return 0;
}
