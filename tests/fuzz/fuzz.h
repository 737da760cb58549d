/* Shared by the fuzz targets and the standalone driver: the libFuzzer entry points, and a
 * check that aborts (so libFuzzer and the corpus tests both see a crash) when a property
 * the code under test promises does not hold. */
#ifndef FG_FUZZ_H
#define FG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Called once before the first input (optional: the driver calls it if it is defined). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
/* One input; data[0..size) is read-only and freed after the call. Returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise is a crash, never a silent pass: abort() with where and what. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
