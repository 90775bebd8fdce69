/* Cluster mode: one app request carried out as several (split.c), or as
 * one rewritten (SCAN: a cursor that says which slots are done). A
 * multi-key command whose keys hash to different slots (MGET, MSET, DEL,
 * UNLINK, EXISTS, TOUCH) goes out as one request per slot, at once; a
 * whole-keyspace command (DBSIZE, KEYS, FLUSHALL, FLUSHDB, SCRIPT FLUSH and
 * EXISTS, FUNCTION FLUSH) to every master. The replies are merged into one,
 * in key order, answered in the app's order; a part that fails makes the
 * answer that part's error, never a partial merge. */
#ifndef SIDECAR_SPLIT_H
#define SIDECAR_SPLIT_H

#include <stddef.h>

#include "sidecar.h"

enum split_kind {
    SPLIT_NONE,
    SPLIT_MGET,        /* keys; an array, each key's value in order */
    SPLIT_MSET,        /* key value pairs; +OK */
    SPLIT_COUNT,       /* keys; the sum of the integers (DEL, UNLINK, EXISTS, TOUCH) */
    SPLIT_ALL_SUM,     /* every master; the sum (DBSIZE) */
    SPLIT_ALL_CONCAT,  /* every master; the arrays one after the other (KEYS) */
    SPLIT_ALL_FIRST,   /* every master; the first reply if none failed (FLUSHALL...) */
    SPLIT_ALL_AND,     /* every master; element-wise AND of integer arrays (SCRIPT EXISTS) */
    SPLIT_SCAN,        /* the master of the cursor's slot range, the keys of that range */
};

/* How the request must be carried out in cluster mode: SPLIT_NONE when
 * one node can take it (its keys in one slot, or not a command that is
 * split). */
enum split_kind split_kind(const struct sidecar *sc, const struct command *cmd,
                           const char *frame, const struct resp_frame *fr);
/* Send the parts; the client gets one reply, in its order. */
void split_request(struct client *c, enum split_kind kind, const char *frame,
                   const struct resp_frame *fr);
/* The pool's callbacks for a part (REQ_PART). */
void split_part_answered(struct req *r, const char *req, const char *p, size_t n,
                         const char *err);
void split_part_unrun(struct req *r, const char *req, const char *why);
/* A part's client (NULL once it left) and its app request's slot. */
struct client *split_part_client(const struct req *r);
struct req *split_part_parent(const struct req *r);
/* 1 if the part may wait for a failover (hold.c): a part of keys, whose
 * client is still there (the others are meant for one node only). */
int split_part_holdable(const struct req *r);

#endif
