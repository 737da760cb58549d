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

#include "err.h"
#include "msg.h"
#include "log.h"

typedef enum { T_INT, T_SIZE, T_MS, T_DOUBLE, T_STR, T_LISTEN, T_LEVEL, T_BACKENDS } key_type_t;

typedef struct {
    const char *name;
    key_type_t type;
    size_t off;
    size_t cap; /* strings: buffer size */
    double min, max;
} key_t_;

#define F(field) offsetof(gw_config_t, field)
#define S(field) sizeof(((gw_config_t *)0)->field)

static const key_t_ keys[] = {
    {"listen", T_LISTEN, 0, 0, 0, 0},
    {"max_connections", T_INT, F(max_connections), 0, 1, 1000000},
    {"max_header_bytes", T_SIZE, F(max_header_bytes), 0, 256, 1 << 20},
    {"max_body_bytes", T_SIZE, F(max_body_bytes), 0, 1, (double)PROTO_PAYLOAD_MAX},
    {"max_pipelined", T_INT, F(max_pipelined), 0, 1, 1024},
    {"header_timeout_ms", T_MS, F(header_timeout_ms), 0, 1, 3600000},
    {"body_timeout_ms", T_MS, F(body_timeout_ms), 0, 1, 3600000},
    {"idle_timeout_ms", T_MS, F(idle_timeout_ms), 0, 1, 86400000},
    {"queue_size", T_INT, F(queue_size), 0, 0, 1000000},
    {"deadline_ms", T_MS, F(deadline_ms), 0, 1, 3600000},
    {"retries", T_INT, F(retries), 0, 0, 100},
    {"retry_after_s", T_INT, F(retry_after_s), 0, 1, 3600},
    {"backend_command", T_STR, F(backend_command), S(backend_command), 0, 0},
    {"backend_args", T_STR, F(backend_args), S(backend_args), 0, 0},
    {"backend_concurrency", T_INT, F(backend_concurrency), 0, 1, 256},
    {"runtime_dir", T_STR, F(runtime_dir), S(runtime_dir), 0, 0},
    {"model_name", T_STR, F(model_name), S(model_name), 0, 0},
    {"model_cfg", T_STR, F(model_cfg), S(model_cfg), 0, 0},
    {"model_weights", T_STR, F(model_weights), S(model_weights), 0, 0},
    {"model_names", T_STR, F(model_names), S(model_names), 0, 0},
    {"threshold", T_DOUBLE, F(threshold), 0, 0, 1},
    {"nms", T_DOUBLE, F(nms), 0, 0, 1},
    {"backends", T_BACKENDS, 0, 0, 1, 256},
    {"min_backends", T_INT, F(min_backends), 0, 0, 256},
    {"max_backends", T_INT, F(max_backends), 0, 1, 256},
    {"target_inflight_per_backend", T_DOUBLE, F(target_inflight_per_backend), 0, 0.001, 1e6},
    {"scale_interval_ms", T_MS, F(scale_interval_ms), 0, 10, 3600000},
    {"stable_window_ms", T_MS, F(stable_window_ms), 0, 0, 86400000},
    {"panic_window_ms", T_MS, F(panic_window_ms), 0, 0, 86400000},
    {"max_starting", T_INT, F(max_starting), 0, 1, 256},
    {"start_timeout_ms", T_MS, F(start_timeout_ms), 0, 1, 86400000},
    {"stop_grace_ms", T_MS, F(stop_grace_ms), 0, 0, 3600000},
    {"backoff_initial_ms", T_MS, F(backoff_initial_ms), 0, 1, 3600000},
    {"backoff_max_ms", T_MS, F(backoff_max_ms), 0, 1, 86400000},
    {"shutdown_grace_ms", T_MS, F(shutdown_grace_ms), 0, 0, 3600000},
    {"log_level", T_LEVEL, F(log_level), 0, 0, 0},
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

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
    cfg->body_timeout_ms = 60000;
    cfg->idle_timeout_ms = 60000;
    cfg->queue_size = 1024;
    cfg->deadline_ms = 30000;
    cfg->retries = 2;
    cfg->retry_after_s = 1;
    cfg->backend_concurrency = 1;
    snprintf(cfg->model_name, sizeof cfg->model_name, "yolov3-tiny");
    snprintf(cfg->model_cfg, sizeof cfg->model_cfg, "/usr/share/darknet/cfg/yolov3-tiny.cfg");
    snprintf(cfg->model_names, sizeof cfg->model_names, "/usr/share/darknet/data/coco.names");
    /* The generated default weights live in the cache scripts/models.sh writes. */
    const char *cache = getenv("FRAMEGATE_CACHE");
    const char *home = getenv("HOME");
    if (cache != NULL && cache[0] != '\0')
        snprintf(cfg->model_weights, sizeof cfg->model_weights, "%.900s/models/yolov3-tiny.weights",
                 cache);
    else
        snprintf(cfg->model_weights, sizeof cfg->model_weights,
                 "%.900s/.cache/framegate/models/yolov3-tiny.weights",
                 home != NULL && home[0] != '\0' ? home : "/root");
    cfg->threshold = 0.25;
    cfg->nms = 0.45;
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
    if (host[0] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5 || colon[1] == '\0')
        return -1;
    long port = strtol(colon + 1, NULL, 10);
    if (port > 65535)
        return -1;
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "%s", host);
    cfg->listen_port = (int)port;
    return 0;
}

int gw_config_set(gw_config_t *cfg, const char *key, const char *value, const char *origin,
                  char *err, size_t errcap)
{
    const key_t_ *k = find_key(key);
    char *base = (char *)cfg;
    double x = 0;

    if (k == NULL) {
        snprintf(err, errcap, "%s: key '%s': unknown key", origin, key);
        return PROTO_ECONFIG;
    }
    switch (k->type) {
    case T_LISTEN:
        if (parse_listen(cfg, value) != 0)
            return fail(err, errcap, origin, key, "expected HOST:PORT with port 0..65535", value);
        return 0;
    case T_LEVEL:
        for (int i = 0; i < 4; i++)
            if (strcmp(value, level_names[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        return fail(err, errcap, origin, key, "expected error, warn, info or debug", value);
    case T_STR:
        if (strlen(value) >= k->cap)
            return fail(err, errcap, origin, key, "too long", value);
        /* A control character (a newline from the environment) could not be printed back
         * as one "key = value" line, and is never meant in a path or an argument list. */
        for (const char *p = value; *p; p++)
            if (iscntrl((unsigned char)*p))
                return fail(err, errcap, origin, key, "control character in value", value);
        snprintf(base + k->off, k->cap, "%s", value);
        return 0;
    case T_DOUBLE:
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0)
            return fail(err, errcap, origin, key, "expected a number", value);
        break;
    case T_SIZE:
        if (parse_number(value, size_units, &x) != 0)
            return fail(err, errcap, origin, key, "expected bytes, optionally with K/M/G", value);
        break;
    case T_MS:
        if (parse_number(value, ms_units, &x) != 0)
            return fail(err, errcap, origin, key, "expected milliseconds, or a ms/s/m suffix",
                        value);
        break;
    case T_INT:
    case T_BACKENDS:
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x != floor(x))
            return fail(err, errcap, origin, key, "expected an integer", value);
        break;
    }
    /* Sizes and durations are whole bytes and milliseconds once their unit is applied
     * ("1.5K" and "0.5s" are fine, "1.5" bytes is not). */
    if ((k->type == T_SIZE || k->type == T_MS) && x != floor(x))
        return fail(err, errcap, origin, key,
                    k->type == T_SIZE ? "not a whole number of bytes"
                                      : "not a whole number of milliseconds",
                    value);
    if (x < k->min || x > k->max) {
        char why[96];
        snprintf(why, sizeof why, "out of range %.15g..%.15g", k->min, k->max);
        return fail(err, errcap, origin, key, why, value);
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
        cfg->min_backends = cfg->max_backends = (int)x;
        break;
    default:
        break;
    }
    return 0;
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
    char line[4096], origin[1200];
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
        rv = gw_config_set(cfg, key, value, origin, err, errcap);
    }
    fclose(f);
    return rv;
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
        int rv = gw_config_set(cfg, key, eq + 1, name, err, errcap);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int gw_config_validate(const gw_config_t *cfg, char *err, size_t errcap)
{
    /* Strings every backend start needs; an empty one would only fail later, per backend,
     * with a less helpful message. backend_command, backend_args and runtime_dir may be
     * empty (they have documented fallbacks). */
    const struct {
        const char *key, *value;
    } required[] = {
        {"listen", cfg->listen_host},      {"model_name", cfg->model_name},
        {"model_cfg", cfg->model_cfg},     {"model_weights", cfg->model_weights},
        {"model_names", cfg->model_names},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (required[i].value[0] == '\0') {
            snprintf(err, errcap, "key '%s': must not be empty", required[i].key);
            return PROTO_ECONFIG;
        }
    if (cfg->min_backends < 0 || cfg->max_backends < 1 || cfg->max_backends > 256 ||
        cfg->max_starting < 1 || cfg->backend_concurrency < 1 ||
        !(cfg->target_inflight_per_backend > 0) || cfg->log_level < 0 || cfg->log_level > 3 ||
        cfg->listen_port < 0 || cfg->listen_port > 65535) {
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
    if (cfg->backoff_initial_ms > cfg->backoff_max_ms) {
        snprintf(err, errcap, "backoff_initial_ms is above backoff_max_ms");
        return PROTO_ECONFIG;
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

void gw_config_print(const gw_config_t *cfg, FILE *out)
{
    const char *base = (const char *)cfg;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const key_t_ *k = &keys[i];
        switch (k->type) {
        case T_LISTEN:
            if (strchr(cfg->listen_host, ':') != NULL)
                fprintf(out, "listen = [%s]:%d\n", cfg->listen_host, cfg->listen_port);
            else
                fprintf(out, "listen = %s:%d\n", cfg->listen_host, cfg->listen_port);
            break;
        case T_LEVEL:
            fprintf(out, "log_level = %s\n", level_names[cfg->log_level & 3]);
            break;
        case T_STR:
            print_string(out, k->name, base + k->off);
            break;
        case T_DOUBLE:
            fprintf(out, "%s = %.17g\n", k->name, *(const double *)(base + k->off));
            break;
        case T_SIZE:
            fprintf(out, "%s = %zu\n", k->name, *(const size_t *)(base + k->off));
            break;
        case T_MS:
            fprintf(out, "%s = %llu\n", k->name,
                    (unsigned long long)*(const uint64_t *)(base + k->off));
            break;
        case T_INT:
            fprintf(out, "%s = %d\n", k->name, *(const int *)(base + k->off));
            break;
        case T_BACKENDS: /* an alias: min/max are printed */
            break;
        }
    }
}
