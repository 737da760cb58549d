/* Where backends run. The pool asks a provider to start a named backend and to stop it;
 * the provider reports when it has exited. The scaling logic never sees processes or cloud
 * APIs, so a cloud provider is one more ops table (provider_<kind>.c) and nothing else.
 * Everything here runs on the loop thread. */
#ifndef GW_PROVIDER_H
#define GW_PROVIDER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

typedef struct gw_provider gw_provider_t;

#define GW_TIERS_MAX 4                    /* tiers in a model's `providers` list */
typedef struct gw_instance gw_instance_t; /* one started backend, owned by the provider */

/* Reports that an instance has exited (or, for a remote provider, is gone). `status` is the
 * exit status, `signal` the terminating signal or 0; `why` a short human text. After this
 * callback the instance pointer is invalid. Called on the loop thread, never from inside
 * start(). */
typedef void (*gw_provider_exit_cb)(void *owner, gw_instance_t *inst, int64_t status, int signal,
                                    const char *why);

/* Reports the address to dial for an instance whose start() gave an empty address (a cloud
 * instance: known once it runs and its backend has joined). Loop thread, never from inside
 * start(); at most once per instance, before on_exit. */
typedef void (*gw_provider_addr_cb)(void *owner, gw_instance_t *inst, const char *addr);

/* Offers an instance this provider did not start for the pool: one left running by an earlier
 * gateway (same cluster and model), whose backend has joined at `addr`. Returns the owner
 * (then passed to on_exit like a started one's; the pool health-checks it as a starting
 * backend) or NULL when the pool will not take it (the provider then terminates it). Loop
 * thread, from inside ops->joined. */
typedef void *(*gw_provider_adopt_cb)(void *ctx, gw_instance_t *inst, const char *addr);

typedef struct {
    const char *kind; /* "local", ... */
    /* Starts backend `name`. On success stores the instance and the NNG address to dial
     * (NUL-terminated, at most addr_cap bytes) and returns 0; `owner` is passed back to
     * on_exit. Returns a negative code (and no instance) if it could not even start.
     * A cloud provider returns at once with addr "" (its API calls run on the loop) and
     * reports the address later through on_address, or the failure through on_exit; the
     * pool's start_timeout_ms covers the whole boot. */
    int (*start)(gw_provider_t *p, const char *name, void *owner, gw_instance_t **inst,
                 char *addr, size_t addr_cap);
    /* Asks the instance to stop: gracefully (SIGTERM for a process) or, with force, at once
     * (SIGKILL). on_exit still reports the end. Safe to call more than once. */
    void (*stop)(gw_provider_t *p, gw_instance_t *inst, int force);
    /* The instance's id in the provider's own terms, for /v1/backends ("instance") and the
     * logs: unique among the provider's live instances; for the local provider, the
     * process id. NUL-terminated, truncated to cap. */
    void (*instance_id)(gw_provider_t *p, gw_instance_t *inst, char *buf, size_t cap);
    /* Instances still alive (not yet reported through on_exit). */
    int (*live)(gw_provider_t *p);
    /* Frees the provider; every instance must have exited (live() == 0). */
    void (*destroy)(gw_provider_t *p);
    /* Cloud providers (else NULL): a backend announced itself on the join listener as
     * `name` at `addr`. Returns 0 when it is one of this provider's instances (its address
     * is then reported through on_address), PROTO_EINVAL when it is not. */
    int (*joined)(gw_provider_t *p, const char *name, const char *addr);
    /* Cloud providers (else NULL): the last API error in words ("" if none), for
     * /v1/backends and /readyz; and the count of API errors since start (metrics). */
    const char *(*api_error)(gw_provider_t *p, uint64_t *errors);
    /* Cloud providers (else NULL): the gateway is exiting; the stops that follow terminate
     * the instances, or with keep_instances_on_exit leave them running for the next gateway
     * to adopt (on_exit then follows at once). */
    void (*shutdown)(gw_provider_t *p);
    /* Tiered providers (else NULL): the tier of an instance, 0 the cheapest; scale-in takes
     * the highest first. */
    int (*tier)(gw_provider_t *p, gw_instance_t *inst);
} gw_provider_ops_t;

struct gw_provider {
    const gw_provider_ops_t *ops;
    gw_provider_exit_cb on_exit;
    gw_provider_addr_cb on_address;
    gw_provider_adopt_cb on_adopt; /* NULL: nothing is adopted (leftovers are terminated) */
    void *adopt_ctx;
};

/* The local provider for one model: backends are child processes of the gateway (uv_spawn)
 * running `model` (its files, thresholds and backend_args, resolved by gw_config_validate),
 * dialled over ipc:// sockets in cfg->runtime_dir (created if needed; the providers of
 * several models share it). `argv0` is the gateway's own path, used to find framegate-backend
 * when cfg->backend_command is empty. cfg and model must outlive it. */
int gw_provider_local_create(gw_provider_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                             const gw_model_t *model, const char *argv0,
                             gw_provider_exit_cb on_exit);

/* The static provider for one model: its backends were started elsewhere, at the addresses
 * in model->backends_static (checked and counted by gw_config_validate). start() hands out
 * the next address no instance holds (PROTO_ENOBACKEND when all are held); stop() forgets
 * the instance, whose on_exit follows on the loop (the backend keeps running); instance_id()
 * is "static-N", N the address's place in the list. */
int gw_provider_static_create(gw_provider_t **out, uv_loop_t *loop, const gw_model_t *model,
                              gw_provider_exit_cb on_exit);

/* The registered provider for one model: like the static one, over the addresses backends
 * announced on the join listener (join.h). Starts empty. */
int gw_provider_registered_create(gw_provider_t **out, uv_loop_t *loop,
                                  gw_provider_exit_cb on_exit);

/* Registers `addr` (instance id `name`). Returns 0 when added, 1 when it was registered
 * already (a periodic re-join), PROTO_ETOOBIG when 256 are, PROTO_EINVAL for a provider of
 * another kind; *count is then the number registered. */
int gw_provider_registered_add(gw_provider_t *p, const char *name, const char *addr, int *count);

/* Deregisters `addr`: no longer handed out; an instance holding it keeps it until the pool
 * stops it. Returns 0 (with *count) or PROTO_EINVAL when it is not registered. */
int gw_provider_registered_remove(gw_provider_t *p, const char *addr, int *count);

/* One registered address whose backend has not repeated its join for ttl_ms (it died
 * without deregistering): copies it into addr and returns 1; 0 when there is none. */
int gw_provider_registered_stale(gw_provider_t *p, uint64_t ttl_ms, char *addr, size_t cap);

typedef struct gw_fetch gw_fetch_t;

/* The EC2 provider for one model (provider_ec2.c): each backend is an EC2 instance that
 * boots framegate-backend from its user data and joins cfg->join_listen; start() returns
 * with the address pending (reported by on_address once the backend has joined: pass joins
 * to ops->joined). API calls go through `fetch` (which must outlive it, or be destroyed
 * after every call was cancelled). Returns 0, PROTO_ECONFIG (no credentials, unreadable
 * certificates; reason in err) or PROTO_ENOMEM. */
int gw_provider_ec2_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap);

/* The GCE provider for one model (provider_gce.c): one Compute Engine instance per backend,
 * its startup script the EC2 user data's. Same contract as the EC2 one. */
int gw_provider_gce_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap);

/* The Kubernetes provider for one model (provider_kubernetes.c): one Pod per backend from
 * cfg->k8s_pod_template, joining like an EC2 instance. Same contract as the EC2 one. */
int gw_provider_kubernetes_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                                  const gw_config_t *cfg, const gw_model_t *model,
                                  gw_provider_exit_cb on_exit, char *err, size_t errcap);

/* The tiered provider for one model (provider_tiers.c, model key `providers`): tiers[0..n),
 * cheapest first, each holding at most max[i] instances. It takes the providers (destroying
 * them with itself) and their callbacks. 0, PROTO_EINVAL (n out of 1..GW_TIERS_MAX) or
 * PROTO_ENOMEM (the providers are then still the caller's). */
int gw_provider_tiers_create(gw_provider_t **out, gw_provider_t *const *tiers, const int *max,
                             int n, gw_provider_exit_cb on_exit);

#endif
