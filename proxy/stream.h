/* A lease in stream mode: the replies it owes its client counted, the
 * server's ids in them translated, subscriptions counted, the proxy's own
 * MONITOR lines dropped (stream.c). */
#ifndef SIDECAR_STREAM_H
#define SIDECAR_STREAM_H

#include "../lib/buf.h"
#include "../lib/resp.h"
#include "command.h"

struct client;

/* A CLIENT command about to go on c's stream lease (TRACKING, CACHING,
 * REPLY, or any while it streams): its state is noted, and TRACKING's
 * REDIRECT id rewritten to the named connection's id on the server. 0:
 * send frame as it is; 1: send out instead; -1: answered with an error. */
int stream_client_cmd(struct client *c, const char *frame, const struct resp_frame *fr,
                      struct buf *out);
/* HELLO [protover] about to go on c's stream: c and its lease switch
 * protocol with it. -1: answered with an error. */
int stream_hello(struct client *c, const char *frame, const struct resp_frame *fr);
/* Any request about to go on c's stream: the replies it is owed are
 * counted, so that a GETREDIR or TRACKINGINFO reply is known when it comes. */
void stream_counted(struct client *c, const struct command *cmd, const char *frame,
                    const struct resp_frame *fr);
/* A frame from c's stream: subscription counts noted; a GETREDIR or
 * TRACKINGINFO reply gets the app connection's id for the server's (then
 * out holds the frame to send instead). 1: drop it (a MONITOR line of the
 * proxy's own commands). */
int stream_frame(struct client *c, const char *p, size_t n, struct buf *out);

#endif
