/* Internal to the configuration (config.c parses, config_keys.c holds the key table, the
 * defaults and printing, config_check.c validates): the key table's types and the helpers
 * those files share. Start-up only, on the main thread before the loop runs; not for other
 * modules (they read gw_config_t through config.h). */
#ifndef GW_CONFIG_INTERNAL_H
#define GW_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"

typedef enum {
    T_INT,
    T_SIZE,
    T_MS,
    T_DOUBLE,
    T_STR,
    T_LISTEN,
    T_LEVEL,
    T_BACKENDS,
    T_PREPROCESS,
    T_BOOL,
    T_PROVIDER,
    T_SECRET, /* a string never printed back */
    T_DECODE,
    T_PRECISION,
} gw__key_type_t;

typedef struct {
    const char *name;
    gw__key_type_t type;
    size_t off;
    size_t cap; /* strings: buffer size */
    double min, max;
    unsigned bit; /* model keys: the GW_MODEL_SET_* bit a value sets (pool keys only) */
} gw__key_t;

/* The "[model NAME]" keys (config_keys.c), gw__model_nkeys of them. */
extern const gw__key_t gw__model_keys[];
extern const size_t gw__model_nkeys;

/* The names of the enumerated values, indexed by the value (config_keys.c). */
extern const char *const gw__level_names[4];
extern const char *const gw__preprocess_names[2];
extern const char *const gw__provider_names[7];
extern const char *const gw__decode_names[2];
extern const char *const gw__precision_names[2];

// A top-level key by name, or NULL. The table is static and read-only.
const gw__key_t *gw__config_find_key(const char *name);

// Resets *m to a new model named `name`: darknet's own defaults, pool keys inherited.
void gw__config_init_model(gw_model_t *m, const char *name);

// Appends a new model to cfg (the caller checked there is room) and returns it.
gw_model_t *gw__config_add_model(gw_config_t *cfg, const char *name);

// 1 if `name` is a usable model name (it ends up in backend names and metric labels).
int gw__config_valid_model_name(const char *name);

#endif
