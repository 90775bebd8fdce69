/* An app's requests, from the bytes it sent to what is done with each:
 * read, framed (an inline one rewritten as RESP first), routed (router.c
 * decides) and carried out here: answered by the proxy, sent on a shared
 * link or a lease, held for a master, or left unread until the client may
 * go on. The loop's flush step lives here too: it writes every client
 * with output and resumes the paused ones that may read again. */
#ifndef SIDECAR_REQUEST_H
#define SIDECAR_REQUEST_H

#include <sys/socket.h>

#include "sidecar.h"

/* A connection the listener admitted. */
void request_accept(struct sidecar *sc, int fd, const struct sockaddr_storage *peer,
                    const struct origin *o, int admin);
/* Once per loop iteration, before the pools write. */
void request_flush_all(struct sidecar *sc);

/* A request sent on l (an AUTH that Redis checks, say) in a reply slot
 * after the others; NULL when out of memory (answered with an error). */
struct req *request_forward(struct client *c, struct link *l, const char *p, size_t n,
                            unsigned flags);
/* The request just carried out is the last one read until everything in
 * flight is answered (an AUTH decides which links the next ones take). */
void request_barrier(struct client *c);

#endif
