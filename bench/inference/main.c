/* framegate-bench-inference: one process, the same cfg + weights + frames through stock
 * libdarknet (network_predict), framegate's two engines (the BLAS one, be_fast_predict, and the
 * oneDNN one, be_dnnl_predict_stop), OpenCV DNN and ONNX Runtime (the network converted by
 * darknet2onnx.py, run by onnxruntime-node in a worker process: ort.h), at 1 and 2 threads; plus
 * OpenBLAS's large square sgemm, the machine's measured FMA peak and the decode + letterbox cost
 * of dog.jpg. "fg e2e" is the backend's whole per-frame path as it serves a request
 * (be_image_letterbox from the JPEG bytes + be_model_detect with the default engine: network,
 * boxes, NMS), and fg/opencv (and e2e/ORT) compares that against OpenCV's (ONNX Runtime's)
 * forward alone. Per model it also reports what decode = fast saves and costs against exact.
 * Prints a table and writes <out>/latest.{json,txt}.
 *
 * Timing: warm-up runs first, then the median of N. The engines, OpenCV and framegate's whole
 * path take turns frame by frame (in a rotating order), so a noisy neighbour on this 2-core
 * machine hits all of them alike. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agree.h"
#include "bands.h"
#include "dnnl.h"
#include "err.h"
#include "fast.h"
#include "frames.h"
#include "image.h"
#include "model.h"
#include "ocv.h"
#include "ort.h"

typedef struct {
    int reps, stock_reps, warmup, sgemm_n, max_threads, ort, gap_ms, bf16;
    const char *out, *cfg, *data, *tmpdir;
} opts_t;

#include "peak.h"
#include "tail.h"

static be_prep_t prep_mode = BE_PREP_DARKNET; /* of the model being benchmarked */
static be_decode_t decode_mode = BE_DECODE_EXACT;

static double rel_diff(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = d > num || isnan(d) ? (isnan(d) ? INFINITY : d) : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return num / (den > 1e-6 ? den : 1e-6);
}

static cJSON *timing(double ms, double flops)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "ms_per_frame", ms);
    cJSON_AddNumberToObject(o, "frames_per_s", 1e3 / ms);
    cJSON_AddNumberToObject(o, "gflops", flops / (ms * 1e6));
    return o;
}

/* What decode = fast costs and saves, per model, on `fr` (JPEG frames of camera sizes): the
 * decode + pre-processing time of each mode (median, the two modes taking turns frame by
 * frame), and how far fast's answers are from exact's (exact gives the reference pipeline's
 * pixels: test_be_image, test_be_faceapi): boxes of the same class paired greedily by IoU,
 * the smallest IoU of a pair, the largest |score drift|, and boxes found by one mode only. */
static void decode_cost(const opts_t *o, be_model_t *bm, be_image_t *im, const frames_t *fr,
                        const char *what, cJSON *m)
{
    int w = be_model_width(bm), h = be_model_height(bm);
    double t[2][256];
    char err[256];
    int reps = o->reps > 256 / fr->n ? 256 / fr->n : o->reps, k = 0;
    for (int r = -1; r < reps; r++)
        for (int i = 0; i < fr->n; i++, k += r >= 0) {
            for (int d = 0; d < 2; d++) {
                be_decode_t dec = (d + i + r) % 2 ? BE_DECODE_FAST : BE_DECODE_EXACT;
                int ow, oh;
                double t0 = now_ms();
                be_image_letterbox(im, fr->jpeg[i], fr->len[i], be_model_prep(bm), dec, w, h,
                                   be_model_input(bm), &ow, &oh, NULL, NULL, err, sizeof err);
                if (r >= 0)
                    t[dec][k] = now_ms() - t0;
            }
        }
    double exact = median(t[BE_DECODE_EXACT], k), fast = median(t[BE_DECODE_FAST], k);
    agree_t a;
    agree_init(&a);
    for (int i = 0; i < fr->n; i++) {
        proto_det_t d[2][64];
        int n[2], ow = 0, oh = 0;
        for (int dec = 0; dec < 2; dec++) {
            be_image_letterbox(im, fr->jpeg[i], fr->len[i], be_model_prep(bm), (be_decode_t)dec, w,
                               h, be_model_input(bm), &ow, &oh, NULL, NULL, err, sizeof err);
            n[dec] = be_model_detect(bm, ow, oh, 0, 0, d[dec], 64);
            n[dec] = n[dec] < 0 ? 0 : n[dec];
        }
        agree_add(&a, d[0], n[0], d[1], n[1]);
    }
    say("decode = fast vs exact on %d %s: decode + pre-processing %.2f vs %.2f ms/frame "
        "(saves %.2f ms); answers: %d boxes (exact), %d paired, min IoU %.3f, max |score drift| "
        "%.3f, %d found by one mode only\n",
        fr->n, what, fast, exact, exact - fast, a.boxes, a.pairs, a.min_iou, a.max_drift, a.only);
    cJSON *j = cJSON_AddObjectToObject(m, "decode_fast_vs_exact");
    cJSON_AddStringToObject(j, "frames", what);
    cJSON_AddNumberToObject(j, "exact_preprocess_ms", exact);
    cJSON_AddNumberToObject(j, "fast_preprocess_ms", fast);
    cJSON_AddNumberToObject(j, "saved_ms", exact - fast);
    cJSON_AddNumberToObject(j, "boxes_exact", a.boxes);
    agree_json(j, &a);
    cJSON_AddNumberToObject(j, "one_mode_only", a.only);
}

static double core_peak; /* GFLOP/s of one core (core_peak_gflops) */

/* The inputs of the network's [yolo]/[region] heads after a forward pass, concatenated in layer
 * order: what darknet2onnx.py's outputs are (the raw convolution outputs). malloc'd, *n floats;
 * NULL when the network has no head. Reads net as the last network_predict left it. */
static float *head_inputs(network *net, size_t *n)
{
    size_t total = 0;
    for (int i = 1; i < net->n; i++)
        if (net->layers[i].type == YOLO || net->layers[i].type == REGION)
            total += (size_t)net->layers[i].inputs;
    float *v = total > 0 ? malloc(total * sizeof(float)) : NULL;
    for (int i = 1, k = 0; v != NULL && i < net->n; i++)
        if (net->layers[i].type == YOLO || net->layers[i].type == REGION) {
            memcpy(v + k, net->layers[i - 1].output, (size_t)net->layers[i].inputs * sizeof(float));
            k += net->layers[i].inputs;
        }
    *n = total;
    return v;
}

/* ONNX Runtime at `threads`: the worker started, every frame handed over, frame 0's outputs
 * checked against stock darknet's (`ref`, head_inputs) before any timing. NULL (with a line
 * said) when it cannot run or disagrees beyond 1e-4 of the largest output. */
static ort_peer_t *ort_ready(const char *onnx, int threads, const frames_t *fr, int inputs,
                             const float *ref, size_t nref, const char *tmpdir, char *version,
                             size_t vcap, double *rel)
{
    char err[512];
    *rel = NAN;
    ort_peer_t *p =
        ort_peer_start(FG_BENCH_INFERENCE_DIR, onnx, threads, version, vcap, err, sizeof err);
    for (int i = 0; p != NULL && i < fr->n; i++)
        if (ort_peer_load(p, fr->input[i], (size_t)inputs, tmpdir, err, sizeof err) != i) {
            ort_peer_stop(p);
            p = NULL;
        }
    float *out = p != NULL ? malloc(nref * sizeof(float)) : NULL;
    long n = out != NULL ? ort_peer_outputs(p, 0, out, nref, tmpdir, err, sizeof err) : -1;
    if (n == (long)nref)
        *rel = rel_diff(out, ref, (int)nref);
    else if (n >= 0)
        snprintf(err, sizeof err, "%ld output floats, darknet's heads read %zu", n, nref);
    free(out);
    if (p != NULL && !(*rel <= 1e-4)) {
        say("ONNX Runtime not timed: %s\n",
            isnan(*rel) ? err : "its outputs differ from stock darknet's by more than 1e-4");
        if (!isnan(*rel))
            say("        ONNX vs stock darknet: rel %.2g\n", *rel);
        ort_peer_stop(p);
        return NULL;
    }
    if (p == NULL)
        say("ONNX Runtime not timed: %s\n", err);
    return p;
}

static void bench_model(const opts_t *o, const char *name, const char *cfg, const char *weights,
                        const char *names, frames_t *fr, be_image_t *im, const double *sgemm,
                        const frames_t *dfr, const char *dwhat, cJSON *models)
{
    char err[512];
    cJSON *m = cJSON_AddObjectToObject(models, name);
    cJSON_AddStringToObject(m, "cfg", cfg);
    network *net = load_network((char *)cfg, (char *)weights, 0);
    set_batch_network(net, 1);
    int w = net->w, h = net->h;
    double flops = be_fast_flops(net);
    cJSON_AddNumberToObject(m, "width", w);
    cJSON_AddNumberToObject(m, "height", h);
    cJSON_AddNumberToObject(m, "gflop_per_frame", flops / 1e9);
    if (frames_letterbox(fr, im, prep_mode, decode_mode, w, h) != 0) {
        cJSON_AddStringToObject(m, "error", "letterbox failed");
        free_network(net);
        return;
    }
    float *scratch = malloc((size_t)3 * w * h * sizeof(float));
    double pre = frames_preprocess_ms(im, fr, prep_mode, decode_mode, w, h, scratch, 30);
    free(scratch);
    say("\n== %s (%dx%d, %.3f GFLOP/frame, %d frames) ==\n", name, w, h, flops / 1e9, fr->n);
    say("pre-processing (decode + letterbox dog.jpg) alone: %.2f ms; 'pre %% net' below is\n"
        "measured in turn with the engines, like them\n",
        pre);
    say("GFLOP/s = direct-convolution FLOPs / time (Winograd layers do fewer real FLOPs)\n");
    cJSON_AddNumberToObject(m, "preprocess_ms", pre);

    /* Stock darknet is single-threaded: measured once, and the reference output. */
    double t[256];
    for (int r = 0; r < 1; r++)
        network_predict(net, fr->input[0]);
    for (int r = 0; r < o->stock_reps; r++) {
        double t0 = now_ms();
        network_predict(net, fr->input[r % fr->n]);
        t[r] = now_ms() - t0;
    }
    double stock = median(t, o->stock_reps);
    network_predict(net, fr->input[0]);
    float *ref = malloc((size_t)net->outputs * sizeof(float));
    memcpy(ref, net->output, (size_t)net->outputs * sizeof(float));
    size_t nheads = 0;
    float *heads = head_inputs(net, &nheads);
    cJSON_AddItemToObject(m, "stock_darknet", timing(stock, flops));
    say("stock darknet (1 thread, it has no threading): %8.1f ms/frame %6.2f frames/s %6.2f "
        "GFLOP/s\n",
        stock, 1e3 / stock, flops / (stock * 1e6));

    ocv_net_t *ocv = ocv_create(cfg, weights, err, sizeof err);
    if (ocv == NULL) {
        say("OpenCV DNN could not load %s: %s\n", cfg, err);
        cJSON_AddStringToObject(m, "opencv_error", err);
    }
    /* ONNX Runtime's copy of the network; its outputs are checked per thread count below. */
    char onnx[1024], ort_version[64] = "?";
    snprintf(onnx, sizeof onnx, "%s/net.onnx", o->tmpdir);
    int have_onnx = o->ort && heads != NULL;
    if (have_onnx &&
        ort_convert(FG_BENCH_INFERENCE_DIR, cfg, weights, onnx, err, sizeof err) != 0) {
        say("darknet2onnx: %s\n", err);
        have_onnx = 0;
    }
    struct {
        double net, e2e, ort, rel, bnet, be2e, bfe2e;
        const char *engine, *bprec;
    } sum[2];
    int nsum = 0;
    cJSON *runs = cJSON_AddArrayToObject(m, "runs");
    say("%-7s %-14s %10s %9s %9s %12s %13s %13s %12s\n", "threads", "engine", "ms/frame",
        "frames/s", "GFLOP/s", "% of sgemm", "fg/opencv", "fg/darknet", "pre % net");
    for (int th = 1; th <= o->max_threads; th++) {
        be_fast_t *f = NULL;
        int rv = be_fast_create(&f, net, th);
        if (rv != 0) {
            be_fast_check(net, err, sizeof err);
            say("be_fast_create: %s (%s)\n", proto_strerror(rv), err);
            break;
        }
        if (ocv != NULL)
            ocv_set_threads(th);
        be_image_set_threads(im, th); /* as the backend does with the oneDNN engine */
        be_dnnl_t *dn = NULL;
        if (be_dnnl_create(&dn, net, th, 0, err, sizeof err) != 0) {
            say("oneDNN engine: %s\n", err);
            dn = NULL;
        }
        /* The whole backend path runs through the same model object the server uses. */
        be_model_t *bm = NULL;
        be_model_opts_t mo = {.cfg = cfg,
                              .weights = weights,
                              .names = names,
                              .threshold = 0.5f,
                              .nms = 0.45f,
                              .prep = prep_mode,
                              .threads = th};
        if (be_model_load(&bm, &mo, err, sizeof err) != 0) {
            say("be_model_load: %s\n", err);
            bm = NULL;
        }
        /* precision = bf16 (opt-in per model): its network and whole path, in turn with the rest */
        be_dnnl_t *dnb = NULL;
        be_model_t *bmb = NULL;
        be_model_opts_t mob = mo;
        mob.precision = BE_PRECISION_BF16;
        if (o->bf16 &&
            (be_dnnl_create_precision(&dnb, net, th, 0, BE_PRECISION_BF16, err, sizeof err) != 0 ||
             be_model_load(&bmb, &mob, err, sizeof err) != 0))
            say("bf16: %s\n", err);
        double rel_ort = NAN;
        ort_peer_t *ort = have_onnx ? ort_ready(onnx, th, fr, net->inputs, heads, nheads, o->tmpdir,
                                                ort_version, sizeof ort_version, &rel_ort)
                                    : NULL;
        /* The engines take turns frame by frame, in a shuffled order, so that a noisy
         * neighbour on this VM slows all of them alike and the ratios stay fair. Two groups,
         * one after the other: the ones the issue compares (oneDNN net, framegate's whole path,
         * ONNX Runtime), then OpenBLAS's engine, OpenCV and the pre-processing alone. Apart,
         * because OpenBLAS's idle threads keep spinning for ~2^28 cycles after a call (its
         * THREAD_TIMEOUT) and OpenCV's pool spins too: at 2 threads on 2 cores whatever ran
         * next lost its second core (framegate's whole path measured 5x its network). Shuffled,
         * because in a fixed cycle each engine always follows the same one and inherits its
         * spinning threads (libgomp's, ONNX Runtime's) alone. */
        double tf[256], to[256], te[256], tp[256], td[256], tx[256], settle[256] = {0};
        double tb[256], tbe[256], tbf[256];
        double ort_busy[512]; /* ONNX Runtime's CPU ms during each framegate turn of group 1 */
        int nbusy = 0;
        proto_det_t dets[256];
        float *scratch = malloc((size_t)3 * w * h * sizeof(float));
        int reps = o->reps > 256 ? 256 : o->reps;
        /* 6, 7, 8: bf16's network, its whole path, and its whole path with decode = fast */
        static const int groups[2][6] = {{4, 2, 5, 6, 7, 8}, {0, 1, 3}};
        const int ng[2] = {dnb != NULL && bmb != NULL ? 6 : 3, 3};
        unsigned lcg = 12345u + (unsigned)th;
        for (int gi = 0; gi < 2; gi++)
            for (int r = -o->warmup; r < reps; r++) {
                int i = (r + o->warmup) % fr->n;
                const float *in = fr->input[i];
                int order[6];
                memcpy(order, groups[gi], sizeof order);
                for (int k = ng[gi] - 1; k > 0; k--) { /* Fisher-Yates with a fixed-seed LCG */
                    lcg = lcg * 1103515245u + 12345u;
                    int j = (int)((lcg >> 16) % (unsigned)(k + 1)), t = order[k];
                    order[k] = order[j];
                    order[j] = t;
                }
                for (int k = 0; k < ng[gi]; k++) {
                    int turn = order[k];
                    double ort_ms = NAN;
                    long long oc = turn == 5 ? -1 : ort_peer_cpu_ns(ort);
                    double t0 = now_ms();
                    if (turn == 0) {
                        be_fast_predict(f, in);
                    } else if (turn == 1) {
                        if (ocv != NULL && ocv_predict(ocv, in, w, h, err, sizeof err) < 0)
                            say("OpenCV: %s\n", err);
                    } else if ((turn == 2 && bm != NULL) || turn == 7 || turn == 8) {
                        be_model_t *e = turn == 2 ? bm : bmb;
                        int ow, oh;
                        be_image_letterbox(im, fr->jpeg[i], fr->len[i], prep_mode,
                                           turn == 8 ? BE_DECODE_FAST : decode_mode, w, h,
                                           be_model_input(e), &ow, &oh, NULL, NULL, err,
                                           sizeof err);
                        be_model_detect(e, ow, oh, 0, 0, dets, 256);
                    } else if (turn == 6) {
                        be_dnnl_predict_stop(dnb, in, NULL, NULL);
                    } else if (turn == 3 && scratch != NULL) { /* decode + letterbox of dog.jpg */
                        int ow, oh;
                        be_image_letterbox(im, fr->jpeg[0], fr->len[0], prep_mode, decode_mode, w,
                                           h, scratch, &ow, &oh, NULL, NULL, err, sizeof err);
                    } else if (turn == 4 && dn != NULL) {
                        be_dnnl_predict_stop(dn, in, NULL, NULL);
                    } else if (turn == 5 && ort != NULL &&
                               ort_peer_run(ort, i, &ort_ms, err, sizeof err) != 0) {
                        say("%s\n", err);
                        ort_peer_stop(ort);
                        ort = NULL;
                    }
                    /* ONNX Runtime's own time of the run: the pipe and the process switch are not
                     * its cost */
                    double dt = turn == 5 ? ort_ms : now_ms() - t0;
                    if (oc >= 0 && r >= 0 && nbusy < 512)
                        ort_busy[nbusy++] = (ort_peer_cpu_ns(ort) - oc) / 1e6;
                    if (r >= 0)
                        (turn == 0   ? tf
                         : turn == 1 ? to
                         : turn == 2 ? te
                         : turn == 3 ? tp
                         : turn == 4 ? td
                         : turn == 5 ? tx
                         : turn == 6 ? tb
                         : turn == 7 ? tbe
                                     : tbf)[r] = dt;
                    /* ONNX Runtime's pool spins for 70+ ms after a run (ort_peer_settle):
                     * the next turn starts once it has gone to sleep, as it would on a machine
                     * that runs only one of them. Its wait is kept apart from --gap-ms. */
                    if (turn == 5)
                        settle[r >= 0 ? r : 0] = ort_peer_settle(ort, 500);
                    /* --gap-ms: a pause between turns, so that each engine starts with the
                     * previous one's idle threads asleep (libgomp's spin for ~300k pauses, ONNX
                     * Runtime's pool too), as in a backend that runs one engine. Off by default
                     * (the committed runs had none); on a loaded machine 10 ms changed nothing
                     * visible. */
                    if (o->gap_ms > 0)
                        nanosleep(&(struct timespec){.tv_sec = o->gap_ms / 1000,
                                                     .tv_nsec = (o->gap_ms % 1000) * 1000000L},
                                  NULL);
                }
            }
        double fast = median(tf, reps), cv = ocv != NULL ? median(to, reps) : NAN;
        double e2e = bm != NULL ? median(te, reps) : NAN;
        double dnn = dn != NULL ? median(td, reps) : NAN, rel_dnnl = NAN;
        double ortms = ort != NULL ? median(tx, reps) : NAN;
        double bnet = ng[0] == 6 ? median(tb, reps) : NAN,
               be2e = ng[0] == 6 ? median(tbe, reps) : NAN,
               bfe2e = ng[0] == 6 ? median(tbf, reps) : NAN;
        const char *bprec = bmb != NULL ? be_precision_name(be_model_precision(bmb)) : "-";
        be_dnnl_destroy(dnb);
        be_model_free(bmb);
        double ort_settle = ort != NULL ? median(settle, reps) : NAN;
        double busy_max = 0;
        for (int k = 0; k < nbusy; k++)
            busy_max = fmax(busy_max, ort_busy[k]);
        ort_peer_stop(ort);
        if (dn != NULL) {
            be_dnnl_predict_stop(dn, fr->input[0], NULL, NULL);
            rel_dnnl = rel_diff(net->output, ref, net->outputs);
            be_dnnl_destroy(dn);
        }
        const char *e2e_engine = bm != NULL ? be_engine_name(be_model_engine(bm)) : "-";
        pre = median(tp, reps);
        free(scratch);
        be_model_free(bm);
        be_fast_predict(f, fr->input[0]);
        double rel = rel_diff(net->output, ref, net->outputs);
        be_fast_destroy(f);

        cJSON *run = cJSON_CreateObject();
        cJSON_AddNumberToObject(run, "threads", th);
        cJSON *jf = timing(fast, flops);
        cJSON_AddNumberToObject(jf, "pct_of_sgemm", 100 * flops / (fast * 1e6) / sgemm[th - 1]);
        cJSON_AddItemToObject(run, "framegate", jf);
        if (ocv != NULL)
            cJSON_AddItemToObject(run, "opencv", timing(cv, flops));
        cJSON_AddItemToObject(run, "framegate_e2e", timing(e2e, flops));
        cJSON_AddNumberToObject(run, "framegate_e2e_over_opencv", e2e / cv);
        cJSON_AddNumberToObject(run, "framegate_over_opencv", fast / cv);
        cJSON_AddNumberToObject(run, "framegate_over_darknet", fast / stock);
        cJSON_AddNumberToObject(run, "preprocess_ms", pre);
        cJSON_AddNumberToObject(run, "preprocess_pct_of_network", 100 * pre / fast);
        cJSON_AddNumberToObject(run, "output_rel_diff_vs_darknet", rel);
        if (dn != NULL) {
            cJSON *jd = timing(dnn, flops);
            cJSON_AddNumberToObject(jd, "pct_of_sgemm", 100 * flops / (dnn * 1e6) / sgemm[th - 1]);
            cJSON_AddNumberToObject(jd, "output_rel_diff_vs_darknet", rel_dnnl);
            cJSON_AddItemToObject(run, "framegate_dnnl", jd);
        }
        cJSON_AddStringToObject(run, "framegate_e2e_engine", e2e_engine);
        if (!isnan(ortms)) {
            double fgnet = dn != NULL ? dnn : fast;
            cJSON *jo = timing(ortms, flops);
            cJSON_AddNumberToObject(jo, "output_rel_diff_vs_darknet", rel_ort);
            cJSON_AddStringToObject(jo, "version", ort_version);
            cJSON_AddNumberToObject(jo, "settle_ms", ort_settle);
            cJSON_AddNumberToObject(jo, "cpu_ms_during_fg_turns_max", busy_max);
            cJSON_AddItemToObject(run, "onnxruntime", jo);
            cJSON_AddNumberToObject(run, "framegate_e2e_over_onnxruntime", e2e / ortms);
            cJSON_AddNumberToObject(run, "framegate_net_over_onnxruntime", fgnet / ortms);
        }
        if (!isnan(bnet)) {
            cJSON_AddItemToObject(run, "framegate_dnnl_bf16", timing(bnet, flops));
            cJSON_AddItemToObject(run, "framegate_e2e_bf16", timing(be2e, flops));
            cJSON_AddItemToObject(run, "framegate_e2e_bf16_decode_fast", timing(bfe2e, flops));
            cJSON_AddStringToObject(run, "bf16_ran_as", bprec);
        }
        sum[nsum].net = dn != NULL ? dnn : fast;
        sum[nsum].engine = dn != NULL ? "dnnl" : "blas";
        sum[nsum].e2e = e2e;
        sum[nsum].ort = ortms;
        sum[nsum].bnet = bnet;
        sum[nsum].be2e = be2e;
        sum[nsum].bfe2e = bfe2e;
        sum[nsum].bprec = bprec;
        sum[nsum++].rel = rel_ort;
        cJSON_AddItemToArray(runs, run);
        say("%-7d %-14s %10.1f %9.2f %9.2f %11.1f%% %13.3f %13.3f %11.1f%%\n", th, "fg net (blas)",
            fast, 1e3 / fast, flops / (fast * 1e6), 100 * flops / (fast * 1e6) / sgemm[th - 1],
            fast / cv, fast / stock, 100 * pre / fast);
        if (dn != NULL)
            say("%-7d %-14s %10.1f %9.2f %9.2f %11.1f%% %13.3f %13.3f %11.1f%%\n", th,
                "fg net (dnnl)", dnn, 1e3 / dnn, flops / (dnn * 1e6),
                100 * flops / (dnn * 1e6) / sgemm[th - 1], dnn / cv, dnn / stock, 100 * pre / dnn);
        if (!isnan(bnet))
            say("%-7d %-14s %10.1f %9.2f %9.2f %11.1f%%\n%-7d %-14s %10.1f %9.2f   (ran as %s)\n",
                th, "fg net (bf16)", bnet, 1e3 / bnet, flops / (bnet * 1e6),
                100 * flops / (bnet * 1e6) / sgemm[th - 1], th, "fg e2e (bf16)", be2e, 1e3 / be2e,
                bprec);
        char e2e_name[32];
        snprintf(e2e_name, sizeof e2e_name, "fg e2e (%s)", e2e_engine);
        say("%-7d %-14s %10.1f %9.2f %9s %12s %13.3f %13.3f\n", th, e2e_name, e2e, 1e3 / e2e, "",
            "", e2e / cv, e2e / stock);
        if (ocv != NULL)
            say("%-7d %-14s %10.1f %9.2f %9.2f %11.1f%%\n", th, "opencv", cv, 1e3 / cv,
                flops / (cv * 1e6), 100 * flops / (cv * 1e6) / sgemm[th - 1]);
        if (!isnan(ortms))
            say("%-7d %-14s %10.1f %9.2f %9.2f %11.1f%%   (its pool then spun %.1f ms, waited "
                "out; at most %.1f ms of its CPU in another turn)\n",
                th, "onnxruntime", ortms, 1e3 / ortms, flops / (ortms * 1e6),
                100 * flops / (ortms * 1e6) / sgemm[th - 1], ort_settle, busy_max);
        say("        output vs stock darknet: rel %.2g blas, %.2g dnnl, %.2g onnxruntime (heads' "
            "inputs) (max|a-b| / max|b|)\n",
            rel, rel_dnnl, rel_ort);
    }
    /* The question, in one table: framegate against ONNX Runtime's network alone. */
    say("\nframegate vs ONNX Runtime %s (median ms/frame, interleaved runs; GFLOP/s as %% of the "
        "measured FMA peak, %.0f GFLOP/s per core)\n",
        ort_version, core_peak);
    say("%-7s %9s %9s %9s %9s %9s %17s %17s\n", "threads", "fg net", "fg e2e", "ORT net", "e2e/ORT",
        "net/ORT", "fg net GFLOP/s", "ORT GFLOP/s");
    for (int k = 0; k < nsum; k++) {
        double pk = core_peak * (k + 1), gf = flops / (sum[k].net * 1e6),
               go = flops / (sum[k].ort * 1e6);
        say("%-7d %9.2f %9.2f %9.2f %9.3f %9.3f %8.1f (%4.1f%%) %8.1f (%4.1f%%)\n", k + 1,
            sum[k].net, sum[k].e2e, sum[k].ort, sum[k].e2e / sum[k].ort, sum[k].net / sum[k].ort,
            gf, 100 * gf / pk, go, 100 * go / pk);
    }
    say("fg net = the %s engine (the default); fg e2e = decode + letterbox + network + boxes "
        "(be_model_detect); ORT net = session.run alone\n",
        nsum > 0 ? sum[0].engine : "-");
    if (nsum > 0 && !isnan(sum[0].bnet)) {
        say("precision = bf16 (opt-in per model) next to fp32 and ONNX Runtime, same runs; "
            "+fast: bf16 with decode = fast too (both opt-in):\n");
        say("%-7s %9s %9s %9s %9s %9s %13s %13s %10s %10s\n", "threads", "fp32 net", "bf16 net",
            "fp32 e2e", "bf16 e2e", "ORT net", "bf16 e2e/ORT", "bf16 net/ORT", "+fast e2e",
            "+fast/ORT");
        for (int k = 0; k < nsum; k++)
            say("%-7d %9.2f %9.2f %9.2f %9.2f %9.2f %13.3f %13.3f %10.2f %10.3f%s\n", k + 1,
                sum[k].net, sum[k].bnet, sum[k].e2e, sum[k].be2e, sum[k].ort,
                sum[k].be2e / sum[k].ort, sum[k].bnet / sum[k].ort, sum[k].bfe2e,
                sum[k].bfe2e / sum[k].ort,
                strcmp(sum[k].bprec, "bf16") ? " (bf16 ran as fp32)" : "");
    }
    unlink(onnx);
    free(heads);
    free(ref);
    if (dfr != NULL && dfr->n > 0) {
        be_model_t *bm = NULL;
        be_model_opts_t mo = {.cfg = cfg,
                              .weights = weights,
                              .names = names,
                              .threshold = prep_mode == BE_PREP_FACEAPI ? 0.5f : 0.25f,
                              .nms = prep_mode == BE_PREP_FACEAPI ? 0.4f : 0.45f,
                              .prep = prep_mode,
                              .threads = 1};
        be_image_set_threads(im, 1);
        if (be_model_load(&bm, &mo, err, sizeof err) == 0)
            decode_cost(o, bm, im, dfr, dwhat, m);
        be_model_free(bm);
        if (o->bf16)
            agree_precision(&mo, im, dfr->jpeg, dfr->len, dfr->n, dwhat, m);
        /* the padding shortcut (backend/dnnl_tail.c; dfr may be the photos themselves), and
         * the first pair as one pass (backend/convpool.h) */
        for (int th = 1; th <= o->max_threads; th++) {
            tail_report(net, th, fr->input, fr->n, im, prep_mode, dfr->jpeg, dfr->len,
                        dfr != fr ? dfr->n : 0, dwhat, o->reps, m);
            convpool_report(net, th, fr->input, fr->n, o->reps, m);
        }
    }
    if (ocv != NULL)
        ocv_destroy(ocv);
    free_network(net);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: framegate-bench-inference [--reps N] [--stock-reps N] [--warmup N]\n"
            "       [--threads MAX] [--sgemm-n N] [--cfg yolov3-tiny.cfg] [--data DIR]\n"
            "       [--out DIR] [--ort 0|1] [--gap-ms N (idle between turns)] [--bf16 0|1]\n"
            "Env: FRAMEGATE_CACHE (default ~/.cache/framegate): models/face-tiny.{cfg,weights}\n"
            "are benchmarked too when present. --ort 0 leaves ONNX Runtime out (it needs\n"
            "bench/inference/ort/node_modules and python3-onnx: scripts/setup.sh --bench).\n");
}

int main(int argc, char **argv)
{
    opts_t o = {.reps = 21,
                .stock_reps = 5,
                .warmup = 3,
                .sgemm_n = 2048,
                .max_threads = 2,
                .ort = 1,
                .gap_ms = 0,
                .bf16 = 1,
                .out = "bench/results/inference",
                .cfg = FG_DARKNET_SHARE "/cfg/yolov3-tiny.cfg",
                .data = FG_DARKNET_SHARE "/data"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--reps") == 0)
            o.reps = atoi(v);
        else if (strcmp(a, "--stock-reps") == 0)
            o.stock_reps = atoi(v);
        else if (strcmp(a, "--warmup") == 0)
            o.warmup = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o.max_threads = atoi(v);
        else if (strcmp(a, "--sgemm-n") == 0)
            o.sgemm_n = atoi(v);
        else if (strcmp(a, "--cfg") == 0)
            o.cfg = v;
        else if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--ort") == 0)
            o.ort = atoi(v);
        else if (strcmp(a, "--gap-ms") == 0)
            o.gap_ms = atoi(v);
        else if (strcmp(a, "--bf16") == 0) /* 0: leave precision = bf16 out */
            o.bf16 = atoi(v);
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (o.reps < 1 || o.stock_reps < 1 || o.stock_reps > 256 || o.warmup < 0 || o.max_threads < 1 ||
        o.max_threads > 2 || o.sgemm_n < 64 || o.gap_ms < 0 || o.gap_ms > 1000) {
        usage();
        return 2;
    }

    /* The backend's OpenMP wait policy (backend/main.c), so that "fg" is what it serves. */
    be_dnnl_omp_env(o.max_threads, argv);

    char path[1024], tmpdir[] = "/tmp/fg-bench-inference-XXXXXX", weights[128], err[256];
    snprintf(path, sizeof path, "%s/latest.txt", o.out);
    if (mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    FILE *txt = fopen(path, "w");
    say_to(txt);
    if (txt == NULL || mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "cannot write %s or a temp dir\n", path);
        return 1;
    }
    o.tmpdir = tmpdir;
    cJSON *root = cJSON_CreateObject();
    char desc[512];
    machine_describe(root, desc, sizeof desc);
    say("machine: %s\n", desc);
    const char *spin = getenv("GOMP_SPINCOUNT"), *policy = getenv("OMP_WAIT_POLICY"),
               *obt = getenv("OPENBLAS_THREAD_TIMEOUT"); /* its threads' spin after a call */
    say("OpenMP (oneDNN's threads): GOMP_SPINCOUNT=%s OMP_WAIT_POLICY=%s; "
        "OPENBLAS_THREAD_TIMEOUT=%s\n",
        spin != NULL ? spin : "(libgomp's default)", policy != NULL ? policy : "(unset)",
        obt != NULL ? obt : "(unset)");
    cJSON_AddStringToObject(root, "gomp_spincount", spin != NULL ? spin : "default");

    const char *isa;
    core_peak = core_peak_gflops(&isa);
    cJSON_AddNumberToObject(root, "core_peak_gflops", core_peak);
    say("fp32 peak, measured (%s chains, 1 core): %.1f GFLOP/s per core, %.1f on %d\n", isa,
        core_peak, core_peak * o.max_threads, o.max_threads);
    double sgemm[2] = {0, 0};
    cJSON *js = cJSON_AddObjectToObject(root, "sgemm_gflops");
    for (int th = 1; th <= o.max_threads; th++) {
        sgemm[th - 1] = sgemm_gflops(o.sgemm_n, th);
        snprintf(err, sizeof err, "%d", th);
        cJSON_AddNumberToObject(js, err, sgemm[th - 1]);
        say("OpenBLAS sgemm %dx%dx%d, %d thread(s): %.1f GFLOP/s\n", o.sgemm_n, o.sgemm_n,
            o.sgemm_n, th, sgemm[th - 1]);
    }

    frames_t fr;
    be_image_t *im = NULL;
    if (frames_load(&fr, o.data) != 0 ||
        be_image_create(&im, (be_image_limits_t){.max_pixels = 1u << 26, .max_side = 16384}) != 0) {
        fprintf(stderr, "no frames in %s\n", o.data);
        return 1;
    }
    if (o.max_threads >= 2) /* the decode's bands (backend/image_jpeg.c) */
        bands_report(fr.jpeg, fr.len, fr.n, o.max_threads, root);
    cJSON *models = cJSON_AddObjectToObject(root, "models");

    /* Generated weights (no pretrained ones here): the backend's own generator, seed 1. */
    snprintf(weights, sizeof weights, "%s/net.weights", tmpdir);
    if (be_model_gen_weights(o.cfg, weights, 1, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const char *base = strrchr(o.cfg, '/') ? strrchr(o.cfg, '/') + 1 : o.cfg;
    bench_model(&o, base, o.cfg, weights, FG_DARKNET_SHARE "/data/coco.names", &fr, im, sgemm, &fr,
                "darknet photos (threshold 0.25)", models);
    unlink(weights);

    const char *cache = getenv("FRAMEGATE_CACHE"), *home = getenv("HOME");
    char fcfg[1100], fweights[1100], fnames[1100];
    if (cache != NULL && cache[0] != '\0')
        snprintf(path, sizeof path, "%s/models", cache);
    else
        snprintf(path, sizeof path, "%s/.cache/framegate/models", home ? home : "/root");
    snprintf(fcfg, sizeof fcfg, "%s/face-tiny.cfg", path);
    snprintf(fweights, sizeof fweights, "%s/face-tiny.weights", path);
    snprintf(fnames, sizeof fnames, "%s/face.names", path);
    if (access(fcfg, R_OK) == 0 && access(fweights, R_OK) == 0 && access(fnames, R_OK) == 0) {
        /* face-api's own pre-processing: the converted model is only right with it. */
        prep_mode = BE_PREP_FACEAPI;
        /* The agreement test's JPEG frames (scripts/models.sh): faces near the threshold. */
        static const char *const faces[] = {
            "frame-720p-small-face.jpg",   "frame-720p-face.jpg",
            "frame-1080p-faces.jpg",       "frame-720p-dark.jpg",
            "astronaut-gray.jpg",          "astronaut-dark.jpg",
            "astronaut-edge-top-left.jpg", "astronaut-edge-bottom-right.jpg"};
        frames_t ffr;
        memset(&ffr, 0, sizeof ffr);
        for (size_t i = 0; i < sizeof faces / sizeof faces[0]; i++) {
            snprintf(fcfg, sizeof fcfg, "%s/../faceapi-ref/%s", path, faces[i]);
            if ((ffr.jpeg[ffr.n] = frames_slurp(fcfg, &ffr.len[ffr.n])) != NULL)
                ffr.n++;
        }
        snprintf(fcfg, sizeof fcfg, "%s/face-tiny.cfg", path);
        bench_model(&o, "face-tiny (default model)", fcfg, fweights, fnames, &fr, im, sgemm, &ffr,
                    "face frames (scripts/models.sh; threshold 0.5)", models);
        for (int i = 0; i < ffr.n; i++)
            free(ffr.jpeg[i]);
        prep_mode = BE_PREP_DARKNET;
    } else {
        say("\n== face: skipped, %s / face-tiny.weights / face.names not found ==\n", fcfg);
        cJSON_AddStringToObject(models, "face", "skipped: model files not found");
    }

    rmdir(tmpdir);
    char *json = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/latest.json", o.out);
    FILE *jf = fopen(path, "w");
    if (jf != NULL) {
        fputs(json, jf);
        fputc('\n', jf);
        fclose(jf);
    }
    say("\nwrote %s/latest.{json,txt}\n", o.out);
    free(json);
    cJSON_Delete(root);
    say_to(NULL);
    fclose(txt);
    for (int i = 0; i < fr.n; i++) {
        free(fr.jpeg[i]);
        free(fr.input[i]);
    }
    be_image_destroy(im);
    return 0;
}
