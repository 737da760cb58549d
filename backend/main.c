/* framegate-backend: loads one darknet network and serves frames to the gateway over NNG. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "err.h"
#include "dnnl.h"
#include "image.h"
#include "join.h"
#include "model.h"
#include "serve.h"

static atomic_int stop_flag; /* lock-free, so a handler may set it on any thread */

/* The file darknet is reading while it may exit()/abort() on us; NULL otherwise. */
static const char *volatile darknet_file;

/* darknet reports a bad cfg or weights file by exit(-1) or assert(0), from deep inside its
 * parser. While it loads, both are turned into our contract: a message naming the file and
 * exit code 2. */
static void on_darknet_exit(void)
{
    if (darknet_file != NULL) {
        fprintf(stderr, "framegate-backend: darknet failed while loading %s\n", darknet_file);
        _exit(2);
    }
}

static void on_abort(int sig)
{
    (void)sig;
    static const char pre[] = "framegate-backend: darknet aborted while loading ";
    const char *f = darknet_file;
    if (f != NULL) {
        /* Only async-signal-safe calls here. */
        ssize_t r = write(2, pre, sizeof pre - 1);
        r = write(2, f, strlen(f));
        r = write(2, "\n", 1);
        (void)r;
        _exit(2);
    }
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

/* ".../yolov3-tiny.cfg" -> "yolov3-tiny" into out. */
static void name_from_cfg(const char *cfg, char *out, size_t cap)
{
    const char *b = strrchr(cfg, '/');
    b = b != NULL ? b + 1 : cfg;
    size_t n = strlen(b);
    if (n > 4 && strcmp(b + n - 4, ".cfg") == 0)
        n -= 4;
    snprintf(out, cap, "%.*s", (int)n, b);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: framegate-backend --listen URL --cfg PATH --weights PATH --names PATH\n"
            "           [--model-name NAME] [--threshold F] [--nms F] [--simulate-ms N]\n"
            "           [--init-delay-ms N] [--parent-pid PID] [--instance NAME]\n"
            "           [--max-pixels N] [--max-side N] [--threads N]\n"
            "           [--input-size N|WxH] [--preprocess darknet|faceapi] [--top-k K]\n"
            "           [--decode exact|fast] [--engine dnnl|blas] [--precision fp32|bf16]\n"
            "           [--winograd on|off] [--stock-darknet]\n"
            "           [--tls-cert PEM --tls-key PEM --tls-ca PEM] [--allow-insecure]\n"
            "           [--join URL [--advertise URL] [--capacity N]]\n"
            "       framegate-backend --gen-weights OUT --cfg PATH [--seed N]\n"
            "       framegate-backend --help | --version\n"
            "\n"
            "Serves one darknet network on an NNG rep socket (URL: ipc:///path,\n"
            "tls+tcp://HOST:PORT or tcp://127.0.0.1:PORT) for the framegate gateway. It listens\n"
            "only once the model is loaded and one warm-up inference has run: that is its\n"
            "readiness.\n"
            "  --tls-cert/--tls-key/--tls-ca  this backend's certificate and key, and the CA that\n"
            "                     signed the gateway's (scripts/certs.sh): tls+tcp:// is mutual\n"
            "                     TLS and accepts only a gateway certificate from that CA\n"
            "  --allow-insecure   allow plain tcp:// on an address other hosts can reach\n"
            "  --join URL         register with the gateway's join_listen (tls+tcp://GW:PORT,\n"
            "                     same certificates), again every 4-6 s; on SIGTERM deregister,\n"
            "                     answer the frames already sent, then exit\n"
            "  --advertise URL    the address the gateway dials back (default: --listen,\n"
            "                     which then must not be a wildcard such as 0.0.0.0)\n"
            "  --capacity N       frames it takes at once, reported at registration (1)\n"
            "  --simulate-ms N    skip the network: read the JPEG header, answer after N ms\n"
            "  --init-delay-ms N  sleep N ms before loading (simulates a slow model load)\n"
            "  --input-size N     run the network at N x N (or WxH) instead of the cfg's size\n"
            "  --preprocess MODE  how frames are fitted into the input: darknet (centred\n"
            "                     letterbox, default) or faceapi (top-left, zero padding)\n"
            "  --decode MODE      JPEG decoding: exact (full size, the reference pipeline's\n"
            "                     pixels; default) or fast (DCT-scaled to near the network\n"
            "                     size: less decode time, answers differ a little)\n"
            "  --top-k K          classifiers: classes per answer (default 5)\n"
            "  --engine E         the forward pass: dnnl (oneDNN's kernels, default) or blas\n"
            "                     (framegate's kernels on OpenBLAS)\n"
            "  --precision P      the dnnl engine's numbers: fp32 (default; agrees with\n"
            "                     darknet) or bf16 (faster where the CPU has AVX512_BF16,\n"
            "                     answers differ a little; fp32 with a warning elsewhere)\n"
            "  --winograd on|off  the dnnl engine's fp32 3x3 convolutions as Winograd where\n"
            "                     the CPU has AVX-512 (elsewhere those with 64+ input\n"
            "                     channels on OpenBLAS) (on, default: faster; their\n"
            "                     weights take 1.8-4x the memory and the load is slower) or\n"
            "                     direct (off)\n"
            "  --threads N        threads of the forward pass (default 1)\n"
            "  --stock-darknet    run libdarknet's own forward pass instead of the fast one\n"
            "  --parent-pid PID   exit when that process (the gateway) dies\n"
            "  --gen-weights OUT  write deterministic weights for --cfg (darknet's own random\n"
            "                     initialisation after srand(seed)) and exit\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* "416" or "416x320": 32..4096 each (a multiple of 32 is checked by darknet's layers). */
static int parse_size(const char *s, int *w, int *h)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (errno == 0 && end != s && *end == 'x')
        b = strtol(end + 1, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || a < 32 || a > 4096 || b < 32 || b > 4096)
        return -1;
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* Every option but --help/--version/--stock-darknet takes a value. */
static int known_option(const char *a)
{
    static const char *const opts[] = {
        "--listen",        "--cfg",         "--weights",    "--names",     "--model-name",
        "--instance",      "--gen-weights", "--threshold",  "--nms",       "--simulate-ms",
        "--init-delay-ms", "--parent-pid",  "--seed",       "--threads",   "--max-pixels",
        "--max-side",      "--input-size",  "--preprocess", "--top-k",     "--tls-cert",
        "--tls-key",       "--tls-ca",      "--join",       "--advertise", "--capacity",
        "--decode",        "--engine",      "--precision",  "--winograd"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(a, opts[i]) == 0)
            return 1;
    return 0;
}

/* Before loading anything: an address that other hosts can reach is served over mutual TLS
 * unless --allow-insecure says otherwise, and TLS files go with a tls+tcp:// address only. */
static int check_listen(const char *listen, const proto_tls_files_t *tls, int allow_insecure)
{
    proto_addr_t a;
    int files = tls->cert != NULL || tls->key != NULL || tls->ca != NULL;
    if (proto_addr_parse(&a, listen) != 0) {
        fprintf(stderr, "framegate-backend: --listen %s: not an NNG address\n", listen);
        return -1;
    }
    if (a.kind == PROTO_ADDR_TLS && (tls->cert == NULL || tls->key == NULL || tls->ca == NULL)) {
        fprintf(stderr,
                "framegate-backend: --listen %s: tls+tcp needs --tls-cert, --tls-key "
                "and --tls-ca\n",
                listen);
        return -1;
    }
    if (a.kind == PROTO_ADDR_TLS) {
        proto_tls_cert_info_t ci;
        char err[512];
        if (proto_tls_cert_info(tls->cert, &ci, err, sizeof err) != 0) {
            fprintf(stderr, "framegate-backend: --tls-cert: %s\n", err);
            return -1;
        }
        /* Served anyway: the gateway refuses it with its own log line, but the reason is
         * plainest here. */
        fprintf(stderr, "framegate-backend: %scertificate '%s' %s %s\n",
                ci.expired || ci.not_yet_valid ? "WARNING: " : "", ci.cn,
                ci.expired         ? "EXPIRED on"
                : ci.not_yet_valid ? "NOT YET VALID, ends"
                                   : "valid until",
                ci.not_after);
    }
    if (a.kind != PROTO_ADDR_TLS && files) {
        fprintf(stderr, "framegate-backend: --tls-* given but --listen %s is not tls+tcp://\n",
                listen);
        return -1;
    }
    if (a.kind == PROTO_ADDR_TCP && !proto_addr_is_local(&a)) {
        if (!allow_insecure) {
            fprintf(stderr,
                    "framegate-backend: --listen %s: plain tcp on an address other hosts can "
                    "reach; use tls+tcp:// (mutual TLS) or --allow-insecure\n",
                    listen);
            return -1;
        }
        fprintf(stderr,
                "framegate-backend: WARNING: --listen %s is plain tcp, reachable from "
                "other hosts, without authentication (--allow-insecure)\n",
                listen);
    }
    return 0;
}

/* SIGTERM with --join: deregister first (the gateway sends nothing new), then be_serve_run
 * answers what was already sent. */
static void on_stop_leave(void *arg)
{
    be_join_t **j = arg;
    if (*j != NULL) {
        be_join_leave(*j);
        *j = NULL;
    }
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *cfg = NULL, *weights = NULL, *names = NULL;
    const char *model_name = NULL, *instance = "backend", *gen_out = NULL;
    const char *join = NULL, *advertise = NULL;
    long capacity = 1;
    float threshold = 0.25f, nms = 0.45f;
    long simulate_ms = -1, init_delay_ms = 0, parent_pid = 0, seed = 1, threads = 1;
    long max_pixels = 64000000, max_side = 16384, top_k = 0;
    int stock = 0, input_w = 0, input_h = 0, prep = BE_PREP_DARKNET, allow_insecure = 0;
    int decode = BE_DECODE_EXACT, engine = BE_ENGINE_DNNL, precision = BE_PRECISION_FP32;
    int winograd = 1;
    proto_tls_files_t tls = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("framegate-backend %s\n", FG_VERSION);
            return 0;
        }
        if (strcmp(a, "--stock-darknet") == 0) { /* the flags without a value */
            stock = 1;
            continue;
        }
        if (strcmp(a, "--allow-insecure") == 0) {
            allow_insecure = 1;
            continue;
        }
        if (!known_option(a)) {
            fprintf(stderr, "framegate-backend: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (v == NULL) {
            fprintf(stderr, "framegate-backend: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0)
            listen = v;
        else if (strcmp(a, "--cfg") == 0)
            cfg = v;
        else if (strcmp(a, "--weights") == 0)
            weights = v;
        else if (strcmp(a, "--names") == 0)
            names = v;
        else if (strcmp(a, "--model-name") == 0)
            model_name = v;
        else if (strcmp(a, "--instance") == 0)
            instance = v;
        else if (strcmp(a, "--gen-weights") == 0)
            gen_out = v;
        else if (strcmp(a, "--threshold") == 0)
            bad = parse_float(v, 0, 1, &threshold);
        else if (strcmp(a, "--nms") == 0)
            bad = parse_float(v, 0, 1, &nms);
        else if (strcmp(a, "--simulate-ms") == 0)
            bad = parse_long(v, 0, 3600000, &simulate_ms);
        else if (strcmp(a, "--init-delay-ms") == 0)
            bad = parse_long(v, 0, 3600000, &init_delay_ms);
        else if (strcmp(a, "--parent-pid") == 0)
            bad = parse_long(v, 1, 1L << 30, &parent_pid);
        else if (strcmp(a, "--seed") == 0)
            bad = parse_long(v, 0, 1L << 30, &seed);
        else if (strcmp(a, "--threads") == 0)
            bad = parse_long(v, 1, 256, &threads);
        else if (strcmp(a, "--max-pixels") == 0)
            bad = parse_long(v, 1, 1L << 40, &max_pixels);
        else if (strcmp(a, "--max-side") == 0)
            bad = parse_long(v, 1, 1 << 20, &max_side);
        else if (strcmp(a, "--input-size") == 0)
            bad = parse_size(v, &input_w, &input_h);
        else if (strcmp(a, "--preprocess") == 0)
            bad = (prep = be_prep_parse(v)) < 0;
        else if (strcmp(a, "--engine") == 0)
            bad = (engine = be_engine_parse(v)) < 0;
        else if (strcmp(a, "--precision") == 0)
            bad = (precision = be_precision_parse(v)) < 0;
        else if (strcmp(a, "--winograd") == 0)
            bad = (winograd = strcmp(v, "on") == 0 ? 1 : strcmp(v, "off") == 0 ? 0 : -1) < 0;
        else if (strcmp(a, "--decode") == 0)
            bad = (decode = be_decode_parse(v)) < 0;
        else if (strcmp(a, "--top-k") == 0)
            bad = parse_long(v, 1, 1000, &top_k);
        else if (strcmp(a, "--tls-cert") == 0)
            tls.cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            tls.key = v;
        else if (strcmp(a, "--tls-ca") == 0)
            tls.ca = v;
        else if (strcmp(a, "--join") == 0)
            join = v;
        else if (strcmp(a, "--advertise") == 0)
            advertise = v;
        else if (strcmp(a, "--capacity") == 0)
            bad = parse_long(v, 1, 256, &capacity);
        else {
            fprintf(stderr, "framegate-backend: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "framegate-backend: bad value for %s: '%s'\n", a, v);
            return 2;
        }
    }
    char derived_name[128];
    if (model_name == NULL) {
        name_from_cfg(cfg != NULL ? cfg : "simulated", derived_name, sizeof derived_name);
        model_name = derived_name;
    }

    if (gen_out != NULL) {
        char err[512];
        atexit(on_darknet_exit);
        signal(SIGABRT, on_abort);
        darknet_file = cfg;
        int rv = be_model_gen_weights(cfg, gen_out, (unsigned)seed, err, sizeof err);
        darknet_file = NULL;
        if (rv != 0) {
            fprintf(stderr, "framegate-backend: %s\n", err);
            return 2;
        }
        return 0;
    }
    if (listen == NULL) {
        fprintf(stderr, "framegate-backend: --listen is required\n");
        usage(stderr);
        return 2;
    }
    if (check_listen(listen, &tls, allow_insecure) != 0)
        return 2;
    if (join != NULL) {
        proto_addr_t a;
        if (advertise == NULL)
            advertise = listen;
        if (proto_addr_parse(&a, advertise) != 0 || a.host[0] == '\0' ||
            strcmp(a.host, "0.0.0.0") == 0 || strcmp(a.host, "::") == 0) {
            fprintf(stderr,
                    "framegate-backend: --join: the gateway cannot dial %s back; give "
                    "--advertise tls+tcp://THIS_HOST:PORT\n",
                    advertise);
            return 2;
        }
    }

    /* oneDNN's OpenMP threads: a short spin before an idle one sleeps (be_dnnl_omp_env). */
    if (simulate_ms < 0 && engine == BE_ENGINE_DNNL)
        be_dnnl_omp_env((int)threads, argv);

    /* Die with the gateway, even if it is SIGKILLed: no orphans. The getppid() check closes
     * the race where the parent died before prctl ran. */
    if (parent_pid > 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != (pid_t)parent_pid)
            return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (init_delay_ms > 0) {
        struct timespec ts = {init_delay_ms / 1000, (init_delay_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !atomic_load(&stop_flag))
            ;
    }
    if (atomic_load(&stop_flag))
        return 0;

    be_image_t *image = NULL;
    be_image_limits_t limits = {.max_pixels = (uint64_t)max_pixels, .max_side = (int)max_side};
    if (be_image_create(&image, limits) != 0) {
        fprintf(stderr, "framegate-backend: out of memory\n");
        return 2;
    }
    be_model_t *model = NULL;
    if (simulate_ms < 0) {
        char err[512];
        be_model_opts_t mo = {.cfg = cfg,
                              .weights = weights,
                              .names = names,
                              .threshold = threshold,
                              .nms = nms,
                              .input_w = input_w,
                              .input_h = input_h,
                              .prep = (be_prep_t)prep,
                              .decode = (be_decode_t)decode,
                              .engine = (be_engine_t)engine,
                              .precision = (be_precision_t)precision,
                              .top_k = (int)top_k,
                              .threads = (int)threads,
                              .stock = stock};
        atexit(on_darknet_exit);
        signal(SIGABRT, on_abort);
        darknet_file = cfg;
        be_dnnl_refuse_winograd(!winograd); /* one model per process */
        int rv = be_model_load(&model, &mo, err, sizeof err);
        if (rv != 0) {
            darknet_file = NULL;
            fprintf(stderr, "framegate-backend[%s]: %s\n", instance, err);
            be_image_destroy(image);
            return 2;
        }
        /* Warm-up: one inference on a grey frame, so the first real frame does not pay for
         * cold caches and lazy allocations. */
        size_t n = (size_t)be_model_width(model) * be_model_height(model) * 3;
        float *in = be_model_input(model);
        for (size_t i = 0; i < n; i++)
            in[i] = 0.5f;
        proto_det_t dets[16];
        be_model_detect(model, be_model_width(model), be_model_height(model), 0, 0, dets, 16);
        /* The resize into the input on oneDNN's OpenMP team (the BLAS engine has none). */
        if (be_model_fast(model) && be_model_engine(model) == BE_ENGINE_DNNL)
            be_image_set_threads(image, (int)threads);
        darknet_file = NULL;
        signal(SIGABRT, SIG_DFL);
    }
    if (atomic_load(&stop_flag)) { /* asked to stop while loading: never listen */
        be_model_free(model);
        be_image_destroy(image);
        return 0;
    }
    be_join_t *joined = NULL;
    proto_addr_t ja;
    be_join_opts_t jo = {
        .url = join,
        .tls = tls.cert != NULL ? &tls : NULL,
        .name = instance,
        .model = model_name,
        .advertise = advertise,
        .capacity = (int)capacity,
    };
    if (join != NULL && proto_addr_parse(&ja, join) == 0 && ja.kind == PROTO_ADDR_TLS &&
        tls.cert == NULL) {
        fprintf(stderr, "framegate-backend: --join %s needs --tls-cert/--tls-key/--tls-ca\n", join);
        be_model_free(model);
        be_image_destroy(image);
        return 2;
    }
    be_serve_opts_t so = {
        .listen = listen,
        .tls = tls.cert != NULL || tls.key != NULL || tls.ca != NULL ? &tls : NULL,
        .model_name = model_name,
        .instance = instance,
        .model = model,
        .image = image,
        .simulate_ms = simulate_ms < 0 ? 0 : (int)simulate_ms,
        .stop = &stop_flag,
        .on_stop = on_stop_leave,
        .on_stop_arg = &joined,
        .drain_ms = 10000,
    };
    /* Registration starts once the socket listens (be_serve_run's first thing): the
     * gateway's dial-back then finds it; if it comes first, the gateway's dialer retries. */
    if (join != NULL && be_join_start(&joined, &jo) != 0) {
        be_model_free(model);
        be_image_destroy(image);
        return 2;
    }
    if (joined == NULL)
        so.on_stop = NULL;
    int rv = be_serve_run(&so);
    if (joined != NULL) /* the socket could not listen: deregister anyway */
        be_join_leave(joined);
    be_model_free(model);
    be_image_destroy(image);
    return rv == 0 ? 0 : rv == PROTO_EINVAL ? 2 : 1;
}
