/* The EC2 provider's pure parts, exposed for unit tests: credentials from the environment or
 * a shared credentials file, the signed Query API request, the response parsers and the user
 * data script. The provider itself (gw_provider_ec2_create, provider.h) drives them on the
 * loop. Pure functions, any thread. */
#ifndef GW_PROVIDER_EC2_H
#define GW_PROVIDER_EC2_H

#include <stddef.h>

#include "config.h"

typedef struct {
    char access_key[128];
    char secret_key[128];
    char token[2048]; /* session token ("" if none) */
} gw_ec2_creds_t;

/* Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else from
 * the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
 * AWS_PROFILE or "default"). Returns 0, or PROTO_ENOTFOUND when neither has them (the caller
 * then asks the instance metadata service). */
int gw_ec2_creds_load(gw_ec2_creds_t *c);

/* Parses one profile of a shared credentials file's text. 0 or PROTO_ENOTFOUND. */
int gw_ec2_creds_parse(gw_ec2_creds_t *c, const char *text, const char *profile);

/* The Authorization header for a Query API POST of form `body` to https://host/ at amz_date
 * (signed headers: content-type, host, x-amz-date and x-amz-security-token when c->token is
 * set). Returns 0 or a sigv4.h error. */
int gw_ec2_authorization(const gw_ec2_creds_t *c, const char *region, const char *host,
                         const char *body, size_t body_len, const char *amz_date, char *out,
                         size_t cap);

/* One instance in a RunInstances or DescribeInstances answer. */
typedef struct {
    char id[32];
    char state[24];      /* pending, running, shutting-down, terminated, stopping, stopped */
    char private_ip[64]; /* "" until it has one */
    char client_token[96];
} gw_ec2_instance_t;

/* Fills out[0..max) from the answer's instances (instancesSet items); returns their count
 * (at most max). */
int gw_ec2_parse_instances(const char *xml, size_t len, gw_ec2_instance_t *out, int max);

/* "Code: Message" of an error answer into out; returns 1 if it was one, else 0. */
int gw_ec2_parse_error(const char *xml, size_t len, char *out, size_t cap);

/* 1 for errors worth retrying with backoff (throttling, capacity, server side). */
int gw_ec2_retryable(long status, const char *code_message);

/* The user data script: writes the CA and the instance's certificate and key, then execs
 * framegate-backend for `model` as `token`, listening on cfg->cloud_backend_port and joining
 * `join_url`. ca/cert/key are PEM texts. Returns the script's length, or -1 if it does not
 * fit in cap. */
int gw_ec2_user_data(const gw_config_t *cfg, const gw_model_t *model, const char *token,
                     const char *join_url, const char *ca, const char *cert, const char *key,
                     char *out, size_t cap);

#endif
