/* The commands that act on the app's own connection, answered by the
 * proxy: AUTH, HELLO, QUIT, SELECT (of the configured database) and the
 * CLIENT family. */
#ifndef SIDECAR_SESSION_H
#define SIDECAR_SESSION_H

#include "../lib/resp.h"
#include "command.h"

struct client;
struct req;

void session_command(struct client *c, const struct command *cmd, const char *frame,
                     const struct resp_frame *fr);

/* A name CLIENT SETNAME (or HELLO SETNAME) may give: printable, no spaces. */
int session_valid_name(const char *p, size_t n);
void session_set_name(struct client *c, const char *p, size_t n);
/* Redis's answer to an AUTH the session sent for an app (REQ_AUTH). */
void session_auth_answered(struct client *c, struct req *r, const char *req, const char *p,
                           size_t n, const char *err);

#endif
