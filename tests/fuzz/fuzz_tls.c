/* HTTPS (gateway/tls_conn.h): a client's bytes fed to a server session as reads would bring
 * them. The input is a sequence of chunks, each a length byte then that many bytes; after
 * each chunk the session is read until it wants more, its output taken, and what it did not
 * consume kept (gw_tls_conn_keep), exactly as http.c does. Properties, besides the
 * sanitizers: read never returns more than asked, output lengths are sane, and a session
 * that failed stays failed (no plaintext after an error).
 *
 * The certificate is a throwaway self-signed P-256 one (CN=fuzz), written to a memfd. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "err.h"
#include "fuzz.h"
#include "tls_conn.h"

static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBdTCCARugAwIBAgIUK46UGosLP2y2Q5bmnVgyGdXNueEwCgYIKoZIzj0EAwIw\n"
                               "DzENMAsGA1UEAwwEZnV6ejAgFw0yNjExMjcxOTE0NDlaGA8yMTI2MTEwMzE5MTQ0\n"
                               "OVowDzENMAsGA1UEAwwEZnV6ejBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN2/\n"
                               "aUEWYDcNV/I3cQRQ9mm8aBzhE0jJ8+c4tDuV86DTpkXL9BTbB652LMW2bfvR6v/A\n"
                               "9HYxnWn49Xxgj00kFlKjUzBRMB0GA1UdDgQWBBQMM6xpa9yPC6m5whtv1HVmcknI\n"
                               "JzAfBgNVHSMEGDAWgBQMM6xpa9yPC6m5whtv1HVmcknIJzAPBgNVHRMBAf8EBTAD\n"
                               "AQH/MAoGCCqGSM49BAMCA0gAMEUCIGo3Y6k1YxkPZKy9eeNA8HaT02H7LiwwmEQE\n"
                               "FIY1C7gIAiEA0kf2tI/9xMEoDBKFaU/tuxMYhWBg17cL8yZ/W9nHcGI=\n"
                               "-----END CERTIFICATE-----\n";

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgj1iTyzr1EMjIZprA\n"
                              "9M9h+1gZKwKSUhqcgFNgtfzjmuShRANCAATdv2lBFmA3DVfyN3EEUPZpvGgc4RNI\n"
                              "yfPnOLQ7lfOg06ZFy/QU2weudizFtm370er/wPR2MZ1p+PV8YI9NJBZS\n"
                              "-----END PRIVATE KEY-----\n";

static gw_tls_t *tls;

static void memfile(const char *text, char *path, size_t cap)
{
    int fd = memfd_create("fuzz_tls", 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    snprintf(path, cap, "/proc/self/fd/%d", fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char cert[64], key[64], err[256];
    memfile(cert_pem, cert, sizeof cert);
    memfile(key_pem, key, sizeof key);
    if (gw_tls_create(&tls, cert, key, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tls: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_tls_conn_t *tc = gw_tls_conn_create(tls);
    FUZZ_CHECK(tc != NULL);
    static char plain[1024];
    int failed = 0;
    while (size > 0) {
        size_t n = data[0];
        data++;
        size--;
        if (n > size)
            n = size;
        gw_tls_conn_feed(tc, data, n);
        data += n;
        size -= n;
        int rv;
        while ((rv = gw_tls_conn_read(tc, plain, sizeof plain)) > 0) {
            FUZZ_CHECK((size_t)rv <= sizeof plain);
            FUZZ_CHECK(!failed);
        }
        if (rv < 0 && rv != PROTO_ESHUTDOWN)
            failed = 1;
        size_t len = 0;
        char *out = gw_tls_conn_output(tc, &len);
        FUZZ_CHECK((out == NULL) == (len == 0));
        FUZZ_CHECK(len < (1u << 20));
        free(out);
        if (gw_tls_conn_keep(tc) != 0)
            break;
        if (failed)
            break;
    }
    gw_tls_conn_destroy(tc);
    return 0;
}
