/* What the cloud providers (provider_ec2.c, provider_gce.c, provider_kubernetes.c) share: the
 * instance table, the launch -> created -> joined -> terminated state machine, API calls over
 * fetch.h with bounded, jittered retries, the orphan sweep with adoption of a predecessor's
 * instances, the per-hour start cap and the last-error report. A cloud file keeps only its
 * API: how a request is authorised, what a create, a delete and a list look like, and how an
 * error answer reads. It embeds gw_cloud_t first and fills a gw_cloud_ops_t.
 *
 * An instance's `key` is the name its backend joins with (--instance): the EC2 ClientToken,
 * the VM's or the pod's name. Everything here runs on the loop thread. */
#ifndef GW_PROVIDER_CLOUD_H
#define GW_PROVIDER_CLOUD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "fetch.h"
#include "provider.h"

typedef struct gw_cloud gw_cloud_t;
typedef struct gw_cloud_call gw_cloud_call_t;

struct gw_instance {
    gw_cloud_t *c;
    void *owner; /* the pool's backend; NULL while an adoption candidate */
    char name[GW_MODEL_NAME_MAX + 32];
    char key[96]; /* how its backend joins */
    char id[96];  /* the cloud's id; "" until known */
    int created;  /* the create was accepted: a stop from now on terminates it */
    int joined, stop_wanted, terminating, reported;
    int deferred; /* started before the first sweep: launched (or given a leftover) after it */
    int adopting; /* left by an earlier gateway: waits for its backend's join */
    uint64_t adopt_deadline; /* loop clock: terminated if it has not joined by then */
    gw_instance_t *next;
};

/* The answer to a call: ok (2xx, or whatever the call counts as success), the HTTP status (0
 * for a transport error), the body (borrowed for the callback) and, when !ok, the error in
 * the provider's words. The call's inst is NULL when that instance has gone meanwhile. */
typedef void (*gw_cloud_call_cb)(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status,
                                 const char *body, size_t len, const char *err);

struct gw_cloud_call {
    gw_cloud_t *c;
    char method[8];
    char path[1024]; /* after the provider's endpoint */
    char *body;      /* owned; NULL for none */
    size_t body_len;
    char action[32];
    int attempts;
    gw_cloud_call_cb cb;
    gw_instance_t *inst;
    gw_fetch_req_t *req;
    uv_timer_t timer; /* the first send, credentials waits and backoff */
    gw_cloud_call_t *next;
};

/* One instance of the cluster and model in a list answer. */
typedef struct {
    char id[96];
    char key[96];
} gw_cloud_found_t;

typedef struct {
    const char *kind; /* for the logs: "ec2", "gce", "kubernetes" */
    /* Sends the call with the provider's credentials through gw_cloud_fetch. 0 when sent, 1
     * when the credentials are not there yet (the core asks again in 200 ms), or a negative
     * code (the call fails). */
    int (*send)(gw_cloud_t *c, gw_cloud_call_t *call);
    /* The provider's words for a failed answer (status 0: a transport error, in body). */
    void (*error_text)(long status, const char *body, size_t len, char *out, size_t cap);
    /* 1 for errors worth retrying with backoff (throttling, capacity, server side). */
    int (*retryable)(long status, const char *err);
    /* Sets inst->key (and inst->id if the cloud's id is the key) and starts the create
     * call, whose answer calls gw_cloud_created or gw_cloud_exit. 0 or a negative code. */
    int (*launch)(gw_cloud_t *c, gw_instance_t *inst);
    /* Starts the termination of `id` (inst NULL for an orphan); its answer calls
     * gw_cloud_terminated. 0 or a negative code. */
    int (*terminate)(gw_cloud_t *c, const char *id, gw_instance_t *inst);
    /* Starts listing the cluster's instances of this model; the answer calls
     * gw_cloud_listed. 0 or a negative code. */
    int (*list)(gw_cloud_t *c);
    /* Frees the whole provider (the embedding struct); every handle is closed. */
    void (*free)(gw_cloud_t *c);
} gw_cloud_ops_t;

struct gw_cloud {
    gw_provider_t super; /* first: a gw_cloud_t is a gw_provider_t */
    const gw_cloud_ops_t *ops;
    uv_loop_t *loop;
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    const gw_model_t *model;
    char join_url[1024];
    char *ca, *cert, *key; /* PEM texts for a boot script (gw_cloud_init with pems) */
    gw_instance_t *insts;
    int live; /* owned instances plus adoption candidates not yet terminated */
    gw_cloud_call_t *calls;
    uv_timer_t sweep;
    int sweeping, swept, destroying, shutdown;
    uint64_t listed_at; /* loop clock of the last list */
    char last_error[512];
    uint64_t errors;
    uint64_t starts[1024]; /* ring of launch times (loop clock): cloud_max_starts_per_hour */
    int nstarts;
};

/* The provider ops every cloud shares; `kind` is the provider's name. */
#define GW_CLOUD_PROVIDER_OPS(k)                                                                   \
    {                                                                                              \
        .kind = (k), .start = gw_cloud_start, .stop = gw_cloud_stop,                               \
        .instance_id = gw_cloud_instance_id, .live = gw_cloud_live, .destroy = gw_cloud_destroy,   \
        .joined = gw_cloud_joined, .api_error = gw_cloud_api_error, .shutdown = gw_cloud_shutdown  \
    }

int gw_cloud_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **inst,
                   char *addr, size_t addr_cap);
void gw_cloud_stop(gw_provider_t *p, gw_instance_t *inst, int force);
void gw_cloud_instance_id(gw_provider_t *p, gw_instance_t *inst, char *buf, size_t cap);
int gw_cloud_live(gw_provider_t *p);
void gw_cloud_destroy(gw_provider_t *p);
int gw_cloud_joined(gw_provider_t *p, const char *name, const char *addr);
const char *gw_cloud_api_error(gw_provider_t *p, uint64_t *errors);
void gw_cloud_shutdown(gw_provider_t *p);

/* Fills the shared part (c must be zeroed, inside the provider's struct). With pems, reads
 * tls_ca, cloud_backend_cert and cloud_backend_key for the boot script. 0, or
 * PROTO_ECONFIG with the reason in err (nothing to free then but c's container). */
int gw_cloud_init(gw_cloud_t *c, const gw_cloud_ops_t *ops, uv_loop_t *loop, gw_fetch_t *fetch,
                  const gw_config_t *cfg, const gw_model_t *model, gw_provider_exit_cb on_exit,
                  int pems, char *err, size_t errcap);

/* Starts the sweep: at once (a crashed predecessor's instances), then every
 * cloud_reap_interval_ms. Call last in the provider's create. */
void gw_cloud_run(gw_cloud_t *c);

/* Frees what gw_cloud_init allocated (for a create that fails after it). */
void gw_cloud_fini(gw_cloud_t *c);

/* Starts an API call (takes body, malloc'd or NULL) after delay_ms. Its callback always runs
 * later, on the loop, exactly once. 0 or PROTO_ENOMEM (body freed, cb will not run). */
int gw_cloud_call(gw_cloud_t *c, const char *method, const char *path, char *body, size_t body_len,
                  const char *action, gw_instance_t *inst, gw_cloud_call_cb cb, uint64_t delay_ms);

/* For ops->send: starts the fetch of call with o (timeouts and body filled in here when 0). */
int gw_cloud_fetch(gw_cloud_t *c, gw_cloud_call_t *call, gw_fetch_opts_t *o);

/* Records an API error: the last error, the count and a log line. */
void gw_cloud_error(gw_cloud_t *c, const char *action, const char *err);

/* The create was accepted (id, if not NULL, is the cloud's id). Returns 1 when a stop was
 * already wanted and the termination has started (the caller stops following the create). */
int gw_cloud_created(gw_cloud_t *c, gw_instance_t *inst, const char *id);

/* The instance is gone (or never came): reports it to the pool and frees it. */
void gw_cloud_exit(gw_cloud_t *c, gw_instance_t *inst, const char *why);

/* A termination answered (inst NULL for an orphan's). */
void gw_cloud_terminated(gw_cloud_t *c, gw_instance_t *inst, int ok, const char *err);

/* A list answered (ok 0: it failed, err says why): the live instances of the cluster and
 * model. The first one after start makes the unknown ones adoption candidates and serves the
 * starts made before it; later ones terminate what nobody owns. */
void gw_cloud_listed(gw_cloud_t *c, int ok, const gw_cloud_found_t *found, int n, const char *err);

/* For a JSON API: transport errors, 429 and 5xx are retried. */
int gw_cloud_http_retryable(long status, const char *err);

/* The answer's JSON (NULL when there is none or it is not JSON); the caller deletes it. */
struct cJSON *gw_cloud_json(const char *body, size_t len);

/* The instance whose key is `key`, or NULL. */
gw_instance_t *gw_cloud_find(gw_cloud_t *c, const char *key);

/* A DNS-1123 label from `name`: prefix, then lower-case letters, digits and '-', then
 * "-XXXXXXXX" random hex. */
void gw_cloud_dns_name(const char *prefix, const char *name, char *out, size_t cap);

/* A text file of at most max bytes, NUL-terminated and ending in '\n'; NULL if unreadable,
 * empty or larger. The caller frees it. */
char *gw_cloud_read_file(const char *path, size_t max);

#endif
