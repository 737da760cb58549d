/* A small Prometheus registry: counters, gauges and histograms with up to three labels,
 * rendered in the text exposition format 0.0.4. Loop thread only (no locks).
 *
 * Families are declared once at start and addressed by the id the declaration returns.
 * Each family holds at most GW_METRICS_MAX_SERIES label combinations; a new one beyond that
 * is rejected (PROTO_ETOOBIG, and counted in framegate_metrics_dropped_series_total), so a
 * misbehaving label cannot grow memory without bound. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

#define GW_METRICS_MAX_FAMILIES 48
#define GW_METRICS_MAX_SERIES 128
#define GW_METRICS_MAX_BUCKETS 24
#define GW_METRICS_LABEL_MAX 63 /* bytes of one label value */

typedef struct gw_metrics gw_metrics_t;

typedef enum { GW_COUNTER, GW_GAUGE, GW_HISTOGRAM } gw_metric_type_t;

/* Creates an empty registry; the caller owns it and frees it with gw_metrics_destroy.
 * Returns 0 or PROTO_ENOMEM. Any thread, but every later call on it from one thread. */
int gw_metrics_create(gw_metrics_t **out);
void gw_metrics_destroy(gw_metrics_t *m);

/* Declares a family. `labels` is NULL, "a", "a,b" or "a,b,c" (Prometheus label names; "le" is
 * reserved for histograms). For histograms, `buckets` are finite upper bounds in strictly
 * increasing order (+Inf is implicit). name/help/labels are referenced, not copied: they must
 * outlive the registry (string literals). Returns the family id (>= 0), PROTO_EINVAL for a bad
 * name, label or bucket list or a duplicate name, PROTO_ETOOBIG past the family or bucket
 * limit, PROTO_ENOMEM. Loop thread. */
int gw_metrics_declare(gw_metrics_t *m, gw_metric_type_t type, const char *name, const char *help,
                       const char *labels, const double *buckets, int nbuckets);

/* Record one value on the series (fam, l1, l2); l1/l2 are the label values in declaration
 * order (NULL or ignored when the family has fewer labels), copied on first use. A new
 * series is created on first use. Loop thread; no allocation.
 * add: counter += v (v >= 0) or gauge += v.  set: gauge = v, or a counter mirrored from a
 * count kept elsewhere.  observe: histograms only.
 * Return 0, PROTO_EINVAL (unknown family, wrong type, negative counter increment),
 * PROTO_ETOOBIG (label value over GW_METRICS_LABEL_MAX, or the family is full). */
int gw_metrics_add(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);
int gw_metrics_set(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);
int gw_metrics_observe(gw_metrics_t *m, int fam, const char *l1, const char *l2, double v);

/* The same for families with a third label (l3). */
int gw_metrics_add3(gw_metrics_t *m, int fam, const char *l1, const char *l2, const char *l3,
                    double v);
int gw_metrics_set3(gw_metrics_t *m, int fam, const char *l1, const char *l2, const char *l3,
                    double v);
int gw_metrics_observe3(gw_metrics_t *m, int fam, const char *l1, const char *l2,
                        const char *l3, double v);

/* Drops every series of a gauge family (e.g. per-backend gauges, before the backends that
 * still exist are set again). Returns 0 or PROTO_EINVAL (unknown family, not a gauge). */
int gw_metrics_clear(gw_metrics_t *m, int fam);

/* Renders every family (HELP, TYPE, then its series in creation order) plus
 * framegate_metrics_dropped_series_total. Returns a malloc'd NUL-terminated text the caller
 * frees, its length in *len; NULL on ENOMEM. Loop thread. */
char *gw_metrics_render(gw_metrics_t *m, size_t *len);

#endif
