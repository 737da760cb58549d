/* Configuration: a table of keys (name, type, field offset, limits) drives the file parser,
 * the environment, --set, printing and the documented defaults alike, so a key cannot be
 * parsed in one place and forgotten in another. This file owns the parsing: values by type,
 * --set, "[model NAME]" and "[camera NAME]" sections, the file and the environment. The table,
 * defaults and printing are in config_keys.c, validation in config_check.c. Start-up only,
 * main thread. */
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
    if (host[0] == '\0' ||
        strspn(host, "0123456789abcdefghijklmnopqrstuvwxyz"
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
static int set_key(gw_config_t *cfg, gw_model_t *model, const gw__key_t *k, const char *shown,
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
            if (strcmp(value, gw__level_names[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected error, warn, info or debug", value);
    case T_PREPROCESS:
        for (int i = 0; i < 2; i++)
            if (strcmp(value, gw__preprocess_names[i]) == 0) {
                *(int *)(base + k->off) = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected darknet or faceapi", value);
    case T_BOOL:
        if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "1") == 0)
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
        for (size_t i = 0; i < sizeof gw__provider_names / sizeof gw__provider_names[0]; i++)
            if (strcmp(value, gw__provider_names[i]) == 0) {
                snprintf(base + k->off, k->cap, "%s", value);
                return 0;
            }
        return fail(err, errcap, origin, shown,
                    "expected local, static, registered, ec2, gce or kubernetes", value);
    case T_DECODE:
        for (int i = 0; i < 2; i++)
            if (strcmp(value, gw__decode_names[i]) == 0) {
                *(int *)(base + k->off) = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected exact or fast", value);
    case T_PRECISION:
        for (int i = 0; i < 2; i++)
            if (strcmp(value, gw__precision_names[i]) == 0) {
                *(int *)(base + k->off) = i;
                return 0;
            }
        return fail(err, errcap, origin, shown, "expected fp32 or bf16", value);
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

int gw__config_valid_model_name(const char *name)
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
    const gw__key_t *k = NULL;
    for (size_t i = 0; i < gw__model_nkeys; i++)
        if (strcmp(gw__model_keys[i].name, key) == 0)
            k = &gw__model_keys[i];
    if (k == NULL) {
        snprintf(err, errcap, "%s: key '%s': unknown model key", origin, shown);
        return PROTO_ECONFIG;
    }
    if (!gw__config_valid_model_name(model)) {
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
        gw__config_init_model(&scratch, model);
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

int gw_config_set_camera(gw_config_t *cfg, const char *camera, const char *key, const char *value,
                         const char *origin, char *err, size_t errcap)
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
        if (parse_number(value, (const unit_t[]){{"", 1}, {NULL, 0}}, &x) != 0 || x < 0 || x > 1000)
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
    const gw__key_t *k = gw__config_find_key(key);

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
            if (close != NULL && (*rest == '\0' || *rest == '#') && strncmp(s, "[camera", 7) == 0 &&
                isspace((unsigned char)s[7])) {
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
            if (!gw__config_valid_model_name(name)) {
                snprintf(err, errcap,
                         "%s: section '[model %s]': a model name is 1..%d of A-Z a-z 0-9 - _, "
                         "not starting with -",
                         origin, name, GW_MODEL_NAME_MAX - 1);
                rv = PROTO_ECONFIG;
                break;
            }
            if (gw_config_model(cfg, name) == NULL) {
                if (cfg->nmodels >= GW_MODELS_MAX) {
                    snprintf(err, errcap, "%s: section '[model %s]': more than %d models", origin,
                             name, GW_MODELS_MAX);
                    rv = PROTO_ECONFIG;
                    break;
                }
                gw__config_add_model(cfg, name);
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
    const gw__key_t *best = NULL;
    size_t n = strlen(rest);
    for (size_t i = 0; i < gw__model_nkeys; i++) {
        size_t kn = strlen(gw__model_keys[i].name);
        if (n > kn + 1 && rest[n - kn - 1] == '_' &&
            strcmp(rest + n - kn, gw__model_keys[i].name) == 0 &&
            (best == NULL || kn > strlen(best->name)))
            best = &gw__model_keys[i];
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
        if (gw__config_find_key(key) == NULL && strncmp(key, "model_", 6) == 0)
            rv = env_model(cfg, key + 6, eq + 1, name, err, errcap);
        else
            rv = gw_config_set(cfg, key, eq + 1, name, err, errcap);
        if (rv != 0)
            return rv;
    }
    return 0;
}
