/* proxy.ini, parsed once into one struct. */
#ifndef SIDECAR_CONFIG_H
#define SIDECAR_CONFIG_H

#include <stddef.h>

#include "../lib/cidr.h"
#include "../lib/log.h"

#define CONFIG_MAX_ADDRS 16
#define USERS_MAX        256   /* [pool] max_users at most */

/* host:port (or unix:/path) items of a list key. */
struct addr_list {
    char *v[CONFIG_MAX_ADDRS];
    int   n;
};

enum read_from { READ_MASTER, READ_PREFER_REPLICA, READ_REPLICA, READ_UNSET };
enum ryw { RYW_OFFSET, RYW_WINDOW, RYW_OFF };

struct config {
    /* [proxy] */
    struct addr_list listen;
    char   *password;          /* NULL: clients need no AUTH */
    double  shutdown_timeout;  /* SIGTERM: how long in-flight work may finish */
    /* [upstream] */
    char   *master;            /* host:port; with sentinels, only a first guess */
    struct addr_list replicas;
    struct addr_list sentinels; /* set: the master and replicas come from them */
    struct addr_list cluster;  /* seeds of a Redis Cluster: the nodes come from its map */
    char   *master_name;       /* the name the sentinels monitor it under */
    char   *sentinel_password;
    char   *username;
    char   *upstream_password;
    int     database;
    int     tls;               /* every connection to Redis over TLS */
    char   *tls_ca_file;       /* NULL: the system's store */
    char   *tls_cert_file;     /* client certificate (tls-auth-clients) */
    char   *tls_key_file;
    char   *tls_server_name;   /* NULL: the host of each address */
    int     tls_verify;        /* enum tls_verify (lib/tls.h): full, ca, off */
    int     sentinel_tls;      /* -1 until parsed: then as tls */
    /* [pool] */
    int     connections;
    double  connect_timeout;   /* seconds */
    double  reply_timeout;
    double  validate_after;    /* 0: never validate before use */
    double  ping_timeout;
    double  ping_interval;     /* 0: no background pings */
    double  tcp_keepalive;     /* 0: off */
    double  tcp_user_timeout;  /* 0: off */
    double  max_link_age;      /* 0: off */
    int     retry_reads;
    int     max_leased;        /* dedicated links per node, busy or idle */
    int     min_idle_leases;   /* kept open and reset per node, ready for the next */
    int     max_users;         /* ACL users with pools of their own (issue 17) */
    double  user_idle_timeout; /* a user's pools close once unused this long */
    /* [health] */
    double  check_interval;
    int     down_after;        /* failed checks in a row */
    /* [routing] */
    enum read_from read_from;  /* default: prefer-replica with replicas, else master */
    double  replica_max_lag;
    enum ryw read_your_writes;
    double  ryw_window;
    double  failover_wait;     /* sentinels: writes wait this long for a master */
    /* [clients] */
    double  idle_timeout;      /* 0: off */
    int     max_connections;
    int     max_connections_per_ip;   /* 0: off */
    struct cidr_list allow;    /* empty: everyone not denied */
    struct cidr_list deny;
    int     max_pipeline;      /* pending replies before the proxy stops reading */
    int     app_key;           /* enum app_key_kind (apps.h): what an app is */
    int     max_connections_per_app; /* 0: off */
    int     slowlog_max_len;   /* PROXY SLOWLOG entries kept; 0: off */
    double  slowlog_slower_than; /* seconds, arrival to reply */
    int     hotkeys_sample;    /* one request in this many feeds PROXY HOTKEYS; 0: off */
    /* [admin] */
    struct cidr_list admin_allow; /* empty: no address makes an admin */
    char   *admin_password;
    char   *admin_socket;      /* unix socket path for admins (own user, root); NULL: off */
    int     admin_reserved;    /* slots for admins beyond max_connections */
    char   *metrics_listen;    /* host:port of the HTTP probe; NULL: off */
    int     metrics_max_apps;  /* per-app series for the busiest; the rest as app="other" */
    size_t  max_query_buffer;  /* bytes */
    size_t  max_output_buffer;
    /* [log] */
    enum log_level log_level;
};

void config_defaults(struct config *c);
/* 0, or -1 with "file:line: reason" in err. */
int config_load(struct config *c, const char *path, char *err, size_t errlen);
/* Parse one line of ini text, for tests: same rules as a file. */
int config_load_string(struct config *c, const char *text, const char *name,
                       char *err, size_t errlen);
void config_free(struct config *c);
/* The running values, "section.key:value" per line (passwords shown as
 * "(set)"), for PROXY CONFIG. */
struct buf;
void config_dump(const struct config *c, struct buf *b);
/* "service", "uid", "process" or "ip": an app_key value's name. */
const char *config_app_key_name(int kind);

/* What a reload changed, by what it moves: the upstream nodes (master,
 * replicas), the shape of their links (database, count), the sentinel
 * settings. */
int config_nodes_changed(const struct config *a, const struct config *b);
int config_links_changed(const struct config *a, const struct config *b);
int config_sentinels_changed(const struct config *a, const struct config *b);
int config_cluster_changed(const struct config *a, const struct config *b);
/* TLS used by neither the nodes nor the sentinels: no files to read. */
static inline int config_uses_tls(const struct config *c) { return c->tls || c->sentinel_tls > 0; }
int config_same_str(const char *a, const char *b);     /* NULLs equal */
int config_same_list(const struct addr_list *a, const struct addr_list *b);

/* Value parsers shared with the tests: 0 or -1; a size too large for
 * size_t is -2. */
int config_parse_duration(const char *s, double *seconds);
int config_parse_size(const char *s, size_t *bytes);

#endif
