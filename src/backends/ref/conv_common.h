/* conv_common.h — what the reference Conv, ConvTranspose, ConvInteger and QLinearConv kernels
 * share (private to src/backends/ref/{conv,conv_transpose,qconv}.c): the resolved window lifted
 * to 3-D (leading spatial dims of size 1), the walk over kernel taps and the rows each touches
 * with index bounds computed once per tap (so a row's inner loop has no branches), and the
 * double buffers of the float kernels. Tested by test_conv*, test_convtranspose*,
 * test_convinteger*, test_qlinearconv. */
#ifndef KILN_REF_CONV_COMMON_H
#define KILN_REF_CONV_COMMON_H

#include "../../ops/nn_internal.h"

typedef struct conv3 {
    int64_t in[3], out[3], k[3], s[3], d[3], p[3];
    int64_t in_plane, out_plane, ksize; /* elements of one input / output plane, kernel taps */
} conv3;

/* Lifts wd for X dims x_dims and Y dims y_dims (both (N, C, spatial...)) to 3-D. UNSUPPORTED
 * above 3 spatial dims, the message naming `what` ("the reference Conv"). */
kiln_status conv3_lift(const kiln_node *node, const char *what, const kiln_window_dims *wd,
                       const int64_t *x_dims, const int64_t *y_dims, conv3 *g);

/* One row of one kernel tap: the walked index i runs over [lo, hi) and pairs with the other
 * side's index i * s + off. Gather (Conv): i is the output w position, i * s + off the input's;
 * scatter (ConvTranspose): i is the input w position, i * s + off the output's. */
typedef struct conv3_row {
    int64_t k;      /* flat kernel index of the tap */
    int64_t x, y;   /* offsets of the row in the input plane and in the output plane */
    int64_t lo, hi; /* non-empty */
    int64_t off, s;
} conv3_row;

/* Calls row(ctx, r) for every kernel tap (kd, kh, kw in order) and every (d, h) row it
 * touches (in order), skipping taps with an empty w range. */
void conv3_walk(const conv3 *g, bool scatter, void (*row)(void *ctx, const conv3_row *r), void *ctx);

/* The float kernels' double copies of X, W, optional B and a zeroed Y of y_count elements. */
typedef struct conv_f64 {
    double *x, *w, *b, *y;
} conv_f64;
/* OUT_OF_MEMORY (f freed) when a buffer cannot be had. */
kiln_status conv_f64_load(conv_f64 *f, const kiln_tensor *X, const kiln_tensor *W, const kiln_tensor *B,
                          int64_t y_count);
void conv_f64_free(conv_f64 *f);

/* The float kernels' walk context: one input channel, one kernel, one output channel. */
typedef struct conv_f64_chan {
    const double *x, *w;
    double *acc;
} conv_f64_chan;

#endif /* KILN_REF_CONV_COMMON_H */
