/* conv.c — GPU Conv and ConvTranspose through cuDNN (f32 with exact FP32 arithmetic, f16 and
 * bf16 with tensor cores and FP32 accumulation, f64), 1-D to 3-D, groups, strides, dilations,
 * pads and auto_pad, output_padding and output_shape.
 *
 * 1-D convolutions run as 2-D ones of height 1. cuDNN pads symmetrically: Conv's asymmetric
 * pads copy X into a zero-padded scratch tensor holding only the excess, and a ConvTranspose
 * whose pads / output_padding do not fit cuDNN's backward-data shape rule is computed unpadded
 * into scratch and windowed into Y. Bias and Relu fuse into cudnnConvolutionBiasActivationForward
 * where cuDNN allows it (Relu with any algorithm, no activation with IMPLICIT_PRECOMP_GEMM);
 * otherwise cuDNN adds the bias and other activations run after (kiln_cuda_apply_act).
 * Tactics: the tune hook times cuDNN's algorithms (cudnnFind*AlgorithmEx) and keeps the fastest
 * as algorithm + math type; without one, cuDNN's heuristic order decides.
 * Tested by tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"
#include "../../ops/nn_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Largest cuDNN workspace an algorithm may take. */
#define CONV_WORKSPACE_CAP ((size_t)64 << 20)

/* A Conv / ConvTranspose as cuDNN sees it. For ConvTranspose, "x" is cuDNN's dy (our X) and
 * "y" its dx (our Y, or the unpadded full output when cropping). Compared bytewise. */
typedef struct conv_key {
    int op, dtype, tactic;
    int nd;                          /* tensor rank for cuDNN: 4 or 5 */
    int x[5], w[5], y[5];
    int pad[3], str[3], dil[3];
    int groups;
    int has_bias, act;
} conv_key;

typedef struct conv_geom {
    conv_key key;
    bool prepad;           /* Conv: X copied into a zero-padded scratch tensor (dims key.x) */
    kiln_gemm_window xwin; /* X into the padded tensor */
    bool crop;             /* ConvTranspose: full output (dims key.y) windowed into Y */
    kiln_gemm_window ywin;
    int ydims[5];          /* Y's cuDNN dims (for the bias) */
} conv_geom;

typedef struct conv_state {
    bool ready;
    conv_key key;
    cudnnTensorDescriptor_t x, y, b, yreal;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnActivationDescriptor_t act;
    int algo;
    cudnnMathType_t math;
    size_t ws;
    bool fused_bad; /* cuDNN refused the fused call once: do not ask again */
} conv_state;

static void conv_state_clear(conv_state *s) {
    if (s->x) cudnnDestroyTensorDescriptor(s->x);
    if (s->y) cudnnDestroyTensorDescriptor(s->y);
    if (s->b) cudnnDestroyTensorDescriptor(s->b);
    if (s->yreal) cudnnDestroyTensorDescriptor(s->yreal);
    if (s->w) cudnnDestroyFilterDescriptor(s->w);
    if (s->conv) cudnnDestroyConvolutionDescriptor(s->conv);
    if (s->act) cudnnDestroyActivationDescriptor(s->act);
    memset(s, 0, sizeof *s);
}

static void conv_state_free(void *p) {
    conv_state_clear(p);
    free(p);
}

static cudnnDataType_t dnn_type(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F16: return CUDNN_DATA_HALF;
    case KILN_DTYPE_BF16: return CUDNN_DATA_BFLOAT16;
    case KILN_DTYPE_F64: return CUDNN_DATA_DOUBLE;
    default: return CUDNN_DATA_FLOAT;
    }
}

static bool exact_fp(kiln_dtype t) { return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F64; }

/* Lifts (N, C, spatial...) dims to cuDNN's: 1-D gets a height of 1. False when a dim or the
 * element count does not fit cuDNN's int. */
static bool lift_dims(const int64_t *d, int rank, int *out) {
    int64_t v[5];
    int r = 0;
    v[r++] = d[0];
    v[r++] = d[1];
    if (rank == 3) v[r++] = 1;
    for (int i = 2; i < rank; i++) v[r++] = d[i];
    int64_t count = 1;
    for (int i = 0; i < r; i++) {
        if (v[i] > INT_MAX) return false;
        out[i] = (int)v[i];
        count *= v[i];
    }
    return count < INT_MAX;
}

/* The three spatial dims of a window (leading 1s) from cuDNN dims of rank nd. */
static void win3(const int *d, int nd, int64_t *o) {
    int s = nd - 2;
    for (int i = 0; i < 3; i++) o[i] = i < 3 - s ? 1 : d[2 + i - (3 - s)];
}

static kiln_status too_big(const kiln_node *n) {
    return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "a tensor too large for cuDNN (2^31 elements)");
}

/* Conv: cuDNN's view, with X pre-padded where the pads are asymmetric. */
static kiln_status conv_geom_fwd(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, conv_geom *g) {
    const kiln_conv_params *p = n->params;
    const kiln_tensor *X = in[0], *W = in[1], *B = n->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_infer_common(n, p, X, W, B, W->dims[0], &wd));
    int nsp = wd.nsp;
    if (nsp < 1 || nsp > 3) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "%d spatial dims (1 to 3 on the GPU)", nsp);
    conv_key *k = &g->key;
    k->nd = nsp == 3 ? 5 : 4;
    int64_t xp[KILN_MAX_RANK];
    memcpy(xp, X->dims, sizeof(int64_t) * (size_t)X->rank);
    int lift = nsp == 1 ? 1 : 0; /* 1-D: cuDNN spatial dim 0 is the added height */
    for (int i = 0; i < 3; i++) k->pad[i] = 0, k->str[i] = 1, k->dil[i] = 1;
    int64_t off[3] = {0, 0, 0};
    for (int i = 0; i < nsp; i++) {
        int64_t pb = wd.pad_begin[i], pe = wd.pad_end[i], sym = pb < pe ? pb : pe;
        if (pb != pe) g->prepad = true;
        xp[2 + i] = X->dims[2 + i] + (pb - sym) + (pe - sym);
        off[3 - nsp + i] = pb - sym;
        if (sym > INT_MAX || wd.strides[i] > INT_MAX || wd.dilations[i] > INT_MAX) return too_big(n);
        k->pad[lift + i] = (int)sym;
        k->str[lift + i] = (int)wd.strides[i];
        k->dil[lift + i] = (int)wd.dilations[i];
    }
    if (!lift_dims(xp, X->rank, k->x) || !lift_dims(W->dims, W->rank, k->w) ||
        !lift_dims(out[0].dims, out[0].rank, k->y) || !lift_dims(out[0].dims, out[0].rank, g->ydims))
        return too_big(n);
    if (g->prepad) {
        int xo[5];
        if (!lift_dims(X->dims, X->rank, xo)) return too_big(n);
        g->xwin.outer = X->dims[0] * X->dims[1];
        win3(k->x, k->nd, g->xwin.dst);
        win3(xo, k->nd, g->xwin.src);
        memcpy(g->xwin.off, off, sizeof off);
    }
    k->groups = (int)p->group;
    return KILN_STATUS_OK;
}

/* ConvTranspose: cuDNN's backward data from dy = X to dx = Y; when the pads do not fit
 * cuDNN's rule (0 <= out + 2 pad - window - stride (in - 1) < stride, pad >= 0), the full
 * unpadded output is computed and windowed. */
static kiln_status conv_geom_bwd(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, conv_geom *g) {
    const kiln_conv_params *p = n->params;
    const kiln_tensor *X = in[0], *W = in[1];
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_transpose_resolve(n, X, W, &wd));
    int nsp = wd.nsp;
    if (nsp < 1 || nsp > 3) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "%d spatial dims (1 to 3 on the GPU)", nsp);
    conv_key *k = &g->key;
    k->nd = nsp == 3 ? 5 : 4;
    int lift = nsp == 1 ? 1 : 0;
    for (int i = 0; i < 3; i++) k->pad[i] = 0, k->str[i] = 1, k->dil[i] = 1;
    int64_t full[KILN_MAX_RANK], off[3] = {0, 0, 0};
    full[0] = out[0].dims[0];
    full[1] = out[0].dims[1];
    for (int i = 0; i < nsp; i++) {
        int64_t s = wd.strides[i], ek = (wd.kernel[i] - 1) * wd.dilations[i] + 1, pb = wd.pad_begin[i];
        int64_t extra = out[0].dims[2 + i] + 2 * pb - ek - s * (X->dims[2 + i] - 1);
        if (pb < 0 || extra < 0 || extra >= s) g->crop = true;
        full[2 + i] = s * (X->dims[2 + i] - 1) + ek;
        off[3 - nsp + i] = -pb;
        if (pb > INT_MAX || s > INT_MAX || wd.dilations[i] > INT_MAX) return too_big(n);
        k->pad[lift + i] = (int)(pb > 0 ? pb : 0);
        k->str[lift + i] = (int)s;
        k->dil[lift + i] = (int)wd.dilations[i];
    }
    if (g->crop)
        for (int i = 0; i < 3; i++) k->pad[i] = 0;
    if (!lift_dims(X->dims, X->rank, k->x) || !lift_dims(W->dims, W->rank, k->w) ||
        !lift_dims(g->crop ? full : out[0].dims, out[0].rank, k->y) || !lift_dims(out[0].dims, out[0].rank, g->ydims))
        return too_big(n);
    if (g->crop) {
        g->ywin.outer = out[0].dims[0] * out[0].dims[1];
        win3(g->ydims, k->nd, g->ywin.dst);
        win3(k->y, k->nd, g->ywin.src);
        memcpy(g->ywin.off, off, sizeof off);
    }
    k->groups = (int)p->group;
    return KILN_STATUS_OK;
}

static kiln_status conv_geom_of(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, conv_geom *g) {
    memset(g, 0, sizeof *g);
    KILN_TRY(n->op == KILN_OP_Conv ? conv_geom_fwd(n, in, out, g) : conv_geom_bwd(n, in, out, g));
    g->key.op = n->op;
    g->key.dtype = in[0]->dtype;
    g->key.has_bias = n->n_declared > 2 && in[2] != NULL;
    g->key.act = n->act.kind;
    return KILN_STATUS_OK;
}

static cudnnStatus_t set_tensor(cudnnTensorDescriptor_t *d, cudnnDataType_t t, int nd, const int *dims) {
    cudnnStatus_t s = *d ? CUDNN_STATUS_SUCCESS : cudnnCreateTensorDescriptor(d);
    int strides[5];
    strides[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) strides[i] = strides[i + 1] * dims[i + 1];
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetTensorNdDescriptor(*d, t, nd, dims, strides);
    return s;
}

static kiln_status conv_descs(const kiln_node *n, const conv_geom *g, conv_state *st) {
    const conv_key *k = &g->key;
    cudnnDataType_t t = dnn_type(k->dtype);
    cudnnStatus_t s = set_tensor(&st->x, t, k->nd, k->x);
    if (s == CUDNN_STATUS_SUCCESS) s = set_tensor(&st->y, t, k->nd, k->y);
    if (s == CUDNN_STATUS_SUCCESS) s = set_tensor(&st->yreal, t, k->nd, g->ydims);
    if (s == CUDNN_STATUS_SUCCESS && k->has_bias) {
        int bd[5] = {1, g->ydims[1], 1, 1, 1};
        s = set_tensor(&st->b, t, k->nd, bd);
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnCreateFilterDescriptor(&st->w);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetFilterNdDescriptor(st->w, t, CUDNN_TENSOR_NCHW, k->nd, k->w);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnCreateConvolutionDescriptor(&st->conv);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetConvolutionNdDescriptor(st->conv, k->nd - 2, k->pad, k->str, k->dil, CUDNN_CROSS_CORRELATION,
                                            k->dtype == KILN_DTYPE_F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetConvolutionGroupCount(st->conv, k->groups);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetConvolutionMathType(st->conv, exact_fp(k->dtype) ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH);
    if (s == CUDNN_STATUS_SUCCESS && k->act == KILN_ACT_RELU) {
        s = cudnnCreateActivationDescriptor(&st->act);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnSetActivationDescriptor(st->act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0);
    }
    return kiln_cudnn_check(s, n, "setting up cuDNN descriptors");
}

/* The math type an algorithm runs with: exact types never take tensor-core (TF32) math. */
static bool math_ok(kiln_dtype t, cudnnMathType_t m) {
    return !exact_fp(t) || m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
}

static cudnnMathType_t use_math(kiln_dtype t, cudnnMathType_t m) { return exact_fp(t) ? CUDNN_FMA_MATH : m; }

static cudnnStatus_t ws_size(cudnnHandle_t h, const conv_state *st, int op, int algo, size_t *bytes) {
    if (op == KILN_OP_Conv)
        return cudnnGetConvolutionForwardWorkspaceSize(h, st->x, st->w, st->conv, st->y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, st->w, st->x, st->conv, st->y,
                                                        (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
}

/* Picks the algorithm: the tactic when it still applies, else cuDNN's heuristic order. */
static kiln_status conv_pick(cudnnHandle_t h, const kiln_node *n, conv_state *st, int tactic) {
    kiln_dtype t = st->key.dtype;
    if (tactic >= 0) {
        int algo = tactic & 0xff;
        cudnnMathType_t m = use_math(t, (cudnnMathType_t)(tactic >> 8));
        size_t b = 0;
        if (cudnnSetConvolutionMathType(st->conv, m) == CUDNN_STATUS_SUCCESS &&
            ws_size(h, st, st->key.op, algo, &b) == CUDNN_STATUS_SUCCESS && b <= CONV_WORKSPACE_CAP) {
            st->algo = algo;
            st->math = m;
            st->ws = b;
            return KILN_STATUS_OK;
        }
    }
    int got = 0;
    bool found = false;
    if (st->key.op == KILN_OP_Conv) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        KILN_TRY(kiln_cudnn_check(cudnnGetConvolutionForwardAlgorithm_v7(h, st->x, st->w, st->conv, st->y,
                                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf),
                                  n, "cuDNN forward algorithms"));
        for (int i = 0; i < got && !found; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CONV_WORKSPACE_CAP &&
                math_ok(t, perf[i].mathType)) {
                st->algo = perf[i].algo;
                st->math = use_math(t, perf[i].mathType);
                found = true;
            }
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        KILN_TRY(kiln_cudnn_check(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                                      h, st->w, st->x, st->conv, st->y, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf),
                                  n, "cuDNN backward-data algorithms"));
        for (int i = 0; i < got && !found; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CONV_WORKSPACE_CAP &&
                math_ok(t, perf[i].mathType)) {
                st->algo = perf[i].algo;
                st->math = use_math(t, perf[i].mathType);
                found = true;
            }
    }
    if (!found) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "cuDNN has no algorithm for this convolution");
    KILN_TRY(kiln_cudnn_check(cudnnSetConvolutionMathType(st->conv, st->math), n, "cuDNN math type"));
    return kiln_cudnn_check(ws_size(h, st, st->key.op, st->algo, &st->ws), n, "cuDNN workspace size");
}

/* The node's state for geometry g (rebuilt when it changed). */
static kiln_status conv_prepare(kiln_cuda_run *r, const kiln_node *n, const conv_geom *g, conv_state **out) {
    conv_state *st = gemm_state(r, sizeof *st, conv_state_free);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    conv_key k = g->key;
    k.tactic = r->tactic;
    if (!st->ready || memcmp(&st->key, &k, sizeof k) != 0) {
        conv_state_clear(st);
        st->key = k;
        kiln_status s = conv_descs(n, g, st);
        if (s == KILN_STATUS_OK) s = conv_pick(r->dnn, n, st, k.tactic);
        if (s != KILN_STATUS_OK) {
            conv_state_clear(st);
            return s;
        }
        st->ready = true;
    }
    *out = st;
    return KILN_STATUS_OK;
}

typedef struct conv_bufs {
    gemm_scratch sc;
    int sc_ws, sc_tmp;
    const void *x; /* X or its padded copy */
    void *y;       /* Y or the full output to crop */
    void *ws;
} conv_bufs;

/* Scratch for the workspace and the padded X / full Y; enqueues the padding copy. */
static kiln_status conv_buffers(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                                const conv_geom *g, size_t ws, conv_bufs *b) {
    memset(b, 0, sizeof *b);
    size_t es = kiln_dtype_size(in[0]->dtype);
    b->sc_ws = gemm_scratch_add(&b->sc, ws);
    b->sc_tmp = -1;
    const int *tmp = g->prepad ? g->key.x : g->crop ? g->key.y : NULL;
    if (tmp) {
        size_t count = 1;
        for (int i = 0; i < g->key.nd; i++) count *= (size_t)tmp[i];
        b->sc_tmp = gemm_scratch_add(&b->sc, count * es);
    }
    KILN_TRY(gemm_scratch_get(r, &b->sc));
    b->ws = gemm_scratch_at(&b->sc, b->sc_ws);
    b->x = in[0]->data;
    b->y = out[0].data;
    if (g->prepad) {
        void *xp = gemm_scratch_at(&b->sc, b->sc_tmp);
        KILN_TRY(kiln_cuda_check(kiln_gemm_window_copy(xp, in[0]->data, (int)es, g->xwin, r->stream), n, "padding X"));
        b->x = xp;
    }
    if (g->crop) b->y = gemm_scratch_at(&b->sc, b->sc_tmp);
    return KILN_STATUS_OK;
}

/* The convolution itself into b->y (cuDNN only; no bias or activation). */
static cudnnStatus_t conv_core(cudnnHandle_t h, const conv_state *st, const void *w, const conv_bufs *b) {
    double one64 = 1, zero64 = 0;
    float one32 = 1, zero32 = 0;
    bool f64 = st->key.dtype == KILN_DTYPE_F64;
    const void *one = f64 ? (const void *)&one64 : (const void *)&one32;
    const void *zero = f64 ? (const void *)&zero64 : (const void *)&zero32;
    if (st->key.op == KILN_OP_Conv)
        return cudnnConvolutionForward(h, one, st->x, b->x, st->w, w, st->conv, (cudnnConvolutionFwdAlgo_t)st->algo,
                                       b->ws, st->ws, zero, st->y, b->y);
    return cudnnConvolutionBackwardData(h, one, st->w, w, st->x, b->x, st->conv,
                                        (cudnnConvolutionBwdDataAlgo_t)st->algo, b->ws, st->ws, zero, st->y, b->y);
}

static kiln_status conv_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    conv_geom g;
    KILN_TRY(conv_geom_of(n, in, out, &g));
    KILN_TRY(kiln_cudnn_check(cudnnSetStream(r->dnn, r->stream), n, "cudnnSetStream"));
    conv_state *st;
    KILN_TRY(conv_prepare(r, n, &g, &st));
    conv_bufs b;
    KILN_TRY(conv_buffers(r, n, in, out, &g, st->ws, &b));
    const void *w = in[1]->data, *bias = g.key.has_bias ? in[2]->data : NULL;
    bool fuse = n->op == KILN_OP_Conv && bias && !st->fused_bad &&
                (g.key.act == KILN_ACT_RELU ||
                 (g.key.act == KILN_ACT_NONE && st->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM));
    if (fuse) {
        /* y = act(conv(x, w) + 0 * z + bias), with z = y */
        double one64 = 1, zero64 = 0;
        float one32 = 1, zero32 = 0;
        bool f64 = g.key.dtype == KILN_DTYPE_F64;
        cudnnActivationDescriptor_t act = st->act;
        if (!act) {
            if (cudnnCreateActivationDescriptor(&st->act) != CUDNN_STATUS_SUCCESS ||
                cudnnSetActivationDescriptor(st->act, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0) !=
                    CUDNN_STATUS_SUCCESS)
                return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "cannot make a cuDNN activation descriptor");
            act = st->act;
        }
        cudnnStatus_t s = cudnnConvolutionBiasActivationForward(
            r->dnn, f64 ? (const void *)&one64 : (const void *)&one32, st->x, b.x, st->w, w, st->conv,
            (cudnnConvolutionFwdAlgo_t)st->algo, b.ws, st->ws, f64 ? (const void *)&zero64 : (const void *)&zero32,
            st->y, b.y, st->b, bias, act, st->y, b.y);
        if (s == CUDNN_STATUS_SUCCESS) return KILN_STATUS_OK;
        if (s != CUDNN_STATUS_NOT_SUPPORTED && s != CUDNN_STATUS_BAD_PARAM)
            return kiln_cudnn_check(s, n, "cudnnConvolutionBiasActivationForward");
        st->fused_bad = true; /* this configuration has no fused kernel: plain path from now on */
    }
    KILN_TRY(kiln_cudnn_check(conv_core(r->dnn, st, w, &b), n,
                              n->op == KILN_OP_Conv ? "cudnnConvolutionForward" : "cudnnConvolutionBackwardData"));
    if (g.crop)
        KILN_TRY(kiln_cuda_check(
            kiln_gemm_window_copy(out[0].data, b.y, (int)kiln_dtype_size(out[0].dtype), g.ywin, r->stream), n,
            "cropping the output"));
    if (bias) {
        double one64 = 1;
        float one32 = 1;
        const void *one = g.key.dtype == KILN_DTYPE_F64 ? (const void *)&one64 : (const void *)&one32;
        KILN_TRY(kiln_cudnn_check(cudnnAddTensor(r->dnn, one, st->b, bias, one, st->yreal, out[0].data), n,
                                  "adding the bias"));
    }
    return gemm_finish_act(r, n, &out[0], false);
}

/* ---- tactics ---- */

static const char *conv_key_str(const conv_key *k, char *buf, size_t n) {
    snprintf(buf, n,
             "cudnn1:%s:t%d:x%d.%d.%d.%d.%d:w%d.%d.%d.%d.%d:y%d.%d.%d.%d.%d:p%d.%d.%d:s%d.%d.%d:d%d.%d.%d:g%d",
             kiln_op_name(k->op), k->dtype, k->x[0], k->x[1], k->x[2], k->x[3], k->nd == 5 ? k->x[4] : 0, k->w[0],
             k->w[1], k->w[2], k->w[3], k->nd == 5 ? k->w[4] : 0, k->y[0], k->y[1], k->y[2], k->y[3],
             k->nd == 5 ? k->y[4] : 0, k->pad[0], k->pad[1], k->pad[2], k->str[0], k->str[1], k->str[2], k->dil[0],
             k->dil[1], k->dil[2], k->groups);
    return buf;
}

static kiln_status conv_tune(kiln_cuda_tune *tune, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                             int *tactic) {
    *tactic = -1;
    if (kiln_shape_count(out[0].rank, out[0].dims) <= 0) return KILN_STATUS_OK;
    conv_geom g;
    KILN_TRY(conv_geom_of(n, in, out, &g));
    char key[512];
    conv_key_str(&g.key, key, sizeof key);
    int cached = tune->cache ? kiln_timing_cache_get(tune->cache, key) : -1;
    if (cached >= 0) {
        *tactic = cached;
        return KILN_STATUS_OK;
    }
    gemm_tune_run tr;
    gemm_tune_begin(&tr, tune, -1);
    kiln_status s = kiln_cudnn_check(cudnnSetStream(tune->dnn, tune->stream), n, "cudnnSetStream");
    conv_state *st = NULL;
    conv_bufs b;
    if (s == KILN_STATUS_OK) s = conv_prepare(&tr.r, n, &g, &st);
    if (s == KILN_STATUS_OK) s = conv_buffers(&tr.r, n, in, out, &g, CONV_WORKSPACE_CAP, &b);
    int got = 0, best = -1;
    float best_ms = 0;
    kiln_dtype t = g.key.dtype;
    if (s == KILN_STATUS_OK && g.key.op == KILN_OP_Conv) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        s = kiln_cudnn_check(cudnnFindConvolutionForwardAlgorithmEx(tune->dnn, st->x, b.x, st->w, in[1]->data, st->conv,
                                                                    st->y, b.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                                    perf, b.ws, CONV_WORKSPACE_CAP),
                             n, "timing cuDNN forward algorithms");
        for (int i = 0; s == KILN_STATUS_OK && i < got && best < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(t, perf[i].mathType)) {
                best = (int)perf[i].algo | (int)use_math(t, perf[i].mathType) << 8;
                best_ms = perf[i].time;
            }
    } else if (s == KILN_STATUS_OK) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        s = kiln_cudnn_check(cudnnFindConvolutionBackwardDataAlgorithmEx(
                                 tune->dnn, st->w, in[1]->data, st->x, b.x, st->conv, st->y, b.y,
                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf, b.ws, CONV_WORKSPACE_CAP),
                             n, "timing cuDNN backward-data algorithms");
        for (int i = 0; s == KILN_STATUS_OK && i < got && best < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(t, perf[i].mathType)) {
                best = (int)perf[i].algo | (int)use_math(t, perf[i].mathType) << 8;
                best_ms = perf[i].time;
            }
    }
    gemm_tune_end(&tr);
    if (s != KILN_STATUS_OK) return s;
    if (best >= 0 && tune->cache) kiln_timing_cache_put(tune->cache, key, best, best_ms);
    *tactic = best;
    return KILN_STATUS_OK;
}

static const char *conv_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    (void)out;
    kiln_dtype t = in[0]->dtype;
    if (t != KILN_DTYPE_F32 && t != KILN_DTYPE_F16 && t != KILN_DTYPE_BF16 && t != KILN_DTYPE_F64)
        return "dtype (f32, f16, bf16, f64 are supported)";
    for (int i = 1; i < n->n_declared; i++)
        if (in[i] && in[i]->dtype != t) return "inputs of different dtypes";
    if (in[0]->rank >= 0 && (in[0]->rank < 3 || in[0]->rank > 5)) return "only 1-D to 3-D convolutions";
    if (t == KILN_DTYPE_F64 && n->act.kind != KILN_ACT_NONE) return "a fused activation on f64";
    return NULL;
}

void gemm_register_conv(kiln_cuda_op *table) {
    table[KILN_OP_Conv] = (kiln_cuda_op){.supports = conv_supports, .run = conv_run, .tune = conv_tune, .kernel = "cudnn"};
    table[KILN_OP_ConvTranspose] =
        (kiln_cuda_op){.supports = conv_supports, .run = conv_run, .tune = conv_tune, .kernel = "cudnn"};
}
