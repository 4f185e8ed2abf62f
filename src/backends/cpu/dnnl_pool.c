/* dnnl_pool.c — MaxPool (f32, int8, uint8; no Indices output), AveragePool (f32) and
 * GlobalAveragePool / GlobalMaxPool (f32), 1-D to 3-D, through oneDNN's pooling primitive on
 * kiln's (N, C, spatial...) tensors. Windowed pools run in a blocked layout (its JIT kernels;
 * the plain-layout one is scalar and several times slower), X and Y reordered around them; the global pools run on the plain layout. The window comes from
 * src/ops' resolver, as for the reference kernel (src/backends/ref/pool.c).
 *
 * ceil_mode: oneDNN sizes the output with floor, so the end pad grows until it gives Y's size.
 * That is exact for MaxPool (padding never wins) and for AveragePool without
 * count_include_pad (the divisor counts taps inside X); AveragePool with count_include_pad
 * divides by the whole kernel, which is the reference only when no pad had to grow (else the
 * reference kernel runs). AveragePool with dilations > 1 is left to the reference kernel.
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_*pool*). */
#include "dnnl_common.h"

#include "../../ops/nn_internal.h"

typedef struct pool_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
    kiln_dnnl_io io;
} pool_state;

static void pool_clear(void *v) {
    pool_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
    kiln_dnnl_io_destroy(&st->io);
}

static bool global(int op) { return op == KILN_OP_GlobalAveragePool || op == KILN_OP_GlobalMaxPool; }

static bool pool_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared != 1 || !in[0] || in[0]->rank < 3 || in[0]->rank > 5 || out->dtype != in[0]->dtype) return false;
    if (n->op == KILN_OP_MaxPool && !kiln_cpu_output_omitted(n, 1)) return false; /* Indices */
    kiln_dtype t = in[0]->dtype;
    bool ints = n->op == KILN_OP_MaxPool && (t == KILN_DTYPE_I8 || t == KILN_DTYPE_U8);
    if (t != KILN_DTYPE_F32 && !ints) return false;
    if (n->op == KILN_OP_AveragePool) {
        const kiln_pool_params *p = n->params;
        for (int i = 0; i < p->w.n_dilations; i++)
            if (p->w.dilations[i] != 1) return false;
    }
    return true;
}

/* The layout given to the JIT kernels (pooling does not choose its src layout itself): floats
 * in blocks of 8 channels (AVX2's vector), 8-bit integers channels-last. */
static dnnl_format_tag_t blocked_tag(const kiln_tensor *X) {
    bool f = X->dtype == KILN_DTYPE_F32;
    switch (X->rank) {
    case 3: return f ? dnnl_nCw8c : dnnl_nwc;
    case 4: return f ? dnnl_nChw8c : dnnl_nhwc;
    default: return f ? dnnl_nCdhw8c : dnnl_ndhwc;
    }
}

static kiln_status pool_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    pool_state *st = state;
    const kiln_pool_params *p = n->params;
    const kiln_tensor *X = in[0];
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return KILN_STATUS_RUNTIME_ERROR;
    int nsp = X->rank - 2;
    dnnl_dims_t strides, kernel, dil, pl, pr;
    dnnl_alg_kind_t alg = n->op == KILN_OP_MaxPool || n->op == KILN_OP_GlobalMaxPool ? dnnl_pooling_max
                          : p->count_include_pad && !global(n->op)    ? dnnl_pooling_avg_include_padding
                                                                        : dnnl_pooling_avg_exclude_padding;
    if (global(n->op)) {
        for (int i = 0; i < nsp; i++) {
            strides[i] = 1;
            kernel[i] = X->dims[2 + i];
            dil[i] = pl[i] = pr[i] = 0;
        }
    } else {
        kiln_window_dims d;
        KILN_TRY(kiln_nn_window_resolve(n, &p->w, nsp, X->dims + 2, p->w.kernel, &d));
        for (int i = 0; i < nsp; i++) {
            int64_t ek = (d.kernel[i] - 1) * d.dilations[i] + 1;
            strides[i] = d.strides[i];
            kernel[i] = d.kernel[i];
            dil[i] = d.dilations[i] - 1;
            pl[i] = d.pad_begin[i];
            /* the end pad for which floor sizing gives Y (grown under ceil_mode) */
            int64_t need = (out->dims[2 + i] - 1) * d.strides[i] + ek - X->dims[2 + i] - d.pad_begin[i];
            pr[i] = need > d.pad_end[i] ? need : d.pad_end[i];
            if (pr[i] != d.pad_end[i] && alg == dnnl_pooling_avg_include_padding)
                return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "ceil_mode with count_include_pad");
        }
    }
    dnnl_memory_desc_t src, dst, src_any, dst_any;
    dnnl_status_t ds = kiln_dnnl_md(&src, X->rank, X->dims, X->dtype);
    if (ds == dnnl_success) ds = kiln_dnnl_md(&dst, out->rank, out->dims, out->dtype);
    if (ds == dnnl_success) ds = dnnl_memory_desc_init_by_tag(&src_any, src.ndims, src.dims, src.data_type, blocked_tag(X));
    if (ds == dnnl_success) ds = kiln_dnnl_any(&dst_any, &dst);
    dnnl_pooling_v2_desc_t pdesc;
    if (ds == dnnl_success)
        ds = dnnl_pooling_v2_forward_desc_init(&pdesc, dnnl_forward_inference, alg, global(n->op) ? &src : &src_any,
                                               global(n->op) ? &dst : &dst_any, strides, kernel, dil, pl, pr);
    KILN_TRY(kiln_dnnl_check(ds, n, "pooling"));
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, &pdesc, "pooling", &pd);
    if (s != KILN_STATUS_OK) return s;
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WORKSPACE};
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, 3, n);
    if (s == KILN_STATUS_OK) s = kiln_dnnl_io_init(&st->io, pd, &src, &dst, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static kiln_status pool_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                            kiln_tensor *out) {
    pool_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, pool_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(kiln_cpu_prepare(st, pool_build, n, in, &out[0]));
    return kiln_dnnl_io_run(&st->io, &st->prim, in[0]->data, out[0].data, n);
}

void kiln_cpu_register_dnnl_pool(kiln_cpu_op *t) {
    kiln_cpu_op op = {.supports = pool_supports, .run = pool_run, .kernel = "onednn"};
    t[KILN_OP_MaxPool] = op;
    t[KILN_OP_AveragePool] = op;
    t[KILN_OP_GlobalAveragePool] = op;
    t[KILN_OP_GlobalMaxPool] = op;
}
