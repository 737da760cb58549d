/* The backend's frame decoding (backend/image.h), one target per format: built as
 * fuzz_image_jpeg (FUZZ_IMAGE_JPEG) and fuzz_image_png (FUZZ_IMAGE_PNG). An input that does
 * not start with the format's signature gets it prepended, so every input reaches that
 * format's decoder. Each input is probed and letterboxed into a small network input (both
 * pre-processing modes) and, when small, annotated, as a backend does with a frame.
 *
 * A JPEG that decodes is also decoded in bands (be_jpeg_decode_split, for 2 and 3 threads)
 * and must give TurboJPEG's very pixels, with the smooth upsampling and with the fast one
 * (whose restart bands read no context rows).
 *
 * One be_image_t serves every input, as in the backend, and after each input a known-good
 * image must still decode to exactly what a fresh decoder made of it: a decoder left broken
 * by a bad frame (issue 11, defect 1) is a crash here. Limits are small enough that the
 * fuzzer cannot run out of memory: 4096 per side, 16 M pixels. */
#include <math.h>
#include <string.h>

#include <turbojpeg.h>

#include "err.h"
#include "fuzz.h"
#include "image.h"
#include "image_good.h"

#if defined(FUZZ_IMAGE_JPEG)
static const uint8_t sig[] = {0xff, 0xd8};
#define GOOD good_jpeg
#elif defined(FUZZ_IMAGE_PNG)
static const uint8_t sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
#define GOOD good_png
#else
#error "define FUZZ_IMAGE_JPEG or FUZZ_IMAGE_PNG"
#endif

#define NET_W 40
#define NET_H 24
#define ANNOTATE_MAX_PIXELS (512 * 512)

static const be_image_limits_t limits = {.max_pixels = 16u << 20, .max_side = 4096};
static be_image_t *im;
static float input[3 * NET_W * NET_H];
static float good_ref[2][3 * NET_W * NET_H]; /* the good image by a fresh decoder, per mode */

static int letterbox(be_image_t *dec, const uint8_t *buf, size_t len, be_prep_t mode, int *w,
                     int *h, int *dw, int *dh)
{
    char err[256];
    err[0] = '\0';
    /* Both decode paths get fuzzed: the exact full-size decode with darknet's placement,
     * the DCT-scaled one with face-api's (each mode keeps its own reference answer). */
    be_decode_t decode = mode == BE_PREP_DARKNET ? BE_DECODE_EXACT : BE_DECODE_FAST;
    int rv = be_image_letterbox(dec, buf, len, mode, decode, NET_W, NET_H, input, w, h, dw, dh, err,
                                sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    return rv;
}

static void teardown(void)
{
    be_image_destroy(im);
    im = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    int w, h, dw, dh;
    FUZZ_CHECK(be_image_create(&im, limits) == 0);
    for (int mode = 0; mode < 2; mode++) {
        FUZZ_CHECK(letterbox(im, GOOD, sizeof GOOD, (be_prep_t)mode, &w, &h, &dw, &dh) == 0);
        memcpy(good_ref[mode], input, sizeof input);
    }
    atexit(teardown);
    return 0;
}

/* Pixels / 255 in [0, 1]; the separable blend may round one ulp above 1. Also false for NaN. */
static void check_input_values(void)
{
    for (size_t i = 0; i < sizeof input / sizeof input[0]; i++)
        FUZZ_CHECK(input[i] >= 0.0f && input[i] <= 1.000001f);
}

static void annotate(const uint8_t *buf, size_t len, int w, int h)
{
    /* Boxes inside the image, as the model hands them over (clamped), at its edges, and
     * classifier records (w = h = 0) with labels the glyph table does not have. */
    static const char long_label[] = "a label that is long enough to run off the right edge "
                                     "of any small image \x01\x7f\xff";
    float fw = (float)w, fh = (float)h;
    proto_det_t dets[] = {
        {.class_id = 1,
         .confidence = 0.9f,
         .x = 0,
         .y = 0,
         .w = fw,
         .h = fh,
         .label = "all",
         .label_len = 3},
        {.class_id = -7,
         .confidence = 1.0f,
         .x = fw - 1,
         .y = fh - 1,
         .w = 1,
         .h = 1,
         .label = long_label,
         .label_len = sizeof long_label - 1},
        {.class_id = 2,
         .confidence = 0.5f,
         .x = fw / 3,
         .y = fh / 3,
         .w = fw / 3,
         .h = fh / 3,
         .label = NULL,
         .label_len = 0},
        {.class_id = 3,
         .confidence = 0.25f,
         .label = long_label,
         .label_len = sizeof long_label - 1},
        {.class_id = 4, .confidence = 0.0f, .label = "cls", .label_len = 3},
    };
    const uint8_t *out = NULL;
    size_t outlen = 0;
    int rv =
        be_image_annotate(im, buf, len, dets, (int)(sizeof dets / sizeof dets[0]), &out, &outlen);
    /* Letterbox decoded this frame (scaled); at full size it may still be corrupt. */
    FUZZ_CHECK(rv == 0 || rv == PROTO_EIMAGE || rv == PROTO_ENOMEM);
    if (rv == 0)
        FUZZ_CHECK(out != NULL && outlen > 2 && out[0] == 0xff && out[1] == 0xd8);
}

#if defined(FUZZ_IMAGE_JPEG)
/* The two-band decode (backend/image_jpeg.c, bands one after the other in this build) against
 * TurboJPEG's, on the same bytes: the same pixels when both decode, and never a frame that
 * TurboJPEG refuses. */
static void check_split(const uint8_t *buf, size_t len, int w, int h)
{
    uint8_t *ref = NULL, *got = malloc((size_t)w * h * 3);
    int rw = 0, rh = 0;
    be_jpeg_split_t split = {0, 0};
    FUZZ_CHECK(got != NULL);
    int rv = be_image_decode_rgb(im, buf, len, &ref, &rw, &rh);
    for (int threads = 2; threads <= 3; threads++) {
        int sv = be_jpeg_decode_split(buf, len, got, w, h, 0, threads, &split);
        FUZZ_CHECK(sv == BE_JPEG_SERIAL || sv == PROTO_EIMAGE || (sv >= 2 && sv <= threads));
        if (sv >= 2) {
            FUZZ_CHECK(rv == 0 && rw == w && rh == h);
            FUZZ_CHECK(memcmp(ref, got, (size_t)w * h * 3) == 0);
        }
    }
    /* face-api's flags: TurboJPEG itself is the reference */
    tjhandle tj = tjInitDecompress();
    FUZZ_CHECK(tj != NULL);
    uint8_t *fast = malloc((size_t)w * h * 3);
    FUZZ_CHECK(fast != NULL);
    int fv = tjDecompress2(tj, buf, (unsigned long)len, fast, w, 0, h, TJPF_RGB,
                           TJFLAG_FASTUPSAMPLE | TJFLAG_STOPONWARNING);
    for (int threads = 2; threads <= 3; threads++) {
        int sv = be_jpeg_decode_split(buf, len, got, w, h, TJFLAG_FASTUPSAMPLE, threads, &split);
        FUZZ_CHECK(sv == BE_JPEG_SERIAL || sv == PROTO_EIMAGE || (sv >= 2 && sv <= threads));
        if (sv >= 2) {
            FUZZ_CHECK(fv == 0);
            FUZZ_CHECK(memcmp(fast, got, (size_t)w * h * 3) == 0);
        }
    }
    tjDestroy(tj);
    free(fast);
    free(ref);
    free(got);
}
#endif

static void fuzz_frame(const uint8_t *buf, size_t len)
{
    int pw = -1, ph = -1;
    int prv = be_image_probe(im, buf, len, &pw, &ph);
    FUZZ_CHECK(prv == 0 || prv == PROTO_EIMAGE || prv == PROTO_EIMGSIZE);
    if (prv == 0)
        FUZZ_CHECK(pw > 0 && ph > 0 && pw <= limits.max_side && ph <= limits.max_side &&
                   (uint64_t)pw * (uint64_t)ph <= limits.max_pixels);
    for (int mode = 0; mode < 2; mode++) {
        int w = 0, h = 0, dw = 0, dh = 0;
        int rv = letterbox(im, buf, len, (be_prep_t)mode, &w, &h, &dw, &dh);
        FUZZ_CHECK(rv == 0 || rv == PROTO_EIMAGE || rv == PROTO_EIMGSIZE || rv == PROTO_ENOMEM);
        /* The probe decides what is refused before decoding; decoding may refuse more. */
        if (prv != 0)
            FUZZ_CHECK(rv == prv);
        if (rv != 0)
            continue;
        FUZZ_CHECK(w == pw && h == ph);
        FUZZ_CHECK(dw > 0 && dh > 0 && dw <= w && dh <= h);
        check_input_values();
        if (mode == 0 && (uint64_t)w * (uint64_t)h <= ANNOTATE_MAX_PIXELS) {
            annotate(buf, len, w, h);
#if defined(FUZZ_IMAGE_JPEG)
            check_split(buf, len, w, h);
#endif
        }
    }
}

/* The decoder still works, and gives exactly what a fresh one gave. */
static void check_good_still_decodes(void)
{
    for (int mode = 0; mode < 2; mode++) {
        int w, h, dw, dh;
        int rv = letterbox(im, GOOD, sizeof GOOD, (be_prep_t)mode, &w, &h, &dw, &dh);
        if (rv != 0)
            fprintf(stderr, "the good image no longer decodes after this input: %s\n",
                    proto_strerror(rv));
        FUZZ_CHECK(rv == 0);
        FUZZ_CHECK(memcmp(input, good_ref[mode], sizeof input) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int has_sig = size >= sizeof sig && memcmp(data, sig, sizeof sig) == 0;
    size_t len = has_sig ? size : size + sizeof sig;
    uint8_t *buf = malloc(len); /* exact size: ASan sees any over-read */
    FUZZ_CHECK(buf != NULL);
    if (has_sig) {
        memcpy(buf, data, size);
    } else {
        memcpy(buf, sig, sizeof sig);
        if (size > 0)
            memcpy(buf + sizeof sig, data, size);
    }
    fuzz_frame(buf, len);
    free(buf);
    check_good_still_decodes();
    return 0;
}
