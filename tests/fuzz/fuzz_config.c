/* The gateway's configuration (gateway/config.h). The input is a config file, optionally
 * followed by a line "%%" and environment lines (FRAMEGATE_KEY=value, one per line):
 *
 *   max_backends = 4
 *   [model face]
 *   cfg = /x.cfg
 *   %%
 *   FRAMEGATE_MODEL_FACE_THRESHOLD=0.3
 *
 * It is loaded on top of the defaults (file, then environment) and validated, as main.c does.
 * A configuration that validates must survive --print-config: its printed form loads and
 * validates again, and prints the same (config_keys.c promises that a value it cannot write back
 * is printed as a comment, and a secret is never printed, only said to be set: such
 * configurations are only required to load). The file reaches
 * gw_config_load_file through a memfd, so nothing touches the disk. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "fuzz.h"

#define ENV_MAX 64

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The defaults read these; fixed values keep runs reproducible. */
    setenv("HOME", "/nonexistent-home", 1);
    unsetenv("FRAMEGATE_CACHE");
    fd = memfd_create("fuzz_config", 0);
    FUZZ_CHECK(fd >= 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

/* Replaces the memfd's content with buf[0..len). */
static void put_file(const void *buf, size_t len)
{
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    FUZZ_CHECK(len == 0 || pwrite(fd, buf, len, 0) == (ssize_t)len);
}

/* The printed configuration, malloc'd and NUL-terminated; *len its length. */
static char *print_config(const gw_config_t *cfg, size_t *len)
{
    char *s = NULL;
    FILE *f = open_memstream(&s, len);
    FUZZ_CHECK(f != NULL);
    gw_config_print(cfg, f);
    FUZZ_CHECK(fclose(f) == 0);
    return s;
}

static void check_err(const char *err, size_t cap, int rv)
{
    FUZZ_CHECK(memchr(err, '\0', cap) != NULL);
    if (rv != 0)
        FUZZ_CHECK(rv == PROTO_ECONFIG && err[0] != '\0');
}

/* Splits "...\n%%\n..." into the file part and NULL-terminated environment entries (views
 * into a copy of the tail, which the caller frees). */
static char *split_env(const uint8_t *data, size_t size, size_t *file_len, char **envp)
{
    static const char mark[] = "\n%%\n";
    const uint8_t *m = memmem(data, size, mark, sizeof mark - 1);
    int n = 0;
    envp[0] = NULL;
    if (m == NULL) {
        *file_len = size;
        return NULL;
    }
    *file_len = (size_t)(m - data) + 1;
    const uint8_t *tail = m + sizeof mark - 1;
    size_t tlen = size - (size_t)(tail - data);
    char *copy = malloc(tlen + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, tail, tlen);
    copy[tlen] = '\0';
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line != NULL && n < ENV_MAX;
         line = strtok_r(NULL, "\n", &save))
        envp[n++] = line;
    envp[n] = NULL;
    return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gw_config_t cfg, again;
    char err[512], *envp[ENV_MAX + 1];
    size_t file_len;
    char *env_copy = split_env(data, size, &file_len, envp);

    gw_config_defaults(&cfg);
    put_file(data, file_len);
    memset(err, 0, sizeof err);
    int rv = gw_config_load_file(&cfg, path, err, sizeof err);
    check_err(err, sizeof err, rv);
    if (rv == 0) {
        rv = gw_config_load_env(&cfg, envp, err, sizeof err);
        check_err(err, sizeof err, rv);
    }
    free(env_copy);
    if (rv == 0) {
        rv = gw_config_validate(&cfg, err, sizeof err);
        check_err(err, sizeof err, rv);
    }
    FUZZ_CHECK(cfg.nmodels >= 0 && cfg.nmodels <= GW_MODELS_MAX);
    if (rv != 0)
        return 0;

    /* Validation is idempotent. */
    FUZZ_CHECK(gw_config_validate(&cfg, err, sizeof err) == 0);

    size_t len1, len2;
    char *text1 = print_config(&cfg, &len1);
    gw_config_defaults(&again);
    put_file(text1, len1);
    rv = gw_config_load_file(&again, path, err, sizeof err);
    if (rv != 0)
        fprintf(stderr, "--print-config output does not load: %s\n---\n%s---\n", err, text1);
    FUZZ_CHECK(rv == 0);
    rv = gw_config_validate(&again, err, sizeof err);
    if (rv != 0)
        fprintf(stderr, "--print-config output does not validate: %s\n---\n%s---\n", err, text1);
    FUZZ_CHECK(rv == 0);
    /* (CI run 35 found the secret case: an admin_token that validated) */
    if (strstr(text1, "cannot be written back") == NULL &&
        strstr(text1, "(set, not printed)") == NULL) {
        char *text2 = print_config(&again, &len2);
        if (len1 != len2 || memcmp(text1, text2, len1) != 0)
            fprintf(stderr, "--print-config does not read back the same:\n---\n%s---\n%s---\n",
                    text1, text2);
        FUZZ_CHECK(len1 == len2 && memcmp(text1, text2, len1) == 0);
        free(text2);
    }
    free(text1);
    return 0;
}
