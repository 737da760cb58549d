/* Gateway configuration: one read-only struct, filled at start-up and never changed after.
 *
 * Sources, later ones win: built-in defaults, the file given with --config (key = value
 * lines, '#' comments), environment variables FRAMEGATE_<KEY> (upper case, e.g.
 * FRAMEGATE_MAX_BACKENDS=4), then --listen and each --set key=value on the command line.
 * Every key, its default and its unit is documented in config/framegate.conf. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GW_CONFIG_STR_MAX 1024
#define GW_MODELS_MAX 16
#define GW_STATIC_LIST_MAX 8192 /* backends_static: up to 256 addresses */
#define GW_MODEL_NAME_MAX 48 /* bytes of a model name, NUL included (backend names and
                              * metric labels derive from it) */

typedef enum { GW_PRE_DARKNET = 0, GW_PRE_FACEAPI = 1 } gw_preprocess_t;
/* JPEG decoding: exact (the reference pipeline's pixels) or fast (DCT-scaled; backend --decode). */
typedef enum { GW_DECODE_EXACT = 0, GW_DECODE_FAST = 1 } gw_decode_t;
/* The network's numbers on the oneDNN engine: fp32 (agrees with darknet) or bf16 (opt-in,
 * faster where the CPU has AVX512_BF16, answers drift a little; backend --precision). */
typedef enum { GW_PRECISION_FP32 = 0, GW_PRECISION_BF16 = 1 } gw_precision_t;

/* gw_model_t.set: pool keys a model gave itself; the others follow the top-level key of the
 * same name (resolved by gw_config_validate). */
enum {
    GW_MODEL_SET_MIN = 1u << 0,
    GW_MODEL_SET_MAX = 1u << 1,
    GW_MODEL_SET_TARGET = 1u << 2,
    GW_MODEL_SET_ARGS = 1u << 3,
    GW_MODEL_SET_STORE_INPUTS = 1u << 4,
    GW_MODEL_SET_STORE_RESULTS = 1u << 5,
    GW_MODEL_SET_STORE_ANNOTATED = 1u << 6,
    GW_MODEL_SET_STORE_ONLY_DETECTIONS = 1u << 7,
    GW_MODEL_SET_STORE = 1u << 8,
};

/* One named model: what its backends load, and its own pool's bounds. A plain value. */
typedef struct {
    char name[GW_MODEL_NAME_MAX]; /* [A-Za-z0-9_-], not starting with '-' */
    char cfg[GW_CONFIG_STR_MAX];
    char weights[GW_CONFIG_STR_MAX];
    char names[GW_CONFIG_STR_MAX];
    int input_size;             /* network input side in pixels; 0 = the cfg's */
    int preprocess;             /* gw_preprocess_t */
    int decode;                 /* gw_decode_t */
    int precision;              /* gw_precision_t */
    double threshold;           /* default detection threshold, 0..1 */
    double nms;                 /* NMS IoU, 0..1 */
    int top_k;                  /* classifiers: classes answered; 0 = the backend's default */
    /* pool: inherited from the top-level keys unless the bit in `set` says otherwise */
    int min_backends;
    int max_backends;
    double target_inflight_per_backend;
    char backend_args[GW_CONFIG_STR_MAX];
    /* where and what to keep (storage.h): inherited from the top-level keys unless set */
    char store[GW_CONFIG_STR_MAX];
    int store_inputs, store_results, store_annotated, store_only_detections;
    unsigned set;               /* GW_MODEL_SET_* */
    /* where its backends run: "local" (child processes), "static" (the addresses in
     * backends_static, started by someone else) or "registered" (backends that announced
     * themselves on join_listen); "" until gw_config_validate resolves it (static when
     * backends_static is set, else local) */
    char provider[16];
    char backends_static[GW_STATIC_LIST_MAX]; /* NNG addresses, comma- or space-separated */
    /* "local:2, ec2:18": providers in tiers, cheapest first, each with its maximum ("" = the
     * one `provider`); gw_config_validate parses it into tier_kind/tier_max, sets provider
     * to the first tier's and max_backends (unless set) to the sum */
    char providers[128];
    int ntiers;
    char tier_kind[4][16];
    int tier_max[4];
    int nstatic;                /* addresses in backends_static (gw_config_validate) */
} gw_model_t;

/* A "[camera NAME]" section: one live camera's own fairness and freshness (camera.h), and,
 * with a url, where the gateway pulls its frames from itself (pull.h). */
#define GW_CAMERAS_CFG_MAX 64
#define GW_CAMERA_NAME_MAX 129 /* PROTO_CAMERA_MAX + 1 */
typedef enum { GW_PULL_MJPEG = 0, GW_PULL_SNAPSHOT = 1 } gw_pull_mode_t;
typedef struct {
    char name[GW_CAMERA_NAME_MAX];
    int weight;         /* 0 = camera_weight */
    int64_t max_age_ms; /* -1 = camera_max_age_ms; 0 = never skipped */
    /* a pull camera (url set) */
    char url[GW_CONFIG_STR_MAX];     /* http(s) URL; "" = a push camera */
    int mode;                        /* gw_pull_mode_t */
    double fps;                      /* snapshot: polls per second; mjpeg: frames taken per
                                      * second at most (0 = every frame) */
    char model[GW_MODEL_NAME_MAX];   /* "" = the default model */
    float threshold;                 /* 0 = the model's */
    size_t max_frame_bytes;          /* one frame (part or snapshot) over this is an error */
} gw_camera_cfg_t;

typedef struct {
    /* HTTP front */
    char listen_host[256];      /* listen = HOST:PORT, default 0.0.0.0:8080 */
    int listen_port;
    int max_connections;        /* open client connections; more are closed at accept */
    size_t max_header_bytes;    /* request line + headers */
    size_t max_body_bytes;      /* decoded body */
    int max_pipelined;          /* requests parsed ahead of their answers, per connection */
    uint64_t header_timeout_ms; /* first byte of a request to end of its headers */
    uint64_t body_timeout_ms;   /* end of headers to end of body */
    uint64_t idle_timeout_ms;   /* keep-alive connection with no request in progress */
    uint64_t write_timeout_ms;  /* answers queued and none written completely: close */
    size_t max_buffered_bytes;  /* request bodies held, all connections together; then 503 */

    /* dispatch */
    int queue_size;             /* requests waiting for a backend; beyond it: 503 */
    uint64_t deadline_ms;       /* per request, from arrival; then 504 */
    int retries;                /* re-dispatches after a backend failure; then 502 */
    int retry_after_s;          /* Retry-After on 503 */

    /* live cameras (camera.h, fair.h): frames that name a camera */
    int max_cameras;            /* cameras with their own queue, stats and label; 0 = none */
    int camera_queue_depth;     /* frames waiting per camera; a newer one supersedes */
    uint64_t camera_max_age_ms; /* older when answered: skipped at dispatch; 0 = never */
    int camera_weight;          /* each camera's share in the round-robin */
    gw_camera_cfg_t cameras[GW_CAMERAS_CFG_MAX]; /* [camera NAME] sections */
    int ncameras;

    /* backends */
    char backend_command[GW_CONFIG_STR_MAX]; /* path of framegate-backend; "" = next to us */
    char backend_args[GW_CONFIG_STR_MAX];    /* extra arguments, split on spaces */
    int backend_concurrency;    /* requests in flight per backend */
    int max_image_side;         /* either side of a frame above this: 413, before decoding */
    int max_image_pixels;       /* width x height above this: 413, before decoding */
    char runtime_dir[GW_CONFIG_STR_MAX];     /* ipc:// sockets; "" = a private mkdtemp dir */

    /* backends on other machines: the gateway's side of mutual TLS for tls+tcp:// backends
     * (all three or none), and whether plain tcp:// to another host is allowed */
    char tls_ca[GW_CONFIG_STR_MAX];   /* PEM: the CA a backend's certificate must chain to */
    char tls_cert[GW_CONFIG_STR_MAX]; /* PEM: the gateway's certificate, shown to backends */
    char tls_key[GW_CONFIG_STR_MAX];  /* PEM: its key */
    int allow_insecure_backends;      /* 1: tcp:// to a non-loopback address is allowed */
    char join_listen[GW_CONFIG_STR_MAX]; /* where backends register (--join); "" = off */

    /* cloud providers (provider = ec2): instances run framegate-backend, which joins back */
    char cloud_cluster[64]; /* tag value naming this gateway's instances (orphan reaping) */
    char cloud_join_url[GW_CONFIG_STR_MAX];     /* what instances --join; "" = join_listen */
    char cloud_backend_cert[GW_CONFIG_STR_MAX]; /* PEM cert+key given to every instance */
    char cloud_backend_key[GW_CONFIG_STR_MAX];
    char cloud_backend_command[GW_CONFIG_STR_MAX]; /* in the image; "" = framegate-backend */
    int cloud_backend_port;                        /* instances listen on tls+tcp://0.0.0.0:PORT */
    uint64_t cloud_api_timeout_ms;                 /* one API call, retries apart */
    uint64_t cloud_reap_interval_ms;               /* orphan sweep period */
    int cloud_max_starts_per_hour;                 /* per provider: a runaway-bill guard */
    int keep_instances_on_exit; /* 1: on exit leave cloud instances running (to be adopted) */
    char ec2_region[32];
    char ec2_endpoint[GW_CONFIG_STR_MAX]; /* "" = https://ec2.REGION.amazonaws.com/ */
    char ec2_ca_file[GW_CONFIG_STR_MAX];  /* "" = the system's CAs (tests: the fake's CA) */
    char ec2_image[128];
    char ec2_instance_type[64];
    char ec2_subnet[128];
    char ec2_security_groups[512];  /* comma-separated sg-ids */
    char ec2_instance_profile[256]; /* name or ARN; "" = none */
    char gce_project[128];
    char gce_zone[64];
    char gce_machine_type[64];
    char gce_image[512];                  /* sourceImage: projects/P/global/images/family/F */
    char gce_network[256];                /* "global/networks/default" */
    char gce_subnetwork[256];             /* "" = the network's */
    char gce_service_account[256];        /* the instances' (email); "" = none */
    char gce_key_file[GW_CONFIG_STR_MAX]; /* "" = GOOGLE_APPLICATION_CREDENTIALS, else metadata */
    char gce_endpoint[512];               /* "" = https://compute.googleapis.com/compute/v1/ */
    char gce_ca_file[GW_CONFIG_STR_MAX];
    char k8s_server[512]; /* "" = https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT */
    char k8s_token_file[GW_CONFIG_STR_MAX];   /* bearer token, re-read at every call */
    char k8s_ca_file[GW_CONFIG_STR_MAX];      /* the API server's CA */
    char k8s_namespace[128];                  /* "" = the pod's own namespace, else "default" */
    char k8s_pod_template[GW_CONFIG_STR_MAX]; /* a Pod as JSON: image, resources, volumes */
    char k8s_tls_dir[GW_CONFIG_STR_MAX]; /* where the template mounts ca.crt, tls.crt, tls.key */

    /* models: definitions in declaration order; `serve` picks some (comma-separated names,
     * "" = all); gw_config_validate drops the others and resolves default_model. */
    char serve[GW_CONFIG_STR_MAX];          /* key "models" */
    char default_model[GW_MODEL_NAME_MAX];  /* "" = the first model served */
    gw_model_t models[GW_MODELS_MAX];
    int nmodels;

    /* autoscaler (min/max/target are the defaults every model inherits) */
    int min_backends;
    int max_backends;
    double target_inflight_per_backend;
    uint64_t scale_interval_ms;   /* evaluation tick */
    uint64_t stable_window_ms;    /* scale-down looks at the max load over this window */
    uint64_t panic_window_ms;     /* scale-up looks at the max load over this window */
    int max_starting;             /* backends starting at once */
    uint64_t start_timeout_ms;    /* spawn to ready; then the start counts as failed */
    uint64_t stop_grace_ms;       /* SIGTERM to SIGKILL */
    uint64_t backoff_initial_ms;  /* after a failed start */
    uint64_t backoff_max_ms;
    uint64_t shutdown_grace_ms;   /* gateway SIGTERM: answer in-flight requests within */

    /* backend health (health.h): outlier ejection and hung backends */
    int outlier_consecutive_failures; /* 5xx-class failures in a row that eject; 0 = off */
    int outlier_window;               /* last answers per backend its success rate is over */
    int outlier_min_requests;         /* answers a backend and a peer need for the rate test */
    double outlier_stdev_factor;      /* eject below the peers' mean by this many sd; 0 = off */
    double hung_factor;               /* unanswered past factor x service time: suspect; 0 = off */
    uint64_t hung_min_ms;             /* ... but never sooner than this */
    uint64_t hung_grace_ms;           /* a suspect that does not answer its ping within: killed */
    uint64_t heartbeat_ms;            /* a ready backend idle this long is pinged; 0 = never */

    /* keeping frames and answers (storage.h, store.h) */
    char store[GW_CONFIG_STR_MAX]; /* "none", "dir:/PATH", "s3://BUCKET/PREFIX", "gs://..." */
    int store_inputs;              /* the uploaded frame */
    int store_results;             /* the JSON answer */
    int store_annotated;           /* the JPEG with boxes (answers asked as format=jpeg) */
    int store_only_detections;     /* keep a frame only when something was found */
    int store_queue;               /* writes waiting in memory; beyond: the spool */
    size_t store_queue_bytes;      /* ... and their bytes */
    int store_concurrency;         /* writes in flight to the store */
    uint64_t store_timeout_ms;     /* one store request */
    uint64_t store_retry_initial_ms; /* after a failed write; doubles up to the max */
    uint64_t store_retry_max_ms;
    char spool_dir[GW_CONFIG_STR_MAX]; /* "" = no spool: writes the store cannot take drop */
    /* batch jobs (jobs.h) */
    char jobs_dir[GW_CONFIG_STR_MAX]; /* job state + pending frames; "" = runtime_dir/jobs */
    char jobs_store[GW_CONFIG_STR_MAX]; /* where jobs' objects go (store URL); "" = dir:jobs_dir */
    int max_jobs;                     /* jobs kept (any state); 0 = the jobs API is off */
    int max_job_images;               /* images in one job */
    size_t max_job_bytes;             /* bytes of images not yet done, all jobs together */
    char admin_token[GW_CONFIG_STR_MAX]; /* "" = admin routes open (POST /v1/reset) */
    size_t spool_max_bytes;
    char s3_endpoint[GW_CONFIG_STR_MAX]; /* "" = AWS's regional endpoint, or Google's for gs:// */
    char s3_region[64];                  /* "" = us-east-1 (gs://: auto) */
    char s3_access_key[256];             /* "" = $AWS_ACCESS_KEY_ID */
    char s3_secret_key[256];             /* "" = $AWS_SECRET_ACCESS_KEY; never printed */
    int s3_path_style;                   /* 1: http://HOST/BUCKET/KEY; 0: BUCKET.HOST */

    /* frames given by URL (fetch.h) */
    char fetch_allow[GW_CONFIG_STR_MAX]; /* private networks/hosts a URL may reach */
    uint64_t fetch_connect_timeout_ms;
    uint64_t fetch_timeout_ms;           /* the whole fetch, redirects included */
    int fetch_max_redirects;

    /* the front door (frontdoor.h): tokens, rates, other listeners, HTTPS (tls_conn.h) */
    char tokens_file[GW_CONFIG_STR_MAX]; /* TOKEN ROLE [NAME] lines; "" = all open */
    char rate_limit[64];                 /* per token: "50/s burst 100"; "" = none */
    char rate_limit_address[64];         /* per client address, likewise */
    int max_connections_per_address;     /* 0 = no cap */
    char metrics_listen[300];            /* loopback HOST:PORT serving /metrics; "" */
    char listen_plain[300];              /* a second, plain HTTP listener; "" = none */
    char https_cert[GW_CONFIG_STR_MAX];  /* PEM: set with https_key, `listen` is HTTPS */
    char https_key[GW_CONFIG_STR_MAX];
    char https_client_ca[GW_CONFIG_STR_MAX]; /* clients must show a cert from it; "" = no */

    /* logging */
    int log_level;                /* 0 error, 1 warn, 2 info, 3 debug */
} gw_config_t;

/* Fills *cfg with the built-in defaults. */
void gw_config_defaults(gw_config_t *cfg);

/* Reads a config file into *cfg (on top of what it holds). On error returns PROTO_ECONFIG
 * and writes "FILE:LINE: key 'k': why" into err[0..errcap). */
int gw_config_load_file(gw_config_t *cfg, const char *path, char *err, size_t errcap);

/* Sets one key from its text form ("max_backends", "4"). `origin` names where it came from
 * for the error text ("--set", "FRAMEGATE_MAX_BACKENDS", "file.conf:12"). A key
 * "model.NAME.KEY" sets KEY of model NAME, declaring the model if it is new. Returns 0 or
 * PROTO_ECONFIG with the message in err. */
int gw_config_set(gw_config_t *cfg, const char *key, const char *value, const char *origin,
                  char *err, size_t errcap);

/* Sets KEY of model `model` (declared if new), as a "[model NAME]" section line does. */
int gw_config_set_model(gw_config_t *cfg, const char *model, const char *key, const char *value,
                        const char *origin, char *err, size_t errcap);

/* Sets KEY (weight, max_age_ms) of camera `camera` (declared if new), as a "[camera NAME]"
 * section line or a "camera.NAME.KEY" key does. 0 or PROTO_ECONFIG with the message. */
int gw_config_set_camera(gw_config_t *cfg, const char *camera, const char *key,
                         const char *value, const char *origin, char *err, size_t errcap);

/* The [camera NAME] section of `name`, or NULL. */
const gw_camera_cfg_t *gw_config_camera(const gw_config_t *cfg, const char *name);

/* The model named `name`, or NULL. */
const gw_model_t *gw_config_model(const gw_config_t *cfg, const char *name);

/* Applies every FRAMEGATE_<KEY> environment variable that names a known key, and
 * FRAMEGATE_MODEL_<NAME>_<KEY> for model keys (NAME upper-case with '-' written '_'; the
 * longest matching KEY wins). Unknown FRAMEGATE_ variables are an error too (a typo must
 * not be silently ignored). */
int gw_config_load_env(gw_config_t *cfg, char *const *envp, char *err, size_t errcap);

/* After everything is loaded: keeps only the models named by `models` (if set), resolves
 * default_model and the pool keys models inherit, then checks across keys (min <= max,
 * required paths, ...). Idempotent. Returns 0 or PROTO_ECONFIG with the message in err. */
int gw_config_validate(gw_config_t *cfg, char *err, size_t errcap);

/* Checks that `path`, a configured runtime_dir, is safe to put the backends' sockets in: a
 * directory owned by this user that neither group nor others can write (another local user
 * could otherwise plant or replace sockets there). A path that does not exist passes: the
 * provider creates it 0700 and checks again. Returns 0, or PROTO_ECONFIG with a message
 * naming the key in err. Any thread; reads the file system only. */
int gw_config_check_runtime_dir(const char *path, char *err, size_t errcap);

/* Writes the effective configuration as "key = value" lines, then one "[model NAME]"
 * section per model; inherited pool keys are shown as comments (for --print-config). */
void gw_config_print(const gw_config_t *cfg, FILE *out);

#endif
