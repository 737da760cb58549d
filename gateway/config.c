/* Configuration: a table of keys (name, type, field offset, limits) drives the file parser,
 * the environment, --set, printing and the documented defaults alike, so a key cannot be
 * parsed in one place and forgotten in another. */
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

typedef enum {
    T_INT,
    T_SIZE,
    T_MS,
    T_DOUBLE,
    T_STR,
    T_LISTEN,
    T_LEVEL,
    T_BACKENDS,
    T_PREPROCESS,
    T_BOOL,
    T_PROVIDER,
    T_SECRET, /* a string never printed back */
    T_DECODE,
} key_type_t;

typedef struct {
    const char *name;
    key_type_t type;
    size_t off;
    size_t cap; /* strings: buffer size */
    double min, max;
    unsigned bit; /* model keys: the GW_MODEL_SET_* bit a value sets (pool keys only) */
} key_t_;

#define F(field) offsetof(gw_config_t, field)
#define S(field) sizeof(((gw_config_t *)0)->field)

static const key_t_ keys[] = {
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
    {"log_level", T_LEVEL, F(log_level), 0, 0, 0, 0},
};

#define M(field) offsetof(gw_model_t, field)
#define MS(field) sizeof(((gw_model_t *)0)->field)

/* Keys of a "[model NAME]" section (or "model.NAME.KEY"). Those with a bit (the pool keys and
 * what to store) are inherited from the top-level key of the same name unless the model sets
 * its own. */
static const key_t_ model_keys[] = {
    {"cfg", T_STR, M(cfg), MS(cfg), 0, 0, 0},
    {"weights", T_STR, M(weights), MS(weights), 0, 0, 0},
    {"names", T_STR, M(names), MS(names), 0, 0, 0},
    {"input_size", T_INT, M(input_size), 0, 0, 8192, 0},
    {"preprocess", T_PREPROCESS, M(preprocess), 0, 0, 0, 0},
    {"decode", T_DECODE, M(decode), 0, 0, 0, 0},
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
    {"store", T_STR, M(store), MS(store), 0, 0, GW_MODEL_SET_STORE},
    {"store_inputs", T_BOOL, M(store_inputs), 0, 0, 1, GW_MODEL_SET_STORE_INPUTS},
    {"store_results", T_BOOL, M(store_results), 0, 0, 1, GW_MODEL_SET_STORE_RESULTS},
    {"store_annotated", T_BOOL, M(store_annotated), 0, 0, 1, GW_MODEL_SET_STORE_ANNOTATED},
    {"store_only_detections", T_BOOL, M(store_only_detections), 0, 0, 1,
     GW_MODEL_SET_STORE_ONLY_DETECTIONS},
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const preprocess_names[] = {"darknet", "faceapi"};
static const char *const provider_names[] = {"",    "local", "static",    "registered",
                                             "ec2", "gce",   "kubernetes"};
static const char *const decode_names[] = {"exact", "fast"};

/* A new model: darknet's own defaults, pool keys inherited. */
static void init_model(gw_model_t *m, const char *name)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->preprocess = GW_PRE_DARKNET;
    m->threshold = 0.25;
    m->nms = 0.45;
}

/* Appends a new model (the caller checked there is room). */
static gw_model_t *add_model(gw_config_t *cfg, const char *name)
{
    gw_model_t *m = &cfg->models[cfg->nmodels++];
    init_model(m, name);
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
    init_model(m, "face");
    snprintf(m->cfg, sizeof m->cfg, "%s/face-tiny.cfg", dir);
    snprintf(m->weights, sizeof m->weights, "%s/face-tiny.weights", dir);
    snprintf(m->names, sizeof m->names, "%s/face.names", dir);
    m->preprocess = GW_PRE_FACEAPI;
    m->input_size = 416;
    m->threshold = 0.5;
    m->nms = 0.4;

    m = &cfg->models[1];
    init_model(m, "yolov3-tiny");
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

static const key_t_ *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static int fail(char *err, size_t cap, const char *origin, const char *key, const char *why,
                const char *value)
{
    snprintf(err, cap, "%s: key '%s': %s (got '%s')", origin, key, why, value);
    return PROTO_ECONFIG;
}

/* Parses an unsigned number with an optional unit suffix; `units` maps suffixes to factors. */
typedef struct {
    const char *suffix;
    double factor;
} unit_t;

static const unit_t size_units[] = {{"", 1},          {"k", 1024},    {"K", 1024},
                                    {"m", 1 << 20},   {"M", 1 << 20}, {"g", 1 << 30},
                                    {"G", 1 << 30},   {"KiB", 1024},  {"MiB", 1 << 20},
                                    {"GiB", 1 << 30}, {"B", 1},       {NULL, 0}};
static const unit_t ms_units[] = {{"", 1},      {"ms", 1},      {"s", 1000},
                                  {"m", 60000}, {"min", 60000}, {NULL, 0}};

static int parse_number(const char *v, const unit_t *units, double *out)
{
    char *end;
    errno = 0;
    /* strtod also reads hex ("0x10") and "inf"; a config value is a plain decimal. */
    if (!isdigit((unsigned char)v[0]) && !(v[0] == '-' && isdigit((unsigned char)v[1])) &&
        !(v[0] == '.' && isdigit((unsigned char)v[1])))
        return -1;
    double x = strtod(v, &end);
    if (end == v || errno != 0 || !isfinite(x))
        return -1;
    for (const char *p = v; p < end; p++)
        if (*p == 'x' || *p == 'X')
            return -1;
    while (*end == ' ')
        end++;
    for (const unit_t *u = units; u->suffix != NULL; u++)
        if (strcmp(end, u->suffix) == 0) {
            *out = x * u->factor;
            return 0;
        }
    return -1;
}

static int parse_listen(gw_config_t *cfg, const char *v)
{
    const char *colon;
    char host[256];
    if (v[0] == '[') { /* [v6]:port */
        const char *close = strchr(v, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - v - 1) >= sizeof host)
            return -1;
        memcpy(host, v + 1, (size_t)(close - v - 1));
        host[close - v - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL || (size_t)(colon - v) >= sizeof host || colon == v)
            return -1;
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
    }
    /* An IP address or a host name (an IPv6 zone after '%'): nothing else, so that
     * --print-config writes it back as one value (a space, '#', '"' or ']' would not read
     * back the same; fuzz_config found them). */
    if (host[0] == '\0' || strspn(host, "0123456789abcdefghijklmnopqrstuvwxyz"
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_:%") != strlen(host) ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5 ||
        colon[1] == '\0')
        return -1;
    long port = strtol(colon + 1, NULL, 10);
    if (port > 65535)
        return -1;
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "%s", host);
    cfg->listen_port = (int)port;
    return 0;
}

/* Parses `value` for key k into base + k->off. `shown` is the key as the user wrote it (for
 * messages); `model` is the model being set, NULL for a top-level key. */
static int set_key(gw_config_t *cfg, gw_model_t *model, const key_t_ *k, const char *shown,
                   const char *value, const char *origin, char *err, size_t errcap)
{
    char *base = model != NULL ? (char *)model : (char *)cfg;
    double x = 0;

    switch (k->type) {
    case T_LISTEN:
        if (parse_listen(cfg, value) != 0)
            return fail(err, errcap, origin, shown, "expected HOST:PORT with port 0..65535", value);
        return 0;
    case T_LEVEL:
        for (int i = 0; i < 4; i++)
            if (strcmp(value, level_names[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected error, warn, info or debug", value);
    case T_PREPROCESS:
        for (int i = 0; i < 2; i++)
            if (strcmp(value, preprocess_names[i]) == 0) {
                *(int *)(base + k->off) = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected darknet or faceapi", value);
    case T_BOOL:
        if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
            *(int *)(base + k->off) = 1;
        else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 ||
                 strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
            *(int *)(base + k->off) = 0;
        else
            return fail(err, errcap, origin, shown, "expected on or off", value);
        if (model != NULL)
            model->set |= k->bit;
        return 0;
    case T_PROVIDER:
        for (size_t i = 0; i < sizeof provider_names / sizeof provider_names[0]; i++)
            if (strcmp(value, provider_names[i]) == 0) {
                snprintf(base + k->off, k->cap, "%s", value);
                return 0;
            }
        return fail(err, errcap, origin, shown,
                    "expected local, static, registered, ec2, gce or kubernetes", value);
    case T_DECODE:
        for (int i = 0; i < 2; i++)
            if (strcmp(value, decode_names[i]) == 0) {
                *(int *)(base + k->off) = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected exact or fast", value);
    case T_STR:
    case T_SECRET:
        if (strlen(value) >= k->cap)
            return fail(err, errcap, origin, shown, "too long", value);
        /* A control character (a newline from the environment) could not be printed back
         * as one "key = value" line, and is never meant in a path or an argument list. */
        for (const char *p = value; *p; p++)
            if (iscntrl((unsigned char)*p))
                return fail(err, errcap, origin, shown, "control character in value", value);
        snprintf(base + k->off, k->cap, "%s", value);
        if (model != NULL)
            model->set |= k->bit;
        return 0;
    case T_DOUBLE:
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0)
            return fail(err, errcap, origin, shown, "expected a number", value);
        break;
    case T_SIZE:
        if (parse_number(value, size_units, &x) != 0)
            return fail(err, errcap, origin, shown, "expected bytes, optionally with K/M/G", value);
        break;
    case T_MS:
        if (parse_number(value, ms_units, &x) != 0)
            return fail(err, errcap, origin, shown, "expected milliseconds, or a ms/s/m suffix",
                        value);
        break;
    case T_INT:
    case T_BACKENDS:
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x != floor(x))
            return fail(err, errcap, origin, shown, "expected an integer", value);
        break;
    }
    /* Sizes and durations are whole bytes and milliseconds once their unit is applied
     * ("1.5K" and "0.5s" are fine, "1.5" bytes is not). */
    if ((k->type == T_SIZE || k->type == T_MS) && x != floor(x))
        return fail(err, errcap, origin, shown,
                    k->type == T_SIZE ? "not a whole number of bytes"
                                      : "not a whole number of milliseconds",
                    value);
    if (x < k->min || x > k->max) {
        char why[96];
        snprintf(why, sizeof why, "out of range %.15g..%.15g", k->min, k->max);
        return fail(err, errcap, origin, shown, why, value);
    }
    switch (k->type) {
    case T_DOUBLE:
        *(double *)(base + k->off) = x;
        break;
    case T_SIZE:
        *(size_t *)(base + k->off) = (size_t)x;
        break;
    case T_MS:
        *(uint64_t *)(base + k->off) = (uint64_t)x;
        break;
    case T_INT:
        *(int *)(base + k->off) = (int)x;
        break;
    case T_BACKENDS: /* a fixed pool: min = max */
        if (model != NULL)
            model->min_backends = model->max_backends = (int)x;
        else
            cfg->min_backends = cfg->max_backends = (int)x;
        break;
    default:
        break;
    }
    if (model != NULL)
        model->set |= k->bit;
    return 0;
}

static int valid_store(const char *v)
{
    return strcmp(v, "none") == 0 || strncmp(v, "dir:/", 5) == 0 || strncmp(v, "s3://", 5) == 0 ||
           strncmp(v, "gs://", 5) == 0;
}

static int valid_model_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= GW_MODEL_NAME_MAX || name[0] == '-')
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return 0;
    return 1;
}

const gw_model_t *gw_config_model(const gw_config_t *cfg, const char *name)
{
    for (int i = 0; i < cfg->nmodels; i++)
        if (strcmp(cfg->models[i].name, name) == 0)
            return &cfg->models[i];
    return NULL;
}

int gw_config_set_model(gw_config_t *cfg, const char *model, const char *key, const char *value,
                        const char *origin, char *err, size_t errcap)
{
    char shown[GW_MODEL_NAME_MAX + 160];
    snprintf(shown, sizeof shown, "model.%.*s.%.100s", GW_MODEL_NAME_MAX, model, key);
    const key_t_ *k = NULL;
    for (size_t i = 0; i < sizeof model_keys / sizeof model_keys[0]; i++)
        if (strcmp(model_keys[i].name, key) == 0)
            k = &model_keys[i];
    if (k == NULL) {
        snprintf(err, errcap, "%s: key '%s': unknown model key", origin, shown);
        return PROTO_ECONFIG;
    }
    if (!valid_model_name(model)) {
        snprintf(err, errcap,
                 "%s: key '%s': a model name is 1..%d of A-Z a-z 0-9 - _, not starting with -",
                 origin, shown, GW_MODEL_NAME_MAX - 1);
        return PROTO_ECONFIG;
    }
    gw_model_t *m = (gw_model_t *)gw_config_model(cfg, model);
    if (m == NULL) {
        /* Parse into a scratch model first: a bad value must not declare the model. */
        gw_model_t scratch;
        if (cfg->nmodels >= GW_MODELS_MAX) {
            snprintf(err, errcap, "%s: key '%s': more than %d models", origin, shown,
                     GW_MODELS_MAX);
            return PROTO_ECONFIG;
        }
        init_model(&scratch, model);
        int rv = set_key(cfg, &scratch, k, shown, value, origin, err, errcap);
        if (rv != 0)
            return rv;
        cfg->models[cfg->nmodels++] = scratch;
        return 0;
    }
    return set_key(cfg, m, k, shown, value, origin, err, errcap);
}

/* ---- [camera NAME] ---- */

/* Camera ids as clients send them; no ']' or spaces, so a section line stays one token. */
static int valid_camera_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= GW_CAMERA_NAME_MAX)
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr("-_.:@", *p) == NULL)
            return 0;
    return 1;
}

const gw_camera_cfg_t *gw_config_camera(const gw_config_t *cfg, const char *name)
{
    for (int i = 0; i < cfg->ncameras; i++)
        if (strcmp(cfg->cameras[i].name, name) == 0)
            return &cfg->cameras[i];
    return NULL;
}

int gw_config_set_camera(gw_config_t *cfg, const char *camera, const char *key,
                         const char *value, const char *origin, char *err, size_t errcap)
{
    char shown[GW_CAMERA_NAME_MAX + 120];
    double x;
    snprintf(shown, sizeof shown, "camera.%s.%.100s", camera, key);
    if (!valid_camera_name(camera)) {
        snprintf(err, errcap, "%s: key '%s': a camera name is 1..%d of A-Z a-z 0-9 - _ . : @",
                 origin, shown, GW_CAMERA_NAME_MAX - 1);
        return PROTO_ECONFIG;
    }
    gw_camera_cfg_t c = {.weight = 0, .max_age_ms = -1, .max_frame_bytes = 4u << 20}, *dst;
    dst = (gw_camera_cfg_t *)gw_config_camera(cfg, camera);
    if (dst != NULL)
        c = *dst;
    snprintf(c.name, sizeof c.name, "%s", camera);
    if (strcmp(key, "weight") == 0) {
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x != floor(x) ||
            x < 1 || x > 1000)
            return fail(err, errcap, origin, shown, "expected an integer in [1, 1000]", value);
        c.weight = (int)x;
    } else if (strcmp(key, "max_age_ms") == 0) {
        if (parse_number(value, ms_units, &x) != 0 || x != floor(x) || x < 0 || x > 3600000)
            return fail(err, errcap, origin, shown, "expected a duration in [0, 3600000] ms",
                        value);
        c.max_age_ms = (int64_t)x;
    } else if (strcmp(key, "url") == 0) {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
            return fail(err, errcap, origin, shown, "expected an http:// or https:// URL", value);
        if (strlen(value) >= sizeof c.url)
            return fail(err, errcap, origin, shown, "URL too long", value);
        snprintf(c.url, sizeof c.url, "%s", value);
    } else if (strcmp(key, "mode") == 0) {
        if (strcmp(value, "mjpeg") == 0)
            c.mode = GW_PULL_MJPEG;
        else if (strcmp(value, "snapshot") == 0)
            c.mode = GW_PULL_SNAPSHOT;
        else
            return fail(err, errcap, origin, shown, "expected mjpeg or snapshot", value);
    } else if (strcmp(key, "fps") == 0) {
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x < 0 ||
            x > 1000)
            return fail(err, errcap, origin, shown, "expected a rate in [0, 1000]", value);
        c.fps = x;
    } else if (strcmp(key, "model") == 0) {
        if (strlen(value) >= sizeof c.model)
            return fail(err, errcap, origin, shown, "model name too long", value);
        snprintf(c.model, sizeof c.model, "%s", value);
    } else if (strcmp(key, "threshold") == 0) {
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x < 0 || x > 1)
            return fail(err, errcap, origin, shown, "expected a number in [0, 1]", value);
        c.threshold = (float)x;
    } else if (strcmp(key, "max_frame_bytes") == 0) {
        if (parse_number(value, size_units, &x) != 0 || x != floor(x) || x < 1024 ||
            x > 64.0 * 1024 * 1024)
            return fail(err, errcap, origin, shown, "expected a size in [1k, 64M]", value);
        c.max_frame_bytes = (size_t)x;
    } else {
        snprintf(err, errcap,
                 "%s: key '%s': unknown camera key (weight, max_age_ms, url, mode, fps, model, "
                 "threshold, max_frame_bytes)",
                 origin, shown);
        return PROTO_ECONFIG;
    }
    if (dst == NULL) {
        if (cfg->ncameras >= GW_CAMERAS_CFG_MAX) {
            snprintf(err, errcap, "%s: key '%s': more than %d cameras", origin, shown,
                     GW_CAMERAS_CFG_MAX);
            return PROTO_ECONFIG;
        }
        dst = &cfg->cameras[cfg->ncameras++];
    }
    *dst = c;
    return 0;
}

int gw_config_set(gw_config_t *cfg, const char *key, const char *value, const char *origin,
                  char *err, size_t errcap)
{
    const key_t_ *k = find_key(key);

    if (k == NULL && strncmp(key, "camera.", 7) == 0) {
        const char *dot = strrchr(key + 7, '.'); /* camera names may hold dots, keys do not */
        if (dot != NULL && (size_t)(dot - key - 7) < GW_CAMERA_NAME_MAX) {
            char name[GW_CAMERA_NAME_MAX];
            memcpy(name, key + 7, (size_t)(dot - key - 7));
            name[dot - key - 7] = '\0';
            return gw_config_set_camera(cfg, name, dot + 1, value, origin, err, errcap);
        }
    }

    if (k == NULL && strncmp(key, "model.", 6) == 0) {
        const char *dot = strchr(key + 6, '.');
        if (dot != NULL && (size_t)(dot - key - 6) < GW_MODEL_NAME_MAX) {
            char name[GW_MODEL_NAME_MAX];
            memcpy(name, key + 6, (size_t)(dot - key - 6));
            name[dot - key - 6] = '\0';
            return gw_config_set_model(cfg, name, dot + 1, value, origin, err, errcap);
        }
    }
    if (k == NULL) {
        snprintf(err, errcap, "%s: key '%s': unknown key", origin, key);
        return PROTO_ECONFIG;
    }
    return set_key(cfg, NULL, k, key, value, origin, err, errcap);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int gw_config_load_file(gw_config_t *cfg, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    char line[4096], origin[1200], section[GW_MODEL_NAME_MAX] = "";
    char camera[GW_CAMERA_NAME_MAX] = ""; /* inside a [camera NAME] section */
    int lineno = 0, rv = 0;

    if (f == NULL) {
        snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
        return PROTO_ECONFIG;
    }
    while (rv == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errcap, "%s: line too long", origin);
            rv = PROTO_ECONFIG;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (*s == '[') {
            /* "[model NAME]": the keys that follow, up to the next section, are NAME's. */
            char *close = strchr(s, ']');
            char *rest = close != NULL ? trim(close + 1) : NULL;
            if (close != NULL && (*rest == '\0' || *rest == '#') &&
                strncmp(s, "[camera", 7) == 0 && isspace((unsigned char)s[7])) {
                *close = '\0';
                char *name = trim(s + 7);
                if (!valid_camera_name(name)) {
                    snprintf(err, errcap,
                             "%s: section '[camera %s]': a camera name is 1..%d of A-Z a-z 0-9 "
                             "- _ . : @",
                             origin, name, GW_CAMERA_NAME_MAX - 1);
                    rv = PROTO_ECONFIG;
                    break;
                }
                snprintf(camera, sizeof camera, "%s", name);
                section[0] = '\0';
                continue;
            }
            if (close == NULL || (*rest != '\0' && *rest != '#') || strncmp(s, "[model", 6) != 0 ||
                !isspace((unsigned char)s[6])) {
                snprintf(err, errcap, "%s: expected a section '[model NAME]' or '[camera NAME]'",
                         origin);
                rv = PROTO_ECONFIG;
                break;
            }
            *close = '\0';
            char *name = trim(s + 6);
            if (!valid_model_name(name)) {
                snprintf(err, errcap,
                         "%s: section '[model %s]': a model name is 1..%d of A-Z a-z 0-9 - _, "
                         "not starting with -",
                         origin, name, GW_MODEL_NAME_MAX - 1);
                rv = PROTO_ECONFIG;
                break;
            }
            if (gw_config_model(cfg, name) == NULL) {
                if (cfg->nmodels >= GW_MODELS_MAX) {
                    snprintf(err, errcap, "%s: section '[model %s]': more than %d models",
                             origin, name, GW_MODELS_MAX);
                    rv = PROTO_ECONFIG;
                    break;
                }
                add_model(cfg, name);
            }
            snprintf(section, sizeof section, "%s", name);
            camera[0] = '\0';
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errcap, "%s: expected 'key = value'", origin);
            rv = PROTO_ECONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (value[0] == '"') {
            char *close = strchr(value + 1, '"');
            char *rest = close != NULL ? trim(close + 1) : NULL;
            if (close == NULL || (*rest != '\0' && *rest != '#')) {
                snprintf(err, errcap, "%s: key '%s': unterminated quote or text after it", origin,
                         key);
                rv = PROTO_ECONFIG;
                break;
            }
            *close = '\0';
            value++;
        } else {
            /* A trailing comment needs whitespace before '#'. */
            for (char *p = value; *p; p++)
                if (*p == '#' && p > value && isspace((unsigned char)p[-1])) {
                    *p = '\0';
                    value = trim(value);
                    break;
                }
        }
        if (camera[0] != '\0')
            rv = gw_config_set_camera(cfg, camera, key, value, origin, err, errcap);
        else if (section[0] != '\0')
            rv = gw_config_set_model(cfg, section, key, value, origin, err, errcap);
        else
            rv = gw_config_set(cfg, key, value, origin, err, errcap);
    }
    fclose(f);
    return rv;
}

/* "face_max_backends" (from FRAMEGATE_MODEL_FACE_MAX_BACKENDS): the longest model key that
 * ends it names the key, the rest the model, matched against the declared models with '_'
 * standing for '-' too; a new model keeps the name as written (lower case). */
static int env_model(gw_config_t *cfg, const char *rest, const char *value, const char *origin,
                     char *err, size_t errcap)
{
    const key_t_ *best = NULL;
    size_t n = strlen(rest);
    for (size_t i = 0; i < sizeof model_keys / sizeof model_keys[0]; i++) {
        size_t kn = strlen(model_keys[i].name);
        if (n > kn + 1 && rest[n - kn - 1] == '_' && strcmp(rest + n - kn, model_keys[i].name) == 0 &&
            (best == NULL || kn > strlen(best->name)))
            best = &model_keys[i];
    }
    if (best == NULL || n - strlen(best->name) - 1 >= GW_MODEL_NAME_MAX) {
        snprintf(err, errcap, "%s: unknown key (model keys are FRAMEGATE_MODEL_<NAME>_<KEY>)",
                 origin);
        return PROTO_ECONFIG;
    }
    char name[GW_MODEL_NAME_MAX];
    size_t nn = n - strlen(best->name) - 1;
    memcpy(name, rest, nn);
    name[nn] = '\0';
    for (int i = 0; i < cfg->nmodels; i++) {
        const char *a = cfg->models[i].name;
        size_t j = 0;
        for (; a[j] && j < nn; j++)
            if (tolower((unsigned char)a[j]) != name[j] && !(a[j] == '-' && name[j] == '_'))
                break;
        if (j == nn && a[j] == '\0') {
            snprintf(name, sizeof name, "%s", a);
            break;
        }
    }
    return gw_config_set_model(cfg, name, best->name, value, origin, err, errcap);
}

int gw_config_load_env(gw_config_t *cfg, char *const *envp, char *err, size_t errcap)
{
    static const char prefix[] = "FRAMEGATE_";
    for (char *const *e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        char name[128], key[128];
        size_t n = (size_t)(eq - *e);
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy(name, *e, n);
        name[n] = '\0';
        /* Used by the scripts, not by the gateway's configuration. */
        if (strcmp(name, "FRAMEGATE_CACHE") == 0 || strcmp(name, "FRAMEGATE_CONFIG") == 0)
            continue;
        size_t i = 0;
        for (const char *p = name + sizeof prefix - 1; *p && i < sizeof key - 1; p++)
            key[i++] = (char)tolower((unsigned char)*p);
        key[i] = '\0';
        int rv;
        if (find_key(key) == NULL && strncmp(key, "model_", 6) == 0)
            rv = env_model(cfg, key + 6, eq + 1, name, err, errcap);
        else
            rv = gw_config_set(cfg, key, eq + 1, name, err, errcap);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* Keeps only the models `serve` names, in its order. */
static int select_models(gw_config_t *cfg, char *err, size_t errcap)
{
    gw_model_t *keep;
    int n = 0;
    char list[GW_CONFIG_STR_MAX];

    if (cfg->serve[0] == '\0')
        return 0;
    if ((keep = malloc(sizeof cfg->models)) == NULL) {
        snprintf(err, errcap, "out of memory");
        return PROTO_ECONFIG;
    }
    snprintf(list, sizeof list, "%s", cfg->serve);
    for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        const gw_model_t *m = gw_config_model(cfg, w);
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= strcmp(keep[i].name, w) == 0;
        if (m == NULL || dup) {
            snprintf(err, errcap,
                     m == NULL ? "key 'models': no model named '%s' (declare it with "
                                 "[model %s] or model.%s.cfg = ...)"
                               : "key 'models': '%s' is listed twice",
                     w, w, w);
            free(keep);
            return PROTO_ECONFIG;
        }
        keep[n++] = *m;
    }
    memcpy(cfg->models, keep, (size_t)n * sizeof *keep);
    cfg->nmodels = n;
    free(keep);
    return 0;
}

int gw_config_check_runtime_dir(const char *path, char *err, size_t errcap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errcap, "key 'runtime_dir': %s: %s", path, strerror(errno));
        return PROTO_ECONFIG;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errcap, "key 'runtime_dir': %s is not a directory", path);
        return PROTO_ECONFIG;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errcap,
                 "key 'runtime_dir': %s is owned by uid %u, not by this user (uid %u); "
                 "use a directory of your own (mode 0700)",
                 path, (unsigned)st.st_uid, (unsigned)geteuid());
        return PROTO_ECONFIG;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        snprintf(err, errcap,
                 "key 'runtime_dir': %s is writable by group or others (mode %04o); "
                 "use a private directory (chmod 700)",
                 path, (unsigned)(st.st_mode & 07777));
        return PROTO_ECONFIG;
    }
    return 0;
}

/* A static model: resolves its provider, checks each address in backends_static (a kind
 * the gateway dials, TLS configured for tls+tcp, plain tcp to another host only when
 * allowed, no duplicates) and sizes the pool to the list unless min/max were set. */
static int check_static(gw_config_t *cfg, gw_model_t *m, char *err, size_t errcap)
{
    char list[GW_STATIC_LIST_MAX];
    const char *seen[256];
    int n = 0;
    if (m->provider[0] == '\0')
        snprintf(m->provider, sizeof m->provider, "%s",
                 m->backends_static[0] != '\0' ? "static" : "local");
    if (strcmp(m->provider, "registered") == 0) {
        /* Backends announce themselves (join_listen): the pool holds every one registered,
         * up to max_backends (256 unless set). */
        m->nstatic = 0;
        if (m->backends_static[0] != '\0') {
            snprintf(err, errcap, "key 'model.%s.backends_static': set, but the model's "
                                  "provider is 'registered'", m->name);
            return PROTO_ECONFIG;
        }
        if (cfg->join_listen[0] == '\0') {
            snprintf(err, errcap, "model '%s': provider registered needs join_listen",
                     m->name);
            return PROTO_ECONFIG;
        }
        if (!(m->set & GW_MODEL_SET_MAX))
            m->max_backends = 256;
        m->min_backends = 0;
        m->set |= GW_MODEL_SET_MIN | GW_MODEL_SET_MAX;
        return 0;
    }
    if (strcmp(m->provider, "static") != 0) {
        m->nstatic = 0;
        if (m->backends_static[0] != '\0') {
            snprintf(err, errcap,
                     "key 'model.%s.backends_static': set, but the model's provider is '%s'",
                     m->name, m->provider);
            return PROTO_ECONFIG;
        }
        return 0;
    }
    snprintf(list, sizeof list, "%s", m->backends_static);
    for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        proto_addr_t a;
        const char *why = NULL;
        if (proto_addr_parse(&a, w) != 0 || a.kind == PROTO_ADDR_OTHER)
            why = "not an address to dial (tls+tcp://HOST:PORT, tcp://HOST:PORT or ipc:///PATH)";
        else if (a.kind == PROTO_ADDR_TLS && cfg->tls_ca[0] == '\0')
            why = "tls+tcp needs the gateway's certificate: set tls_ca, tls_cert and tls_key";
        else if (a.kind == PROTO_ADDR_TCP && !proto_addr_is_local(&a) &&
                 !cfg->allow_insecure_backends)
            why = "plain tcp to another host: use tls+tcp://, or set allow_insecure_backends = "
                  "true";
        else if (++n > 256)
            why = "more than 256 addresses";
        /* the same address twice would be two pool members on one backend */
        for (int i = 0; why == NULL && i < n - 1; i++)
            if (strcmp(seen[i], w) == 0)
                why = "listed twice";
        if (why == NULL)
            seen[n - 1] = w;
        if (why != NULL) {
            snprintf(err, errcap, "key 'model.%s.backends_static': '%s': %s", m->name, w, why);
            return PROTO_ECONFIG;
        }
    }
    if (n == 0) {
        snprintf(err, errcap, "key 'model.%s.backends_static': provider static needs at least "
                              "one address", m->name);
        return PROTO_ECONFIG;
    }
    m->nstatic = n;
    /* A static pool holds every address unless told otherwise; it cannot hold more. */
    if (!(m->set & GW_MODEL_SET_MAX))
        m->max_backends = n;
    if (!(m->set & GW_MODEL_SET_MIN))
        m->min_backends = m->max_backends;
    m->set |= GW_MODEL_SET_MIN | GW_MODEL_SET_MAX;
    if (m->max_backends > n) {
        snprintf(err, errcap, "model '%s': max_backends (%d) is above the %d address%s in "
                              "backends_static", m->name, m->max_backends, n, n > 1 ? "es" : "");
        return PROTO_ECONFIG;
    }
    return 0;
}

/* A cloud model (provider ec2): its instances run framegate-backend, which joins back over
 * mutual TLS, so the join listener, the certificates and the image must be set. */
static int check_cloud(gw_config_t *cfg, gw_model_t *m, char *err, size_t errcap)
{
    const char *why = NULL;
    int ec2 = strcmp(m->provider, "ec2") == 0, k8s = strcmp(m->provider, "kubernetes") == 0;
    int gce = strcmp(m->provider, "gce") == 0;
    if (!ec2 && !k8s && !gce)
        return 0;
    if (cfg->join_listen[0] == '\0')
        why = "needs join_listen (instances register there)";
    else if (cfg->cloud_join_url[0] == '\0' && strstr(cfg->join_listen, "0.0.0.0") != NULL)
        why = "join_listen listens on every address: set cloud_join_url to the one instances "
              "reach";
    else if (cfg->tls_ca[0] == '\0')
        why = "needs tls_ca, tls_cert and tls_key (instances are dialled over mutual TLS)";
    else if ((ec2 || gce) &&
             (cfg->cloud_backend_cert[0] == '\0' || cfg->cloud_backend_key[0] == '\0'))
        why = "needs cloud_backend_cert and cloud_backend_key (the instances' certificate)";
    else if (ec2 && (cfg->ec2_image[0] == '\0' || cfg->ec2_instance_type[0] == '\0'))
        why = "needs ec2_image and ec2_instance_type";
    else if (gce && (cfg->gce_project[0] == '\0' || cfg->gce_zone[0] == '\0' ||
                     cfg->gce_machine_type[0] == '\0' || cfg->gce_image[0] == '\0'))
        why = "needs gce_project, gce_zone, gce_machine_type and gce_image";
    else if (k8s && cfg->k8s_pod_template[0] == '\0')
        why = "needs k8s_pod_template (a Pod as JSON)";
    if (why != NULL) {
        snprintf(err, errcap, "model '%s': provider %s %s", m->name, m->provider, why);
        return PROTO_ECONFIG;
    }
    return 0;
}

/* A pull camera needs a slot of its own (it is shown and streamed by name) and a served
 * model; a snapshot camera needs a rate to poll at. */
static int check_pull_cameras(const gw_config_t *cfg, char *err, size_t errcap)
{
    int npull = 0;
    for (int i = 0; i < cfg->ncameras; i++) {
        const gw_camera_cfg_t *c = &cfg->cameras[i];
        if (c->url[0] == '\0')
            continue;
        npull++;
        if (c->mode == GW_PULL_SNAPSHOT && c->fps <= 0) {
            snprintf(err, errcap, "key 'camera.%s.fps': a snapshot camera needs fps > 0",
                     c->name);
            return PROTO_ECONFIG;
        }
        if (c->model[0] != '\0' && gw_config_model(cfg, c->model) == NULL) {
            snprintf(err, errcap, "key 'camera.%s.model': no model named '%s' is served",
                     c->name, c->model);
            return PROTO_ECONFIG;
        }
    }
    if (npull > cfg->max_cameras) {
        snprintf(err, errcap, "%d pull cameras ([camera NAME] with a url) but max_cameras is %d",
                 npull, cfg->max_cameras);
        return PROTO_ECONFIG;
    }
    return 0;
}

int gw_config_validate(gw_config_t *cfg, char *err, size_t errcap)
{
    int rv;
    if (cfg->runtime_dir[0] != '\0' &&
        (rv = gw_config_check_runtime_dir(cfg->runtime_dir, err, errcap)) != 0)
        return rv;
    if (cfg->listen_host[0] == '\0') {
        snprintf(err, errcap, "key 'listen': must not be empty");
        return PROTO_ECONFIG;
    }
    if (cfg->min_backends < 0 || cfg->max_backends < 1 || cfg->max_backends > 256 ||
        cfg->max_starting < 1 || cfg->backend_concurrency < 1 ||
        !(cfg->target_inflight_per_backend > 0) || cfg->log_level < 0 || cfg->log_level > 3 ||
        cfg->listen_port < 0 || cfg->listen_port > 65535 || cfg->nmodels < 0 ||
        cfg->nmodels > GW_MODELS_MAX) {
        /* Only reachable when a caller filled the struct by hand: gw_config_set checks
         * each of these ranges already. */
        snprintf(err, errcap, "a value is out of its range (see --print-config)");
        return PROTO_ECONFIG;
    }
    if (cfg->min_backends > cfg->max_backends) {
        snprintf(err, errcap, "min_backends (%d) is above max_backends (%d)", cfg->min_backends,
                 cfg->max_backends);
        return PROTO_ECONFIG;
    }
    if (cfg->outlier_min_requests > cfg->outlier_window) {
        snprintf(err, errcap, "outlier_min_requests is above outlier_window");
        return PROTO_ECONFIG;
    }
    if (cfg->max_buffered_bytes < cfg->max_body_bytes) {
        snprintf(err, errcap, "max_buffered_bytes (%zu) is below max_body_bytes (%zu)",
                 cfg->max_buffered_bytes, cfg->max_body_bytes);
        return PROTO_ECONFIG;
    }
    if (cfg->backoff_initial_ms > cfg->backoff_max_ms) {
        snprintf(err, errcap, "backoff_initial_ms is above backoff_max_ms");
        return PROTO_ECONFIG;
    }
    int tls_set = (cfg->tls_ca[0] != '\0') + (cfg->tls_cert[0] != '\0') + (cfg->tls_key[0] != '\0');
    if (tls_set != 0 && tls_set != 3) {
        snprintf(err, errcap, "keys 'tls_ca', 'tls_cert', 'tls_key': set all three or none");
        return PROTO_ECONFIG;
    }
    if (cfg->join_listen[0] != '\0') {
        proto_addr_t a;
        const char *why = NULL;
        if (proto_addr_parse(&a, cfg->join_listen) != 0 ||
            (a.kind != PROTO_ADDR_TLS && a.kind != PROTO_ADDR_TCP))
            why = "expected tls+tcp://HOST:PORT (or tcp:// on loopback)";
        else if (a.kind == PROTO_ADDR_TLS && tls_set == 0)
            why = "tls+tcp needs the gateway's certificate: set tls_ca, tls_cert and tls_key";
        else if (a.kind == PROTO_ADDR_TCP && !proto_addr_is_local(&a) &&
                 !cfg->allow_insecure_backends)
            why = "plain tcp reachable from other hosts: use tls+tcp://, or set "
                  "allow_insecure_backends = true";
        if (why != NULL) {
            snprintf(err, errcap, "key 'join_listen': '%s': %s", cfg->join_listen, why);
            return PROTO_ECONFIG;
        }
    }
    if ((rv = select_models(cfg, err, errcap)) != 0)
        return rv;
    if (!valid_store(cfg->store)) {
        snprintf(err, errcap,
                 "key 'store': expected none, dir:/PATH, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX "
                 "(got '%.200s')",
                 cfg->store);
        return PROTO_ECONFIG;
    }
    if (cfg->spool_dir[0] != '\0' && cfg->spool_dir[0] != '/') {
        snprintf(err, errcap, "key 'spool_dir': must be an absolute path");
        return PROTO_ECONFIG;
    }
    gw_fetch_policy_t policy;
    char why[300];
    if (gw_fetch_policy_parse(&policy, cfg->fetch_allow, why, sizeof why) != 0) {
        snprintf(err, errcap, "key 'fetch_allow': %s", why + strlen("fetch_allow: "));
        return PROTO_ECONFIG;
    }
    if (cfg->nmodels == 0) {
        snprintf(err, errcap, "no model is declared (add a [model NAME] section)");
        return PROTO_ECONFIG;
    }
    if (cfg->default_model[0] == '\0')
        snprintf(cfg->default_model, sizeof cfg->default_model, "%s", cfg->models[0].name);
    if (gw_config_model(cfg, cfg->default_model) == NULL) {
        snprintf(err, errcap, "key 'default_model': no model named '%s' is served",
                 cfg->default_model);
        return PROTO_ECONFIG;
    }
    if ((rv = check_pull_cameras(cfg, err, errcap)) != 0)
        return rv;
    for (int i = 0; i < cfg->nmodels; i++) {
        gw_model_t *m = &cfg->models[i];
        if ((rv = check_static(cfg, m, err, errcap)) != 0 ||
            (rv = check_cloud(cfg, m, err, errcap)) != 0)
            return rv;
        /* Inheritance is resolved here, once every source is loaded, so that a top-level
         * --set max_backends reaches every model that did not set its own. */
        if (!(m->set & GW_MODEL_SET_MIN))
            m->min_backends = cfg->min_backends;
        if (!(m->set & GW_MODEL_SET_MAX))
            m->max_backends = cfg->max_backends;
        if (!(m->set & GW_MODEL_SET_TARGET))
            m->target_inflight_per_backend = cfg->target_inflight_per_backend;
        if (!(m->set & GW_MODEL_SET_ARGS))
            snprintf(m->backend_args, sizeof m->backend_args, "%s", cfg->backend_args);
        if (!(m->set & GW_MODEL_SET_STORE))
            snprintf(m->store, sizeof m->store, "%s", cfg->store);
        if (!valid_store(m->store)) {
            snprintf(err, errcap, "key 'model.%s.store': expected none, dir:/PATH, "
                                  "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX (got '%.200s')",
                     m->name, m->store);
            return PROTO_ECONFIG;
        }
        if (!(m->set & GW_MODEL_SET_STORE_INPUTS))
            m->store_inputs = cfg->store_inputs;
        if (!(m->set & GW_MODEL_SET_STORE_RESULTS))
            m->store_results = cfg->store_results;
        if (!(m->set & GW_MODEL_SET_STORE_ANNOTATED))
            m->store_annotated = cfg->store_annotated;
        if (!(m->set & GW_MODEL_SET_STORE_ONLY_DETECTIONS))
            m->store_only_detections = cfg->store_only_detections;
        /* Paths every backend start needs; an empty one would only fail later, per
         * backend, with a less helpful message. */
        const struct {
            const char *key, *value;
        } required[] = {{"cfg", m->cfg}, {"weights", m->weights}, {"names", m->names}};
        /* A static model's backends were started elsewhere with their own files. */
        for (size_t j = 0; j < sizeof required / sizeof required[0] &&
                           strcmp(m->provider, "local") == 0;
             j++)
            if (required[j].value[0] == '\0') {
                snprintf(err, errcap, "key 'model.%s.%s': must not be empty", m->name,
                         required[j].key);
                return PROTO_ECONFIG;
            }
        if (!valid_model_name(m->name) || m->min_backends < 0 || m->max_backends < 1 ||
            m->max_backends > 256 || !(m->target_inflight_per_backend > 0)) {
            snprintf(err, errcap, "model '%s': a value is out of its range", m->name);
            return PROTO_ECONFIG;
        }
        if (m->min_backends > m->max_backends) {
            snprintf(err, errcap, "model '%s': min_backends (%d) is above max_backends (%d)%s",
                     m->name, m->min_backends, m->max_backends,
                     (m->set & (GW_MODEL_SET_MIN | GW_MODEL_SET_MAX)) !=
                             (GW_MODEL_SET_MIN | GW_MODEL_SET_MAX)
                         ? " (one of them inherited from the top-level key)"
                         : "");
            return PROTO_ECONFIG;
        }
    }
    return 0;
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

static void print_key(FILE *out, const key_t_ *k, const char *base, const char *prefix)
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
        fprintf(out, "%s = %s\n", name, level_names[*(const int *)(base + k->off) & 3]);
        break;
    case T_PREPROCESS:
        fprintf(out, "%s = %s\n", name, preprocess_names[*(const int *)(base + k->off) & 1]);
        break;
    case T_DECODE:
        fprintf(out, "%s = %s\n", name, decode_names[*(const int *)(base + k->off) & 1]);
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
        for (size_t j = 0; j < sizeof model_keys / sizeof model_keys[0]; j++) {
            const key_t_ *k = &model_keys[j];
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
