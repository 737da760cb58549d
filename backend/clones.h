/* FG_CLONES: a hand-written loop compiled twice, for the baseline x86-64 (SSE2) and for AVX +
 * FMA, the loader picking the one the CPU runs (GCC target_clones, an ifunc on the CPU's
 * features): the package stays portable and a modern core gets 8-wide vectors. OpenBLAS does
 * the same for sgemm. Not under a sanitizer: the ifunc resolvers run at relocation, before the
 * sanitizer's runtime is up, and an instrumented one crashes the process (TSan: SIGSEGV before
 * main). Used by fast.c and maxpool.c. */
#ifndef BE_CLONES_H
#define BE_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define FG_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FG_CLONES
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* 1 when the CPU has AVX2 and FMA, for the hand-written intrinsic kernels (pgemm.c,
 * convpool.c) that pick theirs at run time: no ifunc, so they also run under the sanitizers.
 * Each file caches the answer; every thread computes the same one. */
static inline int fg_have_avx2(void)
{
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* 1 when the CPU (and the OS, for the registers' state) has AVX-512F as well, for convpool's
 * Winograd tiles. */
static inline int fg_have_avx512(void)
{
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        v = fg_have_avx2() && __builtin_cpu_supports("avx512f");
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

#endif
