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
 * A 1x1 Conv with unit strides and no pads is a batch of cuBLASLt products instead (faster than
 * cuDNN's NCHW kernels for those shapes), its bias (+Relu) one pass of our own kernel.
 * Tactics (see CONV_TACTIC_*): cuDNN algorithm + math type, optionally channels-last (X, W, Y
 * transposed around cuDNN's NHWC kernels), or the cuBLASLt path; the tune hook times whole runs
 * of cuDNN's fastest candidates (cudnnFind*AlgorithmEx) in each layout and of the cuBLASLt ones,
 * replayed from CUDA graphs. Without a tactic: cuBLASLt for 1x1, else NCHW with cuDNN's
 * heuristic pick. Tested by tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"
#include "../../ops/nn_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Largest cuDNN workspace an algorithm may take. */
#define CONV_WORKSPACE_CAP ((size_t)64 << 20)

/* Tactics: cuDNN algorithm (bits 0-7; CONV_ALGO_HEURISTIC: cuDNN's heuristic picks), math type
 * (bits 8-11), channels-last layout (bit 12). */
#define CONV_ALGO_HEURISTIC 0xff
#define CONV_TACTIC_NHWC (1 << 12)
/* A 1x1 convolution as a cuBLASLt product (bits 0-7: the heuristic's candidate). */
#define CONV_TACTIC_GEMM (1 << 13)
/* Candidates of each layout the tune hook times as whole runs. */
#define CONV_TUNE_PER_LAYOUT 3

/* A Conv / ConvTranspose as cuDNN sees it. For ConvTranspose, "x" is cuDNN's dy (our X) and
 * "y" its dx (our Y, or the unpadded full output when cropping). Compared bytewise. */
typedef struct conv_key {
    int op, dtype, tactic;
    int nd;                          /* tensor rank for cuDNN: 4 or 5 */
    int x[5], w[5], y[5];
    int pad[3], str[3], dil[3];
    int groups;
    int has_bias, act;
    int nhwc; /* cuDNN runs channels-last: X, W and Y transposed around it (tactic bit 12) */
    int tf32; /* float32 may use TF32 tensor cores (KILN_PRECISION_TF32) */
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
    gemm_lt_plan plan; /* 1x1 convolutions as cuBLASLt products */
} conv_state;

static void conv_state_clear(conv_state *s) {
    gemm_lt_release(&s->plan);
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

/* Exact float math (no TF32 tensor cores): float64 always, float32 unless the engine allows TF32. */
static bool exact_fp(const struct conv_key *k) {
    return k->dtype == KILN_DTYPE_F64 || (k->dtype == KILN_DTYPE_F32 && !k->tf32);
}

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

static kiln_status conv_geom_of(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, bool tf32, conv_geom *g) {
    memset(g, 0, sizeof *g);
    KILN_TRY(n->op == KILN_OP_Conv ? conv_geom_fwd(n, in, out, g) : conv_geom_bwd(n, in, out, g));
    g->key.op = n->op;
    g->key.dtype = in[0]->dtype;
    g->key.tf32 = tf32 && in[0]->dtype == KILN_DTYPE_F32;
    g->key.has_bias = n->n_declared > 2 && in[2] != NULL;
    g->key.act = n->act.kind;
    return KILN_STATUS_OK;
}

static cudnnStatus_t set_tensor(cudnnTensorDescriptor_t *d, cudnnDataType_t t, int nd, const int *dims, bool nhwc) {
    cudnnStatus_t s = *d ? CUDNN_STATUS_SUCCESS : cudnnCreateTensorDescriptor(d);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetTensorNdDescriptorEx(*d, nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, t, nd, dims);
    return s;
}

static kiln_status conv_descs(const kiln_node *n, const conv_geom *g, conv_state *st) {
    const conv_key *k = &g->key;
    cudnnDataType_t t = dnn_type(k->dtype);
    cudnnStatus_t s = set_tensor(&st->x, t, k->nd, k->x, k->nhwc);
    if (s == CUDNN_STATUS_SUCCESS) s = set_tensor(&st->y, t, k->nd, k->y, k->nhwc);
    if (s == CUDNN_STATUS_SUCCESS) s = set_tensor(&st->yreal, t, k->nd, g->ydims, false);
    if (s == CUDNN_STATUS_SUCCESS && k->has_bias) {
        int bd[5] = {1, g->ydims[1], 1, 1, 1};
        s = set_tensor(&st->b, t, k->nd, bd, false);
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnCreateFilterDescriptor(&st->w);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetFilterNdDescriptor(st->w, t, k->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, k->nd, k->w);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnCreateConvolutionDescriptor(&st->conv);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetConvolutionNdDescriptor(st->conv, k->nd - 2, k->pad, k->str, k->dil, CUDNN_CROSS_CORRELATION,
                                            k->dtype == KILN_DTYPE_F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetConvolutionGroupCount(st->conv, k->groups);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnSetConvolutionMathType(st->conv, exact_fp(k) ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH);
    if (s == CUDNN_STATUS_SUCCESS && k->act == KILN_ACT_RELU) {
        s = cudnnCreateActivationDescriptor(&st->act);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnSetActivationDescriptor(st->act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0);
    }
    return kiln_cudnn_check(s, n, "setting up cuDNN descriptors");
}

/* The math type an algorithm runs with: exact math never takes tensor-core (TF32) math. */
static bool math_ok(bool exact, cudnnMathType_t m) { return !exact || m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH; }

static cudnnMathType_t use_math(bool exact, cudnnMathType_t m) { return exact ? CUDNN_FMA_MATH : m; }

static cudnnStatus_t ws_size(cudnnHandle_t h, const conv_state *st, int op, int algo, size_t *bytes) {
    if (op == KILN_OP_Conv)
        return cudnnGetConvolutionForwardWorkspaceSize(h, st->x, st->w, st->conv, st->y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, st->w, st->x, st->conv, st->y,
                                                        (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
}

/* Picks the algorithm: the tactic when it still applies, else cuDNN's heuristic order. */
static kiln_status conv_pick(cudnnHandle_t h, const kiln_node *n, conv_state *st, int tactic) {
    bool exact = exact_fp(&st->key);
    if (tactic >= 0 && (tactic & 0xff) != CONV_ALGO_HEURISTIC) {
        int algo = tactic & 0xff;
        cudnnMathType_t m = use_math(exact, (cudnnMathType_t)((tactic >> 8) & 0xf));
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
                math_ok(exact, perf[i].mathType)) {
                st->algo = perf[i].algo;
                st->math = use_math(exact, perf[i].mathType);
                found = true;
            }
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        KILN_TRY(kiln_cudnn_check(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                                      h, st->w, st->x, st->conv, st->y, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf),
                                  n, "cuDNN backward-data algorithms"));
        for (int i = 0; i < got && !found; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CONV_WORKSPACE_CAP &&
                math_ok(exact, perf[i].mathType)) {
                st->algo = perf[i].algo;
                st->math = use_math(exact, perf[i].mathType);
                found = true;
            }
    }
    if (!found) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "cuDNN has no algorithm for this convolution");
    KILN_TRY(kiln_cudnn_check(cudnnSetConvolutionMathType(st->conv, st->math), n, "cuDNN math type"));
    return kiln_cudnn_check(ws_size(h, st, st->key.op, st->algo, &st->ws), n, "cuDNN workspace size");
}

/* Channels-last: cuDNN's tensor-core kernels want NHWC; kiln's tensors are NCHW. 2-D (and
 * 1-D) f16/bf16 Conv without pre-padding can run so, X, W and Y transposed around cuDNN. */
static bool conv_nhwc_possible(const conv_geom *g) {
    const conv_key *k = &g->key;
    return k->op == KILN_OP_Conv && (k->dtype == KILN_DTYPE_F16 || k->dtype == KILN_DTYPE_BF16) && !g->prepad &&
           k->nd == 4;
}

/* Without a tactic: NCHW. Measured on an H100 (cuDNN 9.19, batch 8 ResNet-50 layers), the
 * transposes cost more than cuDNN's channels-last kernels gain: a tuned engine may still pick
 * channels-last per layer. */
static bool conv_nhwc_default(const conv_geom *g) {
    (void)g;
    return false;
}

/* A 1x1 convolution with unit strides, no padding and one group is a batch of products
 * Y[n] (M, P) = W (M, C) . X[n] (C, P) over the P output positions. */
static bool conv_gemm_possible(const conv_geom *g) {
    const conv_key *k = &g->key;
    if (k->op != KILN_OP_Conv || k->groups != 1 || g->prepad) return false;
    for (int i = 2; i < k->nd; i++)
        if (k->w[i] != 1) return false;
    for (int i = 0; i < k->nd - 2; i++)
        if (k->str[i] != 1 || k->pad[i] != 0) return false;
    return true;
}

/* The product's key for a 1x1 convolution (tactic: the heuristic's candidate or -1). */
static void conv_gemm_key(const conv_geom *g, kiln_tensor *const *in, kiln_tensor *out, int tactic, gemm_lt_key *k) {
    const conv_key *ck = &g->key;
    memset(k, 0, sizeof *k);
    KILN_ASSERT(gemm_lt_types(ck->dtype, k));
    if (ck->tf32) k->compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    int64_t N = ck->x[0], C = ck->x[1], M = ck->w[0], P = 1, es = (int64_t)kiln_dtype_size(ck->dtype);
    for (int i = 2; i < ck->nd; i++) P *= ck->x[i];
    k->m = M;
    k->n = P;
    k->k = C;
    k->lda = C;
    k->ldb = P;
    k->ldd = P;
    k->batch = N;
    k->stride_a = 0;
    k->stride_b = C * P;
    k->stride_d = M * P;
    k->epilogue = ck->act == KILN_ACT_RELU && !ck->has_bias ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT;
    k->align_a = gemm_align(in[1]->data, C * es, 0);
    k->align_b = gemm_align(in[0]->data, P * es, C * P * es);
    k->align_d = gemm_align(out[0].data, P * es, M * P * es);
    k->tactic = tactic;
}

/* A 1x1 convolution through cuBLASLt; the bias (per channel, with Relu when that is the
 * activation) in one pass of the family's own kernel. */
static kiln_status conv_gemm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                                 const conv_geom *g) {
    conv_state *st = gemm_state(r, sizeof *st, conv_state_free);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    gemm_lt_key k;
    conv_gemm_key(g, in, out, r->tactic >= 0 ? (r->tactic & 0xff) : -1, &k);
    KILN_TRY(gemm_lt_prepare(r->lt, n, &k, &st->plan));
    gemm_scratch sc = {0};
    int ws = gemm_scratch_add(&sc, GEMM_LT_WORKSPACE);
    KILN_TRY(gemm_scratch_get(r, &sc));
    double one64 = 1, zero64 = 0;
    float one32 = 1, zero32 = 0;
    bool f64 = g->key.dtype == KILN_DTYPE_F64;
    KILN_TRY(gemm_lt_run(r->lt, n, &st->plan, f64 ? (const void *)&one64 : (const void *)&one32, in[1]->data,
                         in[0]->data, f64 ? (const void *)&zero64 : (const void *)&zero32, NULL, out[0].data, NULL,
                         gemm_scratch_at(&sc, ws), r->stream));
    bool relu = g->key.act == KILN_ACT_RELU;
    if (g->key.has_bias)
        KILN_TRY(kiln_cuda_check(kiln_gemm_bias_channel(out[0].data, in[2]->data, kiln_cuda_ctype(out[0].dtype), k.batch,
                                                        k.m, k.n, relu, r->stream),
                                 n, "adding the bias"));
    return gemm_finish_act(r, n, &out[0], relu);
}

/* The node's state for geometry g and the run's tactic (rebuilt when either changed). */
static kiln_status conv_prepare(kiln_cuda_run *r, const kiln_node *n, const conv_geom *g, conv_state **out) {
    conv_state *st = gemm_state(r, sizeof *st, conv_state_free);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    conv_key k = g->key;
    k.tactic = r->tactic;
    k.nhwc = r->tactic >= 0 ? (r->tactic & CONV_TACTIC_NHWC) != 0 && conv_nhwc_possible(g) : conv_nhwc_default(g);
    if (!st->ready || memcmp(&st->key, &k, sizeof k) != 0) {
        conv_state_clear(st);
        st->key = k;
        conv_geom gk = *g;
        gk.key = k;
        kiln_status s = conv_descs(n, &gk, st);
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
    int sc_ws, sc_tmp, sc_x, sc_w, sc_y;
    const void *x; /* X, its padded copy or its channels-last copy */
    const void *w; /* W or its channels-last copy */
    void *y;       /* Y, the full output to crop or the channels-last output */
    void *ws;
} conv_bufs;

static size_t dims_count(const int *d, int nd) {
    size_t c = 1;
    for (int i = 0; i < nd; i++) c *= (size_t)d[i];
    return c;
}

/* Scratch for the workspace and the padded X / full Y / channels-last copies; enqueues the
 * copies of the inputs. */
static kiln_status conv_buffers(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                                const conv_geom *g, const conv_state *st, size_t ws, conv_bufs *b) {
    memset(b, 0, sizeof *b);
    const conv_key *k = &st->key;
    int es = (int)kiln_dtype_size(in[0]->dtype);
    b->sc_ws = gemm_scratch_add(&b->sc, ws);
    b->sc_tmp = b->sc_x = b->sc_w = b->sc_y = -1;
    const int *tmp = g->prepad ? k->x : g->crop ? k->y : NULL;
    if (tmp) b->sc_tmp = gemm_scratch_add(&b->sc, dims_count(tmp, k->nd) * (size_t)es);
    if (k->nhwc) {
        b->sc_x = gemm_scratch_add(&b->sc, dims_count(k->x, k->nd) * (size_t)es);
        b->sc_w = gemm_scratch_add(&b->sc, dims_count(k->w, k->nd) * (size_t)es);
        b->sc_y = gemm_scratch_add(&b->sc, dims_count(k->y, k->nd) * (size_t)es);
    }
    KILN_TRY(gemm_scratch_get(r, &b->sc));
    b->ws = gemm_scratch_at(&b->sc, b->sc_ws);
    b->x = in[0]->data;
    b->w = in[1]->data;
    b->y = out[0].data;
    if (g->prepad) {
        void *xp = gemm_scratch_at(&b->sc, b->sc_tmp);
        KILN_TRY(kiln_cuda_check(kiln_gemm_window_copy(xp, in[0]->data, es, g->xwin, r->stream), n, "padding X"));
        b->x = xp;
    }
    if (g->crop) b->y = gemm_scratch_at(&b->sc, b->sc_tmp);
    if (k->nhwc) {
        void *xt = gemm_scratch_at(&b->sc, b->sc_x), *wt = gemm_scratch_at(&b->sc, b->sc_w);
        int64_t xplane = (int64_t)k->x[2] * k->x[3], taps = (int64_t)k->w[2] * k->w[3];
        KILN_TRY(kiln_cuda_check(kiln_gemm_transpose(xt, b->x, es, k->x[0], k->x[1], xplane, r->stream), n,
                                 "X to channels-last"));
        KILN_TRY(kiln_cuda_check(kiln_gemm_transpose(wt, b->w, es, k->w[0], k->w[1], taps, r->stream), n,
                                 "W to channels-last"));
        b->x = xt;
        b->w = wt;
        b->y = gemm_scratch_at(&b->sc, b->sc_y);
    }
    return KILN_STATUS_OK;
}

/* The convolution itself into b->y (cuDNN only; no bias or activation). */
static cudnnStatus_t conv_core(cudnnHandle_t h, const conv_state *st, const conv_bufs *b) {
    double one64 = 1, zero64 = 0;
    float one32 = 1, zero32 = 0;
    bool f64 = st->key.dtype == KILN_DTYPE_F64;
    const void *one = f64 ? (const void *)&one64 : (const void *)&one32;
    const void *zero = f64 ? (const void *)&zero64 : (const void *)&zero32;
    if (st->key.op == KILN_OP_Conv)
        return cudnnConvolutionForward(h, one, st->x, b->x, st->w, b->w, st->conv, (cudnnConvolutionFwdAlgo_t)st->algo,
                                       b->ws, st->ws, zero, st->y, b->y);
    return cudnnConvolutionBackwardData(h, one, st->w, b->w, st->x, b->x, st->conv,
                                        (cudnnConvolutionBwdDataAlgo_t)st->algo, b->ws, st->ws, zero, st->y, b->y);
}

/* y = act(conv(x, w) + bias) in one cuDNN call where cuDNN has one: Relu with any algorithm,
 * no activation with IMPLICIT_PRECOMP_GEMM. False (nothing done) otherwise. */
static kiln_status conv_fused(cudnnHandle_t h, const kiln_node *n, conv_state *st, const conv_bufs *b,
                              const void *bias, bool *done) {
    *done = false;
    int act = st->key.act;
    if (st->key.op != KILN_OP_Conv || !bias || st->fused_bad ||
        !(act == KILN_ACT_RELU || (act == KILN_ACT_NONE && st->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)))
        return KILN_STATUS_OK;
    if (!st->act) {
        if (cudnnCreateActivationDescriptor(&st->act) != CUDNN_STATUS_SUCCESS ||
            cudnnSetActivationDescriptor(st->act, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0) !=
                CUDNN_STATUS_SUCCESS)
            return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "cannot make a cuDNN activation descriptor");
    }
    double one64 = 1, zero64 = 0;
    float one32 = 1, zero32 = 0;
    bool f64 = st->key.dtype == KILN_DTYPE_F64;
    /* z = y with weight 0 */
    cudnnStatus_t s = cudnnConvolutionBiasActivationForward(
        h, f64 ? (const void *)&one64 : (const void *)&one32, st->x, b->x, st->w, b->w, st->conv,
        (cudnnConvolutionFwdAlgo_t)st->algo, b->ws, st->ws, f64 ? (const void *)&zero64 : (const void *)&zero32, st->y,
        b->y, st->b, bias, st->act, st->y, b->y);
    if (s == CUDNN_STATUS_SUCCESS) {
        *done = true;
        return KILN_STATUS_OK;
    }
    if (s != CUDNN_STATUS_NOT_SUPPORTED && s != CUDNN_STATUS_BAD_PARAM)
        return kiln_cudnn_check(s, n, "cudnnConvolutionBiasActivationForward");
    st->fused_bad = true; /* this configuration has no fused kernel: plain path from now on */
    return KILN_STATUS_OK;
}

static kiln_status conv_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    conv_geom g;
    KILN_TRY(conv_geom_of(n, in, out, r->tf32, &g));
    if (conv_gemm_possible(&g) && (r->tactic < 0 || (r->tactic & CONV_TACTIC_GEMM)))
        return conv_gemm_run(r, n, in, out, &g);
    KILN_TRY(kiln_cudnn_check(cudnnSetStream(r->dnn, r->stream), n, "cudnnSetStream"));
    conv_state *st;
    KILN_TRY(conv_prepare(r, n, &g, &st));
    conv_bufs b;
    KILN_TRY(conv_buffers(r, n, in, out, &g, st, st->ws, &b));
    const void *bias = g.key.has_bias ? in[2]->data : NULL;
    bool fused;
    KILN_TRY(conv_fused(r->dnn, n, st, &b, bias, &fused));
    if (!fused)
        KILN_TRY(kiln_cudnn_check(conv_core(r->dnn, st, &b), n,
                                  n->op == KILN_OP_Conv ? "cudnnConvolutionForward" : "cudnnConvolutionBackwardData"));
    int es = (int)kiln_dtype_size(out[0].dtype);
    if (st->key.nhwc)
        KILN_TRY(kiln_cuda_check(kiln_gemm_transpose(out[0].data, b.y, es, g.ydims[0],
                                                     (int64_t)g.ydims[2] * g.ydims[3], g.ydims[1], r->stream),
                                 n, "Y from channels-last"));
    if (g.crop)
        KILN_TRY(kiln_cuda_check(kiln_gemm_window_copy(out[0].data, b.y, es, g.ywin, r->stream), n,
                                 "cropping the output"));
    if (bias && !fused) {
        double one64 = 1;
        float one32 = 1;
        const void *one = g.key.dtype == KILN_DTYPE_F64 ? (const void *)&one64 : (const void *)&one32;
        KILN_TRY(kiln_cudnn_check(cudnnAddTensor(r->dnn, one, st->b, bias, one, st->yreal, out[0].data), n,
                                  "adding the bias"));
    }
    return gemm_finish_act(r, n, &out[0], fused);
}

/* ---- tactics ---- */

static const char *conv_key_str(const conv_key *k, char *buf, size_t n) {
    snprintf(buf, n,
             "cudnn2:%s:t%d:x%d.%d.%d.%d.%d:w%d.%d.%d.%d.%d:y%d.%d.%d.%d.%d:p%d.%d.%d:s%d.%d.%d:d%d.%d.%d:g%d:b%d:a%d%s",
             kiln_op_name(k->op), k->dtype, k->x[0], k->x[1], k->x[2], k->x[3], k->nd == 5 ? k->x[4] : 0, k->w[0],
             k->w[1], k->w[2], k->w[3], k->nd == 5 ? k->w[4] : 0, k->y[0], k->y[1], k->y[2], k->y[3],
             k->nd == 5 ? k->y[4] : 0, k->pad[0], k->pad[1], k->pad[2], k->str[0], k->str[1], k->str[2], k->dil[0],
             k->dil[1], k->dil[2], k->groups, k->has_bias, k->act, k->tf32 ? ":tf32" : "");
    return buf;
}

/* cuDNN's own timing of its algorithms in one layout (tactic bit `layout`): the fastest few
 * that run, as tactics appended to cand. */
static kiln_status conv_find(gemm_tune_run *tr, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                             const conv_geom *g, int layout, int *cand, int *n_cand) {
    tr->r.tactic = CONV_ALGO_HEURISTIC | layout;
    conv_state *st;
    KILN_TRY(conv_prepare(&tr->r, n, g, &st));
    conv_bufs b;
    KILN_TRY(conv_buffers(&tr->r, n, in, out, g, st, CONV_WORKSPACE_CAP, &b));
    cand[(*n_cand)++] = CONV_ALGO_HEURISTIC | layout; /* the heuristic's pick, as a run would make it */
    int got = 0, taken = 0;
    bool exact = exact_fp(&g->key);
    cudnnHandle_t h = tr->r.dnn;
    if (g->key.op == KILN_OP_Conv) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        KILN_TRY(kiln_cudnn_check(cudnnFindConvolutionForwardAlgorithmEx(h, st->x, b.x, st->w, b.w, st->conv, st->y, b.y,
                                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf,
                                                                         b.ws, CONV_WORKSPACE_CAP),
                                  n, "timing cuDNN forward algorithms"));
        for (int i = 0; i < got && taken < CONV_TUNE_PER_LAYOUT; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(exact, perf[i].mathType)) {
                cand[(*n_cand)++] = (int)perf[i].algo | (int)use_math(exact, perf[i].mathType) << 8 | layout;
                taken++;
            }
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        KILN_TRY(kiln_cudnn_check(cudnnFindConvolutionBackwardDataAlgorithmEx(
                                      h, st->w, b.w, st->x, b.x, st->conv, st->y, b.y,
                                      CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf, b.ws, CONV_WORKSPACE_CAP),
                                  n, "timing cuDNN backward-data algorithms"));
        for (int i = 0; i < got && taken < CONV_TUNE_PER_LAYOUT; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(exact, perf[i].mathType)) {
                cand[(*n_cand)++] = (int)perf[i].algo | (int)use_math(exact, perf[i].mathType) << 8 | layout;
                taken++;
            }
    }
    return KILN_STATUS_OK;
}

typedef struct conv_tune_ctx {
    gemm_tune_run tr;
    const kiln_node *n;
    kiln_tensor *const *in;
    kiln_tensor *out;
    const int *cand;
} conv_tune_ctx;

static kiln_status conv_tune_one(void *ctx, int i) {
    conv_tune_ctx *t = ctx;
    t->tr.r.tactic = t->cand[i];
    return conv_run(&t->tr.r, t->n, t->in, t->out);
}

/* Times whole runs (layout copies, fused bias and activation included) of cuDNN's fastest
 * algorithms in each layout and of its heuristic picks. */
static kiln_status conv_tune(kiln_cuda_tune *tune, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                             int *tactic) {
    *tactic = -1;
    if (kiln_shape_count(out[0].rank, out[0].dims) <= 0) return KILN_STATUS_OK;
    conv_geom g;
    KILN_TRY(conv_geom_of(n, in, out, tune->tf32, &g));
    char key[512];
    conv_key_str(&g.key, key, sizeof key);
    int cached = tune->cache ? kiln_timing_cache_get(tune->cache, key) : -1;
    if (cached >= 0) {
        *tactic = cached;
        return KILN_STATUS_OK;
    }
    int cand[3 * (CONV_TUNE_PER_LAYOUT + 1)], n_cand = 0;
    conv_tune_ctx t = {.n = n, .in = in, .out = out, .cand = cand};
    gemm_tune_begin(&t.tr, tune, -1);
    kiln_status s = kiln_cudnn_check(cudnnSetStream(tune->dnn, tune->stream), n, "cudnnSetStream");
    if (s == KILN_STATUS_OK && conv_find(&t.tr, n, in, out, &g, 0, cand, &n_cand) != KILN_STATUS_OK) {
        kiln_clear_error(); /* cuDNN could not time its algorithms: its heuristic pick stays a candidate */
        n_cand = 0;
        cand[n_cand++] = CONV_ALGO_HEURISTIC;
    }
    if (s == KILN_STATUS_OK && conv_nhwc_possible(&g)) {
        int before = n_cand;
        if (conv_find(&t.tr, n, in, out, &g, CONV_TACTIC_NHWC, cand, &n_cand) != KILN_STATUS_OK) {
            kiln_clear_error(); /* no channels-last candidates: NCHW only */
            n_cand = before;
        }
    }
    if (s == KILN_STATUS_OK && conv_gemm_possible(&g)) {
        gemm_lt_key k;
        conv_gemm_key(&g, in, out, -1, &k);
        int count = gemm_lt_candidates(tune->lt, &k, CONV_TUNE_PER_LAYOUT);
        for (int i = 0; i < count; i++) cand[n_cand++] = CONV_TACTIC_GEMM | i;
    }
    int best = -1;
    double ms = 0;
    if (s == KILN_STATUS_OK) s = gemm_time_best(tune->stream, n_cand, conv_tune_one, &t, &best, &ms);
    gemm_tune_end(&t.tr);
    if (s != KILN_STATUS_OK) return s;
    *tactic = cand[best];
    if (tune->cache) kiln_timing_cache_put(tune->cache, key, *tactic, ms);
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
