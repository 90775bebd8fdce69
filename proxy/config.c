/* proxy.ini -> struct config. Every key is a row of `keys[]`: section,
 * name, parser, where it goes and its bounds. The inih callback keeps the
 * first reason and returns 0; inih then returns that line's number. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "../lib/buf.h"
#include "../lib/net.h"

#define INI_LINE_MAX 199   /* Debian's libinih splits longer lines silently */

struct key;
typedef int key_parser(const struct key *k, const char *v, void *dst,
                       char *why, size_t whylen);

struct key {
    const char *section, *name;
    key_parser *parse;
    size_t      off;
    double      min, max;
    int         is_list;   /* may repeat; values add up */
    const char *const *choices;  /* p_enum: the names, in enum order */
};

static const char *const read_from_names[] = {"master", "prefer-replica", "replica", NULL};
static const char *const ryw_names[] = {"offset", "window", "off", NULL};
/* the order of enum tls_verify (lib/tls.h) */
static const char *const tls_verify_names[] = {"full", "ca", "off", NULL};
/* the order of enum app_key_kind (apps.h) */
static const char *const app_key_names[] = {"service", "uid", "process", "ip", NULL};

static int p_string(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    (void)k;
    char **s = dst;
    if (*v == '\0') {
        snprintf(why, wl, "empty value");
        return -1;
    }
    free(*s);
    *s = strdup(v);
    return 0;
}

static int p_addr(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    struct net_addr a;
    char err[200];
    if (net_resolve(v, &a, err, sizeof err) < 0) {
        snprintf(why, wl, "%s", err);
        return -1;
    }
    return p_string(k, v, dst, why, wl);
}

static int p_int(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno || n < k->min || n > k->max) {
        snprintf(why, wl, "\"%s\" not in %.0f..%.0f", v, k->min, k->max);
        return -1;
    }
    *(int *)dst = (int)n;
    return 0;
}

int config_parse_duration(const char *s, double *seconds)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isdigit((unsigned char)s[0]))
        return -1;
    if (strcmp(end, "ms") == 0)
        v /= 1000;
    else if (strcmp(end, "m") == 0)
        v *= 60;
    else if (strcmp(end, "s") != 0 && !(*end == '\0' && v == 0))
        return -1;
    *seconds = v;
    return 0;
}

int config_parse_size(const char *s, size_t *bytes)
{
    static const struct { const char *unit; double mul; } units[] = {
        {"b", 1}, {"kb", 1024}, {"mb", 1024.0 * 1024}, {"gb", 1024.0 * 1024 * 1024},
    };
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isdigit((unsigned char)s[0]))
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) == 0) {
            /* Checked before the product is made: converting a double past
             * SIZE_MAX to size_t is undefined ("99999999999999999999gb",
             * found by fuzzing). (double)SIZE_MAX rounds up to 2^64. */
            if (v >= (double)SIZE_MAX / units[i].mul)
                return -2;
            *bytes = (size_t)(v * units[i].mul);
            return 0;
        }
    }
    if (*end == '\0' && v == 0) {
        *bytes = 0;
        return 0;
    }
    return -1;
}

static int p_duration(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    double d;
    if (config_parse_duration(v, &d) < 0) {
        snprintf(why, wl, "\"%s\" is not a duration with a unit (ms, s, m)", v);
        return -1;
    }
    if (d < k->min || d > k->max) {
        snprintf(why, wl, "\"%s\" not in %gs..%gs", v, k->min, k->max);
        return -1;
    }
    *(double *)dst = d;
    return 0;
}

static int p_size(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    size_t b = 0;
    int rc = config_parse_size(v, &b);
    if (rc == -1) {
        snprintf(why, wl, "\"%s\" is not a size with a unit (b, kb, mb, gb)", v);
        return -1;
    }
    if (rc < 0 || (double)b < k->min || (double)b > k->max) {
        snprintf(why, wl, "\"%s\" not in %.0f..%.0f bytes", v, k->min, k->max);
        return -1;
    }
    *(size_t *)dst = b;
    return 0;
}

static int p_bool(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    (void)k;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *(int *)dst = strcasecmp(v, yes[i]) == 0;
            return 0;
        }
    }
    snprintf(why, wl, "\"%s\" is not on or off", v);
    return -1;
}

static int p_loglevel(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    (void)k;
    if (log_level_parse(v, dst) < 0) {
        snprintf(why, wl, "\"%s\" is not one of error, warn, info, debug", v);
        return -1;
    }
    return 0;
}

/* "a, b,c" appended to the list; each item checked as an address. */
static int p_addrs(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    struct addr_list *l = dst;
    char *copy = strdup(v), *save = NULL;
    int rc = 0;

    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        char *e = t + strlen(t);
        while (e > t && isspace((unsigned char)e[-1]))
            *--e = '\0';
        struct net_addr a;
        char err[200];
        if (net_resolve(t, &a, err, sizeof err) < 0 ||
            (strcmp(k->section, "proxy") != 0 && net_is_unix(&a))) {
            snprintf(why, wl, "%s", net_is_unix(&a) ? "a unix socket is not a node" : err);
            rc = -1;
            break;
        }
        if (l->n == CONFIG_MAX_ADDRS) {
            snprintf(why, wl, "more than %d addresses", CONFIG_MAX_ADDRS);
            rc = -1;
            break;
        }
        for (int i = 0; i < l->n && rc == 0; i++)
            if (strcmp(l->v[i], t) == 0) {
                snprintf(why, wl, "%s listed twice", t);
                rc = -1;
            }
        if (rc < 0)
            break;
        l->v[l->n++] = strdup(t);
    }
    free(copy);
    return rc;
}

/* One of k->choices, stored as its index (the enum's value). */
static int p_enum(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    size_t used = 0;

    for (int i = 0; k->choices[i]; i++) {
        if (strcmp(v, k->choices[i]) == 0) {
            *(int *)dst = i;
            return 0;
        }
    }
    used = (size_t)snprintf(why, wl, "\"%s\" is not one of ", v);
    for (int i = 0; k->choices[i] && used < wl; i++)
        used += (size_t)snprintf(why + used, wl - used, "%s%s", i ? ", " : "", k->choices[i]);
    return -1;
}

static int p_cidrs(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    (void)k;
    return cidr_list_parse(dst, v, why, wl);
}

/* A path for a unix socket: it must fit sun_path. */
static int p_path(const struct key *k, const char *v, void *dst, char *why, size_t wl)
{
    if (strlen(v) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
        snprintf(why, wl, "\"%s\" is longer than a unix socket path may be (%zu bytes)", v,
                 sizeof ((struct sockaddr_un *)0)->sun_path - 1);
        return -1;
    }
    return p_string(k, v, dst, why, wl);
}

#define OFF(f) offsetof(struct config, f)
#define MB (1024.0 * 1024)
static const struct key keys[] = {
    {"proxy", "listen", p_addrs, OFF(listen), 0, 0, 1, NULL},
    {"proxy", "password", p_string, OFF(password), 0, 0, 0, NULL},
    {"proxy", "shutdown_timeout", p_duration, OFF(shutdown_timeout), 0, 3600, 0, NULL},
    {"upstream", "master", p_addr, OFF(master), 0, 0, 0, NULL},
    {"upstream", "replicas", p_addrs, OFF(replicas), 0, 0, 1, NULL},
    {"upstream", "sentinels", p_addrs, OFF(sentinels), 0, 0, 1, NULL},
    {"upstream", "cluster", p_addrs, OFF(cluster), 0, 0, 1, NULL},
    {"upstream", "master_name", p_string, OFF(master_name), 0, 0, 0, NULL},
    {"upstream", "sentinel_password", p_string, OFF(sentinel_password), 0, 0, 0, NULL},
    {"upstream", "username", p_string, OFF(username), 0, 0, 0, NULL},
    {"upstream", "password", p_string, OFF(upstream_password), 0, 0, 0, NULL},
    {"upstream", "database", p_int, OFF(database), 0, 100000, 0, NULL},
    {"upstream", "tls", p_bool, OFF(tls), 0, 0, 0, NULL},
    {"upstream", "tls_ca_file", p_string, OFF(tls_ca_file), 0, 0, 0, NULL},
    {"upstream", "tls_cert_file", p_string, OFF(tls_cert_file), 0, 0, 0, NULL},
    {"upstream", "tls_key_file", p_string, OFF(tls_key_file), 0, 0, 0, NULL},
    {"upstream", "tls_server_name", p_string, OFF(tls_server_name), 0, 0, 0, NULL},
    {"upstream", "tls_verify", p_enum, OFF(tls_verify), 0, 0, 0, tls_verify_names},
    {"upstream", "sentinel_tls", p_bool, OFF(sentinel_tls), 0, 0, 0, NULL},
    {"pool", "connections", p_int, OFF(connections), 1, 64, 0, NULL},
    {"pool", "connect_timeout", p_duration, OFF(connect_timeout), 0.01, 60, 0, NULL},
    {"pool", "reply_timeout", p_duration, OFF(reply_timeout), 0.01, 3600, 0, NULL},
    {"pool", "validate_after", p_duration, OFF(validate_after), 0, 86400, 0, NULL},
    {"pool", "ping_timeout", p_duration, OFF(ping_timeout), 0.001, 60, 0, NULL},
    {"pool", "ping_interval", p_duration, OFF(ping_interval), 0, 86400, 0, NULL},
    {"pool", "tcp_keepalive", p_duration, OFF(tcp_keepalive), 0, 86400, 0, NULL},
    {"pool", "tcp_user_timeout", p_duration, OFF(tcp_user_timeout), 0, 86400, 0, NULL},
    {"pool", "max_link_age", p_duration, OFF(max_link_age), 0, 30 * 86400, 0, NULL},
    {"pool", "retry_reads", p_bool, OFF(retry_reads), 0, 0, 0, NULL},
    {"pool", "max_leased", p_int, OFF(max_leased), 1, 100000, 0, NULL},
    {"pool", "min_idle_leases", p_int, OFF(min_idle_leases), 0, 1000, 0, NULL},
    {"pool", "max_users", p_int, OFF(max_users), 1, USERS_MAX, 0, NULL},
    {"pool", "user_idle_timeout", p_duration, OFF(user_idle_timeout), 0.01, 30 * 86400, 0, NULL},
    {"health", "check_interval", p_duration, OFF(check_interval), 0.01, 3600, 0, NULL},
    {"health", "down_after", p_int, OFF(down_after), 1, 1000, 0, NULL},
    {"routing", "read_from", p_enum, OFF(read_from), 0, 0, 0, read_from_names},
    {"routing", "replica_max_lag", p_duration, OFF(replica_max_lag), 0, 86400, 0, NULL},
    {"routing", "read_your_writes", p_enum, OFF(read_your_writes), 0, 0, 0, ryw_names},
    {"routing", "ryw_window", p_duration, OFF(ryw_window), 0, 3600, 0, NULL},
    {"routing", "failover_wait", p_duration, OFF(failover_wait), 0.01, 3600, 0, NULL},
    {"clients", "idle_timeout", p_duration, OFF(idle_timeout), 0, 30 * 86400, 0, NULL},
    {"clients", "max_connections", p_int, OFF(max_connections), 1, 1000000, 0, NULL},
    {"clients", "max_connections_per_ip", p_int, OFF(max_connections_per_ip), 0, 1000000, 0, NULL},
    {"clients", "allow", p_cidrs, OFF(allow), 0, 0, 1, NULL},
    {"clients", "deny", p_cidrs, OFF(deny), 0, 0, 1, NULL},
    {"clients", "max_pipeline", p_int, OFF(max_pipeline), 1, 10000000, 0, NULL},
    {"clients", "app_key", p_enum, OFF(app_key), 0, 0, 0, app_key_names},
    {"clients", "max_connections_per_app", p_int, OFF(max_connections_per_app), 0, 1000000, 0,
     NULL},
    {"clients", "slowlog_max_len", p_int, OFF(slowlog_max_len), 0, 100000, 0, NULL},
    {"clients", "slowlog_slower_than", p_duration, OFF(slowlog_slower_than), 0, 3600, 0, NULL},
    {"clients", "hotkeys_sample", p_int, OFF(hotkeys_sample), 0, 1000000, 0, NULL},
    {"admin", "allow", p_cidrs, OFF(admin_allow), 0, 0, 1, NULL},
    {"admin", "password", p_string, OFF(admin_password), 0, 0, 0, NULL},
    {"admin", "socket", p_path, OFF(admin_socket), 0, 0, 0, NULL},
    {"admin", "reserved", p_int, OFF(admin_reserved), 0, 1000, 0, NULL},
    {"admin", "metrics_listen", p_addr, OFF(metrics_listen), 0, 0, 0, NULL},
    {"admin", "metrics_max_apps", p_int, OFF(metrics_max_apps), 0, 1000, 0, NULL},
    {"clients", "max_query_buffer", p_size, OFF(max_query_buffer), 1024, 2047 * MB, 0, NULL},
    {"clients", "max_output_buffer", p_size, OFF(max_output_buffer), 1024, 4095 * MB, 0, NULL},
    {"log", "level", p_loglevel, OFF(log_level), 0, 0, 0, NULL},
};
#define NKEYS (sizeof keys / sizeof keys[0])

struct parse_ctx {
    struct config *c;
    char why[256];
    unsigned char seen[NKEYS];
};

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *pc = user;
    char why[200] = "";

    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0)
            continue;
        if (pc->seen[i] && !keys[i].is_list) {
            snprintf(why, sizeof why, "given twice");
        } else if (keys[i].parse(&keys[i], value, (char *)pc->c + keys[i].off,
                                 why, sizeof why) == 0) {
            pc->seen[i] = 1;
            return 1;
        }
        if (!pc->why[0])
            snprintf(pc->why, sizeof pc->why, "%s.%s: %s", section, name, why);
        return 0;
    }
    if (!pc->why[0])
        snprintf(pc->why, sizeof pc->why, "unknown key %s.%s", section, name);
    return 0;
}

static int known_section(const char *s, size_t n)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].section) == n && strncmp(keys[i].section, s, n) == 0)
            return 1;
    return 0;
}

/* What inih cannot tell us: over-long lines and sections without keys. */
static int prescan(const char *text, const char *name, char *err, size_t errlen)
{
    int line = 1;

    for (const char *s = text; *s; line++) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n && s[n - 1] == '\r')
            n--;
        if (n > INI_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line too long", name, line);
            return -1;
        }
        const char *t = s;
        while (t < s + n && isspace((unsigned char)*t))
            t++;
        if (*t == '[') {
            const char *close = memchr(t, ']', (size_t)(s + n - t));
            if (close && !known_section(t + 1, (size_t)(close - t - 1))) {
                snprintf(err, errlen, "%s:%d: unknown section [%.*s]", name, line,
                         (int)(close - t - 1), t + 1);
                return -1;
            }
        }
        s = e ? e + 1 : s + strlen(s);
    }
    return 0;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    c->connections = 2;
    c->shutdown_timeout = 10;
    c->connect_timeout = 1;
    c->reply_timeout = 10;
    c->validate_after = 1;
    c->ping_timeout = 0.3;
    c->ping_interval = 15;
    c->tcp_keepalive = 30;
    c->tcp_user_timeout = 10;
    c->retry_reads = 1;
    c->max_leased = 64;
    c->min_idle_leases = 2;
    c->max_users = 32;
    c->user_idle_timeout = 60;
    c->check_interval = 1;
    c->down_after = 3;
    c->max_connections = 10000;
    c->max_pipeline = 10000;
    c->admin_reserved = 4;
    c->slowlog_max_len = 128;
    c->slowlog_slower_than = 0.01;
    c->hotkeys_sample = 32;
    c->metrics_max_apps = 20;
    c->read_from = READ_UNSET;
    c->replica_max_lag = 5;
    c->read_your_writes = RYW_OFFSET;
    c->ryw_window = 2;
    c->failover_wait = 5;
    c->max_query_buffer = 64 * 1024 * 1024;
    c->max_output_buffer = 64 * 1024 * 1024;
    c->log_level = LOG_INFO;
    c->sentinel_tls = -1;
}

static int check_config(struct config *c, const char *name, char *err, size_t errlen)
{
    if (c->cluster.n && (c->master || c->sentinels.n || c->replicas.n)) {
        snprintf(err, errlen, "%s: upstream.cluster excludes upstream.%s (the nodes come from "
                 "the cluster's slot map)", name,
                 c->master ? "master" : c->sentinels.n ? "sentinels" : "replicas");
        return -1;
    }
    if (c->cluster.n && c->database != 0) {
        snprintf(err, errlen, "%s: upstream.database = %d with upstream.cluster: a cluster has "
                 "database 0 only", name, c->database);
        return -1;
    }
    if (!c->master && !c->sentinels.n && !c->cluster.n) {
        snprintf(err, errlen, "%s: upstream.master (or upstream.sentinels, or upstream.cluster) "
                 "is required", name);
        return -1;
    }
    if (c->sentinels.n && !c->master_name) {
        snprintf(err, errlen, "%s: upstream.sentinels needs upstream.master_name", name);
        return -1;
    }
    if (!c->sentinels.n && (c->master_name || c->sentinel_password)) {
        snprintf(err, errlen, "%s: upstream.%s needs upstream.sentinels", name,
                 c->master_name ? "master_name" : "sentinel_password");
        return -1;
    }
    if (c->sentinel_tls >= 0 && !c->sentinels.n) {
        snprintf(err, errlen, "%s: upstream.sentinel_tls needs upstream.sentinels", name);
        return -1;
    }
    if (c->sentinel_tls < 0)
        c->sentinel_tls = c->tls;
    if (!c->tls_cert_file != !c->tls_key_file) {
        snprintf(err, errlen, "%s: upstream.%s needs upstream.%s", name,
                 c->tls_cert_file ? "tls_cert_file" : "tls_key_file",
                 c->tls_cert_file ? "tls_key_file" : "tls_cert_file");
        return -1;
    }
    if (c->min_idle_leases > c->max_leased) {
        snprintf(err, errlen, "%s: pool.min_idle_leases (%d) is over pool.max_leased (%d)",
                 name, c->min_idle_leases, c->max_leased);
        return -1;
    }
    if (c->tcp_keepalive > 0 && c->tcp_keepalive < 1) {
        snprintf(err, errlen, "%s: pool.tcp_keepalive: 0 (off) or at least 1s", name);
        return -1;
    }
    if (c->username && !c->upstream_password) {
        snprintf(err, errlen, "%s: upstream.username needs upstream.password", name);
        return -1;
    }
    if (c->listen.n == 0)
        c->listen.v[c->listen.n++] = strdup("127.0.0.1:6380");
    if (c->read_from == READ_UNSET)
        c->read_from = c->replicas.n || c->sentinels.n ? READ_PREFER_REPLICA : READ_MASTER;
    if (c->read_from == READ_REPLICA && c->replicas.n == 0 && c->sentinels.n == 0 &&
        c->cluster.n == 0) {
        snprintf(err, errlen, "%s: routing.read_from = replica needs upstream.replicas, "
                 "upstream.sentinels or upstream.cluster", name);
        return -1;
    }
    return 0;
}

int config_load_string(struct config *c, const char *text, const char *name,
                       char *err, size_t errlen)
{
    struct parse_ctx pc = {.c = c};

    if (prescan(text, name, err, errlen) < 0)
        return -1;
    int line = ini_parse_string(text, on_key, &pc);
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", name, line,
                 pc.why[0] ? pc.why : "syntax error");
        return -1;
    }
    return check_config(c, name, err, errlen);
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct buf b = {0};
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, got);
    fclose(f);
    buf_append(&b, "", 1);
    if (strlen(b.data) != b.len - 1) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        buf_free(&b);
        return -1;
    }
    int rc = config_load_string(c, b.data, path, err, errlen);
    buf_free(&b);
    return rc;
}

void config_free(struct config *c)
{
    for (int i = 0; i < c->listen.n; i++)
        free(c->listen.v[i]);
    for (int i = 0; i < c->replicas.n; i++)
        free(c->replicas.v[i]);
    for (int i = 0; i < c->sentinels.n; i++)
        free(c->sentinels.v[i]);
    for (int i = 0; i < c->cluster.n; i++)
        free(c->cluster.v[i]);
    free(c->master_name);
    free(c->sentinel_password);
    free(c->password);
    free(c->master);
    free(c->username);
    free(c->upstream_password);
    free(c->tls_ca_file);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_server_name);
    free(c->admin_password);
    free(c->admin_socket);
    free(c->metrics_listen);
    memset(c, 0, sizeof *c);
}

static void dump_value(const struct key *k, const void *v, struct buf *b)
{
    if (k->parse == p_string || k->parse == p_addr || k->parse == p_path) {
        const char *s = *(char *const *)v;
        /* secrets are shown as set or not, never their value */
        buf_appendf(b, "%s", !s ? "" : strstr(k->name, "password") ? "(set)" : s);
    } else if (k->parse == p_int) {
        buf_appendf(b, "%d", *(const int *)v);
    } else if (k->parse == p_duration) {
        buf_appendf(b, "%gs", *(const double *)v);
    } else if (k->parse == p_size) {
        buf_appendf(b, "%zub", *(const size_t *)v);
    } else if (k->parse == p_bool) {
        buf_appendf(b, "%s", *(const int *)v ? "on" : "off");
    } else if (k->parse == p_enum) {
        buf_appendf(b, "%s", k->choices[*(const int *)v]);
    } else if (k->parse == p_loglevel) {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        buf_appendf(b, "%s", names[*(const enum log_level *)v]);
    } else if (k->parse == p_addrs) {
        const struct addr_list *l = v;
        for (int i = 0; i < l->n; i++)
            buf_appendf(b, "%s%s", i ? ", " : "", l->v[i]);
    } else if (k->parse == p_cidrs) {
        const struct cidr_list *l = v;
        char c[64];
        for (int i = 0; i < l->n; i++) {
            cidr_format(&l->item[i], c, sizeof c);
            buf_appendf(b, "%s%s", i ? ", " : "", c);
        }
    }
}

int config_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int config_same_list(const struct addr_list *a, const struct addr_list *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return 0;
    return 1;
}

int config_nodes_changed(const struct config *a, const struct config *b)
{
    return !config_same_str(a->master, b->master) || !config_same_list(&a->replicas, &b->replicas);
}

int config_links_changed(const struct config *a, const struct config *b)
{
    return a->database != b->database || a->connections != b->connections;
}

int config_cluster_changed(const struct config *a, const struct config *b)
{
    return !config_same_list(&a->cluster, &b->cluster);
}

int config_sentinels_changed(const struct config *a, const struct config *b)
{
    return !config_same_list(&a->sentinels, &b->sentinels) ||
           !config_same_str(a->master_name, b->master_name) ||
           !config_same_str(a->sentinel_password, b->sentinel_password);
}

const char *config_app_key_name(int kind)
{
    return app_key_names[kind];
}

void config_dump(const struct config *c, struct buf *b)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        buf_appendf(b, "%s.%s:", k->section, k->name);
        dump_value(k, (const char *)c + k->off, b);
        buf_append(b, "\r\n", 2);
    }
}
