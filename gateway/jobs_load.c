/* The start-up load (see jobs.h): lists jobs/ in the jobs store, reads each job's meta and
 * result objects back, hands each job to gw__jobs_adopt and its pending images to dispatch;
 * the objects of an upload that never wrote its meta are deleted. A listing or a meta the
 * store fails makes the whole load run again later (gw__jobs_load_failed). The meta's format
 * is gw__jobs_put_meta's (jobs_store.c). Loop thread only. */
#include "jobs.h"
#include "jobs_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

#define KEY_MAX GW__JOBS_KEY_MAX
#define LOAD_PAR 8 /* result reads out at once */
#define RES_MAX ((size_t)4 << 20)
#define META_MAX ((size_t)64 << 20)

typedef struct {
    char id[32];
    int has_meta, cancelled;
    int *res, nres, capres;
    int *in, nin, capin;
} ld_job_t;

typedef struct {
    gw_jobs_t *js;
    ld_job_t *jobs;
    int njobs, capjobs;
    char after[600];
    int cur;
    gw__batch_t *j; /* the job being read */
    int res_next, res_out;
    int failed; /* the store failed a listing or a meta: the whole load runs again later */
} loader_t;

static void load_next(loader_t *l);

static void load_end(loader_t *l)
{
    gw_jobs_t *js = l->js;
    for (int i = 0; i < l->njobs; i++) {
        free(l->jobs[i].res);
        free(l->jobs[i].in);
    }
    free(l->jobs);
    if (l->j != NULL)
        gw__batch_free(l->j);
    int failed = l->failed && js->store != NULL;
    free(l);
    if (failed)
        gw__jobs_load_failed(js);
    else
        gw__jobs_loaded(js);
}

static int push_idx(int **arr, int *n, int *cap, int v)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        int *a = realloc(*arr, (size_t)nc * sizeof *a);
        if (a == NULL)
            return -1;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

/* One listed key "jobs/ID/REST" into the job records (keys arrive sorted: one ID's together). */
static void note_key(loader_t *l, const char *key)
{
    if (!gw__jobs_is_job_key(key))
        return;
    const char *id = key + 5, *slash = strchr(id, '/');
    if (slash == NULL || (size_t)(slash - id) >= sizeof l->jobs[0].id)
        return;
    size_t il = (size_t)(slash - id);
    ld_job_t *lj = l->njobs > 0 ? &l->jobs[l->njobs - 1] : NULL;
    if (lj == NULL || strlen(lj->id) != il || memcmp(lj->id, id, il) != 0) {
        if (l->njobs >= 10000) /* max_jobs' own bound: more is not ours to load */
            return;
        if (l->njobs == l->capjobs) {
            int nc = l->capjobs ? l->capjobs * 2 : 16;
            ld_job_t *a = realloc(l->jobs, (size_t)nc * sizeof *a);
            if (a == NULL)
                return;
            l->jobs = a;
            l->capjobs = nc;
        }
        lj = &l->jobs[l->njobs++];
        memset(lj, 0, sizeof *lj);
        memcpy(lj->id, id, il);
    }
    const char *rest = slash + 1;
    char *end = NULL;
    if (strcmp(rest, "meta") == 0) {
        lj->has_meta = 1;
    } else if (strcmp(rest, "cancelled") == 0) {
        lj->cancelled = 1;
    } else if (strncmp(rest, "res/", 4) == 0 || strncmp(rest, "in/", 3) == 0) {
        int res = rest[0] == 'r';
        long idx = strtol(rest + (res ? 4 : 3), &end, 10);
        if (*end != '\0' || idx < 0 || idx >= l->js->cfg->max_job_images)
            return;
        if (res)
            push_idx(&lj->res, &lj->nres, &lj->capres, (int)idx);
        else
            push_idx(&lj->in, &lj->nin, &lj->capin, (int)idx);
    }
}

static void on_load_listed(void *arg, int err, const char *msg, char **keys, int n)
{
    loader_t *l = arg;
    if (err != 0) {
        GW_LOG_E("job_load", "store=%s error=\"%s\"", l->js->store_url,
                 msg ? msg : proto_strerror(err));
        l->failed = err != UV_ECANCELED;
        load_end(l);
        return;
    }
    for (int i = 0; i < n; i++)
        note_key(l, keys[i]);
    if (n == 1000) {
        snprintf(l->after, sizeof l->after, "%s", keys[n - 1]);
        int rv = l->js->store == NULL ? PROTO_ESHUTDOWN
                                      : l->js->store->ops->list(l->js->store, "jobs/", l->after,
                                                                1000, on_load_listed, l);
        if (rv != 0) {
            l->failed = 1;
            load_end(l);
        }
        return;
    }
    load_next(l);
}

/* Parses a meta into a new job (NULL if malformed). */
static gw__batch_t *parse_meta(gw_jobs_t *js, const char *id, char *meta)
{
    gw__batch_t *j = calloc(1, sizeof *j);
    char *save = NULL, *line = strtok_r(meta, "\n", &save);
    int v2 = line != NULL && strcmp(line, "framegate-job 2") == 0;
    int ok = j != NULL && line != NULL && (v2 || strcmp(line, "framegate-job 1") == 0);
    if (ok) {
        snprintf(j->id, sizeof j->id, "%s", id);
        line = strtok_r(NULL, "\n", &save);
        ok = line != NULL;
        if (ok)
            snprintf(j->model, sizeof j->model, "%s", strcmp(line, "-") == 0 ? "" : line);
        line = ok ? strtok_r(NULL, "\n", &save) : NULL;
        j->n = line ? atoi(line) : 0;
        ok = j->n > 0 && j->n <= js->cfg->max_job_images;
        line = ok ? strtok_r(NULL, "\n", &save) : NULL;
        ok = ok && line != NULL;
        if (ok)
            j->created_unix_ms = strtoull(line, NULL, 10);
        if (ok && v2) {
            line = strtok_r(NULL, "\n", &save);
            ok = line != NULL;
            if (ok)
                snprintf(j->owner, sizeof j->owner, "%s", strcmp(line, "-") == 0 ? "" : line);
        }
        j->imgs = ok ? calloc((size_t)j->n, sizeof *j->imgs) : NULL;
        ok = ok && j->imgs != NULL;
        for (int i = 0; ok && i < j->n; i++) {
            line = strtok_r(NULL, "\n", &save);
            char *tab = line ? strchr(line, '\t') : NULL;
            ok = tab != NULL;
            if (ok) {
                /* "LEN\tNAME", or "0\tNAME\tu\tURL" / "0\tNAME\tk\tKEY" */
                gw__img_t *im = &j->imgs[i];
                im->len = strtoull(line, NULL, 10);
                char *tab2 = strchr(tab + 1, '\t');
                if (tab2 != NULL) {
                    *tab2 = '\0';
                    im->src = tab2[1] == 'u' ? GW__SRC_URL : GW__SRC_KEY;
                    ok = tab2[1] != '\0' && tab2[2] == '\t' && tab2[3] != '\0' &&
                         (im->ref = strdup(tab2 + 3)) != NULL;
                }
                snprintf(im->name, sizeof im->name, "%s", tab + 1);
            }
        }
    }
    if (!ok && j != NULL) {
        if (j->imgs == NULL)
            j->n = 0;
        gw__batch_free(j);
        j = NULL;
    }
    return j;
}

static void load_job_done(loader_t *l)
{
    ld_job_t *lj = &l->jobs[l->cur];
    gw__batch_t *j = l->j;
    l->j = NULL;
    j->state = lj->cancelled ? GW__JOB_CANCELLED : GW__JOB_QUEUED;
    gw__jobs_adopt(l->js, j);
    l->cur++;
    load_next(l);
}

static void res_more(loader_t *l);

typedef struct {
    loader_t *l;
    int idx;
} res_get_t;

/* An object's bytes as a C string (a store's get does not terminate them), or NULL. */
static char *as_text(uint8_t *data, size_t len)
{
    if (data == NULL)
        return NULL;
    char *t = realloc(data, len + 1);
    if (t == NULL) {
        free(data);
        return NULL;
    }
    t[len] = '\0';
    return t;
}

/* One result object read back: "STATUS\tLABEL\tJSON" into image idx (counted once). */
static void on_res(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    res_get_t *rg = arg;
    loader_t *l = rg->l;
    int idx = rg->idx;
    free(rg);
    l->res_out--;
    gw__batch_t *j = l->j;
    if (err == 0)
        data = (uint8_t *)as_text(data, len);
    if (err == 0 && data != NULL && j != NULL && idx < j->n && j->imgs[idx].st == GW__IMG_PENDING) {
        char *t = (char *)data, *t1 = strchr(t, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t2 != NULL) {
            gw__img_t *im = &j->imgs[idx];
            im->st = atoi(t) == GW__IMG_DONE ? GW__IMG_DONE : GW__IMG_FAILED;
            *t2 = '\0';
            snprintf(im->label, sizeof im->label, "%s", t1 + 1);
            im->result = strdup(t2 + 1);
            if (im->st == GW__IMG_DONE)
                j->ndone++;
            else
                j->nfailed++;
        }
    } else if (err != 0 && err != UV_ECANCELED) {
        /* not read: the image runs again and its result is written again, same key */
        GW_LOG_W("job_load", "job=%s index=%d error=\"%s\"", j ? j->id : "-", idx,
                 msg ? msg : proto_strerror(err));
    }
    free(data);
    if (err == UV_ECANCELED || l->js->store == NULL) {
        l->res_next = l->jobs[l->cur].nres; /* the store is closing: nothing more */
        if (l->res_out == 0)
            load_end(l);
        return;
    }
    res_more(l);
}

/* Reads a job's result objects, a few at once; the job is adopted after the last. */
static void res_more(loader_t *l)
{
    ld_job_t *lj = &l->jobs[l->cur];
    gw_jobs_t *js = l->js;
    while (js->store != NULL && l->res_out < LOAD_PAR && l->res_next < lj->nres) {
        char key[KEY_MAX];
        int idx = lj->res[l->res_next++];
        snprintf(key, sizeof key, "jobs/%s/res/%d", lj->id, idx);
        res_get_t *rg = malloc(sizeof *rg);
        if (rg == NULL)
            continue; /* that image runs again */
        rg->l = l;
        rg->idx = idx;
        if (js->store->ops->get(js->store, key, RES_MAX, on_res, rg) != 0)
            free(rg);
        else
            l->res_out++;
    }
    if (l->res_out == 0)
        load_job_done(l);
}

static void on_meta(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    loader_t *l = arg;
    ld_job_t *lj = &l->jobs[l->cur];
    if (err == UV_ECANCELED) {
        free(data);
        load_end(l);
        return;
    }
    if (err != 0) {
        GW_LOG_W("job_load", "job=%s error=\"%s\"", lj->id, msg ? msg : proto_strerror(err));
        if (err != PROTO_ENOTFOUND) { /* the store failing: not a job to skip */
            l->failed = 1;
            load_end(l);
            return;
        }
        l->cur++;
        load_next(l);
        return;
    }
    char *text = as_text(data, len);
    l->j = text != NULL ? parse_meta(l->js, lj->id, text) : NULL;
    free(text);
    if (l->j == NULL) {
        GW_LOG_W("job_load", "job=%s error=bad_meta", lj->id);
        l->cur++;
        load_next(l);
        return;
    }
    for (int i = 0; i < lj->nin; i++)
        if (lj->in[i] < l->j->n && l->j->imgs[lj->in[i]].src != GW__SRC_BYTES)
            l->j->imgs[lj->in[i]].kept = 1;
    l->res_next = 0;
    res_more(l);
}

static void load_next(loader_t *l)
{
    gw_jobs_t *js = l->js;
    while (l->cur < l->njobs) {
        ld_job_t *lj = &l->jobs[l->cur];
        if (js->store == NULL)
            break;
        char key[KEY_MAX];
        snprintf(key, sizeof key, "jobs/%s/", lj->id);
        if (gw__jobs_is_live(js, key)) { /* uploaded while the load ran: already ours */
            l->cur++;
            continue;
        }
        if (!lj->has_meta) {
            /* an upload that never finished: its inputs go (not one that began meanwhile) */
            gw__jobs_purge(js, key, 1, NULL, NULL);
            l->cur++;
            continue;
        }
        strcat(key, "meta");
        if (js->store->ops->get(js->store, key, META_MAX, on_meta, l) == 0)
            return;
        l->failed = 1;
        break;
    }
    load_end(l);
}

void gw__jobs_load_all(gw_jobs_t *js)
{
    loader_t *l = calloc(1, sizeof *l);
    js->loading = 1;
    if (l == NULL) {
        gw__jobs_loaded(js);
        return;
    }
    l->js = js;
    if (js->store == NULL)
        load_end(l);
    else if (js->store->ops->list(js->store, "jobs/", "", 1000, on_load_listed, l) != 0) {
        l->failed = 1;
        load_end(l);
    }
}
