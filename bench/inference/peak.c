/* The machine's yardsticks for framegate-bench-inference (peak.h): the clock and median its
 * timings use, OpenBLAS's large sgemm, the measured fp32 FMA peak of one core, and the
 * machine's description. Main thread only. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "peak.h"

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* OpenBLAS's own speed on an n x n x n sgemm: what the convolutions could reach at best. */
double sgemm_gflops(int n, int threads)
{
    size_t sz = (size_t)n * n;
    float *a = malloc(sz * sizeof(float)), *b = malloc(sz * sizeof(float)),
          *c = malloc(sz * sizeof(float));
    if (a == NULL || b == NULL || c == NULL) {
        free(a), free(b), free(c);
        return 0;
    }
    for (size_t i = 0; i < sz; i++) {
        a[i] = (float)(i % 17) / 17.0f;
        b[i] = (float)(i % 13) / 13.0f;
    }
    openblas_set_num_threads(threads);
    double t[5];
    for (int r = -1; r < 5; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / (median(t, 5) * 1e6);
}

/* The machine's fp32 peak on one core, measured: 12 independent FMA chains in registers (enough
 * to cover the FMA latency on every port) on the widest vectors the CPU has, chosen at run
 * time. */
#define PEAK_ITERS 200000
#define FMA12(f)                                                                                   \
    a0 = f(a0, m, c), a1 = f(a1, m, c), a2 = f(a2, m, c), a3 = f(a3, m, c), a4 = f(a4, m, c),      \
    a5 = f(a5, m, c), a6 = f(a6, m, c), a7 = f(a7, m, c), a8 = f(a8, m, c), a9 = f(a9, m, c),      \
    a10 = f(a10, m, c), a11 = f(a11, m, c)
#define SUM12(add)                                                                                 \
    add(add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7))),                         \
        add(add(a8, a9), add(a10, a11)))

__attribute__((target("avx512f"))) static double fma_loop_512(void)
{
    __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    /* distinct starts, or the compiler folds the chains into one */
    __m512 a0 = _mm512_set1_ps(1), a1 = _mm512_set1_ps(2), a2 = _mm512_set1_ps(3),
           a3 = _mm512_set1_ps(4), a4 = _mm512_set1_ps(5), a5 = _mm512_set1_ps(6),
           a6 = _mm512_set1_ps(7), a7 = _mm512_set1_ps(8), a8 = _mm512_set1_ps(9),
           a9 = _mm512_set1_ps(10), a10 = _mm512_set1_ps(11), a11 = _mm512_set1_ps(12);
    double t0 = now_ms();
    for (long i = 0; i < PEAK_ITERS; i++)
        FMA12(_mm512_fmadd_ps);
    double dt = now_ms() - t0;
    volatile float sink = _mm512_reduce_add_ps(SUM12(_mm512_add_ps));
    (void)sink;
    return 2.0 * 16 * 12 * PEAK_ITERS / (dt * 1e6);
}

__attribute__((target("avx2,fma"))) static double fma_loop_256(void)
{
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    /* distinct starts, or the compiler folds the chains into one */
    __m256 a0 = _mm256_set1_ps(1), a1 = _mm256_set1_ps(2), a2 = _mm256_set1_ps(3),
           a3 = _mm256_set1_ps(4), a4 = _mm256_set1_ps(5), a5 = _mm256_set1_ps(6),
           a6 = _mm256_set1_ps(7), a7 = _mm256_set1_ps(8), a8 = _mm256_set1_ps(9),
           a9 = _mm256_set1_ps(10), a10 = _mm256_set1_ps(11), a11 = _mm256_set1_ps(12);
    double t0 = now_ms();
    for (long i = 0; i < PEAK_ITERS; i++)
        FMA12(_mm256_fmadd_ps);
    double dt = now_ms() - t0;
    float v[8];
    _mm256_storeu_ps(v, SUM12(_mm256_add_ps));
    volatile float sink = v[0];
    (void)sink;
    return 2.0 * 8 * 12 * PEAK_ITERS / (dt * 1e6);
}

/* The best of 50 short runs (~1 ms each: one of them runs without being preempted on a busy
 * machine), in GFLOP/s; *isa names the vectors used. */
double core_peak_gflops(const char **isa)
{
    int wide = __builtin_cpu_supports("avx512f");
    *isa = wide ? "AVX-512 FMA" : __builtin_cpu_supports("fma") ? "AVX2 FMA" : "none";
    if (!wide && !__builtin_cpu_supports("fma"))
        return NAN;
    double best = 0;
    for (int r = 0; r < 50; r++) {
        double g = wide ? fma_loop_512() : fma_loop_256();
        best = g > best ? g : best;
    }
    return best;
}

void machine_describe(cJSON *root, char *desc, size_t cap)
{
    char line[512], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(model, sizeof model, "%s", colon + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cJSON *m = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(m, "cpu", model);
    cJSON_AddNumberToObject(m, "cores", (double)cores);
    cJSON_AddStringToObject(m, "openblas_core", openblas_get_corename());
    cJSON_AddStringToObject(m, "openblas_config", openblas_get_config());
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(root, "date", when);
    snprintf(desc, cap, "%s, %ld cores, OpenBLAS %s (%s)", model, cores, openblas_get_corename(),
             openblas_get_config());
}
