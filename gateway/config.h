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

    /* dispatch */
    int queue_size;             /* requests waiting for a backend; beyond it: 503 */
    uint64_t deadline_ms;       /* per request, from arrival; then 504 */
    int retries;                /* re-dispatches after a backend failure; then 502 */
    int retry_after_s;          /* Retry-After on 503 */

    /* backends */
    char backend_command[GW_CONFIG_STR_MAX]; /* path of framegate-backend; "" = next to us */
    char backend_args[GW_CONFIG_STR_MAX];    /* extra arguments, split on spaces */
    int backend_concurrency;    /* requests in flight per backend */
    char runtime_dir[GW_CONFIG_STR_MAX];     /* ipc:// sockets; "" = $TMPDIR/framegate-PID */

    /* model (passed to each backend) */
    char model_name[128];
    char model_cfg[GW_CONFIG_STR_MAX];
    char model_weights[GW_CONFIG_STR_MAX];
    char model_names[GW_CONFIG_STR_MAX];
    double threshold;           /* default detection threshold, 0..1 */
    double nms;                 /* NMS IoU, 0..1 */

    /* autoscaler */
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

    /* logging */
    int log_level;                /* 0 error, 1 warn, 2 info, 3 debug */
} gw_config_t;

/* Fills *cfg with the built-in defaults. */
void gw_config_defaults(gw_config_t *cfg);

/* Reads a config file into *cfg (on top of what it holds). On error returns PROTO_ECONFIG
 * and writes "FILE:LINE: key 'k': why" into err[0..errcap). */
int gw_config_load_file(gw_config_t *cfg, const char *path, char *err, size_t errcap);

/* Sets one key from its text form ("max_backends", "4"). `origin` names where it came from
 * for the error text ("--set", "FRAMEGATE_MAX_BACKENDS", "file.conf:12"). Returns 0 or
 * PROTO_ECONFIG with the message in err. */
int gw_config_set(gw_config_t *cfg, const char *key, const char *value, const char *origin,
                  char *err, size_t errcap);

/* Applies every FRAMEGATE_<KEY> environment variable that names a known key. Unknown
 * FRAMEGATE_ variables are an error too (a typo must not be silently ignored). */
int gw_config_load_env(gw_config_t *cfg, char *const *envp, char *err, size_t errcap);

/* Cross-key checks after everything is loaded (min <= max, ...). */
int gw_config_validate(const gw_config_t *cfg, char *err, size_t errcap);

/* Writes the effective configuration as "key = value" lines (for --print-config). */
void gw_config_print(const gw_config_t *cfg, FILE *out);

#endif
