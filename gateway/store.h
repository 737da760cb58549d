/* An object store: where kept frames and answers go. A small ops table, one file per kind
 * (store_dir.c: a local directory; store_s3.c: S3 and every S3-compatible store, Google Cloud
 * Storage included through its XML API with HMAC keys). The queue, the spool and the retries
 * live above it, in storage.c; a kind only moves bytes. Loop thread only.
 *
 * Contract for every kind:
 *  - put/get/list/del never block the loop; their callback runs later on the loop, exactly once,
 *    never before the call returned (a call that returns an error never calls back);
 *  - destroy runs the callbacks of operations still out, with UV_ECANCELED, before it returns
 *    (a dir write already on a worker thread may still land: a put is idempotent);
 *  - keys are relative ("cam/2026/11/27/16/cam-...jpg"): [A-Za-z0-9._-] segments joined by
 *    '/', never "..", checked by gw_store_key_valid before they reach a kind. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "fetch.h"

typedef struct gw_store gw_store_t;
typedef struct gw_store_ops gw_store_ops_t;

/* Every kind embeds this first. */
struct gw_store {
    const gw_store_ops_t *ops;
};

/* What a kind may use, all outliving the store. */
typedef struct {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_fetch_t *fetch; /* the loop's HTTP client */
} gw_store_env_t;

/* err: 0, PROTO_ESTORE (msg says why), PROTO_ENOTFOUND (get), UV_ECANCELED (destroy). */
typedef void (*gw_store_done_cb)(void *arg, int err, const char *msg);
/* data (malloc'd) belongs to the callback; NULL on error. */
typedef void (*gw_store_get_cb)(void *arg, int err, const char *msg, uint8_t *data, size_t len);
/* keys (sorted ascending) are the store's, valid during the callback only. */
typedef void (*gw_store_list_cb)(void *arg, int err, const char *msg, char **keys, int n);

struct gw_store_ops {
    const char *kind; /* "dir", "s3" */
    /* url is the `store` value ("dir:/var/lib/framegate", "s3://bucket/prefix"). 0, or
     * PROTO_ECONFIG with the reason in err. */
    int (*create)(gw_store_t **out, const gw_store_env_t *env, const char *url, char *err,
                  size_t cap);
    void (*destroy)(gw_store_t *s);
    /* Writes data[0..len) under key; data is borrowed until the callback. */
    int (*put)(gw_store_t *s, const char *key, const uint8_t *data, size_t len,
               const char *content_type, gw_store_done_cb cb, void *arg);
    /* Reads one object of at most max_bytes (larger: PROTO_ESTORE). */
    int (*get)(gw_store_t *s, const char *key, size_t max_bytes, gw_store_get_cb cb, void *arg);
    /* At most max keys starting with prefix and sorting after start_after ("" = from the
     * first), ascending. */
    int (*list)(gw_store_t *s, const char *prefix, const char *start_after, int max,
                gw_store_list_cb cb, void *arg);
    /* Deletes one object. A key that does not exist is no error (S3's DELETE is idempotent,
     * and a retried delete must not fail). */
    int (*del)(gw_store_t *s, const char *key, gw_store_done_cb cb, void *arg);
};

extern const gw_store_ops_t gw_store_dir_ops;
extern const gw_store_ops_t gw_store_s3_ops;

/* The kind `url` names (dir:, s3://, gs://), created. 0 or PROTO_ECONFIG with err set. */
int gw_store_open(gw_store_t **out, const gw_store_env_t *env, const char *url, char *err,
                  size_t cap);

/* True for a key a kind may be given (see the contract above); at most 512 bytes. */
int gw_store_key_valid(const char *key);

#endif
