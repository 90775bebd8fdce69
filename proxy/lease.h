/* A client's lease: its own connection to the master while it holds
 * server-side state. Taken from the master's pool, or waited for on the
 * pool's wait list (up to connect_timeout: a pool at max_leased hands one
 * over as soon as one comes back); what the client leaves held on it
 * (MULTI, WATCH, another database), so that client.c gives it back once
 * it holds nothing; and what a lost one means for its holder. */
#ifndef SIDECAR_LEASE_H
#define SIDECAR_LEASE_H

#include "sidecar.h"

struct client;

/* 1: c holds a lease now; 0: c waits for one (on the pool's list); -1: it
 * got an error reply (none came in time, or out of memory). */
int lease_take(struct client *c, struct node *n);
/* What the request about to go on the lease leaves held there (db, db_ok:
 * a SELECT's argument); a WAIT first brings the lease's replication
 * offset past the client's writes on shared links. */
void lease_note(struct client *c, const struct command *cmd, long long db, int db_ok);
/* Pool callbacks: the holder's lease died; a waiter's turn came. */
int lease_lost(void *lessee, int unrun, void *arg);
/* A request of c's that a lease lost before it went out, back in c's
 * input (in order, before what c had not sent yet). */
void lease_unrun(struct client *c, struct req *r, const char *req);
/* Pool callback: bytes a stream lease lost unready had for its server
 * (SUBSCRIBE...), back in its holder's input the same way. */
void lease_stream_unrun(void *lessee, const char *p, size_t n, void *arg);
void lease_ready(void *who, struct link *l, void *arg);

#endif
