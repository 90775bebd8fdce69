/* OpenSSL 3 behind a small client API: contexts with references, sessions
 * kept per node for resumption, reasons as one line. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_ctx {
    SSL_CTX        *ssl;
    enum tls_verify verify;
    unsigned        refs;
    unsigned long   gen;
};

static unsigned long ctx_gen;

struct tls_conn {
    SSL            *ssl;
    struct tls_ctx *ctx;
    struct tls_resume *resume;
};

/* The first error OpenSSL queued, as text, and the queue emptied. */
static void queued_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        /* "error:0A000086:SSL routines::certificate verify failed": the
         * part after the last colon is the part for people */
        const char *r = strrchr(buf, ':');
        snprintf(err, errlen, "TLS: %s%s%s", what ? what : "", what ? ": " : "",
                 r ? r + 1 : buf);
    } else {
        snprintf(err, errlen, "TLS: %s", what ? what : "failed");
    }
    ERR_clear_error();
}

/* TLS 1.3 sends its session tickets after the handshake: each new one
 * replaces the node's. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *c = SSL_get_app_data(ssl);

    if (!c || !c->resume)
        return 0;
    /* a copy: the connection's own is marked unusable when it is freed
     * without a shutdown, which is how links end */
    tls_resume_clear(c->resume);
    c->resume->session = SSL_SESSION_dup(sess);
    c->resume->gen = c->ctx->gen;
    return 0;
}

struct tls_ctx *tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen)
{
    struct tls_ctx *c = calloc(1, sizeof *c);
    SSL_CTX *ssl = NULL;

    if (!c || !(ssl = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "TLS: out of memory");
        free(c);
        return NULL;
    }
    c->ssl = ssl;
    c->verify = s->verify;
    c->refs = 1;
    c->gen = ++ctx_gen;
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Redis may close without close_notify: that is a close, not an error */
    SSL_CTX_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ssl, new_session);
    if (s->ca_file ? SSL_CTX_load_verify_locations(ssl, s->ca_file, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(ssl) != 1) {
        queued_error(err, errlen, s->ca_file ? s->ca_file : "the system's CA store");
        goto fail;
    }
    if (s->cert_file || s->key_file) {
        if (!s->cert_file || !s->key_file) {
            snprintf(err, errlen, "TLS: a client certificate needs both tls_cert_file and "
                     "tls_key_file");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ssl, s->cert_file) != 1) {
            queued_error(err, errlen, s->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ssl, s->key_file, SSL_FILETYPE_PEM) != 1) {
            queued_error(err, errlen, s->key_file);
            if (strstr(err, "key values mismatch"))   /* OpenSSL's words for it */
                snprintf(err, errlen, "TLS: %s does not match the certificate in %s",
                         s->key_file, s->cert_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ssl) != 1) {
            queued_error(err, errlen, "tls_key_file does not match tls_cert_file");
            goto fail;
        }
    }
    SSL_CTX_set_verify(ssl, s->verify == TLS_VERIFY_OFF ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       NULL);
    return c;
fail:
    SSL_CTX_free(ssl);
    free(c);
    return NULL;
}

void tls_ctx_ref(struct tls_ctx *c)
{
    c->refs++;
}

void tls_ctx_unref(struct tls_ctx *c)
{
    if (c && --c->refs == 0) {
        SSL_CTX_free(c->ssl);
        free(c);
    }
}

void tls_resume_clear(struct tls_resume *r)
{
    if (r->session)
        SSL_SESSION_free(r->session);
    r->session = NULL;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *name,
                              struct tls_resume *resume)
{
    struct tls_conn *c = calloc(1, sizeof *c);

    if (!c || !(c->ssl = SSL_new(ctx->ssl))) {
        free(c);
        return NULL;
    }
    c->ctx = ctx;
    c->resume = resume;
    tls_ctx_ref(ctx);
    SSL_set_app_data(c->ssl, c);
    SSL_set_fd(c->ssl, fd);
    SSL_set_connect_state(c->ssl);
    if (name && *name) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
        if (!ip)
            SSL_set_tlsext_host_name(c->ssl, name);        /* SNI is for names only */
        ASN1_OCTET_STRING_free(ip);
        if (ctx->verify == TLS_VERIFY_FULL)
            SSL_set1_host(c->ssl, name);                   /* a name or an IP address */
    }
    if (resume && resume->session && resume->gen == ctx->gen)
        SSL_set_session(c->ssl, resume->session);
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);          /* no close_notify: the socket is closed under it */
    tls_ctx_unref(c->ctx);
    free(c);
}

/* What went wrong with an operation that returned rc. */
static int failed(struct tls_conn *c, int rc, int *want, char *err, size_t errlen)
{
    int e = SSL_get_error(c->ssl, rc);
    long v;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = TLS_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = TLS_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        *want = 0;
        return 0;
    case SSL_ERROR_SYSCALL:
        *want = 0;
        if (ERR_peek_error())
            queued_error(err, errlen, NULL);
        else
            snprintf(err, errlen, "TLS: %s", errno ? strerror(errno)
                                                   : "the server closed the connection");
        return -1;
    default:
        *want = 0;
        if ((v = SSL_get_verify_result(c->ssl)) != X509_V_OK) {
            snprintf(err, errlen, "TLS: certificate verify failed (%s)",
                     X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else {
            queued_error(err, errlen, NULL);
        }
        return -1;
    }
}

int tls_handshake(struct tls_conn *c, char *err, size_t errlen)
{
    int want = 0;
    int rc = SSL_do_handshake(c->ssl);

    if (rc == 1)
        return 0;
    err[0] = '\0';
    if (failed(c, rc, &want, err, errlen) < 0 && want)
        return want;
    if (!err[0])
        snprintf(err, errlen, "TLS: the server closed the connection during the handshake");
    return -1;
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t n, int *want, char *err, size_t errlen)
{
    size_t got = 0;

    *want = 0;
    if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
        return (ssize_t)got;
    return failed(c, 0, want, err, errlen);
}

ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n, int *want, char *err,
                  size_t errlen)
{
    size_t put = 0;

    *want = 0;
    if (SSL_write_ex(c->ssl, buf, n, &put) == 1)
        return (ssize_t)put;
    int rc = failed(c, 0, want, err, errlen);
    return rc == 0 ? -1 : rc;                      /* a write never "closes cleanly" */
}

int tls_resumed(const struct tls_conn *c)
{
    return SSL_session_reused(c->ssl);
}
