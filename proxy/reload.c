/* Re-reading proxy.ini while running (SIGHUP, PROXY RELOAD). The new file
 * is parsed whole first: an invalid one changes nothing. Most keys are
 * read from sc->cfg where they are used, so swapping the struct applies
 * them; the copies pools and checkers keep are updated here. What cannot
 * change live yet (addresses, credentials, pool size) keeps its running
 * value and is reported. No app connection is closed: a lowered cap
 * applies to new connections. */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "client.h"

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_list(const struct addr_list *a, const struct addr_list *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return 0;
    return 1;
}

static void note(char *kept, size_t len, const char *key)
{
    size_t used = strlen(kept);
    snprintf(kept + used, len - used, "%s%s", used ? ", " : "", key);
}

/* Keys that need a restart keep their running value in the new config
 * (the strings are swapped, so that what pools point to stays alive). */
static void keep_restart_keys(struct config *old, struct config *nc, char *kept, size_t len)
{
#define KEEP_STR(f, key) do { \
        char *t = old->f; \
        if (!same_str(old->f, nc->f)) note(kept, len, key); \
        old->f = nc->f; nc->f = t; \
    } while (0)
#define KEEP_LIST(f, key) do { \
        struct addr_list t = old->f; \
        if (!same_list(&old->f, &nc->f)) note(kept, len, key); \
        old->f = nc->f; nc->f = t; \
    } while (0)
#define KEEP_INT(f, key) do { \
        if (old->f != nc->f) { note(kept, len, key); nc->f = old->f; } \
    } while (0)

    KEEP_LIST(listen, "proxy.listen");
    KEEP_STR(master, "upstream.master");
    KEEP_LIST(replicas, "upstream.replicas");
    KEEP_LIST(sentinels, "upstream.sentinels");
    KEEP_STR(master_name, "upstream.master_name");
    KEEP_STR(sentinel_password, "upstream.sentinel_password");
    KEEP_STR(username, "upstream.username");
    KEEP_STR(upstream_password, "upstream.password");
    KEEP_INT(database, "upstream.database");
    KEEP_INT(connections, "pool.connections");
    KEEP_STR(metrics_listen, "admin.metrics_listen");
#undef KEEP_STR
#undef KEEP_LIST
#undef KEEP_INT
}

static void update_pool(struct sidecar *sc, struct pool *p)
{
    const struct config *c = sc->cfg;
    struct pool_config *pc = &p->cfg;

    pc->connect_timeout = c->connect_timeout;
    pc->queue_timeout = sc->sentinels ? c->failover_wait : c->connect_timeout;
    pc->reply_timeout = c->reply_timeout;
    pc->retry_reads = c->retry_reads;
    pc->max_leased = c->max_leased;
    pc->validate_after = c->validate_after;
    pc->ping_timeout = c->ping_timeout;
    pc->ping_interval = c->ping_interval;
    pc->max_link_age = c->max_link_age;
    pc->tcp_keepalive = (int)c->tcp_keepalive;
    pc->tcp_user_timeout_ms = (int)(c->tcp_user_timeout * 1000);
}

static void update_checker(struct sidecar *sc, struct checker *ch)
{
    ch->cfg.down_after = sc->cfg->down_after;
    if (ch->cfg.interval != sc->cfg->check_interval) {
        ch->cfg.interval = sc->cfg->check_interval;
        ch->tick.repeat = ch->cfg.interval;
        ev_timer_again(sc->loop, &ch->tick);
    }
}

int reload_config(struct sidecar *sc, char *msg, size_t msglen)
{
    struct config *nc = malloc(sizeof *nc), *old = sc->cfg;
    char kept[400] = "";
    struct node *n;

    if (!nc) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    config_defaults(nc);
    if (config_load(nc, sc->cfg_path, msg, msglen) < 0) {
        log_warn("reload refused, nothing changed: %s", msg);
        config_free(nc);
        free(nc);
        return -1;
    }
    keep_restart_keys(old, nc, kept, sizeof kept);
    sc->cfg = nc;
    log_set_level(nc->log_level);
    sc->req_limits.max_bulk = (long long)nc->max_query_buffer < RESP_MAX_BULK
                              ? (long long)nc->max_query_buffer : RESP_MAX_BULK;
    TAILQ_FOREACH(n, &sc->nodes, tqe) {
        update_pool(sc, n->pool);
        update_checker(sc, &n->health);
    }
    ev_timer_stop(sc->loop, &sc->idle_w);
    if (nc->idle_timeout > 0) {
        double t = nc->idle_timeout / 4 < 1 ? nc->idle_timeout / 4 : 1;
        ev_timer_set(&sc->idle_w, t, t);
        ev_timer_start(sc->loop, &sc->idle_w);
    }
    config_free(old);
    free(old);
    sc->st.reloads++;
    if (kept[0]) {
        snprintf(msg, msglen, "reloaded; needs a restart to change: %s", kept);
        log_warn("%s: %s", sc->cfg_path, msg);
    } else {
        snprintf(msg, msglen, "reloaded");
        log_info("%s: reloaded", sc->cfg_path);
    }
    return 0;
}
