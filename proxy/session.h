/* The commands that act on the app's own connection, answered by the
 * proxy: AUTH, HELLO, QUIT, SELECT (of the configured database) and the
 * CLIENT family. */
#ifndef SIDECAR_SESSION_H
#define SIDECAR_SESSION_H

#include "../lib/resp.h"
#include "command.h"

struct client;

void session_command(struct client *c, const struct command *cmd, const char *frame,
                     const struct resp_frame *fr);

#endif
