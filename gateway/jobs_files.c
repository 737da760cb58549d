/* A job's files (see jobs.h): DIR/ID/meta, in/N, results (appended), out/N.jpg, cancelled.
 * Every whole file is written to a temporary name and renamed, so a kill leaves the old file
 * or the new one; the results file is appended one line per image. Loop thread only (plain
 * blocking file calls: small files on a local disk). */
#include "jobs.h"
#include "jobs_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* a file under jobs_dir: DIR/ID/out/N.jpg */
#define FPATH (GW_CONFIG_STR_MAX + 128)

static int mkdirs(const char *path)
{
    char tmp[FPATH];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Written to a temporary name, then renamed: a kill leaves the old file or the new one. */
static int write_file(const char *path, const void *data, size_t len)
{
    char tmp[FPATH + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
    return rename(tmp, path);
}

static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size > max) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n + 1);
    while (buf != NULL && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (buf == NULL || got != n) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

void gw__jobs_path(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, char *out,
                   size_t cap)
{
    (void)!snprintf(out, cap, "%s/%s%s%s", js->dir, j->id, rel[0] ? "/" : "", rel);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[FPATH + 260];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            if (e->d_type == DT_DIR)
                rm_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* One line per finished image: "INDEX\tSTATUS\tLABEL\tJSON\n". A line cut by a kill has no
 * newline and is ignored on load (that image runs again). */
void gw__jobs_append_result(const gw_jobs_t *js, const gw__batch_t *j, int idx)
{
    char path[FPATH];
    gw__jobs_path(js, j, "results", path, sizeof path);
    const gw__img_t *im = &j->imgs[idx];
    char *line = NULL;
    int n =
        asprintf(&line, "%d\t%d\t%s\t%s\n", idx, im->st, im->label, im->result ? im->result : "{}");
    if (n < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n)
            GW_LOG_W("job_write", "job=%s index=%d error=%s", j->id, idx, strerror(errno));
        close(fd);
    }
    free(line);
}

int gw__jobs_mkdir(const gw_jobs_t *js, const gw__batch_t *j)
{
    char path[FPATH];
    gw__jobs_path(js, j, "in", path, sizeof path);
    if (mkdirs(path) != 0)
        return -1;
    gw__jobs_path(js, j, "out", path, sizeof path);
    return mkdirs(path);
}

int gw__jobs_write(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, const void *data,
                   size_t len)
{
    char path[FPATH];
    gw__jobs_path(js, j, rel, path, sizeof path);
    return write_file(path, data, len);
}

uint8_t *gw__jobs_read(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, size_t max,
                       size_t *len)
{
    char path[FPATH];
    gw__jobs_path(js, j, rel, path, sizeof path);
    return read_file(path, max, len);
}

void gw__jobs_remove(const gw_jobs_t *js, const gw__batch_t *j)
{
    char path[FPATH];
    gw__jobs_path(js, j, "", path, sizeof path);
    rm_tree(path);
}

/* meta: "framegate-job 1\nMODEL\nN\nCREATED_UNIX_MS\n" then N lines "LEN\tNAME" (uploaded
 * bytes) or "0\tNAME\tu\tURL" / "0\tNAME\tk\tKEY". */
int gw__jobs_write_meta(const gw_jobs_t *js, const gw__batch_t *j)
{
    char *meta = NULL;
    size_t mlen = 0;
    FILE *m = open_memstream(&meta, &mlen);
    if (m == NULL)
        return -1;
    fprintf(m, "framegate-job 1\n%s\n%d\n%llu\n", j->model[0] ? j->model : "-", j->n,
            (unsigned long long)j->created_unix_ms);
    for (int i = 0; i < j->n; i++) {
        const gw__img_t *im = &j->imgs[i];
        if (im->src == GW__SRC_BYTES)
            fprintf(m, "%zu\t%s\n", im->len, im->name);
        else
            fprintf(m, "0\t%s\t%c\t%s\n", im->name, im->src == GW__SRC_URL ? 'u' : 'k', im->ref);
    }
    fclose(m);
    char path[FPATH];
    gw__jobs_path(js, j, "meta", path, sizeof path);
    int rv = write_file(path, meta, mlen);
    free(meta);
    return rv;
}

uint8_t *gw__jobs_output(gw_jobs_t *js, const gw__batch_t *j, int idx, size_t *len)
{
    char path[FPATH], rel[48];
    snprintf(rel, sizeof rel, "out/%d.jpg", idx);
    gw__jobs_path(js, j, rel, path, sizeof path);
    uint8_t *img = read_file(path, js->cfg->max_body_bytes * 4, len);
    if (img == NULL) {
        /* No drawing came back (a backend that does not draw): the image as uploaded. */
        snprintf(rel, sizeof rel, "in/%d", idx);
        gw__jobs_path(js, j, rel, path, sizeof path);
        img = read_file(path, js->cfg->max_body_bytes, len);
    }
    return img;
}

/* Reads DIR/ID back (meta, results, the cancelled marker) into a job for the registry. */
static int load_job(gw_jobs_t *js, const char *id)
{
    char path[FPATH];
    snprintf(path, sizeof path, "%s/%s/meta", js->dir, id);
    size_t len;
    char *meta = (char *)read_file(path, (size_t)64 << 20, &len);
    if (meta == NULL)
        return -1;
    gw__batch_t *j = calloc(1, sizeof *j);
    char *save = NULL, *line = strtok_r(meta, "\n", &save);
    int ok = j != NULL && line != NULL && strcmp(line, "framegate-job 1") == 0;
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
    free(meta);
    if (!ok) {
        if (j != NULL)
            gw__batch_free(j);
        GW_LOG_W("job_load", "job=%s error=bad_meta", id);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s/results", js->dir, id);
    char *res = (char *)read_file(path, (size_t)1 << 30, &len);
    for (char *p = res; p != NULL && *p;) {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break; /* cut by a kill */
        *nl = '\0';
        char *t1 = strchr(p, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL,
             *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        int idx = atoi(p);
        if (t3 != NULL && idx >= 0 && idx < j->n && j->imgs[idx].st == GW__IMG_PENDING) {
            gw__img_t *im = &j->imgs[idx];
            im->st = atoi(t1 + 1) == GW__IMG_DONE ? GW__IMG_DONE : GW__IMG_FAILED;
            *t3 = '\0';
            snprintf(im->label, sizeof im->label, "%s", t2 + 1);
            im->result = strdup(t3 + 1);
            if (im->st == GW__IMG_DONE)
                j->ndone++;
            else
                j->nfailed++;
        }
        p = nl + 1;
    }
    free(res);
    snprintf(path, sizeof path, "%s/%s/cancelled", js->dir, id);
    j->state = access(path, F_OK) == 0 ? GW__JOB_CANCELLED : GW__JOB_QUEUED;
    gw__jobs_adopt(js, j);
    return 0;
}

void gw__jobs_load_all(gw_jobs_t *js)
{
    DIR *d = opendir(js->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strlen(e->d_name) < sizeof((gw__batch_t *)0)->id)
            load_job(js, e->d_name);
    if (d != NULL)
        closedir(d);
}

int gw__jobs_mkroot(const char *dir)
{
    return mkdirs(dir);
}
