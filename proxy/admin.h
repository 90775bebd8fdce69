/* The PROXY commands, for admins. */
#ifndef SIDECAR_ADMIN_H
#define SIDECAR_ADMIN_H

#include "../lib/resp.h"

struct client;

void admin_command(struct client *c, const char *frame, const struct resp_frame *fr);
/* 1 if c has admin rights; else 0, and c got the NOPERM error. */
int admin_allowed(struct client *c);
/* PROXY CLIENT LIST (and CLIENT LIST for admins): every app connection. */
void admin_client_list(struct client *c);

#endif
