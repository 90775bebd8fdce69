/* Where a framed request goes: answered here, refused, or to a link. */
#ifndef SIDECAR_ROUTER_H
#define SIDECAR_ROUTER_H

#include "../lib/resp.h"

struct client;

void router_dispatch(struct client *c, const char *frame, const struct resp_frame *fr);

#endif
