/* Holding and finishing: PROXY PAUSE / PROXY RESUME (new requests wait
 * unread, without an error; PAUSE answers once the requests in flight are
 * answered) and the drain a stop signal starts (no new connections or
 * requests, every request in flight answered, clients closed as they are
 * done, the loop ended once none is left or at shutdown_timeout). */
#ifndef SIDECAR_PAUSE_H
#define SIDECAR_PAUSE_H

#include "sidecar.h"

struct client;

/* PROXY PAUSE [timeout]: t seconds, 0 for none; c gets +OK once quiet. */
void pause_requests(struct client *c, double t);
void pause_resume(struct sidecar *sc, const char *why);
/* c's next request waits, unread, for PROXY RESUME. */
void pause_wait(struct client *c);
/* The first stop signal. */
void pause_drain(struct sidecar *sc);
/* At exit: timers stopped, a deferred PAUSE reply dropped. */
void pause_stop(struct sidecar *sc);

#endif
