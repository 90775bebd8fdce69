/* PAUSE, RESUME and the drain. */
#include "pause.h"

#include "../lib/log.h"
#include "client.h"
#include "listener.h"
#include "nodes.h"

static void wake_all(struct sidecar *sc)
{
    struct pool_waiter *w;

    while ((w = TAILQ_FIRST(&sc->resume_waiters)) != NULL) {
        struct client *c = w->who;
        TAILQ_REMOVE(&sc->resume_waiters, w, tqe);
        c->wait = WAIT_NONE;
        client_mark_dirty(c);       /* read again by the flush step */
    }
}

void pause_wait(struct client *c)
{
    struct client_ext *x = client_ext(c);

    if (!x) {
        client_close(c, "out of memory");
        return;
    }
    TAILQ_INSERT_TAIL(&client_sc(c)->resume_waiters, &x->wait, tqe);
    c->wait = WAIT_RESUME;
}

void pause_resume(struct sidecar *sc, const char *why)
{
    ev_timer_stop(sc->loop, &sc->pause_w);
    if (!sc->requests_paused)
        return;
    sc->requests_paused = 0;
    log_info("requests resumed (%s)", why);
    wake_all(sc);
}

static void on_pause_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    pause_resume(w->data, "PROXY PAUSE timeout");
}

/* Requests on the shared links of every node, not answered yet (a lease
 * may wait in a blocking call for ever: not counted). */
static unsigned inflight_everywhere(const struct sidecar *sc)
{
    const struct node *n;
    unsigned k = 0;

    TAILQ_FOREACH(n, &sc->nodes, tqe)
        k += nodes_inflight(sc, n);
    TAILQ_FOREACH(n, &sc->retiring, tqe)
        k += nodes_inflight(sc, n);
    return k;
}

static void on_quiet_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    if (sc->pause_reply && inflight_everywhere(sc) && sc->requests_paused)
        return;
    ev_timer_stop(loop, w);
    if (sc->pause_reply) {
        struct req *r = sc->pause_reply;
        sc->pause_reply = NULL;
        client_answer_deferred(sc, r, "+OK\r\n", 5);
    }
}

void pause_requests(struct client *c, double t)
{
    struct sidecar *sc = client_sc(c);

    sc->requests_paused = 1;
    ev_timer_stop(sc->loop, &sc->pause_w);
    if (t > 0) {
        ev_timer_init(&sc->pause_w, on_pause_timeout, t, 0);
        sc->pause_w.data = sc;
        ev_timer_start(sc->loop, &sc->pause_w);
    }
    if (!inflight_everywhere(sc) || sc->pause_reply) {
        client_reply_ok(c);              /* quiet already, or another PAUSE waits */
        return;
    }
    if (!(sc->pause_reply = client_defer(c))) {
        client_reply_error(c, "ERR proxy out of memory");
        return;
    }
    ev_timer_init(&sc->quiet_w, on_quiet_check, 0.005, 0.005);
    sc->quiet_w.data = sc;
    ev_timer_start(sc->loop, &sc->quiet_w);
}

/* Draining: clients with nothing left to send or receive and no
 * server-side state are closed; 1 when none is left. */
static int drain_step(struct sidecar *sc)
{
    struct client *c, *next;

    for (c = TAILQ_FIRST(&sc->clients); c; c = next) {
        next = TAILQ_NEXT(c, tqe);
        if (client_drained(c))
            client_close(c, "proxy is shutting down");
    }
    return sc->nclients == 0;
}

/* Every tick of a drain: the loop ends when no client is left, or at
 * shutdown_timeout whatever is left. */
static void on_drain_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = w->data;
    (void)revents;

    if (drain_step(sc)) {
        log_info("drained: every client done");
        ev_break(loop, EVBREAK_ALL);
    } else if (ev_now(loop) >= sc->drain_deadline) {
        log_warn("shutdown_timeout (%gs) reached: closing %u clients still busy",
                 sc->cfg->shutdown_timeout, sc->nclients);
        ev_break(loop, EVBREAK_ALL);
    }
}

void pause_drain(struct sidecar *sc)
{
    sc->draining = 1;
    sc->drain_deadline = ev_now(sc->loop) + sc->cfg->shutdown_timeout;
    listener_stop_all(sc);
    sc->requests_paused = 0;             /* held requests get their answer */
    ev_timer_stop(sc->loop, &sc->pause_w);
    wake_all(sc);
    drain_step(sc);                      /* the idle ones go at once */
    ev_timer_init(&sc->drain_w, on_drain_tick, 0, 0.02);
    sc->drain_w.data = sc;
    ev_timer_start(sc->loop, &sc->drain_w);
}

void pause_stop(struct sidecar *sc)
{
    ev_timer_stop(sc->loop, &sc->drain_w);
    ev_timer_stop(sc->loop, &sc->pause_w);
    ev_timer_stop(sc->loop, &sc->quiet_w);
    if (sc->pause_reply) {               /* its client, closed already, left it */
        req_release(&sc->cache, sc->pause_reply);
        sc->pause_reply = NULL;
    }
}
