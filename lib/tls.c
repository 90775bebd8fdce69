/* OpenSSL 3 behind a small client API: contexts with references, sessions
 * kept per node for resumption (one per handshake), reasons as one line.
 *
 * libssl is loaded (dlopen) when the first context is made, not linked: a
 * sidecar without TLS does not carry its 1.7 MB of mapped, relocated
 * library (about 460 KB of it private to the process). Every OpenSSL call
 * goes through ossl, filled from the library once; the headers still give
 * the types and prototypes. */
#include "tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define OSSL_LIB "libssl.so.3"     /* Debian's libssl3, with libcrypto.so.3 */

/* The functions used (macros such as SSL_CTX_set_mode are SSL_CTX_ctrl). */
#define OSSL_FUNCS(X)                                                            \
    X(SSL_CTX_new) X(TLS_client_method) X(SSL_CTX_ctrl) X(SSL_CTX_set_options)   \
    X(SSL_CTX_sess_set_new_cb) X(SSL_CTX_load_verify_locations)                  \
    X(SSL_CTX_set_default_verify_paths) X(SSL_CTX_use_certificate_chain_file)    \
    X(SSL_CTX_use_PrivateKey_file) X(SSL_CTX_check_private_key)                  \
    X(SSL_CTX_set_verify) X(SSL_CTX_free) X(SSL_SESSION_free) X(SSL_SESSION_dup) \
    X(SSL_SESSION_get_protocol_version)                                          \
    X(SSL_new) X(SSL_set_ex_data) X(SSL_get_ex_data) X(SSL_set_fd)               \
    X(SSL_set_connect_state) X(SSL_ctrl) X(SSL_set1_host) X(SSL_set_session)     \
    X(SSL_free) X(SSL_get_error) X(SSL_get_verify_result) X(SSL_do_handshake)    \
    X(SSL_read_ex) X(SSL_write_ex) X(ERR_get_error) X(ERR_error_string_n)        \
    X(ERR_clear_error) X(ERR_peek_error) X(a2i_IPADDRESS)                        \
    X(ASN1_OCTET_STRING_free) X(X509_verify_cert_error_string) X(SSL_session_reused)

#define OSSL_FIELD(f) __typeof__(f) *f;
static struct {
    OSSL_FUNCS(OSSL_FIELD)
} ossl;
#define OSSL_NAME(f) {#f, offsetof(__typeof__(ossl), f)},
static const struct {
    const char *name;
    size_t      off;
} ossl_names[] = {OSSL_FUNCS(OSSL_NAME)};
#define O(f) (ossl.f)

/* 0 once every function is found; -1 with why in err (the library is
 * missing, or not OpenSSL 3). Tried again on the next call after a
 * failure. */
static int ossl_load(char *err, size_t errlen)
{
    static void *lib;

    if (lib)
        return 0;
    void *h = dlopen(OSSL_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "TLS: cannot load %s (install libssl3): %s", OSSL_LIB, dlerror());
        return -1;
    }
    for (size_t i = 0; i < sizeof ossl_names / sizeof ossl_names[0]; i++) {
        void *f = dlsym(h, ossl_names[i].name);
        if (!f) {
            snprintf(err, errlen, "TLS: %s has no %s", OSSL_LIB, ossl_names[i].name);
            dlclose(h);
            return -1;
        }
        memcpy((char *)&ossl + ossl_names[i].off, &f, sizeof f);
    }
    lib = h;
    return 0;
}

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
    unsigned long e = O(ERR_get_error)();
    char buf[256];

    if (e) {
        O(ERR_error_string_n)(e, buf, sizeof buf);
        /* "error:0A000086:SSL routines::certificate verify failed": the
         * part after the last colon is the part for people */
        const char *r = strrchr(buf, ':');
        snprintf(err, errlen, "TLS: %s%s%s", what ? what : "", what ? ": " : "",
                 r ? r + 1 : buf);
    } else {
        snprintf(err, errlen, "TLS: %s", what ? what : "failed");
    }
    O(ERR_clear_error)();
}

/* s (ours now) first in r. One from an older context than r's is of no
 * use; one from a newer context makes r's useless. */
static void resume_add(struct tls_resume *r, SSL_SESSION *s, unsigned long gen)
{
    if (gen < r->gen) {
        O(SSL_SESSION_free)(s);
        return;
    }
    if (gen != r->gen) {
        tls_resume_clear(r);
        r->gen = gen;
    }
    if (r->n == TLS_RESUME_MAX)
        O(SSL_SESSION_free)(r->session[--r->n]);
    memmove(r->session + 1, r->session, r->n * sizeof r->session[0]);
    r->session[0] = s;
    r->n++;
}

/* The session for a new handshake of a context of gen, or NULL: the newest,
 * taken out of r if TLS 1.3, else a copy (a connection freed without a
 * shutdown marks the one it used unusable). The caller owns it. */
static SSL_SESSION *resume_take(struct tls_resume *r, unsigned long gen)
{
    if (!r || !r->n || r->gen != gen)
        return NULL;
    SSL_SESSION *s = r->session[0];
    if (O(SSL_SESSION_get_protocol_version)(s) < TLS1_3_VERSION)
        return O(SSL_SESSION_dup)(s);
    r->n--;
    memmove(r->session, r->session + 1, r->n * sizeof r->session[0]);
    return s;
}

/* TLS 1.3 sends its session tickets after the handshake (TLS 1.2 gives a
 * full handshake's session at its end): each joins the node's. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *c = O(SSL_get_ex_data)(ssl, 0);
    SSL_SESSION *s;

    if (!c || !c->resume)
        return 0;
    /* a copy: the connection's own is marked unusable when it is freed
     * without a shutdown, which is how links end */
    if ((s = O(SSL_SESSION_dup)(sess)) != NULL)
        resume_add(c->resume, s, c->ctx->gen);
    return 0;
}

struct tls_ctx *tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen)
{
    struct tls_ctx *c;
    SSL_CTX *ssl = NULL;

    if (ossl_load(err, errlen) < 0)
        return NULL;
    if (!(c = calloc(1, sizeof *c)) || !(ssl = O(SSL_CTX_new)(O(TLS_client_method)()))) {
        snprintf(err, errlen, "TLS: out of memory");
        free(c);
        return NULL;
    }
    c->ssl = ssl;
    c->verify = s->verify;
    c->refs = 1;
    c->gen = ++ctx_gen;
    O(SSL_CTX_ctrl)(ssl, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    O(SSL_CTX_ctrl)(ssl, SSL_CTRL_MODE,
                    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
    /* Redis may close without close_notify: that is a close, not an error */
    O(SSL_CTX_set_options)(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    O(SSL_CTX_ctrl)(ssl, SSL_CTRL_SET_SESS_CACHE_MODE,
                    SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE, NULL);
    O(SSL_CTX_sess_set_new_cb)(ssl, new_session);
    if (s->ca_file ? O(SSL_CTX_load_verify_locations)(ssl, s->ca_file, NULL) != 1
                   : O(SSL_CTX_set_default_verify_paths)(ssl) != 1) {
        queued_error(err, errlen, s->ca_file ? s->ca_file : "the system's CA store");
        goto fail;
    }
    if (s->cert_file || s->key_file) {
        if (!s->cert_file || !s->key_file) {
            snprintf(err, errlen, "TLS: a client certificate needs both tls_cert_file and "
                     "tls_key_file");
            goto fail;
        }
        if (O(SSL_CTX_use_certificate_chain_file)(ssl, s->cert_file) != 1) {
            queued_error(err, errlen, s->cert_file);
            goto fail;
        }
        if (O(SSL_CTX_use_PrivateKey_file)(ssl, s->key_file, SSL_FILETYPE_PEM) != 1) {
            queued_error(err, errlen, s->key_file);
            if (strstr(err, "key values mismatch"))   /* OpenSSL's words for it */
                snprintf(err, errlen, "TLS: %s does not match the certificate in %s",
                         s->key_file, s->cert_file);
            goto fail;
        }
        if (O(SSL_CTX_check_private_key)(ssl) != 1) {
            queued_error(err, errlen, "tls_key_file does not match tls_cert_file");
            goto fail;
        }
    }
    O(SSL_CTX_set_verify)(ssl, s->verify == TLS_VERIFY_OFF ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       NULL);
    return c;
fail:
    O(SSL_CTX_free)(ssl);
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
        O(SSL_CTX_free)(c->ssl);
        free(c);
    }
}

void tls_resume_clear(struct tls_resume *r)
{
    while (r->n)
        O(SSL_SESSION_free)(r->session[--r->n]);
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *name,
                              struct tls_resume *resume)
{
    struct tls_conn *c = calloc(1, sizeof *c);
    SSL_SESSION *s;

    if (!c || !(c->ssl = O(SSL_new)(ctx->ssl))) {
        free(c);
        return NULL;
    }
    c->ctx = ctx;
    c->resume = resume;
    tls_ctx_ref(ctx);
    O(SSL_set_ex_data)(c->ssl, 0, c);
    O(SSL_set_fd)(c->ssl, fd);
    O(SSL_set_connect_state)(c->ssl);
    if (name && *name) {
        ASN1_OCTET_STRING *ip = O(a2i_IPADDRESS)(name);
        if (!ip)
            O(SSL_ctrl)(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                      (void *)name);        /* SNI is for names only */
        O(ASN1_OCTET_STRING_free)(ip);
        if (ctx->verify == TLS_VERIFY_FULL)
            O(SSL_set1_host)(c->ssl, name);                   /* a name or an IP address */
    }
    if ((s = resume_take(resume, ctx->gen)) != NULL) {
        O(SSL_set_session)(c->ssl, s);                        /* with its own reference */
        O(SSL_SESSION_free)(s);
    }
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    O(SSL_free)(c->ssl);          /* no close_notify: the socket is closed under it */
    tls_ctx_unref(c->ctx);
    free(c);
}

/* What went wrong with an operation that returned rc. */
static int failed(struct tls_conn *c, int rc, int *want, char *err, size_t errlen)
{
    int e = O(SSL_get_error)(c->ssl, rc);
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
        if (O(ERR_peek_error)())
            queued_error(err, errlen, NULL);
        else
            snprintf(err, errlen, "TLS: %s", errno ? strerror(errno)
                                                   : "the server closed the connection");
        return -1;
    default:
        *want = 0;
        if ((v = O(SSL_get_verify_result)(c->ssl)) != X509_V_OK) {
            snprintf(err, errlen, "TLS: certificate verify failed (%s)",
                     O(X509_verify_cert_error_string)(v));
            O(ERR_clear_error)();
        } else {
            queued_error(err, errlen, NULL);
        }
        return -1;
    }
}

int tls_handshake(struct tls_conn *c, char *err, size_t errlen)
{
    int want = 0;
    int rc = O(SSL_do_handshake)(c->ssl);

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
    if (O(SSL_read_ex)(c->ssl, buf, n, &got) == 1)
        return (ssize_t)got;
    return failed(c, 0, want, err, errlen);
}

ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n, int *want, char *err,
                  size_t errlen)
{
    size_t put = 0;

    *want = 0;
    if (O(SSL_write_ex)(c->ssl, buf, n, &put) == 1)
        return (ssize_t)put;
    int rc = failed(c, 0, want, err, errlen);
    return rc == 0 ? -1 : rc;                      /* a write never "closes cleanly" */
}

int tls_resumed(const struct tls_conn *c)
{
    return O(SSL_session_reused)(c->ssl);
}
