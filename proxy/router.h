/* Where a framed request goes: answered here, refused, or to a link. */
#ifndef SIDECAR_ROUTER_H
#define SIDECAR_ROUTER_H

#include "../lib/resp.h"

struct client;

enum { ROUTE_DONE, ROUTE_LATER, ROUTE_WAIT_LEASE, ROUTE_WAIT_PAUSE };

/* ROUTE_LATER: not now (it must wait for the client's requests in flight);
 * ROUTE_WAIT_LEASE: every lease is taken, try again shortly;
 * ROUTE_WAIT_PAUSE: PROXY PAUSE holds it until PROXY RESUME. Either way
 * the caller keeps the request and tries again. */
int router_dispatch(struct client *c, const char *frame, const struct resp_frame *fr);

#endif
