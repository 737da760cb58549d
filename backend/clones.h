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

#endif
