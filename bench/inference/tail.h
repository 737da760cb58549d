/* What the oneDNN engine's padding shortcut (backend/dnnl_tail.c) and its first convolution +
 * max-pool passes (backend/convpool.h) save: the network with each and without, in turn frame by
 * frame, on the frames given. Main thread only. */
#ifndef FG_BENCH_TAIL_H
#define FG_BENCH_TAIL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "darknet.h"
#include "image.h"

/* Times `net` on the oneDNN engine at `threads`, with and without the shortcut, `reps` rounds
 * over two sets of frames: `photos` (network inputs already made, n_photos) and the JPEGs
 * jpeg[0..n) made into inputs here with `prep` by `im`, checking that both engines give the
 * same output bit for bit. One line per set (say), and "padding_shortcut" in m. */
void tail_report(network *net, int threads, float *const *photos, int n_photos, be_image_t *im,
                 be_prep_t prep, unsigned char *const *jpeg, const size_t *len, int n,
                 const char *what, int reps, cJSON *m);

/* Times `net` on the oneDNN engine at `threads` with its convolution + max-pool pairs (with the
 * depthwise 3x3 before a 1x1 where the engine takes it) as one be_convpool pass each and as
 * separate steps, `reps` rounds over `photos` (n network inputs), and how far the outputs are
 * apart. One line (say) and "convpool" in m ("pairs": the passes); nothing when none fits. */
void convpool_report(network *net, int threads, float *const *photos, int n, int reps, cJSON *m);

#endif
