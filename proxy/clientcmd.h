/* The CLIENT family for app connections (redis 7.0's subcommands, filters,
 * fields and errors), answered with each app connection's own values, or
 * sent to the master translated to the server connection that serves it. */
#ifndef SIDECAR_CLIENTCMD_H
#define SIDECAR_CLIENTCMD_H

#include "../lib/buf.h"
#include "../lib/resp.h"
#include "command.h"

struct client;

/* CLIENT ... answered (or sent on) for c. */
void clientcmd(struct client *c, const struct resp_args *a, const char *frame,
               const struct resp_frame *fr);
/* A CLIENT command about to go on c's stream lease (TRACKING, CACHING,
 * REPLY, or any while it streams): its state is noted, and TRACKING's
 * REDIRECT id rewritten to the named connection's id on the server. 0:
 * send frame as it is; 1: send out instead; -1: answered with an error. */
int clientcmd_stream(struct client *c, const char *frame, const struct resp_frame *fr,
                     struct buf *out);
/* A command about to go on c's lease inside MULTI (or ending it): a
 * CLIENT PAUSE queued there starts the master's quiet window at EXEC. */
void clientcmd_in_multi(struct client *c, const struct command *cmd, const char *frame,
                        const struct resp_frame *fr);
/* HELLO [protover] about to go on c's stream: c and its lease switch
 * protocol with it. -1: answered with an error. */
int clientcmd_hello(struct client *c, const char *frame, const struct resp_frame *fr);
/* Any request about to go on c's stream: the replies it is owed are
 * counted, so that a GETREDIR or TRACKINGINFO reply is known when it comes. */
void clientcmd_streamed(struct client *c, const struct command *cmd, const char *frame,
                        const struct resp_frame *fr);
/* A frame from c's stream: subscription counts noted; a GETREDIR or
 * TRACKINGINFO reply gets the app connection's id for the server's (then
 * out holds the frame to send instead). 1: drop it (a MONITOR line of the
 * proxy's own commands). */
int clientcmd_stream_frame(struct client *c, const char *p, size_t n, struct buf *out);

/* Redis's answer to a CLIENT PAUSE or DEBUG SLEEP (REQ_QUIET): +OK to a
 * pause starts the master's quiet window, a refused DEBUG SLEEP ends the
 * one its sending started. */
void clientcmd_quiet_answered(struct client *c, const char *req, size_t reqlen, const char *p,
                              size_t n);

#endif
