/* Registration with a gateway (framegate-backend --join URL): a thread that announces this
 * backend to the gateway's join listener (gateway/join.h) and repeats it every few seconds
 * (a restarted gateway learns it again), and, when the backend drains, deregisters it. Over
 * tls+tcp:// it presents the backend's own certificate (which needs clientAuth; certs.sh
 * gives it) and checks the gateway's against the same CA, by the URL's host. */
#ifndef BE_JOIN_H
#define BE_JOIN_H

#include "tls.h"

typedef struct be_join be_join_t;

typedef struct {
    const char *url;              /* the gateway's join_listen, as this host reaches it */
    const proto_tls_files_t *tls; /* for tls+tcp:// (required then) */
    const char *name;             /* this backend's name (its instance id at the gateway) */
    const char *model;            /* the model it serves */
    const char *advertise;        /* the address the gateway dials back */
    int capacity;
} be_join_opts_t;

/* Starts the thread (the first join is attempted at once). opts and what it points to must
 * outlive be_join_leave. Returns 0, or PROTO_EINVAL (message on stderr). */
int be_join_start(be_join_t **out, const be_join_opts_t *opts);

/* Stops repeating the join, deregisters (waiting at most ~3 s for the gateway's answer) and
 * frees. Returns 1 if the gateway acknowledged the leave, else 0. */
int be_join_leave(be_join_t *j);

#endif
