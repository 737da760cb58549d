/* A JPEG decoded in bands of rows at once, on the calling thread's OpenMP team (the one
 * oneDNN runs the network on, so on a backend with threads > 1 the other cores no longer
 * wait through the decode, the one serial step left in front of the network).
 *
 * libjpeg cannot start in the middle of a file by itself, so a band is reached one of two ways:
 * - With restart markers (DRI: some encoders write one per row of blocks, and 6 of
 *   the 7 darknet photos have them), the entropy-coded data can be entered at a marker. A
 *   band gets its own small JPEG: the file's header with the band's height in its SOF,
 *   then the file's data from the marker that starts the iMCU row above the band (the smooth
 *   upsampler's context; with TJFLAG_FASTUPSAMPLE, the band's own first row), its markers
 *   renumbered from RST0 as a decoder expects. Up to `threads` bands (at most BANDS_MAX),
 *   each decoding only its own rows (and the context rows).
 * - Without, two bands: the bottom band is reached with jpeg_skip_scanlines(), which still
 *   Huffman-decodes the rows it skips (about half the decode's time on the darknet photos)
 *   but does no IDCT, upsampling or colour conversion for them.
 * The calling thread takes the last band (the copy, or the skip), while the team's other
 * threads (which start later) take the others; with two bands *split, the top band's share,
 * is moved towards the one that makes both end together, from when they did.
 *
 * The pixels are TurboJPEG's: same IDCT, upsampling and scaling choices from the same flags,
 * a band's rows get the same context rows as in one decode, and libjpeg-turbo skips to a row
 * exactly (test_be_image compares every byte with tjDecompress2 for several files,
 * subsamplings, restart intervals, flags, scales, splits and thread counts). Every byte and
 * marker of the scan is read by some band, and warnings stop the decode as
 * TJFLAG_STOPONWARNING does, so a damaged file fails here too. Functions on caller-owned
 * buffers; no state. */
#include "image.h"

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#include <turbojpeg.h>

#include "err.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SPLIT_LO 0.15f
#define SPLIT_HI 0.85f
#define SPLIT_START 0.5f
#define BANDS_MAX 8

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jerr_t;

static void on_error(j_common_ptr c)
{
    longjmp(((jerr_t *)c->err)->jb, 1);
}

static void on_message(j_common_ptr c, int level)
{
    if (level < 0) /* a warning: corrupt or truncated data (TJFLAG_STOPONWARNING) */
        longjmp(((jerr_t *)c->err)->jb, 1);
}

enum { BAND_OK = 0, BAND_SERIAL = 1, BAND_ERROR = 2 };

/* What the whole file's header says, for planning bands (plan_read). */
typedef struct {
    unsigned num, denom;   /* the scaling factor that decodes to sw x sh */
    size_t hdr;            /* header bytes: the scan's data starts here */
    size_t sof_y;          /* offset of the SOF's 16-bit height */
    unsigned height;       /* the SOF's height */
    unsigned ri;           /* MCUs per restart interval (0: no restart markers) */
    unsigned mcus_per_row; /* MCUs per iMCU row */
    int rows_out;          /* output rows per iMCU row (the last may have fewer) */
    int rows_src;          /* source rows per iMCU row */
} plan_t;

typedef struct {
    const uint8_t *buf; /* the file, or for a restart band the start of its first interval */
    size_t len;
    uint8_t *rgb; /* where this band's first row goes */
    int sw, sh;   /* the decoded size of the stream this band reads */
    int flags;
    unsigned num, denom;
    int skip; /* rows of that stream to skip first */
    int rows; /* rows to write after them */
    /* restart band: its stream is hdr bytes of `file` with the SOF's height set to `height`,
     * then buf[0..len) with RSTn renumbered as n - first (mod 8) */
    const uint8_t *file;
    const plan_t *plan;
    unsigned height, first;
    int status;
    double end; /* now_ms() when it ended */
} band_t;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The header checks and the choices tjDecompress2 makes for these flags and this scale.
 * BAND_OK, or BAND_SERIAL for what only TurboJPEG's own path takes (several scans, CMYK). */
static int setup(struct jpeg_decompress_struct *c, int flags, unsigned num, unsigned denom)
{
    if (jpeg_read_header(c, TRUE) != JPEG_HEADER_OK || jpeg_has_multiple_scans(c) ||
        c->progressive_mode || c->arith_code)
        return BAND_SERIAL;
    if (c->jpeg_color_space != JCS_YCbCr && c->jpeg_color_space != JCS_GRAYSCALE &&
        c->jpeg_color_space != JCS_RGB)
        return BAND_SERIAL;
    c->out_color_space = JCS_EXT_RGB;
    if (flags & TJFLAG_FASTUPSAMPLE)
        c->do_fancy_upsampling = FALSE;
    if (flags & TJFLAG_FASTDCT)
        c->dct_method = JDCT_FASTEST;
    c->scale_num = num;
    c->scale_denom = denom;
    jpeg_calc_output_dimensions(c);
    return c->output_components == 3 ? BAND_OK : BAND_SERIAL;
}

/* Walks the header's segments (as libjpeg read them: it stopped after the SOS at `hdr`) for
 * the SOF's height field. 0 if the walk does not land on the SOS's end. */
static size_t sof_height_at(const uint8_t *buf, size_t hdr)
{
    size_t pos = 2, sof = 0; /* after SOI */
    while (pos + 4 <= hdr) {
        if (buf[pos] != 0xff)
            return 0;
        while (pos + 4 <= hdr && buf[pos + 1] == 0xff) /* fill bytes */
            pos++;
        if (pos + 4 > hdr)
            return 0;
        uint8_t m = buf[pos + 1];
        size_t seg = (size_t)buf[pos + 2] << 8 | buf[pos + 3];
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            if (sof != 0 || seg < 8)
                return 0;
            sof = pos + 5;
        }
        pos += 2 + seg;
        if (m == 0xda)
            return pos == hdr ? sof : 0;
    }
    return 0;
}

/* Reads the file's header once: the scale for sw x sh, and what restart bands need (ri = 0
 * when they cannot be used). BAND_OK, BAND_SERIAL or BAND_ERROR. */
static int plan_read(const uint8_t *buf, size_t len, int sw, int sh, int flags, plan_t *p)
{
    struct jpeg_decompress_struct c;
    jerr_t e;
    int status;
    memset(&c, 0, sizeof c);
    memset(p, 0, sizeof *p);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&c);
        return BAND_ERROR;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, buf, (unsigned long)len);
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    status = setup(&c, flags, 1, 1);
    for (int i = 0; i < n && status == BAND_OK && p->denom == 0; i++)
        if (TJSCALED((int)c.image_width, sf[i]) == sw &&
            TJSCALED((int)c.image_height, sf[i]) == sh) {
            p->num = (unsigned)sf[i].num;
            p->denom = (unsigned)sf[i].denom;
        }
    if (status == BAND_OK && p->denom == 0)
        status = BAND_SERIAL; /* a size TurboJPEG would not decode to */
    if (status == BAND_OK) {
        c.scale_num = p->num;
        c.scale_denom = p->denom;
        jpeg_calc_output_dimensions(&c);
        if ((int)c.output_width != sw || (int)c.output_height != sh)
            status = BAND_SERIAL;
    }
    if (status == BAND_OK && c.restart_interval > 0) {
        /* Restart bands only where an iMCU row is one row of MCUs: an interleaved scan of
         * every component, or one component sampled 1x1. */
        const jpeg_component_info *k = &c.comp_info[0];
        int interleaved = c.comps_in_scan == c.num_components && c.comps_in_scan > 1;
        int single = c.comps_in_scan == 1 && c.num_components == 1 && k->h_samp_factor == 1 &&
                     k->v_samp_factor == 1;
        p->hdr = len - c.src->bytes_in_buffer;
        p->sof_y = sof_height_at(buf, p->hdr);
        if ((interleaved || single) && p->sof_y != 0 &&
            ((unsigned)buf[p->sof_y] << 8 | buf[p->sof_y + 1]) == c.image_height) {
            int hb = c.max_h_samp_factor * DCTSIZE;
            p->ri = c.restart_interval;
            p->mcus_per_row = (c.image_width + (unsigned)hb - 1) / (unsigned)hb;
            p->rows_out = c.max_v_samp_factor * c.min_DCT_scaled_size;
            p->rows_src = c.max_v_samp_factor * DCTSIZE;
            p->height = c.image_height;
        }
    }
    jpeg_destroy_decompress(&c);
    return status;
}

/* The next marker from buf[*pos] on in entropy-coded data: a data byte 0xff is always
 * followed by 0x00, and fill 0xff bytes may precede a marker, so markers are found without
 * decoding. Its code, *pos just past it; -1 when the data ends first. */
static int next_marker(const uint8_t *buf, size_t len, size_t *pos)
{
    for (;;) {
        const uint8_t *p = memchr(buf + *pos, 0xff, len - *pos);
        if (p == NULL)
            return -1;
        size_t q = (size_t)(p - buf) + 1;
        while (q < len && buf[q] == 0xff)
            q++;
        if (q >= len)
            return -1;
        *pos = q + 1;
        if (buf[q] != 0x00)
            return buf[q];
    }
}

/* Scans the entropy-coded data from buf[pos] for the restart markers that start intervals
 * want[0..n) (any order, n <= 2 * BANDS_MAX), each marker's number checked: at[i] is the
 * offset just past the want[i]'th marker (interval 0 starts at pos). -1 if one is missing or
 * out of sequence. Markers are byte-aligned and a data byte 0xff is always followed by 0x00
 * (fill 0xff bytes may precede a marker), so this is exact without decoding. */
static int find_intervals(const uint8_t *buf, size_t len, size_t pos, const unsigned *want,
                          size_t *at, int n)
{
    int ord[2 * BANDS_MAX]; /* want's indices, ascending by interval */
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && want[ord[j - 1]] > want[i]; j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
    unsigned k = 0; /* markers passed */
    int i = 0;
    while (i < n && want[ord[i]] == 0)
        at[ord[i++]] = pos;
    while (i < n) {
        int m = next_marker(buf, len, &pos);
        if (m < 0 || m != 0xd0 + (int)(k & 7))
            return -1; /* another marker, or out of sequence: left to the one-thread decode */
        k++;
        while (i < n && want[ord[i]] == k)
            at[ord[i++]] = pos;
    }
    return 0;
}

/* A restart band's own JPEG (malloc'd, *olen bytes), or NULL. */
static uint8_t *band_stream(const band_t *b, size_t *olen)
{
    const plan_t *p = b->plan;
    size_t n = p->hdr + b->len;
    uint8_t *s = malloc(n);
    if (s == NULL)
        return NULL;
    memcpy(s, b->file, p->hdr);
    s[p->sof_y] = (uint8_t)(b->height >> 8);
    s[p->sof_y + 1] = (uint8_t)b->height;
    uint8_t *d = s + p->hdr;
    memcpy(d, b->buf, b->len);
    /* RSTn -> RST(n - first): what a decoder expects from a scan that starts here. A marker
     * out of sequence stays out of sequence, and the decode stops at it. */
    size_t pos = 0;
    for (int m; (m = next_marker(d, b->len, &pos)) >= 0;)
        if (m >= 0xd0 && m <= 0xd7)
            d[pos - 1] = (uint8_t)(0xd0 + ((m - 0xd0 - (int)b->first) & 7));
    *olen = n;
    return s;
}

/* Decodes src[0..len) as band b says. Apart from band_run: nothing here lives across the
 * longjmp but what libjpeg owns. */
static void band_decode(band_t *b, const uint8_t *src, size_t len)
{
    struct jpeg_decompress_struct c;
    jerr_t e;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    if (setjmp(e.jb)) {
        b->status = BAND_ERROR;
        jpeg_destroy_decompress(&c);
        return;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, src, (unsigned long)len);
    b->status = setup(&c, b->flags, b->num, b->denom);
    if (b->status == BAND_OK && ((int)c.output_width != b->sw || (int)c.output_height != b->sh))
        b->status = BAND_SERIAL;
    if (b->status == BAND_OK) {
        jpeg_start_decompress(&c);
        if (b->skip > 0 && jpeg_skip_scanlines(&c, (JDIMENSION)b->skip) != (JDIMENSION)b->skip)
            b->status = BAND_ERROR;
        int end = b->skip + b->rows;
        while (b->status == BAND_OK && (int)c.output_scanline < end) {
            JSAMPROW rows[16];
            int n = end - (int)c.output_scanline;
            n = n > 16 ? 16 : n;
            for (int i = 0; i < n; i++)
                rows[i] = b->rgb + ((size_t)c.output_scanline - (size_t)b->skip + (size_t)i) *
                                       (size_t)b->sw * 3;
            if (jpeg_read_scanlines(&c, rows, (JDIMENSION)n) == 0)
                b->status = BAND_ERROR;
        }
        /* The last band reads to the end, so what follows the scan is checked as TurboJPEG
         * checks it; the others stop at their last row. */
        if (b->status == BAND_OK && end == b->sh)
            jpeg_finish_decompress(&c);
    }
    jpeg_destroy_decompress(&c);
}

static void band_run(band_t *b)
{
    if (b->plan == NULL) {
        band_decode(b, b->buf, b->len);
    } else {
        size_t len = 0;
        uint8_t *own = band_stream(b, &len);
        if (own != NULL)
            band_decode(b, own, len);
        else
            b->status = BAND_ERROR;
        free(own);
    }
    b->end = now_ms();
}

/* Where the entropy-coded data of each iMCU row that starts a restart interval begins
 * (off[c], c < imcu; SIZE_MAX for the others), from one scan of the markers (as
 * find_intervals). 0, or -1 if a marker is out of sequence. */
static int row_offsets(const uint8_t *buf, size_t len, const plan_t *p, int imcu, size_t *off)
{
    for (int c = 0; c < imcu; c++)
        off[c] = SIZE_MAX;
    off[0] = p->hdr;
    size_t pos = p->hdr;
    for (unsigned long k = 1;; k++) { /* interval k starts after marker k - 1 */
        int m = next_marker(buf, len, &pos);
        if (m < 0xd0 || m > 0xd7)
            return 0; /* the data's end, or the scan's (EOI, or a marker after it) */
        if (m != 0xd0 + (int)((k - 1) & 7))
            return -1;
        unsigned long mcu = k * p->ri;
        if (mcu % p->mcus_per_row == 0 && mcu / p->mcus_per_row < (unsigned long)imcu)
            off[mcu / p->mcus_per_row] = pos;
    }
}

/* The work of decoding a band, as estimated from what it reads and writes: the entropy-coded
 * bytes (Huffman decoding, most of the time) and the pixels (IDCT, upsampling, colour). On the
 * darknet photos (libjpeg-turbo 2.1, AMD Zen 4) a byte took ~9 ns and a pixel ~1.8. */
#define WORK_PER_PIXEL 0.2

/* The iMCU rows of context a restart band decodes above and below its own: one for libjpeg's
 * smooth ("fancy") upsampling, which blends chroma rows across the boundary; none for the fast
 * upsampling (face-api's). */
static int context_rows(int flags)
{
    return flags & TJFLAG_FASTUPSAMPLE ? 0 : 1;
}

/* The iMCU rows r[0] = 0 < r[1] < ... < r[n] = imcu where restart bands start: at rows whose
 * first row to decode (the row itself, or the context row above it) starts an interval, each
 * band given an equal share of the decode's estimated work (rows, if the markers cannot be
 * read for it), the first `f` of it when there are two. Returns n (< 2: none possible). */
static int restart_rows(const uint8_t *buf, size_t len, const plan_t *p, int sw, int sh, int flags,
                        int nb, float f, int *r)
{
    int imcu = (sh + p->rows_out - 1) / p->rows_out, n = 0;
    size_t *off = malloc((size_t)imcu * sizeof *off);
    if (off != NULL && row_offsets(buf, len, p, imcu, off) != 0) {
        free(off);
        off = NULL;
    }
    const int ctx = context_rows(flags);
    const double px_row = WORK_PER_PIXEL * p->rows_out * sw;
    const double total = (double)(len - p->hdr) + px_row * imcu;
    r[n++] = 0;
    for (int k = 1; k < nb; k++) {
        float share = nb == 2 ? f : (float)k / (float)nb;
        int want = (int)((float)imcu * share + 0.5f), best = -1;
        /* the row whose work above it is nearest the share (the row its band starts at, itself
         * or its context, starts an interval, so its offset is known) */
        double best_d = 0;
        for (int c = r[n - 1] + 1; off != NULL && c < imcu; c++)
            if (off[c - ctx] != SIZE_MAX) {
                double d = fabs((double)(off[c - ctx] - p->hdr) + px_row * c - total * share);
                if (best < 0 || d < best_d)
                    best = c, best_d = d;
            }
        want = best > 0 ? best : want;
        best = -1;
        /* the nearest row r > the previous boundary, r < imcu, with (r - ctx)'s first MCU
         * starting an interval */
        for (int d = 0; d < imcu && best < 0; d++)
            for (int s = 0; s < 2 && best < 0; s++) {
                int c = s ? want + d : want - d;
                if (c > r[n - 1] && c >= 1 && c < imcu &&
                    (unsigned long)(c - ctx) * p->mcus_per_row % p->ri == 0)
                    best = c;
            }
        if (best > 0 && best > r[n - 1])
            r[n++] = best;
    }
    r[n] = imcu;
    free(off);
    return n;
}

/* Bands at restart markers (restart_rows). Returns the number of bands (< 2: none possible). */
static int plan_restart(const uint8_t *buf, size_t len, const plan_t *p, int sw, int sh, int flags,
                        uint8_t *rgb, int nb, float f, band_t *b)
{
    int imcu = (sh + p->rows_out - 1) / p->rows_out, r[BANDS_MAX + 1];
    const int ctx = context_rows(flags);
    int n = restart_rows(buf, len, p, sw, sh, flags, nb, f, r);
    if (n < 2)
        return 0;
    /* Interval numbers: band k (k >= 1) starts at row r[k] - ctx's first interval and, unless
     * it is the last, ends after the interval holding row r[k + 1] - 1 + ctx's last MCU (its
     * last row, or its lower context), marker included. */
    unsigned want[2 * BANDS_MAX];
    size_t at[2 * BANDS_MAX];
    int nw = 0;
    for (int k = 1; k < n; k++) {
        want[nw++] = (unsigned)((unsigned long)(r[k] - ctx) * p->mcus_per_row / p->ri);
        if (k + 1 < n && r[k + 1] + ctx < imcu) {
            unsigned long last = (unsigned long)(r[k + 1] + ctx) * p->mcus_per_row - 1;
            want[nw++] = (unsigned)(last / p->ri + 1);
        }
    }
    if (find_intervals(buf, len, p->hdr, want, at, nw) != 0)
        return 0;
    for (int k = 0, w = 0; k < n; k++) {
        band_t *x = &b[k];
        memset(x, 0, sizeof *x);
        x->sw = sw;
        x->flags = flags;
        x->num = p->num;
        x->denom = p->denom;
        x->rgb = rgb + (size_t)r[k] * (size_t)p->rows_out * (size_t)sw * 3;
        int y0 = r[k] * p->rows_out, y1 = r[k + 1] * p->rows_out;
        y1 = y1 > sh ? sh : y1;
        x->rows = y1 - y0;
        x->status = BAND_SERIAL;
        if (k == 0) { /* the file itself */
            x->buf = buf;
            x->len = len;
            x->sh = sh;
            continue;
        }
        x->first = want[w];
        size_t from = at[w++], to = k + 1 < n && r[k + 1] + ctx < imcu ? at[w++] : len;
        x->file = buf;
        x->plan = p;
        x->buf = buf + from;
        x->len = to - from;
        x->height = p->height - (unsigned)(r[k] - ctx) * (unsigned)p->rows_src;
        x->skip = ctx * p->rows_out;
        x->sh = sh - (r[k] - ctx) * p->rows_out;
    }
    return n;
}

int be_jpeg_decode_split(const uint8_t *buf, size_t len, uint8_t *rgb, int sw, int sh, int flags,
                         int threads, be_jpeg_split_t *split)
{
    if (threads < 2 || sh < 32) /* two bands of 16 rows at least */
        return BE_JPEG_SERIAL;
    plan_t plan;
    int st = plan_read(buf, len, sw, sh, flags, &plan);
    if (st != BAND_OK)
        return st == BAND_ERROR ? PROTO_EIMAGE : BE_JPEG_SERIAL;
    float *learnt = &split->restart, f = 0;
    band_t b[BANDS_MAX];
    int n = 0;
    if (plan.ri > 0) {
        f = *learnt < SPLIT_LO || *learnt > SPLIT_HI ? SPLIT_START : *learnt;
        n = plan_restart(buf, len, &plan, sw, sh, flags, rgb,
                         threads > BANDS_MAX ? BANDS_MAX : threads, f, b);
    }
    if (n < 2) {
        learnt = &split->skip;
        f = *learnt < SPLIT_LO || *learnt > SPLIT_HI ? SPLIT_START : *learnt;
        /* on a 16-row boundary: an iMCU row at full size for 2x2 subsampling, several at
         * 1/2 .. */
        int mid = ((int)((float)sh * f) + 8) / 16 * 16;
        mid = mid < 16 ? 16 : mid > sh - 16 ? sh - 16 : mid;
        n = 2;
        b[0] = (band_t){.buf = buf,
                        .len = len,
                        .rgb = rgb,
                        .sw = sw,
                        .sh = sh,
                        .flags = flags,
                        .num = plan.num,
                        .denom = plan.denom,
                        .rows = mid,
                        .status = BAND_SERIAL};
        b[1] = b[0];
        b[1].rgb = rgb + (size_t)mid * (size_t)sw * 3;
        b[1].skip = mid;
        b[1].rows = sh - mid;
    }
    int team = 1;
    double t0 = now_ms();
#ifdef _OPENMP
#pragma omp parallel num_threads(n)
    {
        /* The others start late (woken from a futex: 0.1-0.5 ms on this kind of VM), so the
         * calling thread takes the last band, the one that copies or skips first. */
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        if (id == 0)
            team = nt;
        for (int k = id; k < n; k += nt)
            band_run(&b[k == 0 ? n - 1 : k - 1]);
    }
#else
    /* Without OpenMP (the clang fuzz build) the bands run one after the other: slower than
     * TurboJPEG alone, but the same code, so the fuzzer checks it against TurboJPEG. */
    for (int k = 0; k < n; k++)
        band_run(&b[k]);
#endif
    int serial = 0;
    for (int k = 0; k < n; k++) {
        if (b[k].status == BAND_ERROR)
            return PROTO_EIMAGE;
        serial |= b[k].status != BAND_OK;
    }
    if (serial)
        return BE_JPEG_SERIAL;
    double t_top = b[0].end - t0, t_bottom = b[n - 1].end - t0;
    if (n == 2 && team >= 2 && t_top + t_bottom > 0) {
        /* Newton-like step, halved: the top band's time grows with f, the bottom's falls
         * about as fast, so (t_bottom - t_top) / (t_top + t_bottom) is near the change of f
         * that makes both end together, start delay included. */
        f += 0.5f * (float)((t_bottom - t_top) / (t_top + t_bottom));
        *learnt = f < SPLIT_LO ? SPLIT_LO : f > SPLIT_HI ? SPLIT_HI : f;
    }
    return n;
}

int be_jpeg_band_rows(const uint8_t *buf, size_t len, int sw, int sh, int flags, int bands,
                      float share, int *first)
{
    plan_t plan;
    int r[BANDS_MAX + 1];
    if (bands < 2 || bands > BANDS_MAX || plan_read(buf, len, sw, sh, flags, &plan) != BAND_OK ||
        plan.ri == 0)
        return 0;
    int n = restart_rows(buf, len, &plan, sw, sh, flags, bands, share, r);
    for (int k = 0; k < n; k++)
        first[k] = r[k] * plan.rows_out;
    return n < 2 ? 0 : n;
}

int be_jpeg_split_worth(int sw, int sh)
{
    /* Below this many rows or pixels the second thread's wake-up and header parse are not
     * paid back. */
    if (sh < 64 || (size_t)sw * (size_t)sh < 256 * 256)
        return 0;
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
