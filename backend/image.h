/* Frame decoding and pre-processing for the network: libjpeg-turbo decode (at full size as the
 * model's reference pipeline does, or, as an opt-in speed option, DCT-scaled straight to near
 * the network size) or libspng decode, and one fused letterbox + bilinear resize + normalise
 * pass into the network's CHW float input; plus the annotated-JPEG output.
 * A be_image_t keeps its buffers between frames and is not thread-safe: one per serving
 * thread (the backend has exactly one). */
#ifndef BE_IMAGE_H
#define BE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

typedef struct be_image be_image_t;

/* How a frame is fitted into the network input: a per-model setting, because a model only
 * gives the right answers on inputs prepared the way it was trained. */
typedef enum {
    BE_PREP_DARKNET = 0, /* darknet's letterbox_image: centred on 0.5 grey, corner-aligned */
    BE_PREP_FACEAPI = 1, /* face-api: top-left, zero padding bottom/right, half-open resize */
} be_prep_t;

/* "darknet" / "faceapi" -> mode; -1 for anything else. */
int be_prep_parse(const char *s);
const char *be_prep_name(be_prep_t mode);

/* How a JPEG is decoded: a per-model setting, because it trades the reference model's
 * answers for time. PNG is always decoded at full size (it is lossless either way). */
typedef enum {
    /* The reference pipeline's pixels: full-size decode with the accurate integer IDCT and the
     * chroma upsampling of the model's reference decoder (darknet reads JPEGs through OpenCV,
     * i.e. libjpeg's defaults: smooth "fancy" upsampling; face-api in node through jpeg-js,
     * which replicates chroma samples), then the model's own resize from full size. Equal to
     * the reference up to the decoders' own rounding (IDCT, colour conversion: +-1 level). */
    BE_DECODE_EXACT = 0,
    /* DCT scaling to the smallest size that still covers the network input (1/8 .. 1), fast
     * IDCT, then the resize: much less decode work on large frames, but the network sees
     * different pixels (an area-averaged image, not the bilinear samples of a full-size one),
     * so near-threshold answers move (bench/inference reports by how much). */
    BE_DECODE_FAST = 1,
} be_decode_t;

/* "exact" / "fast" -> mode; -1 for anything else. */
int be_decode_parse(const char *s);
const char *be_decode_name(be_decode_t mode);

typedef struct {
    uint64_t max_pixels; /* width * height above this: PROTO_EIMGSIZE */
    int max_side;        /* either side above this: PROTO_EIMGSIZE */
} be_image_limits_t;

/* Buffers a be_image_t keeps between frames are at most this large: a frame that needed more
 * (a large PNG, an annotated full-size frame) has them freed and the heap trimmed after it. */
#define BE_IMAGE_KEEP_MAX ((size_t)32 << 20)

/* Allocates a decoder with its own turbojpeg handles. Returns 0 or PROTO_ENOMEM. The caller
 * owns *out and releases it with be_image_destroy(). */
int be_image_create(be_image_t **out, be_image_limits_t limits);
void be_image_destroy(be_image_t *im);

/* How many threads the decode and the resize into the network input may use (default 1):
 * the calling thread's OpenMP team, the one oneDNN runs the network on
 * (be_model_opts_t.threads). With 2 or more, a single-scan JPEG is decoded in bands at
 * once (be_jpeg_decode_split); a PNG or progressive JPEG stays on the calling thread. The
 * pixels and the input's values are the same for every count. */
void be_image_set_threads(be_image_t *im, int threads);

/* Bytes of decode and output buffers `im` holds between calls (for tests and metrics). */
size_t be_image_retained(const be_image_t *im);

/* Reads only the header of buf[0..len) (JPEG or PNG): the original size, or PROTO_EEMPTY
 * (len 0), PROTO_EFORMAT (neither JPEG nor PNG), PROTO_EIMAGE (a JPEG/PNG signature but no
 * valid header), PROTO_EIMGSIZE (over the limits). The pixels are not touched, so a
 * decompression bomb costs nothing. */
int be_image_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h);

/* darknet's letterbox geometry: the size (*nw x *nh) an image of w x h is resized to inside
 * net_w x net_h, aspect kept (it is then centred on 0.5 grey). Pure function. */
void be_image_letterbox_size(int w, int h, int net_w, int net_h, int *nw, int *nh);

/* The size libjpeg-turbo will decode a w x h JPEG to so that it still covers want_w x want_h:
 * the smallest of the DCT scaling factors 1/8, 1/4, 1/2 that does (the ones faster than a
 * full-size decode), else full size. Pure function. */
void be_image_scaled_size(int w, int h, int want_w, int want_h, int *sw, int *sh);

/* Decodes buf the way `decode` says (a PNG always at full size) and fits it into `input`
 * (3 x net_h x net_w floats in [0,1], CHW, RGB) the way `mode` says.
 * Stores the ORIGINAL size in *w, *h and, if dw/dh are not NULL, the decoded size. Returns 0
 * or the errors of be_image_probe (PROTO_EIMAGE also for corrupt or truncated data, for any
 * libjpeg warning, and for a JPEG of more than 100 scans: a progressive "scan bomb") or
 * PROTO_ENOMEM; `err` (may be NULL) gets the decoder's message. After any error `im` is as
 * good as new for the next frame. Caller's thread; `input` is caller-owned. */
int be_image_letterbox(be_image_t *im, const uint8_t *buf, size_t len, be_prep_t mode,
                       be_decode_t decode, int net_w, int net_h, float *input, int *w, int *h,
                       int *dw, int *dh, char *err, size_t errcap);

/* The fused pass alone, from packed RGB pixels: the same sampling as darknet's
 * resize_image (corner-aligned bilinear), so the network sees what darknet would feed it.
 * `threads` as be_image_set_threads (the output does not depend on it). */
void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input,
                            int threads);

/* face-api's pre-processing from packed RGB: zero-padded at the bottom/right to a square,
 * resized with tf's resizeBilinear (no align-corners, no half-pixel centres), pixel / 255. */
void be_image_faceapi_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input,
                          int threads);

/* face-api's placement: boxes relative to the network input (centre x/y, w/h in [0,1], as
 * darknet returns them for w, h = the network's) -> top-left x/y and w/h in pixels of the
 * original w x h image. Pure function. */
void be_image_faceapi_unmap(int w, int h, int net_w, int net_h, float *x, float *y, float *bw,
                            float *bh);

/* Decodes buf to packed RGB at its full size (malloc'd, the caller frees), as darknet's own
 * loader would (BE_DECODE_EXACT's pixels for BE_PREP_DARKNET). For tests. */
int be_image_decode_rgb(be_image_t *im, const uint8_t *buf, size_t len, uint8_t **rgb, int *w,
                        int *h);

/* be_jpeg_decode_split()'s answer for a file it leaves to TurboJPEG's one-thread decode. */
#define BE_JPEG_SERIAL 1

/* What be_jpeg_decode_split learns from one decode for the next, kept per caller: the top
 * band's share when there are two, of the estimated work at restart markers, of the rows for a
 * skip (anything outside [0.15, 0.85] starts at 0.5). Apart, because a skip's bands need
 * another split (its second band also Huffman-decodes the first's rows). */
typedef struct {
    float restart, skip;
} be_jpeg_split_t;

/* Decodes the JPEG buf[0..len) to packed RGB (sw x sh, one of TurboJPEG's scaled sizes) in
 * bands of rows at once on the calling thread's OpenMP team, with the pixels tjDecompress2
 * gives for the same `flags` (TJFLAG_FASTUPSAMPLE, TJFLAG_FASTDCT). A file with restart
 * markers is cut into up to `threads` bands (at most 8) that each decode only their rows,
 * each with an equal share of the work estimated from the bytes between its markers and its
 * pixels; any other into two, the second skipping (still Huffman-decoding) the first's rows.
 * *split is updated after each two-band decode to even out the bands' times (the other
 * thread starts later). Returns the number of bands (>= 2) it decoded in; BE_JPEG_SERIAL with
 * nothing decoded when threads < 2, sh < 32, or the file is not a single-scan
 * YCbCr/grey/RGB JPEG of that size (progressive, arithmetic, CMYK); or PROTO_EIMAGE on any
 * libjpeg error or warning (rgb partly written: decode it again with TurboJPEG for its
 * message). Caller's thread and caller's buffers (image_jpeg.c). Built without OpenMP, the
 * bands run one after the other on the caller's thread. */
int be_jpeg_decode_split(const uint8_t *buf, size_t len, uint8_t *rgb, int sw, int sh, int flags,
                         int threads, be_jpeg_split_t *split);

/* Tests: the first output row of each of the `bands` restart bands be_jpeg_decode_split would
 * cut this file into with the top band's learnt share `share` (first[0..n), n <= 8). Returns
 * n (>= 2), or 0 for a file it would not cut at restart markers. Pure function. */
int be_jpeg_band_rows(const uint8_t *buf, size_t len, int sw, int sh, int flags, int bands,
                      float share, int *first);

/* 1 if be_jpeg_decode_split() is worth calling for a sw x sh decode: its bands run at once
 * (built with OpenMP) and the image is large enough to pay for the second thread; else 0. */
int be_jpeg_split_worth(int sw, int sh);

/* Decodes buf at full size, draws the n records and re-encodes it as a JPEG (quality 85):
 * a box (w, h > 0, original-image pixels) as a coloured rectangle with "label 87%" on it; a
 * classifier's class (w = h = 0) as "label 87%" lines at the top-left, one per record. The
 * glyphs are darknet's own (data/labels under FG_DARKNET_SHARE), loaded on first use; without
 * them only the rectangles are drawn. *out points into storage owned by `im`, valid until
 * the next call on `im`. Returns 0 or the decode errors / PROTO_ENOMEM. */
int be_image_annotate(be_image_t *im, const uint8_t *buf, size_t len, const proto_det_t *dets,
                      int n, const uint8_t **out, size_t *outlen);

#endif
