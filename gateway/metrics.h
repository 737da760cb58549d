/* A small Prometheus registry: counters, gauges and histograms with up to two labels,
 * rendered in the text exposition format 0.0.4. Loop thread only (no locks).
 *
 * Families are declared once at start and addressed by the id the declaration returns.
 * Each family holds at most GW_METRICS_MAX_SERIES label combinations; a new one beyond that
 * is dropped (and counted in framegate_metrics_dropped_series_total), so a misbehaving label
 * cannot grow memory without bound. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

#define GW_METRICS_MAX_SERIES 128
#define GW_METRICS_MAX_BUCKETS 24

typedef struct gw_metrics gw_metrics_t;

typedef enum { GW_COUNTER, GW_GAUGE, GW_HISTOGRAM } gw_metric_type_t;

int gw_metrics_create(gw_metrics_t **out);
void gw_metrics_destroy(gw_metrics_t *m);

/* Declares a family. `labels` is NULL, "a" or "a,b". For histograms, `buckets` are the upper
 * bounds in increasing order (+Inf is implicit). Returns the family id (>= 0) or a negative
 * code. name/help/labels must be static strings. */
int gw_metrics_declare(gw_metrics_t *m, gw_metric_type_t type, const char *name,
                       const char *help, const char *labels, const double *buckets,
                       int nbuckets);

/* Counter += v, gauge = v, histogram observe v. l1/l2: label values (NULL if unused). */
void gw_metrics_add(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);
void gw_metrics_set(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);
void gw_metrics_observe(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);

/* Drops every series of a gauge family (e.g. per-backend gauges before they are re-set). */
void gw_metrics_clear(gw_metrics_t *m, int fam);

/* Renders everything; malloc'd, NUL-terminated, length in *len. NULL on ENOMEM. */
char *gw_metrics_render(gw_metrics_t *m, size_t *len);

#endif
