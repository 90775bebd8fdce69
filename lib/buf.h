/* Growable byte buffers. Bytes live in data[pos, len); consuming from the
 * front only advances pos, and the gap is reclaimed when more room is asked
 * for, so a buffer that is drained as fast as it fills never moves bytes.
 * Pointers into data are invalidated by any call that may grow it. */
#ifndef SIDECAR_BUF_H
#define SIDECAR_BUF_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

struct buf {
    char  *data;
    size_t pos;   /* first unread byte */
    size_t len;   /* one past the last byte */
    size_t cap;
};

static inline size_t buf_used(const struct buf *b) { return b->len - b->pos; }
static inline char *buf_start(const struct buf *b) { return b->data + b->pos; }

/* The way of buf_reserve when there is no room at the end. */
int buf_grow(struct buf *b, size_t want);

/* Make room for at least `want` more bytes; -1 only when out of memory.
 * Large buffers grow by a quarter at a time, so a limit checked before
 * appending bounds the memory at about that limit. Inline: the request
 * path appends to a buffer with room several times per request. */
static inline int buf_reserve(struct buf *b, size_t want)
{
    return b->cap - b->len >= want ? 0 : buf_grow(b, want);
}

static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* n bytes put `at` bytes past buf_start(b), before what was there. */
int buf_insert(struct buf *b, size_t at, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Give memory back once a burst is over: a drained buffer larger than
 * `keep` is freed. */
void buf_shrink(struct buf *b, size_t keep);
/* Frees b's memory; a large block is kept a moment for the next large
 * buffer (see buf_spare_trim). */
void buf_free(struct buf *b);
/* Call about once a second: the large blocks kept since the previous
 * call are freed unless one was taken meanwhile. */
void buf_spare_trim(void);

/* Output buffers kept for reuse, header and block, so a busy connection
 * does not pay a malloc and a free for every batch of replies, while an
 * idle one holds no memory at all: not even a buffer's header, only the
 * pointer to it. Bounded in count and size. */
#define BUF_CACHE_SLOTS   256
#define BUF_CACHE_MAX_CAP (16 * 1024)

struct buf_cache {
    unsigned    n;
    struct buf *slot[BUF_CACHE_SLOTS];
};

/* An empty buffer: a cached one (with its block), else a new one with no
 * memory yet. NULL only when out of memory. */
struct buf *buf_cache_take(struct buf_cache *bc);
/* b (from buf_cache_take, or NULL) is done with: what it holds is dropped,
 * it is kept for reuse or freed. */
void buf_cache_give(struct buf_cache *bc, struct buf *b);
void buf_cache_clear(struct buf_cache *bc);

/* read() once into the buffer, growing it so that at least `chunk` bytes
 * fit. Returns what read() returned (errno set on -1). */
ssize_t buf_read_fd(struct buf *b, int fd, size_t chunk);
/* write() once what the buffer holds and consume what went out. */
ssize_t buf_write_fd(struct buf *b, int fd);

#endif
