/* The ACL users apps authenticate as. Without [proxy] password an app's
 * AUTH is checked by Redis itself, on links authenticated as the user it
 * names: each user has a pool of its own on every node (struct node's
 * upool), opened by its first AUTH (on the master; on the other nodes
 * once Redis accepted it) and closed once no app has used it for
 * user_idle_timeout. An app's requests run on its user's pools from then
 * on, so Redis's ACLs apply to each app exactly as they would directly.
 * Apps that never AUTH, or AUTH as the [upstream] user, use the nodes'
 * own pools. At most max_users users have pools at once. */
#ifndef SIDECAR_USERS_H
#define SIDECAR_USERS_H

#include <stddef.h>

#include "sidecar.h"

struct client;

void users_init(struct sidecar *sc);
/* Every user's pools closed, every user freed (after the nodes stopped
 * taking requests). */
void users_stop(struct sidecar *sc);
/* Whether an AUTH naming this user runs on the nodes' own pools: it is
 * the [upstream] user (or "default" when none is configured). */
int users_is_upstream(const struct sidecar *sc, const char *name, size_t nl);
/* The user an AUTH names, found or added with a pool on the master (its
 * AUTH goes there; the other nodes' come once Redis accepted it). NULL
 * with the reason in err: max_users reached, out of memory. */
struct user *users_get(struct sidecar *sc, const char *name, size_t nl, const char *pass,
                       size_t pl, char *err, size_t errlen);
/* Redis accepted this password for u: every node gets u's pool, and
 * reconnects use the password. -1 out of memory. */
int users_accepted(struct sidecar *sc, struct user *u, const char *pass, size_t pl);
/* c runs as u from now on (NULL: the [upstream] user). */
void users_set(struct client *c, struct user *u);
/* A node added: a pool for each user Redis accepted. -1 out of memory. */
int users_node_added(struct sidecar *sc, struct node *n);
/* A node freed: its users' pools with it. */
void users_node_freed(struct node *n);
/* After a reload: every user's pools take the new settings. */
void users_reconfigure(struct sidecar *sc);
/* The pool callback: a user's credentials refused on a reconnect. */
void users_on_auth_refused(struct pool *p, const char *reply, size_t n, void *arg);
/* PROXY NODES: one line per user. */
void users_report(const struct sidecar *sc, struct buf *b);

#endif
