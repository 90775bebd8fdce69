/* Request routing. With one master, a request is answered here (local
 * commands), refused (commands that need a dedicated link, which the
 * shared ones cannot give), or forwarded on the client's own link. */
#include "router.h"

#include <stdio.h>
#include <strings.h>

#include "admin.h"
#include "client.h"

/* XREAD and XREADGROUP block only when given BLOCK, among the options
 * before STREAMS (after it come key names, which may be called "block"). */
static int has_block_arg(const char *frame, size_t len)
{
    size_t pos = 0, n;
    const char *a;

    while (resp_next_arg(frame, len, &pos, &a, &n)) {
        if (n == 7 && strncasecmp(a, "streams", 7) == 0)
            return 0;
        if (n == 5 && strncasecmp(a, "block", 5) == 0)
            return 1;
    }
    return 0;
}

static int needs_auth(const struct client *c, const struct command *cmd)
{
    return !c->authed && !(cmd && (cmd->local == LOCAL_AUTH ||
                                   cmd->local == LOCAL_HELLO ||
                                   cmd->local == LOCAL_QUIT));
}

static void forward(struct client *c, const char *frame, size_t len, unsigned flags)
{
    struct pool *m = c->sc->master;

    if (m->down) {
        c->sc->st.err_node_down++;
        client_reply_error(c, "ERR upstream %s is down (%s)", m->cfg.name, m->down_reason);
        return;
    }
    client_forward(c, pool_link_for(m, c->id), frame, len, flags);
}

void router_dispatch(struct client *c, const char *frame, const struct resp_frame *fr)
{
    struct sidecar *sc = c->sc;
    const char *name = frame + fr->name_off;
    int nl = fr->name_len > 40 ? 40 : (int)fr->name_len;
    const struct command *cmd = command_lookup(&sc->cmds, name, fr->name_len);

    c->last_cmd = cmd;

    if (needs_auth(c, cmd)) {
        sc->st.err_auth++;
        client_reply_error(c, "NOAUTH Authentication required.");
        return;
    }
    if (!cmd) {
        forward(c, frame, fr->len, 0);
        return;
    }
    if (cmd->flags & CMD_LOCAL) {
        admin_local(c, cmd, frame, fr);
        return;
    }
    if (cmd->flags & CMD_REFUSED) {
        sc->st.err_refused++;
        client_reply_error(c, "ERR '%.*s' is not allowed through redis-sidecar "
                           "(it acts on the server's connections or replication)",
                           nl, name);
        return;
    }
    if ((cmd->flags & CMD_STATEFUL) ||
        ((cmd->flags & CMD_MAYBLOCK) && has_block_arg(frame, fr->len))) {
        sc->st.err_unsupported++;
        client_reply_error(c, "ERR '%.*s' is not supported by redis-sidecar yet "
                           "(it needs a dedicated server connection)", nl, name);
        return;
    }
    forward(c, frame, fr->len, (cmd->flags & CMD_READONLY) ? REQ_READONLY : 0);
}
