#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define MAX_FAMILIES 48
#define LABEL_MAX 64

typedef struct {
    char l1[LABEL_MAX], l2[LABEL_MAX];
    double value; /* counter/gauge; histogram sum */
    unsigned long long count;
    unsigned long long buckets[GW_METRICS_MAX_BUCKETS];
} series_t;

typedef struct {
    gw_metric_type_t type;
    const char *name, *help;
    char label1[32], label2[32];
    int nlabels;
    double bounds[GW_METRICS_MAX_BUCKETS];
    int nbuckets;
    series_t *series;
    int nseries;
} family_t;

struct gw_metrics {
    family_t fam[MAX_FAMILIES];
    int nfam;
    unsigned long long dropped;
};

int gw_metrics_create(gw_metrics_t **out)
{
    gw_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return PROTO_ENOMEM;
    *out = m;
    return 0;
}

void gw_metrics_destroy(gw_metrics_t *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->nfam; i++)
        free(m->fam[i].series);
    free(m);
}

int gw_metrics_declare(gw_metrics_t *m, gw_metric_type_t type, const char *name,
                       const char *help, const char *labels, const double *buckets,
                       int nbuckets)
{
    if (m->nfam >= MAX_FAMILIES || nbuckets > GW_METRICS_MAX_BUCKETS)
        return PROTO_ETOOBIG;
    family_t *f = &m->fam[m->nfam];
    memset(f, 0, sizeof *f);
    f->series = calloc(GW_METRICS_MAX_SERIES, sizeof *f->series);
    if (f->series == NULL)
        return PROTO_ENOMEM;
    f->type = type;
    f->name = name;
    f->help = help;
    if (labels != NULL && labels[0] != '\0') {
        const char *comma = strchr(labels, ',');
        f->nlabels = comma ? 2 : 1;
        snprintf(f->label1, sizeof f->label1, "%.*s",
                 (int)(comma ? (size_t)(comma - labels) : strlen(labels)), labels);
        if (comma)
            snprintf(f->label2, sizeof f->label2, "%s", comma + 1);
    }
    for (int i = 0; i < nbuckets; i++)
        f->bounds[i] = buckets[i];
    f->nbuckets = type == GW_HISTOGRAM ? nbuckets : 0;
    return m->nfam++;
}

static series_t *get_series(gw_metrics_t *m, int fam, const char *l1, const char *l2)
{
    if (fam < 0 || fam >= m->nfam)
        return NULL;
    family_t *f = &m->fam[fam];
    l1 = f->nlabels >= 1 && l1 ? l1 : "";
    l2 = f->nlabels >= 2 && l2 ? l2 : "";
    for (int i = 0; i < f->nseries; i++)
        if (strncmp(f->series[i].l1, l1, LABEL_MAX - 1) == 0 &&
            strncmp(f->series[i].l2, l2, LABEL_MAX - 1) == 0)
            return &f->series[i];
    if (f->nseries >= GW_METRICS_MAX_SERIES) {
        m->dropped++;
        return NULL;
    }
    series_t *s = &f->series[f->nseries++];
    memset(s, 0, sizeof *s);
    snprintf(s->l1, sizeof s->l1, "%s", l1);
    snprintf(s->l2, sizeof s->l2, "%s", l2);
    return s;
}

void gw_metrics_add(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    series_t *s = get_series(m, fam, l1, l2);
    if (s != NULL)
        s->value += v;
}

void gw_metrics_set(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    series_t *s = get_series(m, fam, l1, l2);
    if (s != NULL)
        s->value = v;
}

void gw_metrics_observe(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    series_t *s = get_series(m, fam, l1, l2);
    if (s == NULL)
        return;
    family_t *f = &m->fam[fam];
    s->value += v;
    s->count++;
    for (int i = 0; i < f->nbuckets; i++)
        if (v <= f->bounds[i])
            s->buckets[i]++; /* cumulative: every bucket at or above v */
}

void gw_metrics_clear(gw_metrics_t *m, int fam)
{
    if (fam >= 0 && fam < m->nfam)
        m->fam[fam].nseries = 0;
}

/* ---- rendering ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sb_t;

static void sb_printf(sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sb_t *sb, const char *fmt, ...)
{
    if (sb->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->oom = 1;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = sb->cap * 2 + (size_t)n + 1;
        char *p = realloc(sb->buf, cap);
        if (p == NULL) {
            sb->oom = 1;
            return;
        }
        sb->buf = p;
        sb->cap = cap;
    }
}

/* Label values escape backslash, double quote and newline. */
static void escape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 3 < cap; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

static void labels_str(const family_t *f, const series_t *s, const char *extra, char *out,
                       size_t cap)
{
    char e1[LABEL_MAX * 2 + 1], e2[LABEL_MAX * 2 + 1];
    size_t n = 0;
    out[0] = '\0';
    if (f->nlabels == 0 && extra == NULL)
        return;
    escape(s->l1, e1, sizeof e1);
    escape(s->l2, e2, sizeof e2);
    n += (size_t)snprintf(out + n, cap - n, "{");
    if (f->nlabels >= 1)
        n += (size_t)snprintf(out + n, cap - n, "%s=\"%s\"", f->label1, e1);
    if (f->nlabels >= 2)
        n += (size_t)snprintf(out + n, cap - n, ",%s=\"%s\"", f->label2, e2);
    if (extra != NULL)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", f->nlabels ? "," : "", extra);
    snprintf(out + n, cap - n, "}");
}

static const char *type_name(gw_metric_type_t t)
{
    return t == GW_COUNTER ? "counter" : t == GW_GAUGE ? "gauge" : "histogram";
}

char *gw_metrics_render(gw_metrics_t *m, size_t *len)
{
    sb_t sb = {0};
    char labels[512], le[64];
    sb.cap = 4096;
    sb.buf = malloc(sb.cap);
    if (sb.buf == NULL)
        return NULL;
    for (int i = 0; i < m->nfam; i++) {
        const family_t *f = &m->fam[i];
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                  type_name(f->type));
        for (int j = 0; j < f->nseries; j++) {
            const series_t *s = &f->series[j];
            if (f->type != GW_HISTOGRAM) {
                labels_str(f, s, NULL, labels, sizeof labels);
                sb_printf(&sb, "%s%s %.17g\n", f->name, labels, s->value);
                continue;
            }
            for (int b = 0; b < f->nbuckets; b++) {
                /* observe() counts an observation in every bucket whose bound it is under,
                 * so each count is already cumulative. */
                snprintf(le, sizeof le, "le=\"%.17g\"", f->bounds[b]);
                labels_str(f, s, le, labels, sizeof labels);
                sb_printf(&sb, "%s_bucket%s %llu\n", f->name, labels, s->buckets[b]);
            }
            labels_str(f, s, "le=\"+Inf\"", labels, sizeof labels);
            sb_printf(&sb, "%s_bucket%s %llu\n", f->name, labels, s->count);
            labels_str(f, s, NULL, labels, sizeof labels);
            sb_printf(&sb, "%s_sum%s %.17g\n%s_count%s %llu\n", f->name, labels, s->value,
                      f->name, labels, s->count);
        }
    }
    sb_printf(&sb,
              "# HELP framegate_metrics_dropped_series_total Label sets dropped at the "
              "per-family series limit.\n"
              "# TYPE framegate_metrics_dropped_series_total counter\n"
              "framegate_metrics_dropped_series_total %llu\n",
              m->dropped);
    if (sb.oom) {
        free(sb.buf);
        return NULL;
    }
    *len = sb.len;
    return sb.buf;
}
