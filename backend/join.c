#include "join.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "addr.h"
#include "err.h"

#define REJOIN_MS 5000

/* ms to wait before the next join: REJOIN_MS after a success, 1-3 s after a failure, with
 * jitter, so 200 backends started together do not knock on the gateway in step. */
static long next_wait_ms(unsigned *seed, int ok)
{
    long base = ok ? REJOIN_MS - 1000 : 1000;
    return base + (long)(rand_r(seed) % 2001);
}

struct be_join {
    const be_join_opts_t *o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;     /* guarded by mu */
    int left;     /* the gateway acknowledged the leave */
    const proto_tls_files_t *tls; /* o->tls for a tls+tcp:// URL, else NULL */
    nng_socket sock;
    int connected;
    char host[256];
};

/* Connects (synchronously: a refused handshake is reported here, with its reason). */
static int connect_gateway(be_join_t *j)
{
    nng_dialer d;
    nng_tls_config *tls = NULL;
    char err[512];
    int rv;
    if ((rv = nng_req0_open(&j->sock)) != 0)
        return rv;
    nng_socket_set_ms(j->sock, NNG_OPT_RECVTIMEO, 3000);
    nng_socket_set_ms(j->sock, NNG_OPT_SENDTIMEO, 3000);
    nng_socket_set_size(j->sock, NNG_OPT_RECVMAXSZ, 4096);
    if (j->tls != NULL && proto_tls_config(&tls, 0, j->tls, j->host, err, sizeof err) != 0) {
        fprintf(stderr, "framegate-backend[%s]: --join: %s\n", j->o->name, err);
        nng_close(j->sock);
        return NNG_EINVAL;
    }
    if ((rv = nng_dialer_create(&d, j->sock, j->o->url)) == 0 && tls != NULL)
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls);
    if (tls != NULL)
        nng_tls_config_free(tls);
    if (rv == 0)
        rv = nng_dialer_start(d, 0);
    if (rv != 0) {
        nng_close(j->sock);
        return rv;
    }
    j->connected = 1;
    return 0;
}

/* One request/answer; returns 0 and the answer's state, or an nng code / PROTO_EBACKEND
 * with the reason in out. */
static int call(be_join_t *j, const char *op, char *out, size_t cap)
{
    const be_join_opts_t *o = j->o;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", op);
    cJSON_AddStringToObject(req, "name", o->name);
    cJSON_AddStringToObject(req, "model", o->model);
    cJSON_AddStringToObject(req, "address", o->advertise);
    cJSON_AddNumberToObject(req, "capacity", o->capacity);
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (text == NULL)
        return NNG_ENOMEM;
    int rv = nng_send(j->sock, text, strlen(text), 0);
    cJSON_free(text);
    char *buf = NULL;
    size_t len = 0;
    if (rv == 0)
        rv = nng_recv(j->sock, &buf, &len, NNG_FLAG_ALLOC);
    if (rv != 0) {
        snprintf(out, cap, "%s", nng_strerror(rv));
        return rv;
    }
    cJSON *rep = cJSON_ParseWithLength(buf, len);
    nng_free(buf, len);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(rep, "ok");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(rep, "state");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(rep, "error");
    rv = cJSON_IsTrue(ok) ? 0 : PROTO_EBACKEND;
    snprintf(out, cap, "%s",
             rv == 0 && cJSON_IsString(state)    ? state->valuestring
             : rv != 0 && cJSON_IsString(error) ? error->valuestring
                                                 : "malformed answer");
    cJSON_Delete(rep);
    return rv;
}

static void *run(void *arg)
{
    be_join_t *j = arg;
    const be_join_opts_t *o = j->o;
    char last[600] = "", msg[600];
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int stop = j->stop;
        pthread_mutex_unlock(&j->mu);
        if (stop)
            break;
        char state[400];
        int rv = j->connected ? 0 : connect_gateway(j);
        if (rv != 0) {
            snprintf(msg, sizeof msg, "cannot reach the gateway at %s: %s", o->url,
                     proto_tls_explain(rv, j->tls != NULL));
        } else if ((rv = call(j, "join", state, sizeof state)) == 0) {
            if (strcmp(state, "known") == 0) /* a repeat: nothing new to say */
                snprintf(msg, sizeof msg, "%s", last);
            else
                snprintf(msg, sizeof msg, "registered with %s as %s for model %s (%s)", o->url,
                         o->advertise, o->model, state);
        } else {
            if (rv == PROTO_EBACKEND)
                snprintf(msg, sizeof msg, "the gateway at %s refused the registration: %s",
                         o->url, state);
            else
                snprintf(msg, sizeof msg, "no answer from the gateway at %s to the "
                                          "registration: %s", o->url, state);
            /* Once connected, the socket stays: NNG's dialer reconnects by itself, and a new
             * socket per failure would be a TLS handshake per retry for a gateway that is
             * only slow. */
        }
        if (strcmp(msg, last) != 0) { /* say each new state once */
            fprintf(stderr, "framegate-backend[%s]: %s\n", o->name, msg);
            snprintf(last, sizeof last, "%s", msg);
        }
        struct timespec until;
        long wait_ms = next_wait_ms(&seed, rv == 0);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&j->mu);
        while (!j->stop && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&j->mu);
    }
    /* Deregister: the gateway stops sending frames here and lets those in flight finish. */
    if (j->connected || connect_gateway(j) == 0) {
        char why[400];
        int rv = call(j, "leave", why, sizeof why);
        j->left = rv == 0;
        fprintf(stderr, "framegate-backend[%s]: %s\n", o->name,
                rv == 0 ? "deregistered" : "could not deregister");
        nng_close(j->sock);
        j->connected = 0;
    }
    return NULL;
}

int be_join_start(be_join_t **out, const be_join_opts_t *o)
{
    proto_addr_t a;
    if (proto_addr_parse(&a, o->url) != 0 ||
        (a.kind != PROTO_ADDR_TLS && a.kind != PROTO_ADDR_TCP)) {
        fprintf(stderr, "framegate-backend: --join %s: expected tls+tcp://HOST:PORT\n", o->url);
        return PROTO_EINVAL;
    }
    if (a.kind == PROTO_ADDR_TLS && o->tls == NULL) {
        fprintf(stderr, "framegate-backend: --join %s: tls+tcp needs --tls-cert, --tls-key and "
                        "--tls-ca\n", o->url);
        return PROTO_EINVAL;
    }
    be_join_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return PROTO_ENOMEM;
    j->o = o;
    snprintf(j->host, sizeof j->host, "%s", a.host);
    j->tls = a.kind == PROTO_ADDR_TLS ? o->tls : NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&j->thread, NULL, run, j) != 0) {
        free(j);
        return PROTO_ENOMEM;
    }
    *out = j;
    return 0;
}

int be_join_leave(be_join_t *j)
{
    pthread_mutex_lock(&j->mu);
    j->stop = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    int left = j->left;
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    return left;
}
