/* Request slots. Freed ones are kept for reuse up to a bound, so a burst
 * costs no malloc per request and the memory goes back once it is over. */
#include "req.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void req_release(struct req_cache *rc, struct req *r)
{
    if (r->reply.data)               /* only a reply that came before earlier ones */
        buf_free(&r->reply);
    if (rc->nfree >= rc->max_free) {
        free(r);
        return;
    }
    r->owner = rc->free;
    rc->free = r;
    rc->nfree++;
}

void req_cache_clear(struct req_cache *rc)
{
    while (rc->free) {
        struct req *r = rc->free;
        rc->free = r->owner;
        free(r);
    }
    rc->nfree = 0;
}
