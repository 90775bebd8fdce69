/* Commands the proxy answers itself: AUTH, HELLO, QUIT, SELECT, CLIENT
 * and the PROXY family. */
#ifndef SIDECAR_ADMIN_H
#define SIDECAR_ADMIN_H

#include "../lib/resp.h"
#include "command.h"

struct client;

void admin_local(struct client *c, const struct command *cmd, const char *frame,
                 const struct resp_frame *fr);

#endif
