/* Prometheus registry. Everything is sized at declaration (a fixed array of series per
 * family), so recording a value never allocates; the hot path is one hash of the label
 * values and a scan of at most GW_METRICS_MAX_SERIES hashes. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define LABEL_NAME_MAX 32
#define DROPPED_NAME "framegate_metrics_dropped_series_total"

#define MAX_LABELS 3

typedef struct {
    uint32_t hash; /* of the label values: compared before the strings */
    char l[MAX_LABELS][GW_METRICS_LABEL_MAX + 1];
    double value; /* counter/gauge; histogram sum */
    unsigned long long count;
    unsigned long long buckets[GW_METRICS_MAX_BUCKETS]; /* cumulative */
} series_t;

typedef struct {
    gw_metric_type_t type;
    const char *name, *help;
    char label[MAX_LABELS][LABEL_NAME_MAX];
    int nlabels;
    double bounds[GW_METRICS_MAX_BUCKETS];
    int nbuckets;
    series_t *series;
    int nseries;
} family_t;

struct gw_metrics {
    family_t fam[GW_METRICS_MAX_FAMILIES];
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

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names the same without ':' and not
 * starting with "__" (reserved by Prometheus). */
static int valid_name(const char *s, size_t n, int is_label)
{
    if (n == 0 || (is_label && n >= 2 && s[0] == '_' && s[1] == '_'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (!is_label && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int set_label_name(char *dst, const char *src, size_t n, gw_metric_type_t type)
{
    if (n >= LABEL_NAME_MAX || !valid_name(src, n, 1) ||
        (type == GW_HISTOGRAM && n == 2 && memcmp(src, "le", 2) == 0))
        return PROTO_EINVAL;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

int gw_metrics_declare(gw_metrics_t *m, gw_metric_type_t type, const char *name, const char *help,
                       const char *labels, const double *buckets, int nbuckets)
{
    family_t f;
    int rv;

    if (m->nfam >= GW_METRICS_MAX_FAMILIES || nbuckets > GW_METRICS_MAX_BUCKETS)
        return PROTO_ETOOBIG;
    if ((type != GW_COUNTER && type != GW_GAUGE && type != GW_HISTOGRAM) || name == NULL ||
        help == NULL || !valid_name(name, strlen(name), 0) || strcmp(name, DROPPED_NAME) == 0 ||
        nbuckets < 0 || (nbuckets > 0 && buckets == NULL))
        return PROTO_EINVAL;
    for (int i = 0; i < m->nfam; i++)
        if (strcmp(m->fam[i].name, name) == 0)
            return PROTO_EINVAL;
    memset(&f, 0, sizeof f);
    f.type = type;
    f.name = name;
    f.help = help;
    for (const char *p = labels; p != NULL && p[0] != '\0';) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (f.nlabels >= MAX_LABELS)
            return PROTO_EINVAL;
        if ((rv = set_label_name(f.label[f.nlabels], p, n, type)) != 0)
            return rv;
        for (int i = 0; i < f.nlabels; i++)
            if (strcmp(f.label[i], f.label[f.nlabels]) == 0)
                return PROTO_EINVAL;
        f.nlabels++;
        if (comma != NULL && comma[1] == '\0')
            return PROTO_EINVAL;
        p = comma != NULL ? comma + 1 : NULL;
    }
    if (type == GW_HISTOGRAM) {
        for (int i = 0; i < nbuckets; i++) {
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return PROTO_EINVAL;
            f.bounds[i] = buckets[i];
        }
        f.nbuckets = nbuckets;
    }
    if ((f.series = calloc(GW_METRICS_MAX_SERIES, sizeof *f.series)) == NULL)
        return PROTO_ENOMEM;
    m->fam[m->nfam] = f;
    return m->nfam++;
}

/* FNV-1a over the values with a separator, so ("ab","") and ("a","b") differ. */
static uint32_t hash_labels(const char *const *l)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < MAX_LABELS; i++) {
        for (const char *p = l[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static int get_series(gw_metrics_t *m, int fam, const char *const *in, series_t **out)
{
    const char *l[MAX_LABELS];
    if (fam < 0 || fam >= m->nfam)
        return PROTO_EINVAL;
    family_t *f = &m->fam[fam];
    for (int i = 0; i < MAX_LABELS; i++) {
        l[i] = f->nlabels > i && in[i] != NULL ? in[i] : "";
        if (strlen(l[i]) > GW_METRICS_LABEL_MAX)
            return PROTO_ETOOBIG; /* truncating would merge distinct series */
    }
    uint32_t h = hash_labels(l);
    for (int i = 0; i < f->nseries; i++) {
        series_t *s = &f->series[i];
        if (s->hash == h && strcmp(s->l[0], l[0]) == 0 && strcmp(s->l[1], l[1]) == 0 &&
            strcmp(s->l[2], l[2]) == 0) {
            *out = s;
            return 0;
        }
    }
    if (f->nseries >= GW_METRICS_MAX_SERIES) {
        m->dropped++;
        return PROTO_ETOOBIG;
    }
    series_t *s = &f->series[f->nseries++];
    memset(s, 0, sizeof *s);
    s->hash = h;
    for (int i = 0; i < MAX_LABELS; i++)
        strcpy(s->l[i], l[i]);
    *out = s;
    return 0;
}

int gw_metrics_add(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    return gw_metrics_add3(m, fam, l1, l2, NULL, v);
}

int gw_metrics_set(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    return gw_metrics_set3(m, fam, l1, l2, NULL, v);
}

int gw_metrics_observe(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v)
{
    return gw_metrics_observe3(m, fam, l1, l2, NULL, v);
}

int gw_metrics_add3(gw_metrics_t *m, int fam, const char *l1, const char *l2, const char *l3,
                    double v)
{
    const char *l[MAX_LABELS] = {l1, l2, l3};
    series_t *s;
    int rv;
    if (fam < 0 || fam >= m->nfam || m->fam[fam].type == GW_HISTOGRAM ||
        (m->fam[fam].type == GW_COUNTER && !(v >= 0)))
        return PROTO_EINVAL; /* a counter never goes down */
    if ((rv = get_series(m, fam, l, &s)) != 0)
        return rv;
    s->value += v;
    return 0;
}

int gw_metrics_set3(gw_metrics_t *m, int fam, const char *l1, const char *l2, const char *l3,
                    double v)
{
    const char *l[MAX_LABELS] = {l1, l2, l3};
    series_t *s;
    int rv;
    if (fam < 0 || fam >= m->nfam || m->fam[fam].type == GW_HISTOGRAM)
        return PROTO_EINVAL;
    if ((rv = get_series(m, fam, l, &s)) != 0)
        return rv;
    s->value = v;
    return 0;
}

int gw_metrics_observe3(gw_metrics_t *m, int fam, const char *l1, const char *l2,
                        const char *l3, double v)
{
    const char *l[MAX_LABELS] = {l1, l2, l3};
    series_t *s;
    int rv;
    if (fam < 0 || fam >= m->nfam || m->fam[fam].type != GW_HISTOGRAM)
        return PROTO_EINVAL;
    if ((rv = get_series(m, fam, l, &s)) != 0)
        return rv;
    const family_t *f = &m->fam[fam];
    s->value += v;
    s->count++;
    /* Counted in every bucket whose bound is at or above v, so the buckets are cumulative
     * as stored and render needs no running sum. Buckets are few (<= 24). */
    for (int i = f->nbuckets - 1; i >= 0 && v <= f->bounds[i]; i--)
        s->buckets[i]++;
    return 0;
}

int gw_metrics_clear(gw_metrics_t *m, int fam)
{
    if (fam < 0 || fam >= m->nfam || m->fam[fam].type != GW_GAUGE)
        return PROTO_EINVAL;
    m->fam[fam].nseries = 0;
    return 0;
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

/* Escapes backslash and newline (HELP text), and double quote too (label values). `out`
 * has room for twice the input. */
static void escape(const char *in, int quote, char *out)
{
    size_t o = 0;
    for (; *in; in++) {
        if (*in == '\\' || (quote && *in == '"')) {
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

/* The shortest decimal that reads back as the same double ("0.1", not
 * "0.10000000000000001"), and Prometheus' spelling of the non-finite values. */
static void fmt_value(double v, char *out, size_t cap)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void labels_str(const family_t *f, const series_t *s, const char *le, char *out, size_t cap)
{
    char e[2 * GW_METRICS_LABEL_MAX + 1];
    size_t n = 0;
    out[0] = '\0';
    if (f->nlabels == 0 && le == NULL)
        return;
    /* `out` is sized for every label at its longest, escaped: nothing is cut. */
    n += (size_t)snprintf(out + n, cap - n, "{");
    for (int i = 0; i < f->nlabels && n < cap; i++) {
        escape(s->l[i], 1, e);
        n += (size_t)snprintf(out + n, cap - n, "%s%s=\"%s\"", i > 0 ? "," : "", f->label[i], e);
    }
    if (le != NULL && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "%sle=\"%s\"", f->nlabels > 0 ? "," : "", le);
    if (n < cap)
        snprintf(out + n, cap - n, "}");
}

static const char *type_name(gw_metric_type_t t)
{
    return t == GW_COUNTER ? "counter" : t == GW_GAUGE ? "gauge" : "histogram";
}

char *gw_metrics_render(gw_metrics_t *m, size_t *len)
{
    sb_t sb = {0};
    /* Every escaped label value and name, le and punctuation always fit. */
    char labels[MAX_LABELS * (2 * GW_METRICS_LABEL_MAX + LABEL_NAME_MAX + 4) + 64], val[32],
        le[32];
    sb.cap = 8192;
    sb.buf = malloc(sb.cap);
    if (sb.buf == NULL)
        return NULL;
    for (int i = 0; i < m->nfam; i++) {
        const family_t *f = &m->fam[i];
        char *help = malloc(2 * strlen(f->help) + 1);
        if (help == NULL) {
            sb.oom = 1;
            break;
        }
        escape(f->help, 0, help);
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", f->name, help, f->name, type_name(f->type));
        free(help);
        for (int j = 0; j < f->nseries; j++) {
            const series_t *s = &f->series[j];
            if (f->type != GW_HISTOGRAM) {
                labels_str(f, s, NULL, labels, sizeof labels);
                fmt_value(s->value, val, sizeof val);
                sb_printf(&sb, "%s%s %s\n", f->name, labels, val);
                continue;
            }
            for (int b = 0; b < f->nbuckets; b++) {
                fmt_value(f->bounds[b], le, sizeof le);
                labels_str(f, s, le, labels, sizeof labels);
                sb_printf(&sb, "%s_bucket%s %llu\n", f->name, labels, s->buckets[b]);
            }
            labels_str(f, s, "+Inf", labels, sizeof labels);
            sb_printf(&sb, "%s_bucket%s %llu\n", f->name, labels, s->count);
            labels_str(f, s, NULL, labels, sizeof labels);
            fmt_value(s->value, val, sizeof val);
            sb_printf(&sb, "%s_sum%s %s\n%s_count%s %llu\n", f->name, labels, val, f->name, labels,
                      s->count);
        }
    }
    sb_printf(&sb,
              "# HELP " DROPPED_NAME " Label sets rejected at the per-family series limit.\n"
              "# TYPE " DROPPED_NAME " counter\n" DROPPED_NAME " %llu\n",
              m->dropped);
    if (sb.oom) {
        free(sb.buf);
        return NULL;
    }
    *len = sb.len;
    return sb.buf;
}
