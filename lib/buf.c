/* Growable byte buffers: the only place that reallocs I/O memory. */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Room for `want` more: small buffers double, large ones grow by a
 * quarter (a limit of 64 MB then costs at most 80 MB of address space,
 * never 128), and realloc moves large ones by remapping, without copying
 * them through new pages. */
#define BUF_DOUBLE_BELOW (1024 * 1024)

/* Large blocks freed are kept a moment for the next large buffer: a run
 * of 1 MB values then reuses the same warm pages, where each fresh block
 * would be mapped, faulted in a page at a time (zeroed by the kernel) and
 * unmapped again, which costs more than the bytes' own copies. Bounded
 * in count and bytes; buf_spare_trim() frees what was not taken since
 * its last call. Single-threaded, as the whole proxy. */
#define SPARE_MIN   (128 * 1024)
#define SPARE_MAX   (4 * 1024 * 1024)
#define SPARE_SLOTS 8
#define SPARE_BYTES (16 * 1024 * 1024)

static struct { char *data; size_t cap; } spare[SPARE_SLOTS];
static unsigned nspare;
static size_t spare_bytes;
static int spare_taken;

static int spare_put(char *data, size_t cap)
{
    if (cap < SPARE_MIN || cap > SPARE_MAX || nspare == SPARE_SLOTS ||
        spare_bytes + cap > SPARE_BYTES)
        return 0;
    spare[nspare].data = data;
    spare[nspare].cap = cap;
    nspare++;
    spare_bytes += cap;
    return 1;
}

/* The smallest spare block of at least `want` bytes, or NULL. */
static char *spare_take(size_t want, size_t *cap)
{
    unsigned best = nspare;

    for (unsigned i = 0; i < nspare; i++)
        if (spare[i].cap >= want && (best == nspare || spare[i].cap < spare[best].cap))
            best = i;
    if (best == nspare)
        return NULL;
    char *d = spare[best].data;
    *cap = spare[best].cap;
    spare_bytes -= *cap;
    spare[best] = spare[--nspare];
    spare_taken = 1;
    return d;
}

void buf_spare_trim(void)
{
    if (!spare_taken)
        while (nspare > 0) {
            nspare--;
            spare_bytes -= spare[nspare].cap;
            free(spare[nspare].data);
        }
    spare_taken = 0;
}

int buf_grow(struct buf *b, size_t want)
{
    if (b->cap - b->len >= want)
        return 0;
    size_t used = b->len - b->pos;
    /* Slide down first: the dead prefix is reclaimed before growing. */
    if (b->pos > 0) {
        memmove(b->data, b->data + b->pos, used);
        b->pos = 0;
        b->len = used;
        if (b->cap - used >= want)
            return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - used < want) {
        size_t step = cap < BUF_DOUBLE_BELOW ? cap : cap / 4;
        if (cap > ((size_t)-1) / 2)
            return -1;
        cap += step;
    }
    /* A large block for what fits in a small one: a spare, if there is
     * one (copying the few bytes held beats fresh pages). */
    size_t scap;
    char *d;
    if (cap >= SPARE_MIN && used <= SPARE_MIN / 2 && (d = spare_take(cap, &scap)) != NULL) {
        if (used)
            memcpy(d, b->data, used);
        buf_free(b);
        b->data = d;
        b->len = used;
        b->cap = scap;
        return 0;
    }
    d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int buf_insert(struct buf *b, size_t at, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    char *d = b->data + b->pos + at;
    memmove(d + n, d, b->len - b->pos - at);
    memcpy(d, p, n);
    b->len += n;
    return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->pos += n;
    if (b->pos >= b->len)
        b->pos = b->len = 0;
}

void buf_reset(struct buf *b)
{
    b->pos = b->len = 0;
}

void buf_shrink(struct buf *b, size_t keep)
{
    if (b->pos == b->len && b->cap > keep)
        buf_free(b);
}

void buf_free(struct buf *b)
{
    if (!spare_put(b->data, b->cap))
        free(b->data);
    b->data = NULL;
    b->pos = b->len = b->cap = 0;
}

ssize_t buf_read_fd(struct buf *b, int fd, size_t chunk)
{
    if (buf_reserve(b, chunk) < 0) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
    if (n > 0)
        b->len += (size_t)n;
    return n;
}

ssize_t buf_write_fd(struct buf *b, int fd)
{
    ssize_t n = write(fd, b->data + b->pos, b->len - b->pos);
    if (n > 0)
        buf_consume(b, (size_t)n);
    return n;
}

struct buf *buf_cache_take(struct buf_cache *bc)
{
    if (bc->n > 0)
        return bc->slot[--bc->n];
    return calloc(1, sizeof(struct buf));
}

void buf_cache_give(struct buf_cache *bc, struct buf *b)
{
    if (!b)
        return;
    if (bc->n < BUF_CACHE_SLOTS) {
        if (b->cap > BUF_CACHE_MAX_CAP)
            buf_free(b);
        b->pos = b->len = 0;
        bc->slot[bc->n++] = b;
        return;
    }
    buf_free(b);
    free(b);
}

void buf_cache_clear(struct buf_cache *bc)
{
    while (bc->n > 0) {
        struct buf *b = bc->slot[--bc->n];
        buf_free(b);
        free(b);
    }
}
