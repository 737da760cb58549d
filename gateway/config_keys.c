/* The configuration's key table: every top-level and "[model NAME]" key with its type,
 * field and limits, the built-in defaults (including the embedded models), and printing the
 * configuration back (--print-config) by walking the same table. Start-up only, main thread.
 * Parsing is in config.c, validation in config_check.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "err.h"
#include "fetch.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "config_internal.h"

#define F(field) offsetof(gw_config_t, field)
#define S(field) sizeof(((gw_config_t *)0)->field)

static const gw__key_t keys[] = {
    {"listen", T_LISTEN, 0, 0, 0, 0, 0},
    {"max_connections", T_INT, F(max_connections), 0, 1, 1000000, 0},
    {"max_header_bytes", T_SIZE, F(max_header_bytes), 0, 256, 1 << 20, 0},
    {"max_body_bytes", T_SIZE, F(max_body_bytes), 0, 1, (double)PROTO_PAYLOAD_MAX, 0},
    {"max_pipelined", T_INT, F(max_pipelined), 0, 1, 1024, 0},
    {"header_timeout_ms", T_MS, F(header_timeout_ms), 0, 1, 3600000, 0},
    {"body_timeout_ms", T_MS, F(body_timeout_ms), 0, 1, 3600000, 0},
    {"idle_timeout_ms", T_MS, F(idle_timeout_ms), 0, 1, 86400000, 0},
    {"write_timeout_ms", T_MS, F(write_timeout_ms), 0, 1, 3600000, 0},
    {"max_buffered_bytes", T_SIZE, F(max_buffered_bytes), 0, 1, 1e15, 0},
    {"queue_size", T_INT, F(queue_size), 0, 0, 1000000, 0},
    {"deadline_ms", T_MS, F(deadline_ms), 0, 1, 3600000, 0},
    {"retries", T_INT, F(retries), 0, 0, 100, 0},
    {"retry_after_s", T_INT, F(retry_after_s), 0, 1, 3600, 0},
    /* 63: a metrics family holds 128 series; two per camera, plus "other" */
    {"max_cameras", T_INT, F(max_cameras), 0, 0, 63, 0},
    {"camera_queue_depth", T_INT, F(camera_queue_depth), 0, 1, 64, 0},
    {"camera_max_age_ms", T_MS, F(camera_max_age_ms), 0, 0, 3600000, 0},
    {"camera_weight", T_INT, F(camera_weight), 0, 1, 1000, 0},
    {"backend_command", T_STR, F(backend_command), S(backend_command), 0, 0, 0},
    {"backend_args", T_STR, F(backend_args), S(backend_args), 0, 0, 0},
    {"backend_concurrency", T_INT, F(backend_concurrency), 0, 1, 256, 0},
    {"max_image_side", T_INT, F(max_image_side), 0, 16, 1 << 20, 0},
    {"max_image_pixels", T_INT, F(max_image_pixels), 0, 256, 2147483647.0, 0},
    {"runtime_dir", T_STR, F(runtime_dir), S(runtime_dir), 0, 0, 0},
    {"tls_ca", T_STR, F(tls_ca), S(tls_ca), 0, 0, 0},
    {"tls_cert", T_STR, F(tls_cert), S(tls_cert), 0, 0, 0},
    {"tls_key", T_STR, F(tls_key), S(tls_key), 0, 0, 0},
    {"allow_insecure_backends", T_BOOL, F(allow_insecure_backends), 0, 0, 1, 0},
    {"join_listen", T_STR, F(join_listen), S(join_listen), 0, 0, 0},
    {"cloud_cluster", T_STR, F(cloud_cluster), S(cloud_cluster), 0, 0, 0},
    {"cloud_join_url", T_STR, F(cloud_join_url), S(cloud_join_url), 0, 0, 0},
    {"cloud_backend_cert", T_STR, F(cloud_backend_cert), S(cloud_backend_cert), 0, 0, 0},
    {"cloud_backend_key", T_STR, F(cloud_backend_key), S(cloud_backend_key), 0, 0, 0},
    {"cloud_backend_command", T_STR, F(cloud_backend_command), S(cloud_backend_command), 0, 0, 0},
    {"cloud_backend_port", T_INT, F(cloud_backend_port), 0, 1, 65535, 0},
    {"cloud_api_timeout_ms", T_MS, F(cloud_api_timeout_ms), 0, 100, 600000, 0},
    {"cloud_reap_interval_ms", T_MS, F(cloud_reap_interval_ms), 0, 100, 86400000, 0},
    {"cloud_max_starts_per_hour", T_INT, F(cloud_max_starts_per_hour), 0, 1, 100000, 0},
    {"keep_instances_on_exit", T_BOOL, F(keep_instances_on_exit), 0, 0, 1, 0},
    {"ec2_region", T_STR, F(ec2_region), S(ec2_region), 0, 0, 0},
    {"ec2_endpoint", T_STR, F(ec2_endpoint), S(ec2_endpoint), 0, 0, 0},
    {"ec2_ca_file", T_STR, F(ec2_ca_file), S(ec2_ca_file), 0, 0, 0},
    {"ec2_image", T_STR, F(ec2_image), S(ec2_image), 0, 0, 0},
    {"ec2_instance_type", T_STR, F(ec2_instance_type), S(ec2_instance_type), 0, 0, 0},
    {"ec2_subnet", T_STR, F(ec2_subnet), S(ec2_subnet), 0, 0, 0},
    {"ec2_security_groups", T_STR, F(ec2_security_groups), S(ec2_security_groups), 0, 0, 0},
    {"ec2_instance_profile", T_STR, F(ec2_instance_profile), S(ec2_instance_profile), 0, 0, 0},
    {"gce_project", T_STR, F(gce_project), S(gce_project), 0, 0, 0},
    {"gce_zone", T_STR, F(gce_zone), S(gce_zone), 0, 0, 0},
    {"gce_machine_type", T_STR, F(gce_machine_type), S(gce_machine_type), 0, 0, 0},
    {"gce_image", T_STR, F(gce_image), S(gce_image), 0, 0, 0},
    {"gce_network", T_STR, F(gce_network), S(gce_network), 0, 0, 0},
    {"gce_subnetwork", T_STR, F(gce_subnetwork), S(gce_subnetwork), 0, 0, 0},
    {"gce_service_account", T_STR, F(gce_service_account), S(gce_service_account), 0, 0, 0},
    {"gce_key_file", T_STR, F(gce_key_file), S(gce_key_file), 0, 0, 0},
    {"gce_endpoint", T_STR, F(gce_endpoint), S(gce_endpoint), 0, 0, 0},
    {"gce_ca_file", T_STR, F(gce_ca_file), S(gce_ca_file), 0, 0, 0},
    {"k8s_server", T_STR, F(k8s_server), S(k8s_server), 0, 0, 0},
    {"k8s_token_file", T_STR, F(k8s_token_file), S(k8s_token_file), 0, 0, 0},
    {"k8s_ca_file", T_STR, F(k8s_ca_file), S(k8s_ca_file), 0, 0, 0},
    {"k8s_namespace", T_STR, F(k8s_namespace), S(k8s_namespace), 0, 0, 0},
    {"k8s_pod_template", T_STR, F(k8s_pod_template), S(k8s_pod_template), 0, 0, 0},
    {"k8s_tls_dir", T_STR, F(k8s_tls_dir), S(k8s_tls_dir), 0, 0, 0},
    {"models", T_STR, F(serve), S(serve), 0, 0, 0},
    {"default_model", T_STR, F(default_model), S(default_model), 0, 0, 0},
    {"backends", T_BACKENDS, 0, 0, 1, 256, 0},
    {"min_backends", T_INT, F(min_backends), 0, 0, 256, 0},
    {"max_backends", T_INT, F(max_backends), 0, 1, 256, 0},
    {"target_inflight_per_backend", T_DOUBLE, F(target_inflight_per_backend), 0, 0.001, 1e6, 0},
    {"scale_interval_ms", T_MS, F(scale_interval_ms), 0, 10, 3600000, 0},
    {"stable_window_ms", T_MS, F(stable_window_ms), 0, 0, 86400000, 0},
    {"panic_window_ms", T_MS, F(panic_window_ms), 0, 0, 86400000, 0},
    {"max_starting", T_INT, F(max_starting), 0, 1, 256, 0},
    {"start_timeout_ms", T_MS, F(start_timeout_ms), 0, 1, 86400000, 0},
    {"stop_grace_ms", T_MS, F(stop_grace_ms), 0, 0, 3600000, 0},
    {"backoff_initial_ms", T_MS, F(backoff_initial_ms), 0, 1, 3600000, 0},
    {"backoff_max_ms", T_MS, F(backoff_max_ms), 0, 1, 86400000, 0},
    {"shutdown_grace_ms", T_MS, F(shutdown_grace_ms), 0, 0, 3600000, 0},
    {"outlier_consecutive_failures", T_INT, F(outlier_consecutive_failures), 0, 0, 1000000, 0},
    {"outlier_window", T_INT, F(outlier_window), 0, 1, GW_HEALTH_WINDOW_MAX, 0},
    {"outlier_min_requests", T_INT, F(outlier_min_requests), 0, 1, GW_HEALTH_WINDOW_MAX, 0},
    {"outlier_stdev_factor", T_DOUBLE, F(outlier_stdev_factor), 0, 0, 100, 0},
    {"hung_factor", T_DOUBLE, F(hung_factor), 0, 0, 1e6, 0},
    {"hung_min_ms", T_MS, F(hung_min_ms), 0, 1, 3600000, 0},
    {"hung_grace_ms", T_MS, F(hung_grace_ms), 0, 1, 3600000, 0},
    {"heartbeat_ms", T_MS, F(heartbeat_ms), 0, 0, 3600000, 0},
    {"store", T_STR, F(store), S(store), 0, 0, 0},
    {"store_inputs", T_BOOL, F(store_inputs), 0, 0, 1, 0},
    {"store_results", T_BOOL, F(store_results), 0, 0, 1, 0},
    {"store_annotated", T_BOOL, F(store_annotated), 0, 0, 1, 0},
    {"store_only_detections", T_BOOL, F(store_only_detections), 0, 0, 1, 0},
    {"store_queue", T_INT, F(store_queue), 0, 0, 1000000, 0},
    {"store_queue_bytes", T_SIZE, F(store_queue_bytes), 0, 0, 1e12, 0},
    {"store_concurrency", T_INT, F(store_concurrency), 0, 1, 1024, 0},
    {"store_timeout_ms", T_MS, F(store_timeout_ms), 0, 1, 3600000, 0},
    {"store_retry_initial_ms", T_MS, F(store_retry_initial_ms), 0, 1, 3600000, 0},
    {"store_retry_max_ms", T_MS, F(store_retry_max_ms), 0, 1, 86400000, 0},
    {"spool_dir", T_STR, F(spool_dir), S(spool_dir), 0, 0, 0},
    {"jobs_dir", T_STR, F(jobs_dir), S(jobs_dir), 0, 0, 0},
    {"jobs_store", T_STR, F(jobs_store), S(jobs_store), 0, 0, 0},
    {"max_jobs", T_INT, F(max_jobs), 0, 0, 10000, 0},
    {"max_job_images", T_INT, F(max_job_images), 0, 1, 1000000, 0},
    {"max_job_bytes", T_SIZE, F(max_job_bytes), 0, 1, 1e13, 0},
    {"admin_token", T_SECRET, F(admin_token), S(admin_token), 0, 0, 0},
    {"spool_max_bytes", T_SIZE, F(spool_max_bytes), 0, 0, 1e15, 0},
    {"s3_endpoint", T_STR, F(s3_endpoint), S(s3_endpoint), 0, 0, 0},
    {"s3_region", T_STR, F(s3_region), S(s3_region), 0, 0, 0},
    {"s3_access_key", T_STR, F(s3_access_key), S(s3_access_key), 0, 0, 0},
    {"s3_secret_key", T_SECRET, F(s3_secret_key), S(s3_secret_key), 0, 0, 0},
    {"s3_path_style", T_BOOL, F(s3_path_style), 0, 0, 1, 0},
    {"fetch_allow", T_STR, F(fetch_allow), S(fetch_allow), 0, 0, 0},
    {"fetch_connect_timeout_ms", T_MS, F(fetch_connect_timeout_ms), 0, 1, 3600000, 0},
    {"fetch_timeout_ms", T_MS, F(fetch_timeout_ms), 0, 1, 3600000, 0},
    {"fetch_max_redirects", T_INT, F(fetch_max_redirects), 0, 0, 20, 0},
    /* the front door (frontdoor.h, tls_conn.h) */
    {"tokens_file", T_STR, F(tokens_file), S(tokens_file), 0, 0, 0},
    {"rate_limit", T_STR, F(rate_limit), S(rate_limit), 0, 0, 0},
    {"rate_limit_address", T_STR, F(rate_limit_address), S(rate_limit_address), 0, 0, 0},
    {"max_connections_per_address", T_INT, F(max_connections_per_address), 0, 0, 1000000, 0},
    {"metrics_listen", T_STR, F(metrics_listen), S(metrics_listen), 0, 0, 0},
    {"listen_plain", T_STR, F(listen_plain), S(listen_plain), 0, 0, 0},
    {"https_cert", T_STR, F(https_cert), S(https_cert), 0, 0, 0},
    {"https_key", T_STR, F(https_key), S(https_key), 0, 0, 0},
    {"https_client_ca", T_STR, F(https_client_ca), S(https_client_ca), 0, 0, 0},
    {"log_level", T_LEVEL, F(log_level), 0, 0, 0, 0},
};

#define M(field) offsetof(gw_model_t, field)
#define MS(field) sizeof(((gw_model_t *)0)->field)

/* Keys of a "[model NAME]" section (or "model.NAME.KEY"). Those with a bit (the pool keys and
 * what to store) are inherited from the top-level key of the same name unless the model sets
 * its own. */
const gw__key_t gw__model_keys[] = {
    {"cfg", T_STR, M(cfg), MS(cfg), 0, 0, 0},
    {"weights", T_STR, M(weights), MS(weights), 0, 0, 0},
    {"names", T_STR, M(names), MS(names), 0, 0, 0},
    {"input_size", T_INT, M(input_size), 0, 0, 8192, 0},
    {"preprocess", T_PREPROCESS, M(preprocess), 0, 0, 0, 0},
    {"decode", T_DECODE, M(decode), 0, 0, 0, 0},
    {"precision", T_PRECISION, M(precision), 0, 0, 0, 0},
    {"threshold", T_DOUBLE, M(threshold), 0, 0, 1, 0},
    {"nms", T_DOUBLE, M(nms), 0, 0, 1, 0},
    {"top_k", T_INT, M(top_k), 0, 0, 1000, 0},
    {"backends", T_BACKENDS, 0, 0, 1, 256, GW_MODEL_SET_MIN | GW_MODEL_SET_MAX},
    {"min_backends", T_INT, M(min_backends), 0, 0, 256, GW_MODEL_SET_MIN},
    {"max_backends", T_INT, M(max_backends), 0, 1, 256, GW_MODEL_SET_MAX},
    {"target_inflight_per_backend", T_DOUBLE, M(target_inflight_per_backend), 0, 0.001, 1e6,
     GW_MODEL_SET_TARGET},
    {"backend_args", T_STR, M(backend_args), MS(backend_args), 0, 0, GW_MODEL_SET_ARGS},
    {"provider", T_PROVIDER, M(provider), MS(provider), 0, 0, 0},
    {"backends_static", T_STR, M(backends_static), MS(backends_static), 0, 0, 0},
    {"providers", T_STR, M(providers), MS(providers), 0, 0, 0},
    {"store", T_STR, M(store), MS(store), 0, 0, GW_MODEL_SET_STORE},
    {"store_inputs", T_BOOL, M(store_inputs), 0, 0, 1, GW_MODEL_SET_STORE_INPUTS},
    {"store_results", T_BOOL, M(store_results), 0, 0, 1, GW_MODEL_SET_STORE_RESULTS},
    {"store_annotated", T_BOOL, M(store_annotated), 0, 0, 1, GW_MODEL_SET_STORE_ANNOTATED},
    {"store_only_detections", T_BOOL, M(store_only_detections), 0, 0, 1,
     GW_MODEL_SET_STORE_ONLY_DETECTIONS},
};
const size_t gw__model_nkeys = sizeof gw__model_keys / sizeof gw__model_keys[0];

const char *const gw__level_names[4] = {"error", "warn", "info", "debug"};
const char *const gw__preprocess_names[2] = {"darknet", "faceapi"};
const char *const gw__provider_names[7] = {"",    "local", "static",    "registered",
                                           "ec2", "gce",   "kubernetes"};
const char *const gw__decode_names[2] = {"exact", "fast"};
const char *const gw__precision_names[2] = {"fp32", "bf16"};

/* A new model: darknet's own defaults, pool keys inherited. */
void gw__config_init_model(gw_model_t *m, const char *name)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->preprocess = GW_PRE_DARKNET;
    m->threshold = 0.25;
    m->nms = 0.45;
}

/* Appends a new model (the caller checked there is room). */
gw_model_t *gw__config_add_model(gw_config_t *cfg, const char *name)
{
    gw_model_t *m = &cfg->models[cfg->nmodels++];
    gw__config_init_model(m, name);
    return m;
}

/* The embedded models: the face detector converted from face-api at setup (the default,
 * listed first) and yolov3-tiny with the weights scripts/models.sh generates; both in the
 * cache directory, resolved here at start. yolov3-tiny scales to zero when idle. */
static void default_models(gw_config_t *cfg)
{
    const char *cache = getenv("FRAMEGATE_CACHE");
    const char *home = getenv("HOME");
    char dir[900];
    if (cache != NULL && cache[0] != '\0')
        snprintf(dir, sizeof dir, "%.880s/models", cache);
    else
        snprintf(dir, sizeof dir, "%.850s/.cache/framegate/models",
                 home != NULL && home[0] != '\0' ? home : "/root");

    gw_model_t *m = &cfg->models[0];
    gw__config_init_model(m, "face");
    snprintf(m->cfg, sizeof m->cfg, "%s/face-tiny.cfg", dir);
    snprintf(m->weights, sizeof m->weights, "%s/face-tiny.weights", dir);
    snprintf(m->names, sizeof m->names, "%s/face.names", dir);
    m->preprocess = GW_PRE_FACEAPI;
    m->input_size = 416;
    m->threshold = 0.5;
    m->nms = 0.4;

    m = &cfg->models[1];
    gw__config_init_model(m, "yolov3-tiny");
    snprintf(m->cfg, sizeof m->cfg, "/usr/share/darknet/cfg/yolov3-tiny.cfg");
    snprintf(m->weights, sizeof m->weights, "%s/yolov3-tiny.weights", dir);
    snprintf(m->names, sizeof m->names, "/usr/share/darknet/data/coco.names");
    m->threshold = 0.25;
    m->nms = 0.45;
    m->min_backends = 0;
    m->set = GW_MODEL_SET_MIN;
    cfg->nmodels = 2;
}

void gw_config_defaults(gw_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "0.0.0.0");
    cfg->listen_port = 8080;
    cfg->max_connections = 1024;
    cfg->max_header_bytes = 16 << 10;
    cfg->max_body_bytes = 16 << 20;
    cfg->max_pipelined = 16;
    cfg->header_timeout_ms = 10000;
    snprintf(cfg->cloud_cluster, sizeof cfg->cloud_cluster, "framegate");
    cfg->cloud_backend_port = 7000;
    cfg->cloud_api_timeout_ms = 15000;
    cfg->cloud_reap_interval_ms = 60000;
    cfg->cloud_max_starts_per_hour = 60;
    snprintf(cfg->ec2_region, sizeof cfg->ec2_region, "us-east-1");
    snprintf(cfg->k8s_token_file, sizeof cfg->k8s_token_file,
             "/var/run/secrets/kubernetes.io/serviceaccount/token");
    snprintf(cfg->k8s_ca_file, sizeof cfg->k8s_ca_file,
             "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
    snprintf(cfg->k8s_tls_dir, sizeof cfg->k8s_tls_dir, "/etc/framegate/tls");
    snprintf(cfg->gce_network, sizeof cfg->gce_network, "global/networks/default");
    cfg->body_timeout_ms = 60000;
    cfg->idle_timeout_ms = 60000;
    cfg->write_timeout_ms = 30000;
    cfg->max_buffered_bytes = 256u << 20;
    cfg->queue_size = 1024;
    cfg->deadline_ms = 30000;
    cfg->retries = 2;
    cfg->retry_after_s = 1;
    cfg->max_cameras = 32;
    cfg->camera_queue_depth = 1;
    cfg->camera_max_age_ms = 2000;
    cfg->camera_weight = 1;
    cfg->backend_concurrency = 1;
    cfg->max_image_side = 16384;
    cfg->max_image_pixels = 64000000;
    default_models(cfg);
    cfg->min_backends = 1;
    cfg->max_backends = 2;
    cfg->target_inflight_per_backend = 1;
    cfg->scale_interval_ms = 1000;
    cfg->stable_window_ms = 30000;
    cfg->panic_window_ms = 6000;
    cfg->max_starting = 4;
    cfg->start_timeout_ms = 120000;
    cfg->stop_grace_ms = 10000;
    cfg->backoff_initial_ms = 1000;
    cfg->backoff_max_ms = 30000;
    cfg->shutdown_grace_ms = 20000;
    cfg->outlier_consecutive_failures = 5;
    cfg->outlier_window = 100;
    cfg->outlier_min_requests = 20;
    cfg->outlier_stdev_factor = 1.9;
    cfg->hung_factor = 10;
    cfg->hung_min_ms = 2000;
    cfg->hung_grace_ms = 5000;
    cfg->heartbeat_ms = 5000;
    snprintf(cfg->store, sizeof cfg->store, "none");
    cfg->store_inputs = 1;
    cfg->store_results = 1;
    cfg->store_queue = 1000;
    cfg->store_queue_bytes = 64u << 20;
    cfg->store_concurrency = 8;
    cfg->store_timeout_ms = 10000;
    cfg->store_retry_initial_ms = 500;
    cfg->store_retry_max_ms = 30000;
    cfg->spool_max_bytes = (size_t)1 << 30;
    cfg->max_jobs = 16;
    cfg->max_job_images = 2000;
    cfg->max_job_bytes = (size_t)512 << 20;
    cfg->s3_path_style = 0;
    cfg->fetch_connect_timeout_ms = 3000;
    cfg->fetch_timeout_ms = 10000;
    cfg->fetch_max_redirects = 3;
    cfg->log_level = 2;
}

const gw__key_t *gw__config_find_key(const char *name)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* A quoted value ends at its first closing quote, so a value holding a quote is printed
 * bare when that reads back the same (no edge spaces, no " #", no leading quote). A value
 * that fits neither form is printed as a comment, so the output still loads. */
static void print_string(FILE *out, const char *name, const char *v)
{
    size_t n = strlen(v);
    if (strchr(v, '"') == NULL) {
        fprintf(out, "%s = \"%s\"\n", name, v);
        return;
    }
    int bare_ok = v[0] != '"' && !isspace((unsigned char)v[0]) && !isspace((unsigned char)v[n - 1]);
    for (const char *p = v; bare_ok && *p; p++)
        if (*p == '#' && p > v && isspace((unsigned char)p[-1]))
            bare_ok = 0;
    if (bare_ok)
        fprintf(out, "%s = %s\n", name, v);
    else
        fprintf(out, "# %s cannot be written back as one value: %s\n", name, v);
}

static void print_key(FILE *out, const gw__key_t *k, const char *base, const char *prefix)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", prefix, k->name);
    switch (k->type) {
    case T_LISTEN: {
        const gw_config_t *cfg = (const gw_config_t *)base;
        if (strchr(cfg->listen_host, ':') != NULL)
            fprintf(out, "listen = [%s]:%d\n", cfg->listen_host, cfg->listen_port);
        else
            fprintf(out, "listen = %s:%d\n", cfg->listen_host, cfg->listen_port);
        break;
    }
    case T_LEVEL:
        fprintf(out, "%s = %s\n", name, gw__level_names[*(const int *)(base + k->off) & 3]);
        break;
    case T_PREPROCESS:
        fprintf(out, "%s = %s\n", name, gw__preprocess_names[*(const int *)(base + k->off) & 1]);
        break;
    case T_DECODE:
        fprintf(out, "%s = %s\n", name, gw__decode_names[*(const int *)(base + k->off) & 1]);
        break;
    case T_PRECISION:
        fprintf(out, "%s = %s\n", name, gw__precision_names[*(const int *)(base + k->off) & 1]);
        break;
    case T_PROVIDER:
    case T_STR:
        print_string(out, name, base + k->off);
        break;
    case T_SECRET: /* --print-config output ends up in tickets and logs */
        if (*(base + k->off) != '\0')
            fprintf(out, "# %s = (set, not printed)\n", name);
        else
            print_string(out, name, "");
        break;
    case T_BOOL:
        fprintf(out, "%s = %s\n", name, *(const int *)(base + k->off) ? "on" : "off");
        break;
    case T_DOUBLE: {
        /* The shortest text that reads back as the same double: 0.4, not 0.40000000000000002. */
        double v = *(const double *)(base + k->off);
        char text[40];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(text, sizeof text, "%.*g", prec, v);
            if (strtod(text, NULL) == v)
                break;
        }
        if (v == floor(v) && fabs(v) < 1e15) /* 10, not the shorter "1e+01" */
            snprintf(text, sizeof text, "%.0f", v);
        fprintf(out, "%s = %s\n", name, text);
        break;
    }
    case T_SIZE:
        fprintf(out, "%s = %zu\n", name, *(const size_t *)(base + k->off));
        break;
    case T_MS:
        fprintf(out, "%s = %llu\n", name, (unsigned long long)*(const uint64_t *)(base + k->off));
        break;
    case T_INT:
        fprintf(out, "%s = %d\n", name, *(const int *)(base + k->off));
        break;
    case T_BACKENDS: /* an alias: min/max are printed */
        break;
    }
}

void gw_config_print(const gw_config_t *cfg, FILE *out)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        print_key(out, &keys[i], (const char *)cfg, "");
    for (int i = 0; i < cfg->nmodels; i++) {
        const gw_model_t *m = &cfg->models[i];
        fprintf(out, "\n[model %s]\n", m->name);
        for (size_t j = 0; j < gw__model_nkeys; j++) {
            const gw__key_t *k = &gw__model_keys[j];
            /* An inherited pool key is shown as a comment: written back, it must stay
             * inherited. */
            if (k->bit != 0 && k->type != T_BACKENDS && !(m->set & k->bit))
                fprintf(out, "# inherited: ");
            print_key(out, k, (const char *)m, "");
        }
    }
    for (int i = 0; i < cfg->ncameras; i++) {
        const gw_camera_cfg_t *c = &cfg->cameras[i];
        fprintf(out, "\n[camera %s]\n", c->name);
        if (c->weight > 0)
            fprintf(out, "weight = %d\n", c->weight);
        if (c->max_age_ms >= 0)
            fprintf(out, "max_age_ms = %lld\n", (long long)c->max_age_ms);
        if (c->url[0] != '\0') {
            fprintf(out, "url = %s\nmode = %s\nfps = %.17g\n", c->url,
                    c->mode == GW_PULL_SNAPSHOT ? "snapshot" : "mjpeg", c->fps);
            if (c->model[0] != '\0')
                fprintf(out, "model = %s\n", c->model);
            if (c->threshold > 0)
                fprintf(out, "threshold = %.9g\n", (double)c->threshold);
            fprintf(out, "max_frame_bytes = %zu\n", c->max_frame_bytes);
        }
    }
}
