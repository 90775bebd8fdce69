/* TLS to Redis (OpenSSL 3): a client context built from the configuration
 * (CA, client certificate, how much to verify), and a non-blocking
 * session over a connected socket that the caller's event loop drives.
 * Errors come back as one line for people, "TLS: certificate verify failed
 * (hostname mismatch)", never as OpenSSL's error queue. */
#ifndef SIDECAR_TLS_H
#define SIDECAR_TLS_H

#include <stddef.h>
#include <sys/types.h>

enum tls_verify {
    TLS_VERIFY_FULL,   /* the chain, and the name (SNI, certificate) */
    TLS_VERIFY_CA,     /* the chain only: servers addressed by IP, name-less certificates */
    TLS_VERIFY_OFF,
};

struct tls_settings {
    const char     *ca_file;     /* NULL: the system's store */
    const char     *cert_file;   /* client certificate (tls-auth-clients), NULL: none */
    const char     *key_file;
    enum tls_verify verify;
};

/* Shared by the sessions made from it; each holds a reference, so that a
 * reload's new context serves new links while old links keep theirs. */
struct tls_ctx;

/* Files are read now: a missing or bad one is an error here (a reload is
 * refused with it), never later on a link. NULL with the reason in err. */
struct tls_ctx *tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen);
void tls_ctx_ref(struct tls_ctx *c);
void tls_ctx_unref(struct tls_ctx *c);

/* Sessions a node gave, to resume later handshakes with it (one round
 * trip, no certificate check). A TLS 1.3 session serves one handshake:
 * once a handshake has resumed with an SSL_SESSION, OpenSSL no longer
 * offers that object in a later ClientHello, and a server may take a ticket
 * once only. So each handshake takes one for itself and each ticket sent
 * after it (an OpenSSL server sends two after a full handshake, one after
 * a resumed one) is added; with none left a handshake is full. A TLS 1.2
 * session serves any number of handshakes, each with a copy. Owned by the
 * caller (one per node, shared by its links and health checks); zeroed is
 * empty; the oldest goes when full. */
#define TLS_RESUME_MAX 8
struct tls_resume {
    void         *session[TLS_RESUME_MAX]; /* SSL_SESSION, newest first */
    unsigned      n;                       /* of session[] held */
    unsigned long gen;                     /* of the context they came from: a
                                            * reload's new files mean a full
                                            * handshake */
};
void tls_resume_clear(struct tls_resume *r);

/* Handshakes with one node, for PROXY INFO and /metrics (Redis counts
 * neither). */
struct tls_stats {
    unsigned long long full, resumed, failed;
};

struct tls_conn;

/* A client session on connected socket fd; name is sent as SNI and, with
 * TLS_VERIFY_FULL, checked against the certificate (a DNS name or an IP
 * address). The handshake offers a session from resume, and the tickets
 * the server sends go back into it; resume may be NULL, and must outlive
 * the session. NULL only when out of memory. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *name,
                              struct tls_resume *resume);
void tls_conn_free(struct tls_conn *c);

#define TLS_WANT_READ  1
#define TLS_WANT_WRITE 2

/* 0 done, TLS_WANT_READ/TLS_WANT_WRITE (call again when the socket is),
 * -1 failed with the reason in err. */
int tls_handshake(struct tls_conn *c, char *err, size_t errlen);
/* As read()/write(): bytes, 0 at a clean close (read), or -1; then *want
 * says what to wait for (errno EAGAIN), or it failed (reason in err). */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t n, int *want, char *err, size_t errlen);
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n, int *want, char *err,
                  size_t errlen);
/* 1 if the handshake resumed an earlier session. */
int tls_resumed(const struct tls_conn *c);

#endif
