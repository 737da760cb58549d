/* Token buckets in a set-associative table (see limit.h). */
#include "limit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

typedef struct {
    uint8_t key[GW_LIMIT_KEY];
    int used;
    int conns;
    int bucket;       /* tokens, last_ms, rate and burst are set (a take happened) */
    double tokens;    /* as of last_ms */
    uint64_t last_ms; /* last refill */
    uint64_t seen_ms; /* last use: LRU among entries that cannot be forgotten freely */
    double burst;     /* of the rate it was last taken with: full means stale */
    double rate;
} entry_t;

struct gw_limit {
    size_t mask; /* sets - 1 */
    uint64_t seed;
    entry_t *e;
};

int gw_rate_parse(const char *text, gw_rate_t *out)
{
    out->rate = out->burst = 0;
    while (*text == ' ')
        text++;
    if (*text == '\0' || strcasecmp(text, "off") == 0 || strcmp(text, "0") == 0)
        return 0;
    char unit = 0, word[8] = "";
    double n = 0, b = -1;
    int used = 0;
    if (sscanf(text, "%lf/%c%n", &n, &unit, &used) != 2 || !(n > 0) || n > 1e9)
        return PROTO_EINVAL;
    if (unit == 'm')
        n /= 60.0;
    else if (unit != 's')
        return PROTO_EINVAL;
    const char *rest = text + used;
    int used2 = 0;
    if (sscanf(rest, " %7s %lf %n", word, &b, &used2) == 2) {
        if (strcmp(word, "burst") != 0 || !(b >= 1) || b > 1e9 || rest[used2] != '\0')
            return PROTO_EINVAL;
    } else {
        while (*rest == ' ')
            rest++;
        if (*rest != '\0')
            return PROTO_EINVAL;
        b = n < 1 ? 1 : n;
    }
    out->rate = n;
    out->burst = b;
    return 0;
}

int gw_limit_create(gw_limit_t **out, size_t sets, uint64_t seed)
{
    size_t n = 1;
    while (n < sets && n < ((size_t)1 << 24))
        n <<= 1;
    gw_limit_t *l = calloc(1, sizeof *l);
    if (l == NULL || (l->e = calloc(n * GW_LIMIT_WAYS, sizeof *l->e)) == NULL) {
        free(l);
        return PROTO_ENOMEM;
    }
    l->mask = n - 1;
    l->seed = seed | 1;
    *out = l;
    return 0;
}

void gw_limit_destroy(gw_limit_t *l)
{
    if (l == NULL)
        return;
    free(l->e);
    free(l);
}

/* FNV-1a over the seed and the key, then a final mix: enough to spread addresses a client
 * does not know the seed for. */
static size_t set_of(const gw_limit_t *l, const uint8_t *key)
{
    uint64_t h = 1469598103934665603ull ^ l->seed;
    for (int i = 0; i < GW_LIMIT_KEY; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)(h & l->mask);
}

static void refill(entry_t *e, uint64_t now_ms)
{
    if (now_ms > e->last_ms && e->rate > 0) {
        e->tokens += (double)(now_ms - e->last_ms) / 1000.0 * e->rate;
        if (e->tokens > e->burst)
            e->tokens = e->burst;
    }
    e->last_ms = now_ms;
}

/* The entry of key; if it has none and `create`, a recycled one; else NULL. */
static entry_t *lookup(gw_limit_t *l, const uint8_t *key, uint64_t now_ms, int create)
{
    entry_t *set = l->e + set_of(l, key) * GW_LIMIT_WAYS, *victim = NULL;
    for (int i = 0; i < GW_LIMIT_WAYS; i++)
        if (set[i].used && memcmp(set[i].key, key, GW_LIMIT_KEY) == 0)
            return &set[i];
    if (!create)
        return NULL;
    for (int i = 0; i < GW_LIMIT_WAYS && victim == NULL; i++) {
        entry_t *e = &set[i];
        if (!e->used) {
            victim = e;
        } else if (e->conns == 0) {
            if (e->bucket)
                refill(e, now_ms);
            if (!e->bucket || e->tokens >= e->burst)
                victim = e; /* stale: a new entry would be the same */
        }
    }
    for (int i = 0; i < GW_LIMIT_WAYS && victim == NULL; i++)
        if (set[i].conns == 0 && (victim == NULL || set[i].seen_ms < victim->seen_ms))
            victim = &set[i];
    if (victim == NULL) {
        /* Every way holds connections: the least recently used is forgotten (its count is
         * lost, so its cap is too; with a table larger than max_connections this needs a
         * hash collision the seed makes unlikely). */
        victim = &set[0];
        for (int i = 1; i < GW_LIMIT_WAYS; i++)
            if (set[i].seen_ms < victim->seen_ms)
                victim = &set[i];
    }
    memset(victim, 0, sizeof *victim);
    memcpy(victim->key, key, GW_LIMIT_KEY);
    victim->used = 1;
    victim->last_ms = now_ms;
    return victim;
}

uint64_t gw_limit_take(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY], const gw_rate_t *rate,
                       uint64_t now_ms)
{
    if (rate->rate <= 0)
        return 0;
    entry_t *e = lookup(l, key, now_ms, 1);
    e->seen_ms = now_ms;
    if (!e->bucket) {
        e->bucket = 1;
        e->tokens = rate->burst; /* a new bucket starts full */
    } else {
        refill(e, now_ms);
    }
    e->rate = rate->rate;
    e->burst = rate->burst;
    e->last_ms = now_ms;
    if (e->tokens > e->burst)
        e->tokens = e->burst; /* the limit was lowered (a reload) */
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        return 0;
    }
    double ms = ceil((1.0 - e->tokens) / e->rate * 1000.0);
    return ms < 1 ? 1 : (uint64_t)ms;
}

int gw_limit_conn_add(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY], int max, uint64_t now_ms)
{
    if (max <= 0)
        return 0;
    entry_t *e = lookup(l, key, now_ms, 1);
    e->seen_ms = now_ms;
    if (e->conns >= max)
        return PROTO_ERATELIMIT;
    e->conns++;
    return 0;
}

void gw_limit_conn_del(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY])
{
    entry_t *e = lookup(l, key, 0, 0);
    if (e != NULL && e->conns > 0)
        e->conns--;
}

int gw_limit_conns(const gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY])
{
    entry_t *e = lookup((gw_limit_t *)l, key, 0, 0);
    return e != NULL ? e->conns : 0;
}
