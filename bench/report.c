#include "report.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

uint64_t bench_counts_failed(const bench_counts_t *c)
{
    uint64_t n = c->conn_errors + c->timeouts;
    for (int i = 0; i < BENCH_MAX_STATUS; i++)
        n += c->http_fail[i];
    return n;
}

void bench_counts_add(bench_counts_t *into, const bench_counts_t *from)
{
    into->ok += from->ok;
    into->conn_errors += from->conn_errors;
    into->timeouts += from->timeouts;
    for (int i = 0; i < BENCH_MAX_STATUS; i++)
        into->http_fail[i] += from->http_fail[i];
}

void bench_report_csv_header(FILE *f)
{
    fprintf(f, "second,users,ok,failed,http_errors,conn_errors,timeouts,rps,p50_ms,p95_ms,"
               "p99_ms,backends_starting,backends_ready,backends_draining,backends_stopping,"
               "status_503,status_504,status_502,status_429,status_500,status_other\n");
}

static void backend_field(FILE *f, int v)
{
    if (v >= 0)
        fprintf(f, ",%d", v);
    else
        fprintf(f, ",");
}

void bench_report_csv_row(FILE *f, const bench_row_t *r)
{
    uint64_t failed = bench_counts_failed(&r->c);
    uint64_t http = failed - r->c.conn_errors - r->c.timeouts;
    fprintf(f, "%d,%d,%llu,%llu,%llu,%llu,%llu,%llu,%.2f,%.2f,%.2f", r->second, r->users,
            (unsigned long long)r->c.ok, (unsigned long long)failed, (unsigned long long)http,
            (unsigned long long)r->c.conn_errors, (unsigned long long)r->c.timeouts,
            (unsigned long long)(r->c.ok + failed), r->p50_ms, r->p95_ms, r->p99_ms);
    for (int i = 0; i < 4; i++)
        backend_field(f, r->backends[i]);
    /* The statuses a gateway under load answers with get their own column; the rest
     * (other 4xx/5xx, 3xx, unparsable) share one, so the header never depends on the run. */
    static const int named[] = {503, 504, 502, 429, 500};
    uint64_t other = http;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        fprintf(f, ",%llu", (unsigned long long)r->c.http_fail[named[i]]);
        other -= r->c.http_fail[named[i]];
    }
    fprintf(f, ",%llu\n", (unsigned long long)other);
}

char *bench_report_json(const bench_summary_t *s)
{
    const bench_counts_t *c = &s->total;
    uint64_t failed = bench_counts_failed(c), total = c->ok + failed;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "mode", s->mode);
    cJSON_AddStringToObject(root, "body_mode", s->body_mode);
    cJSON_AddStringToObject(root, "url", s->url);
    cJSON_AddNumberToObject(root, "users", s->users);
    cJSON_AddNumberToObject(root, "spawn_rate", s->spawn_rate);
    cJSON_AddNumberToObject(root, "target_rate", s->rate);
    cJSON_AddNumberToObject(root, "duration_s", s->duration_s);
    cJSON_AddNumberToObject(root, "requests", (double)total);
    cJSON_AddNumberToObject(root, "ok", (double)c->ok);
    cJSON_AddNumberToObject(root, "failures", (double)failed);
    cJSON_AddNumberToObject(root, "failure_pct", total ? 100.0 * (double)failed / total : 0);
    cJSON_AddNumberToObject(root, "rps", s->duration_s > 0 ? total / s->duration_s : 0);
    cJSON *fk = cJSON_AddObjectToObject(root, "failures_by_kind");
    cJSON *http = cJSON_AddObjectToObject(fk, "http");
    for (int i = 0; i < BENCH_MAX_STATUS; i++)
        if (c->http_fail[i]) {
            char code[8];
            snprintf(code, sizeof code, "%d", i);
            cJSON_AddNumberToObject(http, code, (double)c->http_fail[i]);
        }
    cJSON_AddNumberToObject(fk, "connection", (double)c->conn_errors);
    cJSON_AddNumberToObject(fk, "timeout", (double)c->timeouts);
    cJSON *lat = cJSON_AddObjectToObject(root, "latency_ms");
    cJSON_AddNumberToObject(lat, "p50", bench_hist_percentile(s->hist, 50) / 1000);
    cJSON_AddNumberToObject(lat, "p95", bench_hist_percentile(s->hist, 95) / 1000);
    cJSON_AddNumberToObject(lat, "p99", bench_hist_percentile(s->hist, 99) / 1000);
    cJSON_AddNumberToObject(lat, "p99.9", bench_hist_percentile(s->hist, 99.9) / 1000);
    cJSON_AddNumberToObject(lat, "max", (double)bench_hist_max(s->hist) / 1000);
    cJSON_AddNumberToObject(lat, "mean", bench_hist_mean(s->hist) / 1000);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

void bench_report_text(FILE *f, const bench_summary_t *s)
{
    const bench_counts_t *c = &s->total;
    uint64_t failed = bench_counts_failed(c), total = c->ok + failed;
    fprintf(f, "%s loop, %s bodies, %s\n", s->mode, s->body_mode, s->url);
    fprintf(f, "requests %llu  ok %llu  failed %llu (%.2f%%)  %.1f req/s over %.1f s\n",
            (unsigned long long)total, (unsigned long long)c->ok, (unsigned long long)failed,
            total ? 100.0 * (double)failed / total : 0,
            s->duration_s > 0 ? total / s->duration_s : 0, s->duration_s);
    fprintf(f, "failures: connection %llu, timeout %llu", (unsigned long long)c->conn_errors,
            (unsigned long long)c->timeouts);
    for (int i = 0; i < BENCH_MAX_STATUS; i++)
        if (c->http_fail[i])
            fprintf(f, ", HTTP %d: %llu", i, (unsigned long long)c->http_fail[i]);
    fprintf(f, "\nlatency ms: p50 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
            bench_hist_percentile(s->hist, 50) / 1000, bench_hist_percentile(s->hist, 95) / 1000,
            bench_hist_percentile(s->hist, 99) / 1000, bench_hist_percentile(s->hist, 99.9) / 1000,
            (double)bench_hist_max(s->hist) / 1000, bench_hist_mean(s->hist) / 1000);
}
