/* The backend's serving loop: an SP rep socket answering PING and DETECT until asked to
 * stop (be_sprep on this thread for ipc://, NNG's rep0 for tcp:// and tls+tcp://).
 * Single-threaded: one request at a time, in arrival order. */
#ifndef BE_SERVE_H
#define BE_SERVE_H

#include <signal.h>
#include <stdatomic.h>

#include "image.h"
#include "model.h"
#include "tls.h"

typedef struct {
    const char *listen; /* NNG address */
    const proto_tls_files_t *tls; /* for a tls+tcp:// address (mutual TLS); else NULL */
    const char *model_name;
    const char *instance; /* for log lines */
    be_model_t *model;    /* NULL in simulate mode */
    be_image_t *image;
    int simulate_ms;             /* >= 0: skip the network, answer after this many ms */
    atomic_int *stop; /* set by the signal handler (lock-free: safe there, and race-free
                       * when the signal lands on several NNG threads at once) */
    /* Registered backends (--join): called once when *stop is first seen, before the
     * socket closes; then frames keep being served until no gateway is connected any more
     * or drain_ms pass, so the frames the gateway sent before it stopped are answered. */
    void (*on_stop)(void *arg);
    void *on_stop_arg;
    int drain_ms;
} be_serve_opts_t;

/* Listens on opts->listen and serves on the calling thread until *opts->stop is set (checked
 * at least every 200 ms); the request in progress is finished and answered first. opts and
 * everything it points to are borrowed for the whole call. Returns 0, PROTO_EINVAL for an
 * unusable address, or PROTO_ENNG / PROTO_ENOMEM (message on stderr). */
int be_serve_run(const be_serve_opts_t *opts);

#endif
