/* Config parsing: defaults, units, and every error path with its line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proxy/config.h"
#include "check.h"

static char err[512];

/* Parse text; returns 0/-1 and leaves the reason in err. */
static int load(struct config *c, const char *text)
{
    config_free(c);
    config_defaults(c);
    err[0] = '\0';
    return config_load_string(c, text, "t.ini", err, sizeof err);
}

static int fails_with(const char *text, const char *want)
{
    struct config c;
    config_defaults(&c);
    int rc = load(&c, text);
    config_free(&c);
    if (rc == 0 || strcmp(err, want) != 0) {
        printf("  text: %s\n  want: %s\n  got:  %s\n", text, want, rc ? err : "(accepted)");
        return 0;
    }
    return 1;
}

static void test_defaults_and_values(void)
{
    struct config c;
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n") == 0);
    CHECK(c.connections == 2);
    CHECK(c.connect_timeout == 1.0 && c.reply_timeout == 10.0);
    CHECK(c.max_query_buffer == 64u << 20 && c.max_output_buffer == 64u << 20);
    CHECK(c.listen.n == 1 && strcmp(c.listen.v[0], "127.0.0.1:6380") == 0);
    CHECK(c.password == NULL && c.database == 0 && c.log_level == LOG_INFO);
    CHECK(c.max_connections == 10000 && c.max_connections_per_ip == 0 &&
          c.max_pipeline == 10000 && c.admin_reserved == 4);
    /* no address is an admin by default, and there is no admin socket */
    CHECK(c.allow.n == 0 && c.deny.n == 0 && c.admin_allow.n == 0 && c.admin_socket == NULL);
    CHECK(c.validate_after == 1 && c.ping_timeout == 0.3 && c.ping_interval == 15 &&
          c.retry_reads == 1 && c.check_interval == 1 && c.down_after == 3);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n[clients]\nallow = 10.0.0.0/8\n"
                   "allow = ::1\ndeny = 10.1.0.0/16\n[admin]\nallow = 127.0.0.1\n"
                   "[pool]\nretry_reads = off\n") == 0);
    CHECK(c.allow.n == 2 && c.deny.n == 1 && c.admin_allow.n == 1 && c.retry_reads == 0);

    CHECK(load(&c, "[proxy]\nlisten = 127.0.0.1:1, unix:/tmp/x.sock\n"
                   "listen = [::1]:2\npassword = p ; comment\n"
                   "[upstream]\nmaster = localhost:7000\nusername = u\npassword = up\n"
                   "database = 3\n[pool]\nconnections = 4\nconnect_timeout = 250ms\n"
                   "reply_timeout = 2m\n[clients]\nmax_query_buffer = 1kb\n"
                   "max_output_buffer = 2gb\n[log]\nlevel = debug\n") == 0);
    CHECK(c.listen.n == 3 && strcmp(c.listen.v[1], "unix:/tmp/x.sock") == 0 &&
          strcmp(c.listen.v[2], "[::1]:2") == 0);
    CHECK(strcmp(c.password, "p") == 0 && strcmp(c.username, "u") == 0 &&
          strcmp(c.upstream_password, "up") == 0);
    CHECK(c.database == 3 && c.connections == 4);
    CHECK(c.connect_timeout == 0.25 && c.reply_timeout == 120);
    CHECK(c.max_query_buffer == 1024 && c.max_output_buffer == 2048ull << 20);
    CHECK(c.log_level == LOG_DEBUG);
    config_free(&c);

    /* Sentinels: the master is optional, list values add up, reads go to
     * replicas by default (they come from the sentinels). */
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nsentinels = 127.0.0.1:26380, 127.0.0.1:26381\n"
                   "sentinels = 127.0.0.1:26382\nmaster_name = mymaster\n"
                   "sentinel_password = sp\n[routing]\nfailover_wait = 2500ms\n") == 0);
    CHECK(c.master == NULL && c.sentinels.n == 3 && strcmp(c.sentinels.v[2], "127.0.0.1:26382") == 0);
    CHECK(strcmp(c.master_name, "mymaster") == 0 && strcmp(c.sentinel_password, "sp") == 0);
    CHECK(c.failover_wait == 2.5 && c.read_from == READ_PREFER_REPLICA);
    config_free(&c);
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n") == 0 && c.failover_wait == 5);
    config_free(&c);
}

/* The local-app keys (issue 18): defaults, values, and their errors. */
static void test_app_keys(void)
{
    struct config c;
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n") == 0);
    CHECK(c.app_key == 0 && c.max_connections_per_app == 0);          /* service, off */
    CHECK(c.slowlog_max_len == 128 && c.slowlog_slower_than == 0.01 && c.hotkeys_sample == 32);
    CHECK(c.metrics_max_apps == 20);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n[clients]\napp_key = process\n"
                   "max_connections_per_app = 200\nslowlog_max_len = 0\n"
                   "slowlog_slower_than = 250ms\nhotkeys_sample = 1\n"
                   "[admin]\nmetrics_max_apps = 0\n") == 0);
    CHECK(c.app_key == 2 && c.max_connections_per_app == 200 && c.slowlog_max_len == 0);
    CHECK(c.slowlog_slower_than == 0.25 && c.hotkeys_sample == 1 && c.metrics_max_apps == 0);
    config_free(&c);
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\napp_key = pid\n",
                     "t.ini:4: clients.app_key: \"pid\" is not one of service, uid, process, ip"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\n"
                     "max_connections_per_app = -1\n",
                     "t.ini:4: clients.max_connections_per_app: \"-1\" not in 0..1000000"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[admin]\nmetrics_max_apps = 5000\n",
                     "t.ini:4: admin.metrics_max_apps: \"5000\" not in 0..1000"));
}

/* The TLS keys (issue 19): off by default, sentinel_tls following tls
 * unless given, and what is refused. */
static void test_tls_keys(void)
{
    struct config c;
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nmaster = 127.0.0.1:7000\n") == 0);
    CHECK(c.tls == 0 && c.sentinel_tls == 0 && c.tls_verify == 0 && !config_uses_tls(&c));
    CHECK(!c.tls_ca_file && !c.tls_cert_file && !c.tls_key_file && !c.tls_server_name);
    config_free(&c);
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nsentinels = 127.0.0.1:26380\nmaster_name = m\ntls = on\n"
                   "tls_ca_file = /etc/ca.pem\ntls_cert_file = c.crt\ntls_key_file = c.key\n"
                   "tls_server_name = redis.example\ntls_verify = ca\n") == 0);
    CHECK(c.tls == 1 && c.sentinel_tls == 1 && c.tls_verify == 1 && config_uses_tls(&c));
    CHECK(strcmp(c.tls_ca_file, "/etc/ca.pem") == 0 && strcmp(c.tls_key_file, "c.key") == 0);
    CHECK(strcmp(c.tls_server_name, "redis.example") == 0);
    config_free(&c);
    /* sentinels in TLS, servers not (or the other way round) */
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nsentinels = 127.0.0.1:26380\nmaster_name = m\n"
                   "sentinel_tls = on\ntls_verify = off\n") == 0);
    CHECK(c.tls == 0 && c.sentinel_tls == 1 && c.tls_verify == 2 && config_uses_tls(&c));
    config_free(&c);
    config_defaults(&c);
    CHECK(load(&c, "[upstream]\nsentinels = 127.0.0.1:26380\nmaster_name = m\ntls = on\n"
                   "sentinel_tls = off\n") == 0);
    CHECK(c.tls == 1 && c.sentinel_tls == 0);
    config_free(&c);
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\ntls_verify = none\n",
                     "t.ini:3: upstream.tls_verify: \"none\" is not one of full, ca, off"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\ntls = maybe\n",
                     "t.ini:3: upstream.tls: \"maybe\" is not on or off"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\ntls = on\ntls_cert_file = c.crt\n",
                     "t.ini: upstream.tls_cert_file needs upstream.tls_key_file"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\ntls_key_file = c.key\n",
                     "t.ini: upstream.tls_key_file needs upstream.tls_cert_file"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nsentinel_tls = on\n",
                     "t.ini: upstream.sentinel_tls needs upstream.sentinels"));
}

static void test_units(void)
{
    double d;
    size_t s;
    CHECK(config_parse_duration("1s", &d) == 0 && d == 1);
    CHECK(config_parse_duration("1.5s", &d) == 0 && d == 1.5);
    CHECK(config_parse_duration("300ms", &d) == 0 && d == 0.3);
    CHECK(config_parse_duration("2m", &d) == 0 && d == 120);
    CHECK(config_parse_duration("0", &d) == 0 && d == 0);
    CHECK(config_parse_duration("10", &d) < 0);
    CHECK(config_parse_duration("s", &d) < 0);
    CHECK(config_parse_duration("-1s", &d) < 0);
    CHECK(config_parse_duration("1h", &d) < 0);
    CHECK(config_parse_duration("1 s", &d) < 0);
    CHECK(config_parse_size("64mb", &s) == 0 && s == 64u << 20);
    CHECK(config_parse_size("3kb", &s) == 0 && s == 3072);
    CHECK(config_parse_size("1gb", &s) == 0 && s == 1u << 30);
    CHECK(config_parse_size("7b", &s) == 0 && s == 7);
    CHECK(config_parse_size("0", &s) == 0 && s == 0);
    CHECK(config_parse_size("10", &s) < 0);
    CHECK(config_parse_size("mb", &s) < 0);
    CHECK(config_parse_size("1tb", &s) < 0);
    /* Past SIZE_MAX: refused before the product is made (a conversion out
     * of range is undefined; UBSan in make fuzz caught it). */
    CHECK(config_parse_size("99999999999999999999gb", &s) == -2);
    CHECK(config_parse_size("17179869184gb", &s) == -2);
    CHECK(config_parse_size("1e300b", &s) == -2);
    CHECK(config_parse_size("17179869183gb", &s) == 0 && s == 17179869183ull << 30);
}

static void test_errors(void)
{
    const char *m = "[upstream]\nmaster = 127.0.0.1:7000\n";
    char text[1024];

    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nconnections = 0\n",
                     "t.ini:4: pool.connections: \"0\" not in 1..64"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n\n[pool]\nconnections = many\n",
                     "t.ini:5: pool.connections: \"many\" not in 1..64"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nmastr = x\n",
                     "t.ini:3: unknown key upstream.mastr"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[nope]\nx = 1\n",
                     "t.ini:3: unknown section [nope]"));
    CHECK(fails_with("[nope]\n[upstream]\nmaster = 127.0.0.1:7000\n",
                     "t.ini:1: unknown section [nope]"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nmaster = 127.0.0.1:7001\n",
                     "t.ini:3: upstream.master: given twice"));
    CHECK(fails_with("[proxy]\nlisten = 127.0.0.1:1, 127.0.0.1:1\n[upstream]\nmaster = 127.0.0.1:7000\n",
                     "t.ini:2: proxy.listen: 127.0.0.1:1 listed twice"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1\n",
                     "t.ini:2: upstream.master: \"127.0.0.1\" is not host:port"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:99999\n",
                     "t.ini:2: upstream.master: bad port \"99999\""));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nconnect_timeout = 5\n",
                     "t.ini:4: pool.connect_timeout: \"5\" is not a duration with a unit (ms, s, m)"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nreply_timeout = 0s\n",
                     "t.ini:4: pool.reply_timeout: \"0s\" not in 0.01s..3600s"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\nmax_query_buffer = 64\n",
                     "t.ini:4: clients.max_query_buffer: \"64\" is not a size with a unit (b, kb, mb, gb)"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\nmax_output_buffer = 10b\n",
                     "t.ini:4: clients.max_output_buffer: \"10b\" not in 1024..4293918720 bytes"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\n"
                     "max_query_buffer = 99999999999999999999gb\n",
                     "t.ini:4: clients.max_query_buffer: \"99999999999999999999gb\" "
                     "not in 1024..2146435072 bytes"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nconnect_timeout = 1e308m\n",
                     "t.ini:4: pool.connect_timeout: \"1e308m\" not in 0.01s..60s"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[log]\nlevel = loud\n",
                     "t.ini:4: log.level: \"loud\" is not one of error, warn, info, debug"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[upstream]\ndatabase = -1\n",
                     "t.ini:4: upstream.database: \"-1\" not in 0..100000"));
    CHECK(fails_with("[proxy]\nlisten = 127.0.0.1:1, nonsense\n[upstream]\nmaster = 127.0.0.1:7000\n",
                     "t.ini:2: proxy.listen: \"nonsense\" is not host:port"));
    CHECK(fails_with("[proxy]\npassword =\n[upstream]\nmaster = 127.0.0.1:7000\n",
                     "t.ini:2: proxy.password: empty value"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nthis line has no equals\n",
                     "t.ini:3: syntax error"));
    CHECK(fails_with("[pool]\nconnections = 2\n",
                     "t.ini: upstream.master (or upstream.sentinels, or upstream.cluster) is required"));
    CHECK(fails_with("[upstream]\nsentinels = 127.0.0.1:26379\n",
                     "t.ini: upstream.sentinels needs upstream.master_name"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nmaster_name = m\n",
                     "t.ini: upstream.master_name needs upstream.sentinels"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nsentinel_password = p\n",
                     "t.ini: upstream.sentinel_password needs upstream.sentinels"));
    CHECK(fails_with("[upstream]\nsentinels = 127.0.0.1:26379, unix:/tmp/s\nmaster_name = m\n",
                     "t.ini:2: upstream.sentinels: a unix socket is not a node"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[routing]\nfailover_wait = 0\n",
                     "t.ini:4: routing.failover_wait: \"0\" not in 0.01s..3600s"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\nusername = u\n",
                     "t.ini: upstream.username needs upstream.password"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[clients]\ndeny = 10.0.0.0/8, 300.1.1.1\n",
                     "t.ini:4: clients.deny: \"300.1.1.1\" is not an address or CIDR range"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nretry_reads = maybe\n",
                     "t.ini:4: pool.retry_reads: \"maybe\" is not on or off"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[admin]\nreserved = -1\n",
                     "t.ini:4: admin.reserved: \"-1\" not in 0..1000"));
    struct config sock;
    config_defaults(&sock);
    CHECK(load(&sock, "[upstream]\nmaster = 127.0.0.1:7000\n[admin]\nsocket = /run/a.sock\n") == 0 &&
          sock.admin_socket && strcmp(sock.admin_socket, "/run/a.sock") == 0);
    config_free(&sock);
    /* The admin socket's path must fit a unix socket address. */
    char longpath[200];
    snprintf(longpath, sizeof longpath, "[upstream]\nmaster = 127.0.0.1:7000\n[admin]\n"
             "socket = /%0120d\n", 0);
    CHECK(fails_with(longpath, "t.ini:4: admin.socket: \"/000000000000000000000000000000"
                     "000000000000000000000000000000000000000000000000000000000000000000000000"
                     "000000000000000000\" is longer than a unix socket path may be (107 bytes)"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[routing]\nread_from = both\n",
                     "t.ini:4: routing.read_from: \"both\" is not one of master, prefer-replica, replica"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[routing]\nread_your_writes = yes\n",
                     "t.ini:4: routing.read_your_writes: \"yes\" is not one of offset, window, off"));
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\n[routing]\nread_from = replica\n",
                     "t.ini: routing.read_from = replica needs upstream.replicas, "
                     "upstream.sentinels or upstream.cluster"));
    /* The first error wins, with its own line. */
    CHECK(fails_with("[upstream]\nmaster = 127.0.0.1:7000\ndatabase = x\n[pool]\nconnections = 0\n",
                     "t.ini:3: upstream.database: \"x\" not in 0..100000"));
    /* Lines libinih would split silently are refused. */
    snprintf(text, sizeof text, "%s[proxy]\npassword = %0200d\n", m, 7);
    CHECK(fails_with(text, "t.ini:4: line too long"));
}

static void test_file(void)
{
    struct config c;
    char path[] = "/tmp/sidecar-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "; comment\n[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nconnections = 99\n";

    CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    config_defaults(&c);
    char want[128];
    snprintf(want, sizeof want, "%s:5: pool.connections: \"99\" not in 1..64", path);
    CHECK(config_load(&c, path, err, sizeof err) < 0 && strcmp(err, want) == 0);
    config_free(&c);
    unlink(path);
    config_defaults(&c);
    CHECK(config_load(&c, "/nonexistent/proxy.ini", err, sizeof err) < 0 &&
          strcmp(err, "/nonexistent/proxy.ini: No such file or directory") == 0);
    config_free(&c);
}

int main(void)
{
    test_app_keys();
    test_tls_keys();
    test_defaults_and_values();
    test_units();
    test_errors();
    test_file();
    CHECK_DONE();
}
