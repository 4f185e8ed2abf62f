/* gemm_check.c — checks the CUDA gemm family (MatMul, Gemm, FusedMatMul, MatMulInteger,
 * QLinearMatMul, Conv, ConvTranspose, ConvInteger, QLinearConv) against the reference backend
 * on fresh random inputs at awkward sizes, one node at a time, without an engine: parse and
 * infer as the importer does, the reference kernel on the host, the GPU kernel on a device copy
 * of the inputs (outputs poisoned first), then again with the reused per-node state and with
 * the tactic the tune hook picks. Floats: max |gpu - ref| <= tol * max(1, max |ref|) (tol by
 * dtype); integers and requantized int8: exact.
 *
 *   gemm_check            run every case; exit status 1 when one fails
 *   gemm_check --perf     also time a few ResNet-50 / ViT-B/16 shaped nodes (CUDA graph replay)
 *   gemm_check --kernels  also time the INT8 pipeline's kernels one by one
 *   gemm_check NAME...    only the cases whose name contains one of the words
 *
 * Needs a CUDA GPU (not a CTest test: CI has none). */
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/internal.h"
#include "backends/cuda/gemm_internal.h"
#include "ops/nn_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- stand-ins for what other parts of the backend provide (weak: the real ones win) ---- */

__attribute__((weak)) kiln_status kiln_cuda_apply_act(kiln_cuda_run *r, const kiln_node *n, const kiln_act *a,
                                                      kiln_tensor *t) {
    (void)n;
    size_t bytes = kiln_tensor_bytes(t);
    void *h = malloc(bytes ? bytes : 1);
    if (!h) return KILN_STATUS_OUT_OF_MEMORY;
    cudaStreamSynchronize(r->stream);
    cudaMemcpy(h, t->data, bytes, cudaMemcpyDeviceToHost);
    kiln_tensor ht = *t;
    ht.data = h;
    kiln_act_apply(a, &ht);
    cudaMemcpy(t->data, h, bytes, cudaMemcpyHostToDevice);
    free(h);
    return KILN_STATUS_OK;
}

/* The tune hooks get no timing cache here (NULL): they time every node. */
__attribute__((weak)) int kiln_timing_cache_get(struct kiln_timing_cache *tc, const char *key) {
    (void)tc;
    (void)key;
    return -1;
}

__attribute__((weak)) void kiln_timing_cache_put(struct kiln_timing_cache *tc, const char *key, int tactic, double ms) {
    (void)tc;
    (void)key;
    (void)tactic;
    (void)ms;
}

/* ---- the device ---- */

static cudaStream_t stream;
static cublasLtHandle_t lt;
static cudnnHandle_t dnn;
static kiln_cuda_scratch_pool pool;

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- cases ---- */

enum { FILL_RAND, FILL_SCALE, FILL_YSCALE, FILL_BIAS32, FILL_SMALL };

typedef struct tcase {
    const char *name;
    int op, opset, n_in;
    kiln_tensor in[9];
    bool absent[9];
    int fill[9];
    kiln_attr attrs[8];
    int n_attrs;
    kiln_act act;
} tcase;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static tcase *new_case(const char *name, int op) {
    tcase *c = calloc(1, sizeof *c);
    c->name = name;
    c->op = op;
    c->opset = 17;
    return c;
}

static void add_in(tcase *c, kiln_dtype t, int fill, int rank, ...) {
    int64_t dims[KILN_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++) dims[i] = va_arg(ap, int);
    va_end(ap);
    int k = c->n_in++;
    c->fill[k] = fill;
    KILN_ASSERT(kiln_tensor_alloc(&c->in[k], t, rank, dims) == KILN_STATUS_OK);
    int64_t n = kiln_shape_count(rank, dims);
    for (int64_t i = 0; i < n; i++) {
        double u = urand();
        switch (fill) {
        case FILL_SCALE: kiln_store_f64(t, c->in[k].data, i, 0.004 + 0.02 * u); break;
        case FILL_YSCALE: kiln_store_f64(t, c->in[k].data, i, 0.1 + 0.4 * u); break;
        case FILL_BIAS32: kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 10000) - 5000); break;
        case FILL_SMALL: kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 201) - 100); break;
        default:
            if (kiln_dtype_is_float(t))
                kiln_store_f64(t, c->in[k].data, i, 2 * u - 1);
            else if (t == KILN_DTYPE_U8)
                kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 256));
            else if (t == KILN_DTYPE_I8)
                kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 256) - 128);
            else if (t == KILN_DTYPE_U32 || t == KILN_DTYPE_U64)
                kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 4e9));
            else
                kiln_store_i64(t, c->in[k].data, i, (int64_t)(u * 4e9) - 2000000000);
        }
    }
}

static void add_absent(tcase *c) { c->absent[c->n_in++] = true; }

static kiln_attr *attr(tcase *c, const char *name, kiln_attr_type t) {
    kiln_attr *a = &c->attrs[c->n_attrs++];
    a->name = (char *)name;
    a->type = t;
    return a;
}
static void attr_i(tcase *c, const char *name, int64_t v) { attr(c, name, KILN_ATTR_INT)->i = v; }
static void attr_f(tcase *c, const char *name, float v) { attr(c, name, KILN_ATTR_FLOAT)->f = v; }
static void attr_s(tcase *c, const char *name, const char *v) { attr(c, name, KILN_ATTR_STRING)->s = (char *)v; }
static void attr_ints(tcase *c, const char *name, int n, ...) {
    kiln_attr *a = attr(c, name, KILN_ATTR_INTS);
    a->ints = calloc((size_t)n, sizeof(int64_t));
    a->n = n;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) a->ints[i] = va_arg(ap, int);
    va_end(ap);
}
static void set_act(tcase *c, kiln_act_kind k, float a, float b) {
    c->act.kind = k;
    c->act.alpha = a;
    c->act.beta = b;
}

static int failures, cases_run;
static char **filters;
static int n_filters;

static double tol_of(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F32: return 2e-5;
    case KILN_DTYPE_F16: return 4e-3;
    case KILN_DTYPE_BF16: return 3e-2;
    case KILN_DTYPE_F64: return 1e-12;
    default: return 0;
    }
}

/* Compares the device output with the reference; prints the first mismatches. */
static bool compare(const char *name, const char *pass, const kiln_tensor *ref, const void *dev) {
    size_t bytes = kiln_tensor_bytes(ref);
    void *got = malloc(bytes ? bytes : 1);
    CK(cudaMemcpy(got, dev, bytes, cudaMemcpyDeviceToHost));
    int64_t n = kiln_shape_count(ref->rank, ref->dims);
    bool is_f = kiln_dtype_is_float(ref->dtype);
    double scale = 1, worst = 0;
    if (is_f)
        for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(kiln_load_f64(ref->dtype, ref->data, i)));
    double tol = tol_of(ref->dtype) * scale;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d;
        if (is_f) {
            double a = kiln_load_f64(ref->dtype, got, i), b = kiln_load_f64(ref->dtype, ref->data, i);
            d = isnan(a) != isnan(b) ? INFINITY : isnan(a) ? 0 : fabs(a - b);
            if (d > worst) worst = d;
            if (!(d <= tol)) {
                if (bad < 5) printf("    %s[%lld]: gpu %.9g ref %.9g\n", pass, (long long)i, a, b);
                bad++;
            }
        } else {
            int64_t a = kiln_load_i64(ref->dtype, got, i), b = kiln_load_i64(ref->dtype, ref->data, i);
            d = (double)llabs(a - b);
            if (d > worst) worst = d;
            if (a != b) {
                if (bad < 5) printf("    %s[%lld]: gpu %lld ref %lld\n", pass, (long long)i, (long long)a, (long long)b);
                bad++;
            }
        }
    }
    free(got);
    if (bad) printf("FAIL %s (%s): %d of %lld differ, max diff %.3g (tol %.3g)\n", name, pass, bad, (long long)n, worst, tol);
    return bad == 0;
}

typedef struct built {
    kiln_node node;
    int ids[10];
    kiln_tensor *hin[9], *din[9];
    kiln_tensor dev[9];
    kiln_tensor ref, out; /* out: device */
    void *state;
    void (*state_free)(void *);
} built;

static bool build(tcase *c, built *b) {
    memset(b, 0, sizeof *b);
    kiln_node *n = &b->node;
    n->op = c->op;
    n->name = (char *)c->name;
    n->opset = c->opset;
    n->n_inputs = n->n_declared = c->n_in;
    n->n_outputs = 1;
    for (int i = 0; i < c->n_in; i++) b->ids[i] = c->absent[i] ? -1 : i;
    b->ids[c->n_in] = c->n_in;
    n->inputs = b->ids;
    n->outputs = b->ids + c->n_in;
    kiln_attrs attrs = {.items = c->attrs, .n = c->n_attrs, .node_name = c->name, .op_name = kiln_op_name(c->op)};
    n->act = c->act;
    if (kiln_op_table[c->op].parse(n, &attrs) != KILN_STATUS_OK) {
        printf("FAIL %s: parse: %s\n", c->name, kiln_last_error());
        return false;
    }
    for (int i = 0; i < c->n_in; i++) b->hin[i] = c->absent[i] ? NULL : &c->in[i];
    if (kiln_op_table[c->op].infer(n, b->hin, &b->ref) != KILN_STATUS_OK) {
        printf("FAIL %s: infer: %s\n", c->name, kiln_last_error());
        return false;
    }
    KILN_ASSERT(kiln_tensor_alloc(&b->ref, b->ref.dtype, b->ref.rank, b->ref.dims) == KILN_STATUS_OK);
    if (kiln_op_table[c->op].ref(n, b->hin, &b->ref) != KILN_STATUS_OK) {
        printf("FAIL %s: reference: %s\n", c->name, kiln_last_error());
        return false;
    }
    if (c->act.kind != KILN_ACT_NONE) kiln_act_apply(&c->act, &b->ref);
    for (int i = 0; i < c->n_in; i++) {
        if (c->absent[i]) continue;
        b->dev[i] = c->in[i];
        b->dev[i].flags = 0;
        size_t bytes = kiln_tensor_bytes(&c->in[i]);
        CK(cudaMalloc(&b->dev[i].data, bytes ? bytes : 1));
        CK(cudaMemcpy(b->dev[i].data, c->in[i].data, bytes, cudaMemcpyHostToDevice));
        b->din[i] = &b->dev[i];
    }
    b->out = b->ref;
    b->out.flags = 0;
    size_t ob = kiln_tensor_bytes(&b->ref);
    CK(cudaMalloc(&b->out.data, ob ? ob : 1));
    return true;
}

static void unbuild(built *b) {
    for (int i = 0; i < 9; i++)
        if (b->din[i]) cudaFree(b->dev[i].data);
    cudaFree(b->out.data);
    kiln_tensor_release(&b->ref);
    if (b->state && b->state_free) b->state_free(b->state);
    if (b->node.params) (b->node.params_free ? b->node.params_free : free)(b->node.params);
}

static kiln_cuda_run run_ctx(built *b, int tactic) {
    kiln_cuda_run r = {.stream = stream, .lt = lt, .dnn = dnn, .state = &b->state, .state_free = &b->state_free,
                       .tactic = tactic, .scratch = &pool};
    return r;
}

static bool gpu_pass(tcase *c, built *b, const kiln_cuda_op *op, int tactic, const char *pass) {
    size_t ob = kiln_tensor_bytes(&b->ref);
    CK(cudaMemset(b->out.data, 0xff, ob));
    kiln_cuda_run r = run_ctx(b, tactic);
    kiln_status s = op->run(&r, &b->node, b->din, &b->out);
    if (s != KILN_STATUS_OK) {
        printf("FAIL %s (%s): run: %s\n", c->name, pass, kiln_last_error());
        return false;
    }
    CK(cudaStreamSynchronize(stream));
    CK(cudaGetLastError());
    return compare(c->name, pass, &b->ref, b->out.data);
}

static bool wanted(const char *name) {
    if (n_filters == 0) return true;
    for (int i = 0; i < n_filters; i++)
        if (strstr(name, filters[i])) return true;
    return false;
}

static void check(tcase *c) {
    if (!wanted(c->name)) return;
    cases_run++;
    built b;
    bool ok = build(c, &b);
    const kiln_cuda_op *op = &kiln_cuda_ops()[c->op];
    if (ok) {
        const char *why = op->supports ? op->supports(&b.node, b.hin, &b.ref) : "no entry";
        if (why) {
            printf("FAIL %s: supports says no: %s\n", c->name, why);
            ok = false;
        }
    }
    ok = ok && gpu_pass(c, &b, op, -1, "first run");
    ok = ok && gpu_pass(c, &b, op, -1, "state reused");
    int tactic = -1;
    if (ok && op->tune) {
        kiln_cuda_tune t = {.stream = stream, .lt = lt, .dnn = dnn, .scratch = &pool, .cache = NULL};
        if (op->tune(&t, &b.node, b.din, &b.out, &tactic) != KILN_STATUS_OK) {
            printf("FAIL %s: tune: %s\n", c->name, kiln_last_error());
            ok = false;
        }
        ok = ok && gpu_pass(c, &b, op, tactic, "tuned");
    }
    if (ok) {
        char dims[160];
        printf("ok   %-44s %s%s tactic %d\n", c->name, kiln_dtype_name(b.ref.dtype),
               kiln_dims_str(b.ref.rank, b.ref.dims, dims, sizeof dims), tactic);
    } else {
        failures++;
    }
    unbuild(&b);
    for (int i = 0; i < c->n_in; i++) kiln_tensor_release(&c->in[i]);
    for (int i = 0; i < c->n_attrs; i++)
        if (c->attrs[i].type == KILN_ATTR_INTS) free(c->attrs[i].ints);
    free(c);
}

/* ---- the cases ---- */

#define F32 KILN_DTYPE_F32
#define F16 KILN_DTYPE_F16
#define BF16 KILN_DTYPE_BF16
#define F64 KILN_DTYPE_F64
#define I8 KILN_DTYPE_I8
#define U8 KILN_DTYPE_U8
#define I32 KILN_DTYPE_I32
#define R FILL_RAND

static void matmul_cases(void) {
    tcase *c;
    kiln_dtype fl[] = {F32, F16, BF16, F64};
    const char *fn[] = {"matmul_f32", "matmul_f16", "matmul_bf16", "matmul_f64"};
    for (int i = 0; i < 4; i++) {
        c = new_case(fn[i], KILN_OP_MatMul);
        add_in(c, fl[i], R, 2, 13, 17);
        add_in(c, fl[i], R, 2, 17, 9);
        check(c);
    }
    c = new_case("matmul_fold_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 4, 2, 3, 13, 17);
    add_in(c, F32, R, 2, 17, 9);
    check(c);
    c = new_case("matmul_strided_f16", KILN_OP_MatMul);
    add_in(c, F16, R, 4, 2, 3, 13, 24);
    add_in(c, F16, R, 4, 2, 3, 24, 9);
    check(c);
    c = new_case("matmul_outer_loop_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 4, 2, 1, 13, 17);
    add_in(c, F32, R, 4, 1, 3, 17, 9);
    check(c);
    c = new_case("matmul_bcast_a_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 2, 13, 17);
    add_in(c, F32, R, 3, 5, 17, 9);
    check(c);
    c = new_case("matmul_mixed_bf16", KILN_OP_MatMul);
    add_in(c, BF16, R, 3, 3, 13, 17);
    add_in(c, BF16, R, 4, 2, 1, 17, 9);
    check(c);
    c = new_case("matmul_1d_a_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 1, 17);
    add_in(c, F32, R, 3, 2, 17, 9);
    check(c);
    c = new_case("matmul_1d_b_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 3, 4, 13, 17);
    add_in(c, F32, R, 1, 17);
    check(c);
    c = new_case("matmul_1d_both_f16", KILN_OP_MatMul);
    add_in(c, F16, R, 1, 33);
    add_in(c, F16, R, 1, 33);
    check(c);
    c = new_case("matmul_k0_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 2, 13, 0);
    add_in(c, F32, R, 2, 0, 9);
    check(c);
    c = new_case("matmul_empty_f32", KILN_OP_MatMul);
    add_in(c, F32, R, 2, 0, 17);
    add_in(c, F32, R, 2, 17, 9);
    check(c);
    c = new_case("matmul_attention_f16", KILN_OP_MatMul);
    add_in(c, F16, R, 4, 2, 3, 37, 64);
    add_in(c, F16, R, 4, 2, 3, 64, 37);
    check(c);
    c = new_case("matmul_i32", KILN_OP_MatMul);
    add_in(c, I32, FILL_SMALL, 3, 2, 5, 7);
    add_in(c, I32, FILL_SMALL, 2, 7, 3);
    check(c);
    c = new_case("matmul_i64_wrap", KILN_OP_MatMul);
    add_in(c, KILN_DTYPE_I64, R, 3, 2, 5, 7);
    add_in(c, KILN_DTYPE_I64, R, 3, 2, 7, 3);
    check(c);
    kiln_act_kind acts[] = {KILN_ACT_RELU, KILN_ACT_GELU_TANH, KILN_ACT_GELU, KILN_ACT_SIGMOID};
    const char *an[] = {"matmul_relu_f32", "matmul_gelutanh_f32", "matmul_gelu_f32", "matmul_sigmoid_f16"};
    for (int i = 0; i < 4; i++) {
        kiln_dtype t = i == 3 ? F16 : F32;
        c = new_case(an[i], KILN_OP_MatMul);
        add_in(c, t, R, 3, 2, 13, 40);
        add_in(c, t, R, 2, 40, 24);
        set_act(c, acts[i], 0, 0);
        check(c);
    }
}

static void fused_cases(void) {
    tcase *c;
    struct { const char *name; kiln_dtype t; kiln_act_kind act; } fc[] = {
        {"fused_f32", F32, KILN_ACT_NONE},          {"fused_relu_f32", F32, KILN_ACT_RELU},
        {"fused_gelutanh_f32", F32, KILN_ACT_GELU_TANH}, {"fused_gelu_f16", F16, KILN_ACT_GELU},
        {"fused_relu_f16", F16, KILN_ACT_RELU},     {"fused_gelutanh_bf16", BF16, KILN_ACT_GELU_TANH},
        {"fused_f64", F64, KILN_ACT_NONE},          {"fused_silu_bf16", BF16, KILN_ACT_SILU},
    };
    for (size_t i = 0; i < sizeof fc / sizeof fc[0]; i++) {
        c = new_case(fc[i].name, KILN_OP_FusedMatMul);
        add_in(c, fc[i].t, R, 3, 2, 29, 64);
        add_in(c, fc[i].t, R, 2, 64, 48);
        add_in(c, fc[i].t, R, 1, 48);
        set_act(c, fc[i].act, 0, 0);
        check(c);
    }
    c = new_case("fused_batched_f32", KILN_OP_FusedMatMul);
    add_in(c, F32, R, 3, 2, 13, 17);
    add_in(c, F32, R, 3, 2, 17, 9);
    add_in(c, F32, R, 1, 9);
    check(c);
    c = new_case("fused_odd_f16", KILN_OP_FusedMatMul);
    add_in(c, F16, R, 2, 7, 13);
    add_in(c, F16, R, 2, 13, 5);
    add_in(c, F16, R, 1, 5);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
}

static void gemm_cases(void) {
    tcase *c;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            static char names[4][32];
            snprintf(names[ta * 2 + tb], 32, "gemm_t%d%d_cvec_f32", ta, tb);
            c = new_case(names[ta * 2 + tb], KILN_OP_Gemm);
            add_in(c, F32, R, 2, ta ? 17 : 13, ta ? 13 : 17);
            add_in(c, F32, R, 2, tb ? 9 : 17, tb ? 17 : 9);
            add_in(c, F32, R, 1, 9);
            attr_i(c, "transA", ta);
            attr_i(c, "transB", tb);
            attr_f(c, "alpha", 0.5f);
            attr_f(c, "beta", 2.0f);
            check(c);
        }
    c = new_case("gemm_cmat_f32", KILN_OP_Gemm);
    add_in(c, F32, R, 2, 13, 17);
    add_in(c, F32, R, 2, 17, 9);
    add_in(c, F32, R, 2, 13, 9);
    attr_f(c, "beta", -1.5f);
    check(c);
    c = new_case("gemm_ccol_f32", KILN_OP_Gemm);
    add_in(c, F32, R, 2, 13, 17);
    add_in(c, F32, R, 2, 17, 9);
    add_in(c, F32, R, 2, 13, 1);
    attr_f(c, "beta", 0.25f);
    check(c);
    c = new_case("gemm_cscalar_f16", KILN_OP_Gemm);
    add_in(c, F16, R, 2, 13, 32);
    add_in(c, F16, R, 2, 24, 32);
    add_in(c, F16, R, 0);
    attr_i(c, "transB", 1);
    check(c);
    c = new_case("gemm_linear_relu_f16", KILN_OP_Gemm);
    add_in(c, F16, R, 2, 8, 256);
    add_in(c, F16, R, 2, 1000, 256);
    add_in(c, F16, R, 1, 1000);
    attr_i(c, "transB", 1);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("gemm_linear_bf16", KILN_OP_Gemm);
    add_in(c, BF16, R, 2, 8, 64);
    add_in(c, BF16, R, 2, 40, 64);
    add_in(c, BF16, R, 2, 1, 40);
    attr_i(c, "transB", 1);
    check(c);
    c = new_case("gemm_noc_f32", KILN_OP_Gemm);
    add_in(c, F32, R, 2, 13, 17);
    add_in(c, F32, R, 2, 17, 9);
    attr_f(c, "alpha", 3.0f);
    check(c);
    c = new_case("gemm_k0_cmat_f32", KILN_OP_Gemm);
    add_in(c, F32, R, 2, 5, 0);
    add_in(c, F32, R, 2, 0, 4);
    add_in(c, F32, R, 2, 5, 4);
    attr_f(c, "beta", 0.5f);
    check(c);
    c = new_case("gemm_i32_c", KILN_OP_Gemm);
    add_in(c, I32, FILL_SMALL, 2, 5, 7);
    add_in(c, I32, FILL_SMALL, 2, 3, 7);
    add_in(c, I32, FILL_SMALL, 1, 3);
    attr_i(c, "transB", 1);
    check(c);
    c = new_case("gemm_hardswish_f32", KILN_OP_Gemm);
    add_in(c, F32, R, 2, 13, 17);
    add_in(c, F32, R, 2, 17, 9);
    add_in(c, F32, R, 1, 9);
    set_act(c, KILN_ACT_HARDSWISH, 0, 0);
    check(c);
}

static void qmm_cases(void) {
    tcase *c;
    c = new_case("matmulinteger_u8i8_scalar_zp", KILN_OP_MatMulInteger);
    add_in(c, U8, R, 2, 13, 17);
    add_in(c, I8, R, 2, 17, 9);
    add_in(c, U8, R, 0);
    add_in(c, I8, R, 0);
    check(c);
    c = new_case("matmulinteger_i8_row_col_zp", KILN_OP_MatMulInteger);
    add_in(c, I8, R, 4, 2, 5, 13, 33);
    add_in(c, I8, R, 2, 33, 7);
    add_in(c, I8, R, 1, 13);
    add_in(c, I8, R, 1, 7);
    check(c);
    c = new_case("matmulinteger_u8u8_bcast", KILN_OP_MatMulInteger);
    add_in(c, U8, R, 4, 2, 1, 5, 20);
    add_in(c, U8, R, 3, 3, 20, 6);
    add_in(c, U8, R, 1, 5);
    check(c);
    c = new_case("matmulinteger_nozp_strided", KILN_OP_MatMulInteger);
    add_in(c, U8, R, 3, 3, 16, 64);
    add_in(c, U8, R, 3, 3, 64, 16);
    check(c);
    c = new_case("matmulinteger_1d", KILN_OP_MatMulInteger);
    add_in(c, I8, R, 1, 21);
    add_in(c, U8, R, 2, 21, 5);
    add_absent(c);
    add_in(c, U8, R, 0);
    check(c);
    c = new_case("qlinearmatmul_u8_percol", KILN_OP_QLinearMatMul);
    add_in(c, U8, R, 3, 2, 13, 40);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, U8, R, 2, 40, 9);
    add_in(c, F32, FILL_SCALE, 1, 9);
    add_in(c, U8, R, 1, 9);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    check(c);
    c = new_case("qlinearmatmul_i8_f16_scales", KILN_OP_QLinearMatMul);
    add_in(c, I8, R, 2, 13, 40);
    add_in(c, F16, FILL_SCALE, 1, 13);
    add_in(c, I8, R, 1, 13);
    add_in(c, I8, R, 2, 40, 9);
    add_in(c, F16, FILL_SCALE, 0);
    add_in(c, I8, R, 0);
    add_in(c, F16, FILL_YSCALE, 0);
    add_in(c, I8, R, 0);
    check(c);
    c = new_case("qlinearmatmul_bf16_batched", KILN_OP_QLinearMatMul);
    add_in(c, U8, R, 3, 3, 8, 24);
    add_in(c, BF16, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I8, R, 3, 3, 24, 12);
    add_in(c, BF16, FILL_SCALE, 0);
    add_in(c, I8, R, 0);
    add_in(c, BF16, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    check(c);
}

static void conv_window(tcase *c, int nsp, const int *pads, const int *strides, const int *dil) {
    if (pads) {
        kiln_attr *a = attr(c, "pads", KILN_ATTR_INTS);
        a->n = 2 * nsp;
        a->ints = calloc(6, sizeof(int64_t));
        for (int i = 0; i < 2 * nsp; i++) a->ints[i] = pads[i];
    }
    if (strides) {
        kiln_attr *a = attr(c, "strides", KILN_ATTR_INTS);
        a->n = nsp;
        a->ints = calloc(3, sizeof(int64_t));
        for (int i = 0; i < nsp; i++) a->ints[i] = strides[i];
    }
    if (dil) {
        kiln_attr *a = attr(c, "dilations", KILN_ATTR_INTS);
        a->n = nsp;
        a->ints = calloc(3, sizeof(int64_t));
        for (int i = 0; i < nsp; i++) a->ints[i] = dil[i];
    }
}

static void conv_cases(void) {
    tcase *c;
    static const int p1[] = {1, 1, 1, 1}, s2[] = {2, 2}, d2[] = {2, 2}, asym[] = {0, 1, 2, 0};
    kiln_dtype fl[] = {F32, F16, BF16, F64};
    const char *fn[] = {"conv_bias_f32", "conv_bias_f16", "conv_bias_bf16", "conv_bias_f64"};
    for (int i = 0; i < 4; i++) {
        c = new_case(fn[i], KILN_OP_Conv);
        add_in(c, fl[i], R, 4, 2, 3, 11, 13);
        add_in(c, fl[i], R, 4, 4, 3, 3, 3);
        add_in(c, fl[i], R, 1, 4);
        conv_window(c, 2, p1, NULL, NULL);
        check(c);
    }
    c = new_case("conv_stride_dil_asym_f32", KILN_OP_Conv);
    add_in(c, F32, R, 4, 2, 3, 17, 15);
    add_in(c, F32, R, 4, 5, 3, 3, 2);
    conv_window(c, 2, asym, s2, d2);
    check(c);
    c = new_case("conv_same_upper_s2_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 1, 8, 14, 14);
    add_in(c, F16, R, 4, 16, 8, 3, 3);
    add_in(c, F16, R, 1, 16);
    attr_s(c, "auto_pad", "SAME_UPPER");
    conv_window(c, 2, NULL, s2, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_group2_relu_f32", KILN_OP_Conv);
    add_in(c, F32, R, 4, 2, 6, 9, 10);
    add_in(c, F32, R, 4, 4, 3, 3, 3);
    add_in(c, F32, R, 1, 4);
    attr_i(c, "group", 2);
    conv_window(c, 2, p1, NULL, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_depthwise_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 2, 32, 15, 15);
    add_in(c, F16, R, 4, 32, 1, 3, 3);
    add_in(c, F16, R, 1, 32);
    attr_i(c, "group", 32);
    conv_window(c, 2, p1, s2, NULL);
    set_act(c, KILN_ACT_HARDSWISH, 0, 0);
    check(c);
    c = new_case("conv_1d_f32", KILN_OP_Conv);
    add_in(c, F32, R, 3, 2, 4, 19);
    add_in(c, F32, R, 3, 6, 4, 5);
    add_in(c, F32, R, 1, 6);
    {
        static const int pp[] = {2, 1}, ss[] = {2};
        conv_window(c, 1, pp, ss, NULL);
    }
    check(c);
    c = new_case("conv_3d_f32", KILN_OP_Conv);
    add_in(c, F32, R, 5, 1, 2, 5, 6, 7);
    add_in(c, F32, R, 5, 3, 2, 3, 3, 3);
    add_in(c, F32, R, 1, 3);
    {
        static const int pp[] = {1, 1, 1, 1, 1, 1};
        conv_window(c, 3, pp, NULL, NULL);
    }
    set_act(c, KILN_ACT_SIGMOID, 0, 0);
    check(c);
    c = new_case("conv_relu_nobias_f32", KILN_OP_Conv);
    add_in(c, F32, R, 4, 2, 3, 8, 8);
    add_in(c, F32, R, 4, 5, 3, 1, 1);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_resnet_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 2, 64, 14, 14);
    add_in(c, F16, R, 4, 64, 64, 3, 3);
    add_in(c, F16, R, 1, 64);
    conv_window(c, 2, p1, NULL, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_patch_bf16", KILN_OP_Conv);
    add_in(c, BF16, R, 4, 2, 3, 64, 64);
    add_in(c, BF16, R, 4, 32, 3, 16, 16);
    add_in(c, BF16, R, 1, 32);
    conv_window(c, 2, NULL, (const int[]){16, 16}, NULL);
    check(c);
    /* 1x1, unit stride, no pads: the cuBLASLt path */
    c = new_case("conv_1x1_bias_relu_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 2, 32, 7, 9);
    add_in(c, F16, R, 4, 24, 32, 1, 1);
    add_in(c, F16, R, 1, 24);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_1x1_bias_sigmoid_f32", KILN_OP_Conv);
    add_in(c, F32, R, 4, 3, 5, 6, 7);
    add_in(c, F32, R, 4, 7, 5, 1, 1);
    add_in(c, F32, R, 1, 7);
    set_act(c, KILN_ACT_SIGMOID, 0, 0);
    check(c);
    c = new_case("conv_1x1_relu_nobias_bf16", KILN_OP_Conv);
    add_in(c, BF16, R, 4, 2, 16, 5, 5);
    add_in(c, BF16, R, 4, 8, 16, 1, 1);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("conv_1x1_1d_f64", KILN_OP_Conv);
    add_in(c, F64, R, 3, 2, 6, 11);
    add_in(c, F64, R, 3, 4, 6, 1);
    add_in(c, F64, R, 1, 4);
    check(c);
    c = new_case("conv_clip_f32", KILN_OP_Conv);
    add_in(c, F32, R, 4, 1, 4, 7, 7);
    add_in(c, F32, R, 4, 8, 4, 3, 3);
    add_in(c, F32, R, 1, 8);
    set_act(c, KILN_ACT_CLIP, 0.0f, 0.5f);
    check(c);
}

static void convt_cases(void) {
    tcase *c;
    static const int p1[] = {1, 1, 1, 1}, s2[] = {2, 2};
    c = new_case("convtranspose_s2_op1_f32", KILN_OP_ConvTranspose);
    add_in(c, F32, R, 4, 1, 3, 5, 6);
    add_in(c, F32, R, 4, 3, 4, 3, 3);
    add_in(c, F32, R, 1, 4);
    conv_window(c, 2, p1, s2, NULL);
    attr_ints(c, "output_padding", 2, 1, 1);
    check(c);
    c = new_case("convtranspose_group3_f32", KILN_OP_ConvTranspose);
    add_in(c, F32, R, 4, 2, 6, 4, 4);
    add_in(c, F32, R, 4, 6, 2, 3, 3);
    attr_i(c, "group", 3);
    conv_window(c, 2, NULL, s2, (const int[]){2, 1});
    check(c);
    c = new_case("convtranspose_output_shape_f32", KILN_OP_ConvTranspose);
    add_in(c, F32, R, 4, 1, 2, 3, 3);
    add_in(c, F32, R, 4, 2, 3, 3, 3);
    conv_window(c, 2, NULL, (const int[]){3, 2}, NULL);
    attr_ints(c, "output_shape", 2, 10, 8);
    check(c);
    c = new_case("convtranspose_big_op_crop_f32", KILN_OP_ConvTranspose);
    add_in(c, F32, R, 4, 1, 2, 4, 5);
    add_in(c, F32, R, 4, 2, 3, 2, 2);
    conv_window(c, 2, (const int[]){0, 1, 2, 0}, (const int[]){1, 2}, NULL);
    attr_ints(c, "output_padding", 2, 0, 1);
    check(c);
    c = new_case("convtranspose_same_upper_f16", KILN_OP_ConvTranspose);
    add_in(c, F16, R, 4, 2, 8, 7, 7);
    add_in(c, F16, R, 4, 8, 4, 3, 3);
    add_in(c, F16, R, 1, 4);
    attr_s(c, "auto_pad", "SAME_UPPER");
    conv_window(c, 2, NULL, s2, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    check(c);
    c = new_case("convtranspose_1d_bf16", KILN_OP_ConvTranspose);
    add_in(c, BF16, R, 3, 2, 4, 9);
    add_in(c, BF16, R, 3, 4, 3, 4);
    add_in(c, BF16, R, 1, 3);
    conv_window(c, 1, (const int[]){1, 2}, (const int[]){2}, NULL);
    check(c);
    c = new_case("convtranspose_3d_f32", KILN_OP_ConvTranspose);
    add_in(c, F32, R, 5, 1, 2, 3, 4, 3);
    add_in(c, F32, R, 5, 2, 2, 2, 3, 2);
    conv_window(c, 3, NULL, (const int[]){2, 1, 2}, NULL);
    check(c);
    c = new_case("convtranspose_f64", KILN_OP_ConvTranspose);
    add_in(c, F64, R, 4, 1, 3, 5, 6);
    add_in(c, F64, R, 4, 3, 2, 3, 3);
    add_in(c, F64, R, 1, 2);
    conv_window(c, 2, p1, s2, NULL);
    check(c);
}

static void qconv_cases(void) {
    tcase *c;
    static const int p1[] = {1, 1, 1, 1}, s2[] = {2, 2};
    c = new_case("convinteger_u8_pad", KILN_OP_ConvInteger);
    add_in(c, U8, R, 4, 2, 3, 9, 10);
    add_in(c, U8, R, 4, 4, 3, 3, 3);
    add_in(c, U8, R, 0);
    add_in(c, U8, R, 1, 4);
    conv_window(c, 2, p1, NULL, NULL);
    check(c);
    c = new_case("convinteger_i8_group_s2_nozp", KILN_OP_ConvInteger);
    add_in(c, I8, R, 4, 2, 4, 9, 11);
    add_in(c, I8, R, 4, 6, 2, 3, 3);
    attr_i(c, "group", 2);
    conv_window(c, 2, (const int[]){0, 1, 1, 2}, s2, NULL);
    check(c);
    c = new_case("qlinearconv_u8_perchannel_s2", KILN_OP_QLinearConv);
    add_in(c, U8, R, 4, 2, 8, 14, 14);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I8, R, 4, 16, 8, 3, 3);
    add_in(c, F32, FILL_SCALE, 1, 16);
    add_in(c, I8, R, 1, 16);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I32, FILL_BIAS32, 1, 16);
    conv_window(c, 2, p1, s2, NULL);
    check(c);
    c = new_case("qlinearconv_i8_depthwise", KILN_OP_QLinearConv);
    add_in(c, I8, R, 4, 1, 8, 9, 9);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, I8, R, 0);
    add_in(c, I8, R, 4, 8, 1, 3, 3);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, I8, R, 0);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, I8, R, 0);
    attr_i(c, "group", 8);
    conv_window(c, 2, p1, NULL, NULL);
    check(c);
    c = new_case("qlinearconv_1d_u8", KILN_OP_QLinearConv);
    add_in(c, U8, R, 3, 3, 5, 20);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, U8, R, 3, 7, 5, 4);
    add_in(c, F32, FILL_SCALE, 1, 7);
    add_in(c, U8, R, 1, 7);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    conv_window(c, 1, (const int[]){2, 1}, (const int[]){3}, NULL);
    check(c);
    c = new_case("qlinearconv_3d_i8_bias", KILN_OP_QLinearConv);
    add_in(c, I8, R, 5, 1, 3, 4, 5, 6);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, I8, R, 0);
    add_in(c, I8, R, 5, 4, 3, 2, 3, 2);
    add_in(c, F32, FILL_SCALE, 1, 4);
    add_in(c, I8, R, 0);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I32, FILL_BIAS32, 1, 4);
    conv_window(c, 3, (const int[]){1, 0, 1, 0, 1, 1}, NULL, NULL);
    check(c);
}

/* ---- timing ---- */

/* Device milliseconds of one run, replayed from a CUDA graph (the engine's way of running;
 * it also checks that the kernels can be captured). -1 when capture fails. */
static double time_run(built *b, const kiln_cuda_op *op, int tactic, int reps) {
    kiln_cuda_run r = run_ctx(b, tactic);
    if (op->run(&r, &b->node, b->din, &b->out) != KILN_STATUS_OK) return -1; /* state, scratch */
    CK(cudaStreamSynchronize(stream));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    kiln_status s = op->run(&r, &b->node, b->din, &b->out);
    cudaError_t e = cudaStreamEndCapture(stream, &g);
    if (s != KILN_STATUS_OK || e != cudaSuccess) {
        printf("  capture failed: %s / %s\n", kiln_last_error(), cudaGetErrorString(e));
        cudaGetLastError();
        return -1;
    }
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, stream));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaEventRecord(e0, stream);
    for (int i = 0; i < reps; i++) CK(cudaGraphLaunch(ge, stream));
    cudaEventRecord(e1, stream);
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return ms / reps;
}

static void perf(tcase *c, double flops) {
    if (!wanted(c->name)) return;
    built b;
    if (!build(c, &b)) {
        failures++;
        return;
    }
    const kiln_cuda_op *op = &kiln_cuda_ops()[c->op];
    double t0 = time_run(&b, op, -1, 50);
    int tactic = -1;
    kiln_cuda_tune t = {.stream = stream, .lt = lt, .dnn = dnn, .scratch = &pool, .cache = NULL};
    if (op->tune && op->tune(&t, &b.node, b.din, &b.out, &tactic) != KILN_STATUS_OK) printf("  tune: %s\n", kiln_last_error());
    double t1 = time_run(&b, op, tactic, 50);
    bool ok = compare(c->name, "perf", &b.ref, b.out.data);
    printf("perf %-40s default %8.4f ms %7.1f TFLOP/s | tuned (tactic %4d) %8.4f ms %7.1f TFLOP/s %s\n", c->name, t0,
           flops / t0 / 1e9, tactic, t1, flops / t1 / 1e9, ok ? "" : "MISMATCH");
    if (!ok) failures++;
    unbuild(&b);
    for (int i = 0; i < c->n_in; i++) kiln_tensor_release(&c->in[i]);
    free(c);
}

static void perf_cases(void) {
    tcase *c;
    /* ViT-B/16, batch 8: QKV-like and MLP products, attention scores */
    kiln_dtype ts[] = {F16, F32};
    for (int i = 0; i < 2; i++) {
        c = new_case(i ? "vit_mlp1_f32" : "vit_mlp1_f16", KILN_OP_FusedMatMul);
        add_in(c, ts[i], R, 3, 8, 197, 768);
        add_in(c, ts[i], R, 2, 768, 3072);
        add_in(c, ts[i], R, 1, 3072);
        set_act(c, KILN_ACT_GELU_TANH, 0, 0);
        perf(c, 2.0 * 8 * 197 * 768 * 3072);
    }
    c = new_case("vit_mlp1_gelu_erf_f16", KILN_OP_FusedMatMul);
    add_in(c, F16, R, 3, 8, 197, 768);
    add_in(c, F16, R, 2, 768, 3072);
    add_in(c, F16, R, 1, 3072);
    set_act(c, KILN_ACT_GELU, 0, 0);
    perf(c, 2.0 * 8 * 197 * 768 * 3072);
    c = new_case("vit_scores_f16", KILN_OP_MatMul);
    add_in(c, F16, R, 4, 8, 12, 197, 64);
    add_in(c, F16, R, 4, 8, 12, 64, 197);
    perf(c, 2.0 * 8 * 12 * 197 * 197 * 64);
    /* ResNet-50, batch 8 */
    for (int i = 0; i < 2; i++) {
        c = new_case(i ? "resnet_3x3_64_f32" : "resnet_3x3_64_f16", KILN_OP_Conv);
        add_in(c, ts[i], R, 4, 8, 64, 56, 56);
        add_in(c, ts[i], R, 4, 64, 64, 3, 3);
        add_in(c, ts[i], R, 1, 64);
        conv_window(c, 2, (const int[]){1, 1, 1, 1}, NULL, NULL);
        set_act(c, KILN_ACT_RELU, 0, 0);
        perf(c, 2.0 * 8 * 64 * 56 * 56 * 64 * 9);
    }
    c = new_case("resnet_1x1_256to64_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 8, 256, 56, 56);
    add_in(c, F16, R, 4, 64, 256, 1, 1);
    add_in(c, F16, R, 1, 64);
    set_act(c, KILN_ACT_RELU, 0, 0);
    perf(c, 2.0 * 8 * 64 * 56 * 56 * 256);
    c = new_case("resnet_stem_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 8, 3, 224, 224);
    add_in(c, F16, R, 4, 64, 3, 7, 7);
    add_in(c, F16, R, 1, 64);
    conv_window(c, 2, (const int[]){3, 3, 3, 3}, (const int[]){2, 2}, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    perf(c, 2.0 * 8 * 64 * 112 * 112 * 3 * 49);
    c = new_case("resnet_3x3_512_7x7_f16", KILN_OP_Conv);
    add_in(c, F16, R, 4, 8, 512, 7, 7);
    add_in(c, F16, R, 4, 512, 512, 3, 3);
    add_in(c, F16, R, 1, 512);
    conv_window(c, 2, (const int[]){1, 1, 1, 1}, NULL, NULL);
    set_act(c, KILN_ACT_RELU, 0, 0);
    perf(c, 2.0 * 8 * 512 * 49 * 512 * 9);
    c = new_case("int8_qlinearconv_3x3_64", KILN_OP_QLinearConv);
    add_in(c, U8, R, 4, 8, 64, 56, 56);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I8, R, 4, 64, 64, 3, 3);
    add_in(c, F32, FILL_SCALE, 1, 64);
    add_in(c, I8, R, 1, 64);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I32, FILL_BIAS32, 1, 64);
    conv_window(c, 2, (const int[]){1, 1, 1, 1}, NULL, NULL);
    perf(c, 2.0 * 8 * 64 * 56 * 56 * 64 * 9);
    c = new_case("int8_qlinearmatmul_vit", KILN_OP_QLinearMatMul);
    add_in(c, U8, R, 3, 8, 197, 768);
    add_in(c, F32, FILL_SCALE, 0);
    add_in(c, U8, R, 0);
    add_in(c, I8, R, 2, 768, 3072);
    add_in(c, F32, FILL_SCALE, 1, 3072);
    add_in(c, I8, R, 1, 3072);
    add_in(c, F32, FILL_YSCALE, 0);
    add_in(c, U8, R, 0);
    perf(c, 2.0 * 8 * 197 * 768 * 3072);
}

/* ---- the INT8 pipeline's pieces, timed one by one (--kernels) ---- */

#define TIME(label, expr)                                                                          \
    do {                                                                                           \
        for (int w_ = 0; w_ < 3; w_++) CK(expr);                                                   \
        cudaEvent_t a_, b_;                                                                        \
        cudaEventCreate(&a_);                                                                      \
        cudaEventCreate(&b_);                                                                      \
        cudaEventRecord(a_, stream);                                                               \
        for (int r_ = 0; r_ < 20; r_++) CK(expr);                                                  \
        cudaEventRecord(b_, stream);                                                               \
        CK(cudaEventSynchronize(b_));                                                              \
        float ms_;                                                                                 \
        cudaEventElapsedTime(&ms_, a_, b_);                                                        \
        printf("kern %-44s %8.4f ms\n", label, ms_ / 20);                                          \
    } while (0)

static void *dev_rand(size_t bytes) {
    void *h = malloc(bytes), *d;
    for (size_t i = 0; i < bytes; i++) ((uint8_t *)h)[i] = (uint8_t)(urand() * 256);
    CK(cudaMalloc(&d, bytes));
    CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static cudaError_t lt_status(kiln_status s) { return s == KILN_STATUS_OK ? cudaSuccess : cudaErrorUnknown; }

static void kernel_timings(void) {
    const int64_t M = 8 * 197, K = 768, N = 3072, Mp = gemm_round_up(M, 4), Kp = K, Np = N;
    void *a = dev_rand((size_t)(M * K)), *b = dev_rand((size_t)(K * N));
    int8_t *pa = dev_rand((size_t)(Mp * Kp)), *pb = dev_rand((size_t)(Np * Kp));
    int32_t *rs = dev_rand((size_t)Mp * 4), *cs = dev_rand((size_t)Np * 4), *d = dev_rand((size_t)(Mp * Np) * 4);
    void *y = dev_rand((size_t)(M * N)), *ws = dev_rand(GEMM_LT_WORKSPACE);
    float hs[3] = {0.01f, 0.02f, 0.3f};
    float *sc;
    CK(cudaMalloc((void **)&sc, sizeof hs + N * 4));
    CK(cudaMemcpy(sc, hs, sizeof hs, cudaMemcpyHostToDevice));
    CK(cudaMemset(sc + 3, 0, N * 4));
    void *zp = dev_rand((size_t)N);
    TIME("pack A (1576x768 u8)", kiln_i8_pack(pa, a, 1, 1, M, K, Mp, Kp, stream));
    TIME("pack B transposed (768x3072 i8)", kiln_i8_pack_t(pb, b, 0, 1, K, N, Kp, Np, stream));
    TIME("row sums A", kiln_i8_row_sums(rs, pa, Mp, Kp, stream));
    TIME("row sums B", kiln_i8_row_sums(cs, pb, Np, Kp, stream));
    gemm_lt_key k;
    memset(&k, 0, sizeof k);
    gemm_lt_types(KILN_DTYPE_I8, &k);
    k.trans_b = 1;
    k.m = Mp;
    k.n = Np;
    k.k = Kp;
    k.lda = k.ldb = Kp;
    k.ldd = Np;
    k.batch = 1;
    k.align_a = k.align_b = k.align_d = 16;
    k.tactic = -1;
    gemm_lt_plan plan;
    memset(&plan, 0, sizeof plan);
    int32_t one = 1, zero = 0;
    kiln_node dummy = {.name = "kernels"};
    if (gemm_lt_prepare(lt, &dummy, &k, &plan) == KILN_STATUS_OK)
        TIME("cuBLASLt int8 1576x3072x768", lt_status(gemm_lt_run(lt, &dummy, &plan, &one, pa, pb, &zero, NULL, d, NULL, ws, stream)));
    else
        printf("kern cuBLASLt int8: %s\n", kiln_last_error());
    TIME("fallback int8 gemm", kiln_i8_gemm_xyt(d, pa, pb, 1, Mp, Np, Kp, Np, 0, 0, 0, stream));
    kiln_i8_mm_epi e;
    memset(&e, 0, sizeof e);
    e.m = M;
    e.n = N;
    e.k = K;
    e.d_m = Np;
    e.rs_mat = M;
    e.cs_mat = Np;
    e.a_u8 = 1;
    e.qlinear = 1;
    e.scale_ct = KILN_CT_F32;
    e.y_ct = KILN_CT_U8;
    e.za = (kiln_i8_param){.p = zp, .ct = KILN_CT_U8};
    e.zb = (kiln_i8_param){.p = zp, .ct = KILN_CT_I8, .n = 1};
    e.sa = (kiln_i8_param){.p = sc, .ct = KILN_CT_F32};
    e.sb = (kiln_i8_param){.p = sc + 3, .ct = KILN_CT_F32, .n = 1};
    e.sy = (kiln_i8_param){.p = sc + 2, .ct = KILN_CT_F32};
    e.zy = (kiln_i8_param){.p = zp, .ct = KILN_CT_U8};
    TIME("QLinearMatMul epilogue 1576x3072", kiln_i8_mm_epilogue(y, d, rs, cs, e, stream));
    e.qlinear = 0;
    TIME("MatMulInteger epilogue 1576x3072", kiln_i8_mm_epilogue(d, d, rs, cs, e, stream));
    gemm_lt_release(&plan);
    void *bufs[] = {a, b, pa, pb, rs, cs, d, y, ws, sc, zp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
}

int main(int argc, char **argv) {
    bool do_perf = false, do_kernels = false;
    filters = calloc((size_t)argc, sizeof *filters);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--perf") == 0)
            do_perf = true;
        else if (strcmp(argv[i], "--kernels") == 0)
            do_kernels = true;
        else
            filters[n_filters++] = argv[i];
    }
    CK(cudaStreamCreate(&stream));
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS || cudnnCreate(&dnn) != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "cannot create cuBLASLt / cuDNN handles\n");
        return 2;
    }
    printf("cuBLASLt %zu, cuDNN %zu\n", cublasLtGetVersion(), cudnnGetVersion());
    matmul_cases();
    fused_cases();
    gemm_cases();
    qmm_cases();
    conv_cases();
    convt_cases();
    qconv_cases();
    if (do_perf) perf_cases();
    if (do_kernels) kernel_timings();
    printf("%d cases, %d failed\n", cases_run, failures);
    kiln_cuda_scratch_free(&pool);
    cudnnDestroy(dnn);
    cublasLtDestroy(lt);
    cudaStreamDestroy(stream);
    return failures ? 1 : 0;
}
