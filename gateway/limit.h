/* Rate limits and connection counts per key (a client address, a token): token buckets in a
 * table of fixed size. Nothing here grows with the number of clients: the table has
 * GW_LIMIT_WAYS entries per hash set, and a key that finds its set full takes the place of a
 * stale entry (a full bucket with no connection: forgetting it changes nothing), else of the
 * least recently used one without connections. Pure: time is an argument, no I/O, so it is
 * tested tick by tick. Loop thread (no locking). */
#ifndef GW_LIMIT_H
#define GW_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#define GW_LIMIT_KEY 16 /* key bytes: an IPv6 address, an IPv4 one mapped, a token's hash */
#define GW_LIMIT_WAYS 4

/* "50/s burst 100": `rate` tokens a second, at most `burst` saved up. rate 0 = no limit. */
typedef struct {
    double rate;
    double burst;
} gw_rate_t;

/* Parses "N/s [burst B]" (also N/m for a minute; burst defaults to max(1, N/s)), or "" / "off"
 * / "0" for no limit. 0, or PROTO_EINVAL. */
int gw_rate_parse(const char *text, gw_rate_t *out);

typedef struct gw_limit gw_limit_t;

/* A table of `sets` x GW_LIMIT_WAYS entries (sets rounded up to a power of two). `seed`
 * keys the hash, so that clients cannot choose addresses that share a set. 0 or
 * PROTO_ENOMEM. */
int gw_limit_create(gw_limit_t **out, size_t sets, uint64_t seed);
void gw_limit_destroy(gw_limit_t *l);

/* Takes one token from key's bucket at time now_ms. Returns 0 when allowed, else the
 * milliseconds until a token will be there (>= 1; nothing taken). rate->rate 0: always 0. */
uint64_t gw_limit_take(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY], const gw_rate_t *rate,
                       uint64_t now_ms);

/* Counts a connection of key: 0, or PROTO_ERATELIMIT when it already has `max` (0 = no cap;
 * then nothing is counted). Each 0 returned with max > 0 is paired with gw_limit_conn_del. */
int gw_limit_conn_add(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY], int max, uint64_t now_ms);
void gw_limit_conn_del(gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY]);

/* Connections counted for key (tests). */
int gw_limit_conns(const gw_limit_t *l, const uint8_t key[GW_LIMIT_KEY]);

#endif
