/* data_index.c — host side of the CUDA gathers and scatters: Gather, GatherElements, GatherND,
 * ScatterElements, Scatter, ScatterND, TensorScatter (kernels in data_index.cu). Semantics of
 * src/backends/ref/gather.c and scatter.c, except that an index out of range, which the
 * reference reports as a run error, cannot be reported from the device: gathers read zeros
 * and scatters skip such an index.
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_host.h"

#include "../../ops/shape_internal.h"

#include <string.h>

static bool is_index(const kiln_tensor *t) { return t && (t->dtype == KILN_DTYPE_I32 || t->dtype == KILN_DTYPE_I64); }

static int64_t count_of(const kiln_tensor *t) { return kiln_shape_count(t->rank, t->dims); }

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

static const char *supports_gather(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!in[0] || !in[1]) return "input missing";
    if (!is_index(in[1])) return "indices are not int32 or int64";
    if (in[0]->rank > KILN_CUDA_MAX_RANK || in[1]->rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    return kiln_data_movable(in[0]->dtype);
}

/* Gather: out (outer, n, inner) from x (outer, dim, inner); rows of inner elements move in the
 * widest unit their size and the addresses allow. */
static kiln_status run_gather(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, const kiln_tensor *ind,
                              kiln_tensor *out) {
    const kiln_axis_params *p = n->params;
    int axis = norm_axis(p->axis, x->rank);
    int64_t es = (int64_t)kiln_dtype_size(x->dtype);
    int64_t outer = kiln_shape_prod(x->dims, 0, axis), inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
    int unit = kiln_data_unit((uint64_t)(inner * es) | (uint64_t)(uintptr_t)x->data | (uint64_t)(uintptr_t)out->data);
    return kiln_data_check(kiln_data_gather(out->data, x->data, ind->data, ind->dtype == KILN_DTYPE_I64, unit, outer,
                                            x->dims[axis], count_of(ind), inner * es / unit, r->stream),
                           n, "gather kernel");
}

/* GatherElements and ScatterElements: the index tensor's dims, data's strides, the axis. */
static void elements_geometry(int64_t axis_attr, const kiln_tensor *x, const kiln_tensor *ind, kiln_data_elements *g) {
    memset(g, 0, sizeof *g);
    g->rank = x->rank;
    g->axis = norm_axis(axis_attr, x->rank);
    kiln_contiguous_strides(x->rank, x->dims, g->xstrides);
    for (int k = 0; k < x->rank; k++) g->idims[k] = ind->dims[k];
    g->axis_dim = x->dims[g->axis];
}

static kiln_status run_gather_elements(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, const kiln_tensor *ind,
                                       kiln_tensor *out) {
    const kiln_axis_params *p = n->params;
    kiln_data_elements g;
    elements_geometry(p->axis, x, ind, &g);
    return kiln_data_check(kiln_data_gather_elements(out->data, x->data, ind->data, ind->dtype == KILN_DTYPE_I64,
                                                     (int)kiln_dtype_size(x->dtype), &g, r->stream),
                           n, "gather-elements kernel");
}

/* GatherND / ScatterND: index tuples of m components address dims [b, b + m) of x. */
static void nd_geometry(const kiln_tensor *x, const kiln_tensor *ind, int b, kiln_data_nd *g) {
    memset(g, 0, sizeof *g);
    int q = ind->rank;
    int64_t strides[KILN_MAX_RANK];
    kiln_contiguous_strides(x->rank, x->dims, strides);
    g->m = (int)ind->dims[q - 1];
    g->batches = kiln_shape_prod(ind->dims, 0, b);
    g->per_batch = kiln_shape_prod(ind->dims, b, q - 1);
    g->slice = kiln_shape_prod(x->dims, b + g->m, x->rank);
    g->data_batch = kiln_shape_prod(x->dims, b, x->rank);
    for (int j = 0; j < g->m; j++) {
        g->dims[j] = x->dims[b + j];
        g->strides[j] = strides[b + j];
    }
}

static kiln_status run_gather_nd(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, const kiln_tensor *ind,
                                 kiln_tensor *out) {
    const kiln_gathernd_params *p = n->params;
    kiln_data_nd g;
    nd_geometry(x, ind, (int)p->batch_dims, &g);
    if (count_of(out) == 0) return KILN_STATUS_OK;
    /* every offset is a multiple of the slice: move slices in wide units */
    int64_t es = (int64_t)kiln_dtype_size(x->dtype);
    int unit = kiln_data_unit((uint64_t)(g.slice * es) | (uint64_t)(uintptr_t)x->data | (uint64_t)(uintptr_t)out->data);
    int64_t f = es, d = unit; /* units = elements * f / d */
    g.slice = g.slice * f / d;
    g.data_batch = g.data_batch * f / d;
    for (int j = 0; j < g.m; j++) g.strides[j] = g.strides[j] * f / d;
    return kiln_data_check(kiln_data_gather_nd(out->data, x->data, ind->data, ind->dtype == KILN_DTYPE_I64, unit, &g, r->stream),
                           n, "gather-nd kernel");
}

static kiln_status run_gathers(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (count_of(out) == 0) return KILN_STATUS_OK;
    switch (n->op) {
    case KILN_OP_Gather: return run_gather(r, n, in[0], in[1], out);
    case KILN_OP_GatherElements: return run_gather_elements(r, n, in[0], in[1], out);
    default: return run_gather_nd(r, n, in[0], in[1], out);
    }
}

/* ---- scatters ---- */

static const char *supports_scatter(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!in[0] || !in[1] || !in[2]) return "input missing";
    if (!is_index(in[1])) return "indices are not int32 or int64";
    if (in[0]->rank > KILN_CUDA_MAX_RANK || in[1]->rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    if (kiln_cuda_ctype(in[0]->dtype) < 0) return "data dtype";
    return NULL;
}

static int reduction_of(const kiln_scatter_params *p) {
    switch (p->reduction) {
    case KILN_SCATTER_ADD: return KILN_DATA_RED_ADD;
    case KILN_SCATTER_MUL: return KILN_DATA_RED_MUL;
    case KILN_SCATTER_MAX: return KILN_DATA_RED_MAX;
    case KILN_SCATTER_MIN: return KILN_DATA_RED_MIN;
    default: return KILN_DATA_RED_NONE;
    }
}

/* Above this, ScatterND without a reduction lets any of several writers to one place win
 * rather than take this much scratch to make the last one win. */
#define WINNER_SCRATCH_MAX ((int64_t)256 << 20)

static kiln_status run_scatter_nd(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_scatter_params *p = n->params;
    const kiln_tensor *x = in[0], *ind = in[1], *upd = in[2];
    kiln_data_nd g;
    nd_geometry(x, ind, 0, &g);
    int64_t tuples = g.per_batch, positions = kiln_shape_prod(x->dims, 0, g.m);
    g.batches = 1;
    g.data_batch = 0;
    int red = reduction_of(p);
    int *winner = NULL;
    if (tuples * g.slice == 0) return KILN_STATUS_OK;
    if (red == KILN_DATA_RED_NONE && tuples > 1 && tuples < INT32_MAX && positions * (int64_t)sizeof(int) <= WINNER_SCRATCH_MAX)
        KILN_TRY(kiln_cuda_scratch(r, (size_t)positions * sizeof(int), (void **)&winner));
    return kiln_data_check(kiln_data_scatter_nd(out->data, upd->data, ind->data, ind->dtype == KILN_DTYPE_I64,
                                                kiln_cuda_ctype(x->dtype), red, &g, tuples, winner, positions, r->stream),
                           n, "scatter-nd kernel");
}

static kiln_status run_scatters(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t c = count_of(x);
    if (c == 0) return KILN_STATUS_OK;
    KILN_TRY(kiln_data_copy(r, n, out->data, x->data, (size_t)c * kiln_dtype_size(x->dtype)));
    if (n->op == KILN_OP_ScatterND) return run_scatter_nd(r, n, in, out);
    const kiln_scatter_params *p = n->params;
    kiln_data_elements g;
    elements_geometry(p->axis, x, in[1], &g);
    return kiln_data_check(kiln_data_scatter_elements(out->data, in[2]->data, in[1]->data, in[1]->dtype == KILN_DTYPE_I64,
                                                      kiln_cuda_ctype(x->dtype), reduction_of(p), &g, r->stream),
                           n, "scatter-elements kernel");
}

/* ---- TensorScatter ---- */

static const char *supports_tensor_scatter(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!in[0] || !in[1]) return "input missing";
    if (n->n_declared > 2 && in[2] && in[2]->dtype != KILN_DTYPE_I64) return "write_indices are not int64";
    return kiln_data_movable(in[0]->dtype);
}

static kiln_status run_tensor_scatter(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_scatter_params *p = n->params;
    const kiln_tensor *past = in[0], *upd = in[1], *wi = n->n_declared > 2 ? in[2] : NULL;
    int rank = past->rank, axis = norm_axis(p->axis, rank);
    int64_t es = (int64_t)kiln_dtype_size(past->dtype), c = count_of(past);
    if (c == 0) return KILN_STATUS_OK;
    KILN_TRY(kiln_data_copy(r, n, out->data, past->data, (size_t)(c * es)));
    int64_t outer = kiln_shape_prod(past->dims, 0, axis), per_batch = kiln_shape_prod(past->dims, 1, axis);
    int64_t inner = kiln_shape_prod(past->dims, axis + 1, rank);
    int unit = kiln_data_unit((uint64_t)(inner * es) | (uint64_t)(uintptr_t)out->data | (uint64_t)(uintptr_t)upd->data);
    return kiln_data_check(kiln_data_tensor_scatter(out->data, upd->data, wi ? wi->data : NULL, unit, outer, per_batch,
                                                    past->dims[axis], upd->dims[axis], inner * es / unit, p->circular,
                                                    r->stream),
                           n, "tensor-scatter kernel");
}

void kiln_cuda_register_data_index(kiln_cuda_op *t) {
    static const int gathers[] = {KILN_OP_Gather, KILN_OP_GatherElements, KILN_OP_GatherND};
    for (int i = 0; i < 3; i++) {
        t[gathers[i]].supports = supports_gather;
        t[gathers[i]].run = run_gathers;
        t[gathers[i]].kernel = "gather";
    }
    static const int scatters[] = {KILN_OP_ScatterElements, KILN_OP_Scatter, KILN_OP_ScatterND};
    for (int i = 0; i < 3; i++) {
        t[scatters[i]].supports = supports_scatter;
        t[scatters[i]].run = run_scatters;
        t[scatters[i]].kernel = "scatter";
    }
    t[KILN_OP_TensorScatter].supports = supports_tensor_scatter;
    t[KILN_OP_TensorScatter].run = run_tensor_scatter;
    t[KILN_OP_TensorScatter].kernel = "scatter";
}
