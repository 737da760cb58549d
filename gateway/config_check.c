/* Configuration checks, once every source is loaded (gw_config_validate): ranges and
 * combinations of keys, the `models` selection, pool keys and store settings inherited by
 * each model, static and cloud providers' settings, the runtime directory. Start-up only,
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

static int valid_store(const char *v)
{
    return strcmp(v, "none") == 0 || strncmp(v, "dir:/", 5) == 0 || strncmp(v, "s3://", 5) == 0 ||
           strncmp(v, "gs://", 5) == 0;
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
            snprintf(err, errcap,
                     "key 'model.%s.backends_static': set, but the model's "
                     "provider is 'registered'",
                     m->name);
            return PROTO_ECONFIG;
        }
        if (cfg->join_listen[0] == '\0') {
            snprintf(err, errcap, "model '%s': provider registered needs join_listen", m->name);
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
        snprintf(err, errcap,
                 "key 'model.%s.backends_static': provider static needs at least "
                 "one address",
                 m->name);
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
        snprintf(err, errcap,
                 "model '%s': max_backends (%d) is above the %d address%s in "
                 "backends_static",
                 m->name, m->max_backends, n, n > 1 ? "es" : "");
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

/* A model with provider tiers (`providers = local:2, ec2:18`): each a kind that starts its
 * own backends (local or a cloud, each once) with a maximum; the sum bounds the pool unless
 * max_backends is set. Each cloud tier is checked like a cloud model. */
static int check_tiers(gw_config_t *cfg, gw_model_t *m, char *err, size_t errcap)
{
    static const char *const kinds[] = {"local", "ec2", "gce", "kubernetes"};
    char list[sizeof m->providers];
    int sum = 0, rv;
    m->ntiers = 0;
    if (m->providers[0] == '\0')
        return 0;
    snprintf(list, sizeof list, "%s", m->providers);
    for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        char *colon = strchr(w, ':'), *end = NULL;
        long max = colon ? strtol(colon + 1, &end, 10) : 0;
        int known = 0, dup = 0;
        if (colon != NULL)
            *colon = '\0';
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            known |= strcmp(w, kinds[k]) == 0;
        for (int t = 0; t < m->ntiers; t++)
            dup |= strcmp(w, m->tier_kind[t]) == 0;
        if (!known || dup || colon == NULL || end == colon + 1 || *end != '\0' || max < 1 ||
            max > 256 || m->ntiers == 4) {
            snprintf(err, errcap,
                     "key 'model.%s.providers': '%s' is not KIND:MAX (KIND local, ec2, gce or "
                     "kubernetes, each once, MAX 1..256, at most 4 tiers)",
                     m->name, w);
            return PROTO_ECONFIG;
        }
        snprintf(m->tier_kind[m->ntiers], sizeof m->tier_kind[0], "%s", w);
        m->tier_max[m->ntiers++] = (int)max;
        sum += (int)max;
    }
    for (int t = m->ntiers - 1; t >= 0; t--) { /* ends on the first tier's kind */
        snprintf(m->provider, sizeof m->provider, "%s", m->tier_kind[t]);
        if ((rv = check_cloud(cfg, m, err, errcap)) != 0)
            return rv;
    }
    if (!(m->set & GW_MODEL_SET_MAX)) {
        m->max_backends = sum > 256 ? 256 : sum;
        m->set |= GW_MODEL_SET_MAX;
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
            snprintf(err, errcap, "key 'camera.%s.fps': a snapshot camera needs fps > 0", c->name);
            return PROTO_ECONFIG;
        }
        if (c->model[0] != '\0' && gw_config_model(cfg, c->model) == NULL) {
            snprintf(err, errcap, "key 'camera.%s.model': no model named '%s' is served", c->name,
                     c->model);
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
    if (cfg->jobs_store[0] != '\0' &&
        (strcmp(cfg->jobs_store, "none") == 0 || !valid_store(cfg->jobs_store))) {
        snprintf(err, errcap,
                 "key 'jobs_store': expected dir:/PATH, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX, "
                 "or empty for dir:jobs_dir (got '%.200s')",
                 cfg->jobs_store);
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
        if ((rv = check_tiers(cfg, m, err, errcap)) != 0 ||
            (rv = check_static(cfg, m, err, errcap)) != 0 ||
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
            snprintf(err, errcap,
                     "key 'model.%s.store': expected none, dir:/PATH, "
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
        for (size_t j = 0;
             j < sizeof required / sizeof required[0] && strcmp(m->provider, "local") == 0; j++)
            if (required[j].value[0] == '\0') {
                snprintf(err, errcap, "key 'model.%s.%s': must not be empty", m->name,
                         required[j].key);
                return PROTO_ECONFIG;
            }
        if (!gw__config_valid_model_name(m->name) || m->min_backends < 0 || m->max_backends < 1 ||
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
