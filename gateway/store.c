/* The store kinds by URL scheme, and the key rule every kind relies on. */
#include "store.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int gw_store_open(gw_store_t **out, const gw_store_env_t *env, const char *url, char *err,
                  size_t cap)
{
    const gw_store_ops_t *ops = NULL;
    if (strncmp(url, "dir:", 4) == 0)
        ops = &gw_store_dir_ops;
    else if (strncmp(url, "s3://", 5) == 0 || strncmp(url, "gs://", 5) == 0)
        ops = &gw_store_s3_ops;
    if (ops == NULL) {
        snprintf(err, cap,
                 "store: '%s' is none of none, dir:/PATH, s3://BUCKET/PREFIX, "
                 "gs://BUCKET/PREFIX",
                 url);
        return PROTO_ECONFIG;
    }
    return ops->create(out, env, url, err, cap);
}

int gw_store_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 512 || key[0] == '/' || key[n - 1] == '/')
        return 0;
    const char *seg = key;
    for (const char *p = key;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t len = (size_t)(p - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            seg = p + 1;
            continue;
        }
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return 0;
    }
}
