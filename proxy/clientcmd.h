/* The CLIENT family for app connections (redis 7.0's subcommands, filters,
 * fields and errors), answered with each app connection's own values, or
 * sent to the master translated to the server connection that serves it. */
#ifndef SIDECAR_CLIENTCMD_H
#define SIDECAR_CLIENTCMD_H

#include "../lib/resp.h"
#include "command.h"

struct client;

/* The app connection with this id that c may see (its own ACL user's,
 * or any for an admin); NULL if none. */
struct client *clientcmd_find(const struct client *c, long long id);
/* CLIENT ... answered (or sent on) for c. */
void clientcmd(struct client *c, const struct resp_args *a, const char *frame,
               const struct resp_frame *fr);
/* Redis's answer to a CLIENT PAUSE or DEBUG SLEEP (REQ_QUIET): +OK to a
 * pause starts the master's quiet window, a refused DEBUG SLEEP ends the
 * one its sending started. */
void clientcmd_quiet_answered(struct client *c, const char *req, size_t reqlen, const char *p,
                              size_t n);

/* A command about to go on c's lease inside MULTI (or ending it): a
 * CLIENT PAUSE queued there starts the master's quiet window at EXEC. */
void clientcmd_in_multi(struct client *c, const struct command *cmd, const char *frame,
                        const struct resp_frame *fr);

#endif
