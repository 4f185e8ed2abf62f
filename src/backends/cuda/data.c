/* data.c — the CUDA data family: registration of every op of the family (the indexing ops are
 * in data_index.c, pools / Resize / RoiAlign in data_nn.c) and the host side of the movement
 * ops and generators: Identity, Reshape, Flatten, Squeeze, Unsqueeze (a device copy when the
 * executor does not alias them), Transpose, DepthToSpace, SpaceToDepth, Concat, Split, Slice,
 * Expand, Tile, Pad, CenterCropPad, ConstantOfShape, EyeLike, Trilu, Range, OneHot.
 *
 * Movement is planned here and run by a few byte-moving kernels (data_move.cu): every permute,
 * window or broadcast becomes one strided copy after dims of size 1 are dropped and dims that
 * stay contiguous are merged, copied in the widest unit (up to 16 bytes) the row lengths and
 * addresses allow; a permute that moves the innermost dim goes through shared-memory tiles.
 * Semantics are the reference's (the files of src/backends/ref), shapes come from the ops' infer.
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_host.h"

#include "../../ops/shape_internal.h"

#include <string.h>

/* ---- shared helpers ---- */

const char *kiln_data_movable(kiln_dtype t) {
    size_t es = kiln_dtype_size(t);
    return es == 1 || es == 2 || es == 4 || es == 8 ? NULL : "dtype has no fixed element size";
}

kiln_status kiln_data_copy(kiln_cuda_run *r, const kiln_node *n, void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return KILN_STATUS_OK;
    return kiln_data_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, r->stream), n, "device copy");
}

kiln_status kiln_data_strided_run(kiln_cuda_run *r, const kiln_node *n, void *dst, const void *src, size_t es, int rank,
                              const int64_t *dims, int64_t offset, const int64_t *strides) {
    kiln_data_strided v;
    memset(&v, 0, sizeof v);
    int m = 0;
    for (int k = 0; k < rank; k++) {
        if (dims[k] == 0) return KILN_STATUS_OK;
        if (dims[k] == 1) continue;
        if (m > 0 && v.strides[m - 1] == strides[k] * dims[k]) { /* contiguous with the dim before */
            v.dims[m - 1] *= dims[k];
            v.strides[m - 1] = strides[k];
            continue;
        }
        v.dims[m] = dims[k];
        v.strides[m] = strides[k];
        m++;
    }
    const char *s = (const char *)src + offset * (int64_t)es;
    if (m == 0) return kiln_data_copy(r, n, dst, s, es);
    if (m == 1 && v.strides[0] == 1) return kiln_data_copy(r, n, dst, s, (size_t)v.dims[0] * es);
    v.rank = m;
    v.offset = offset;
    int unit = (int)es;
    if (v.strides[m - 1] == 1) { /* rows: move them in wider units when every row start allows */
        uint64_t bits = (uint64_t)(v.dims[m - 1] * (int64_t)es) | (uint64_t)(offset * (int64_t)es) | (uint64_t)(uintptr_t)src |
                        (uint64_t)(uintptr_t)dst;
        for (int k = 0; k < m - 1; k++) bits |= (uint64_t)(v.strides[k] * (int64_t)es);
        unit = kiln_data_unit(bits);
        for (int k = 0; k < m - 1; k++) v.strides[k] = v.strides[k] * (int64_t)es / unit;
        v.dims[m - 1] = v.dims[m - 1] * (int64_t)es / unit;
        v.offset = offset * (int64_t)es / unit;
    }
    return kiln_data_check(kiln_data_strided_copy(dst, src, unit, &v, r->stream), n, "strided copy kernel");
}

/* out = x (dims[rank], contiguous) transposed by perm: out dim k is dims[perm[k]]. Dims of 1
 * are dropped and output dims that are consecutive input dims merged; what is left is a
 * strided copy when the innermost dim stays innermost, else a tiled transpose over the input's
 * innermost dim (X) and the output's innermost dim (Y), the other dims as a batch. */
static kiln_status permute(kiln_cuda_run *r, const kiln_node *n, void *dst, const void *src, size_t es, int rank,
                           const int64_t *dims, const int *perm) {
    int keep[KILN_DATA_MAX_DIMS], p1[KILN_DATA_MAX_DIMS], m = 0, m1 = 0;
    int64_t count = 1;
    for (int a = 0; a < rank; a++) {
        count *= dims[a];
        keep[a] = dims[a] == 1 ? -1 : m++;
    }
    if (count == 0) return KILN_STATUS_OK;
    for (int k = 0; k < rank; k++)
        if (keep[perm[k]] >= 0) p1[m1++] = keep[perm[k]];
    int64_t d1[KILN_DATA_MAX_DIMS];
    for (int a = 0; a < rank; a++)
        if (keep[a] >= 0) d1[keep[a]] = dims[a];
    /* groups of output dims reading consecutive input dims, in output order */
    int gfirst[KILN_DATA_MAX_DIMS], glen[KILN_DATA_MAX_DIMS], ng = 0;
    for (int k = 0; k < m1; k++) {
        if (ng > 0 && p1[k] == gfirst[ng - 1] + glen[ng - 1]) glen[ng - 1]++;
        else gfirst[ng] = p1[k], glen[ng++] = 1;
    }
    if (ng <= 1) return kiln_data_copy(r, n, dst, src, (size_t)count * es);
    /* merged input dims: the groups in input order */
    int pos[KILN_DATA_MAX_DIMS], perm2[KILN_DATA_MAX_DIMS];
    int64_t D[KILN_DATA_MAX_DIMS];
    for (int g = 0; g < ng; g++) {
        pos[g] = 0;
        for (int h = 0; h < ng; h++) pos[g] += gfirst[h] < gfirst[g];
        D[pos[g]] = 1;
        for (int j = 0; j < glen[g]; j++) D[pos[g]] *= d1[gfirst[g] + j];
    }
    for (int k = 0; k < ng; k++) perm2[k] = pos[k];
    int64_t in_strides[KILN_DATA_MAX_DIMS], out_dims[KILN_DATA_MAX_DIMS], out_strides[KILN_DATA_MAX_DIMS];
    int64_t gather[KILN_DATA_MAX_DIMS];
    kiln_contiguous_strides(ng, D, in_strides);
    for (int k = 0; k < ng; k++) {
        out_dims[k] = D[perm2[k]];
        gather[k] = in_strides[perm2[k]];
    }
    kiln_contiguous_strides(ng, out_dims, out_strides);
    int X = ng - 1, Y = perm2[ng - 1];
    if (Y == X || D[X] < 16 || D[Y] < 16) return kiln_data_strided_run(r, n, dst, src, es, ng, out_dims, 0, gather);
    kiln_data_tiled t;
    memset(&t, 0, sizeof t);
    t.nx = D[X];
    t.ny = D[Y];
    t.in_stride_y = in_strides[Y];
    for (int k = 0; k < ng; k++) {
        int a = perm2[k]; /* output dim k reads input dim a */
        if (a == X) t.out_stride_x = out_strides[k];
        if (a == X || a == Y) continue;
        t.bdims[t.nb] = D[a];
        t.bin[t.nb] = in_strides[a];
        t.bout[t.nb++] = out_strides[k];
    }
    return kiln_data_check(kiln_data_tiled_transpose(dst, src, (int)es, &t, r->stream), n, "tiled transpose kernel");
}

/* The size of the node's input or output dtype, and a reason when it is not movable. */
static const char *movable_input(const kiln_node *n, kiln_tensor *const *in, int i) {
    if (!in[i]) return "input missing";
    return kiln_data_movable(in[i]->dtype);
}

static int64_t count_of(const kiln_tensor *t) { return kiln_shape_count(t->rank, t->dims); }

/* ---- Identity, Reshape, Flatten, Squeeze, Unsqueeze ---- */

static const char *supports_reshape(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return movable_input(n, in, 0);
}

static kiln_status run_reshape(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    int64_t c = count_of(in[0]);
    if (c != count_of(out)) return kiln_node_error(n, KILN_STATUS_INTERNAL, "output and input sizes differ");
    return kiln_data_copy(r, n, out->data, in[0]->data, (size_t)c * kiln_dtype_size(in[0]->dtype));
}

/* ---- Transpose, DepthToSpace, SpaceToDepth ---- */

static const char *supports_transpose(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (in[0] && in[0]->rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    return movable_input(n, in, 0);
}

static kiln_status run_transpose(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    size_t es = kiln_dtype_size(x->dtype);
    if (n->op == KILN_OP_Transpose) {
        const kiln_transpose_params *p = n->params;
        int perm[KILN_MAX_RANK];
        for (int i = 0; i < x->rank; i++) perm[i] = (int)(p->n_perm > 0 ? p->perm[i] : x->rank - 1 - i);
        return permute(r, n, out->data, x->data, es, x->rank, x->dims, perm);
    }
    /* 6-D views as in src/backends/ref/transpose.c */
    const kiln_d2s_params *p = n->params;
    int64_t b = p->blocksize, nn = x->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (n->op == KILN_OP_DepthToSpace) {
        int64_t cc = c / (b * b);
        if (p->crd) {
            int64_t dims[6] = {nn, cc, b, b, h, w};
            return permute(r, n, out->data, x->data, es, 6, dims, (const int[]){0, 1, 4, 2, 5, 3});
        }
        int64_t dims[6] = {nn, b, b, cc, h, w};
        return permute(r, n, out->data, x->data, es, 6, dims, (const int[]){0, 3, 4, 1, 5, 2});
    }
    int64_t dims[6] = {nn, c, h / b, b, w / b, b};
    if (p->crd) return permute(r, n, out->data, x->data, es, 6, dims, (const int[]){0, 1, 3, 5, 2, 4});
    return permute(r, n, out->data, x->data, es, 6, dims, (const int[]){0, 3, 5, 1, 2, 4});
}

/* ---- Concat, Split ---- */

/* Launches the row copies gathered in rows (lengths and pitches in bytes so far), in the
 * widest unit they all allow, and empties it. */
static kiln_status flush_rows(kiln_cuda_run *r, const kiln_node *n, kiln_data_rows *rows) {
    if (rows->n == 0) return KILN_STATUS_OK;
    uint64_t bits = 0;
    for (int j = 0; j < rows->n; j++)
        bits |= (uint64_t)rows->len[j] | (uint64_t)rows->src_pitch[j] | (uint64_t)rows->dst_pitch[j] |
                (uint64_t)(uintptr_t)rows->src[j] | (uint64_t)(uintptr_t)rows->dst[j];
    int unit = kiln_data_unit(bits);
    for (int j = 0; j < rows->n; j++) {
        rows->len[j] /= unit;
        rows->src_pitch[j] /= unit;
        rows->dst_pitch[j] /= unit;
    }
    kiln_status s = kiln_data_check(kiln_data_copy_rows(unit, rows, r->stream), n, "row copy kernel");
    rows->n = 0;
    return s;
}

/* Adds one row copy (bytes); launches when the batch is full. */
static kiln_status add_rows(kiln_cuda_run *r, const kiln_node *n, kiln_data_rows *rows, void *dst, int64_t dst_pitch,
                            const void *src, int64_t src_pitch, int64_t len) {
    if (len == 0) return KILN_STATUS_OK;
    int j = rows->n++;
    rows->src[j] = src;
    rows->dst[j] = dst;
    rows->len[j] = len;
    rows->src_pitch[j] = src_pitch;
    rows->dst_pitch[j] = dst_pitch;
    return rows->n == KILN_DATA_ROWS_MAX ? flush_rows(r, n, rows) : KILN_STATUS_OK;
}

static const char *supports_concat(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    for (int i = 0; i < n->n_declared; i++) {
        const char *why = movable_input(n, in, i);
        if (why) return why;
    }
    return NULL;
}

static kiln_status run_concat(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = n->params;
    int axis = (int)(p->axis < 0 ? p->axis + out->rank : p->axis);
    int64_t es = (int64_t)kiln_dtype_size(out->dtype);
    if (count_of(out) == 0) return KILN_STATUS_OK;
    int64_t outer = kiln_shape_prod(out->dims, 0, axis), inner = kiln_shape_prod(out->dims, axis + 1, out->rank);
    int64_t row = out->dims[axis] * inner * es, at = 0;
    kiln_data_rows rows;
    memset(&rows, 0, sizeof rows);
    rows.rows = outer;
    for (int i = 0; i < n->n_declared; i++) {
        int64_t len = in[i]->dims[axis] * inner * es;
        KILN_TRY(add_rows(r, n, &rows, (char *)out->data + at, row, in[i]->data, len, len));
        at += len;
    }
    return flush_rows(r, n, &rows);
}

static const char *supports_split(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return movable_input(n, in, 0);
}

static kiln_status run_split(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_split_params *p = n->params;
    const kiln_tensor *x = in[0];
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    int64_t es = (int64_t)kiln_dtype_size(x->dtype);
    if (count_of(x) == 0) return KILN_STATUS_OK;
    int64_t outer = kiln_shape_prod(x->dims, 0, axis), inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
    int64_t row = x->dims[axis] * inner * es, at = 0;
    kiln_data_rows rows;
    memset(&rows, 0, sizeof rows);
    rows.rows = outer;
    for (int j = 0; j < n->n_outputs; j++) {
        int64_t len = out[j].dims[axis] * inner * es;
        if (out[j].data) KILN_TRY(add_rows(r, n, &rows, out[j].data, len, (const char *)x->data + at, row, len));
        at += len;
    }
    return flush_rows(r, n, &rows);
}

/* ---- Slice, Expand, Tile ---- */

static kiln_status run_slice(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK], dims[KILN_MAX_RANK], strides[KILN_MAX_RANK];
    KILN_TRY(kiln_slice_resolve(n, in, start, step, dims));
    kiln_contiguous_strides(x->rank, x->dims, strides);
    int64_t offset = 0;
    for (int k = 0; k < x->rank; k++) {
        if (dims[k] == 0) return KILN_STATUS_OK;
        offset += start[k] * strides[k];
        strides[k] *= step[k];
    }
    return kiln_data_strided_run(r, n, out->data, x->data, kiln_dtype_size(x->dtype), x->rank, dims, offset, strides);
}

static kiln_status run_expand(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t strides[KILN_MAX_RANK];
    kiln_broadcast_strides(x->rank, x->dims, out->rank, out->dims, strides);
    return kiln_data_strided_run(r, n, out->data, x->data, kiln_dtype_size(x->dtype), out->rank, out->dims, 0, strides);
}

/* Tile: each axis viewed as (repeats, dim), the repeats with stride 0. */
static kiln_status run_tile(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t xs[KILN_MAX_RANK], dims[KILN_DATA_MAX_DIMS], strides[KILN_DATA_MAX_DIMS];
    if (count_of(out) == 0) return KILN_STATUS_OK;
    kiln_contiguous_strides(x->rank, x->dims, xs);
    for (int k = 0; k < x->rank; k++) {
        dims[2 * k] = out->dims[k] / x->dims[k];
        strides[2 * k] = 0;
        dims[2 * k + 1] = x->dims[k];
        strides[2 * k + 1] = xs[k];
    }
    return kiln_data_strided_run(r, n, out->data, x->data, kiln_dtype_size(x->dtype), 2 * x->rank, dims, 0, strides);
}

/* ---- Pad, CenterCropPad ---- */

static kiln_status launch_pad(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, kiln_tensor *out, kiln_data_pad *p) {
    if (count_of(out) == 0) return KILN_STATUS_OK;
    p->rank = x->rank;
    kiln_contiguous_strides(x->rank, x->dims, p->in_strides);
    for (int k = 0; k < x->rank; k++) p->out_dims[k] = out->dims[k];
    return kiln_data_check(kiln_data_pad_copy(out->data, x->data, (int)kiln_dtype_size(x->dtype), p, r->stream), n,
                           "pad kernel");
}

static kiln_status run_pad(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    kiln_data_pad p;
    memset(&p, 0, sizeof p);
    if (n->op == KILN_OP_CenterCropPad) { /* crop start, or minus the left padding, centred */
        for (int k = 0; k < x->rank; k++) {
            int64_t d = x->dims[k], t = out->dims[k];
            p.before[k] = d >= t ? -((d - t) / 2) : (t - d) / 2;
            p.kept[k] = d;
        }
        return launch_pad(r, n, x, out, &p);
    }
    const kiln_pad_params *pp = n->params;
    const kiln_tensor *v = pp->from_inputs && n->n_declared > 2 ? in[2] : NULL;
    int64_t begin[KILN_MAX_RANK], end[KILN_MAX_RANK];
    bool known;
    KILN_TRY(kiln_pad_resolve(n, in, begin, end, &known));
    if (!known) return kiln_node_error(n, KILN_STATUS_INTERNAL, "pads are not known at run time");
    if (!pp->from_inputs) kiln_store_f64(x->dtype, &p.value, 0, pp->value);
    else if (v && count_of(v) > 0) memcpy(&p.value, v->data, kiln_dtype_size(x->dtype));
    static const int modes[] = {[KILN_PAD_CONSTANT] = KILN_DATA_PAD_CONSTANT, [KILN_PAD_REFLECT] = KILN_DATA_PAD_REFLECT,
                                [KILN_PAD_EDGE] = KILN_DATA_PAD_EDGE, [KILN_PAD_WRAP] = KILN_DATA_PAD_WRAP};
    p.mode = modes[pp->mode];
    for (int k = 0; k < x->rank; k++) {
        p.lo[k] = begin[k] < 0 ? -begin[k] : 0;
        p.before[k] = begin[k] > 0 ? begin[k] : 0;
        p.kept[k] = x->dims[k] - p.lo[k] - (end[k] < 0 ? -end[k] : 0);
    }
    return launch_pad(r, n, x, out, &p);
}

/* ---- generators ---- */

/* The bytes of one element (little-endian, in the low bytes). */
static uint64_t element_bits(const void *p, size_t es) {
    uint64_t v = 0;
    memcpy(&v, p, es);
    return v;
}

static const char *supports_constant_of_shape(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return kiln_data_movable(out[0].dtype);
}

static kiln_status run_constant_of_shape(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_const_params *p = n->params;
    size_t es = kiln_dtype_size(p->dtype);
    return kiln_data_check(kiln_data_fill(out->data, (int)es, count_of(out), element_bits(p->value, es), r->stream), n,
                           "fill kernel");
}

static const char *supports_eye_like(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!kiln_dtype_is_float(out[0].dtype) && !kiln_dtype_is_int(out[0].dtype) && out[0].dtype != KILN_DTYPE_BOOL)
        return "output dtype is not numeric";
    return kiln_data_movable(out[0].dtype);
}

static kiln_status run_eye_like(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_eyelike_params *p = n->params;
    uint64_t one = 0;
    kiln_store_i64(out->dtype, &one, 0, 1);
    return kiln_data_check(kiln_data_eye(out->data, (int)kiln_dtype_size(out->dtype), out->dims[0], out->dims[1], p->k, one,
                                         r->stream),
                           n, "eye kernel");
}

static const char *supports_trilu(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return movable_input(n, in, 0);
}

static kiln_status run_trilu(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_trilu_params *p = n->params;
    const kiln_tensor *x = in[0], *kt = n->n_declared > 1 ? in[1] : NULL;
    int64_t k = kt && count_of(kt) > 0 ? kiln_load_i64(kt->dtype, kt->data, 0) : 0;
    int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1], total = count_of(x);
    if (total == 0) return KILN_STATUS_OK;
    return kiln_data_check(kiln_data_trilu(out->data, x->data, (int)kiln_dtype_size(x->dtype), total / (rows * cols), rows,
                                           cols, k, p->upper, r->stream),
                           n, "trilu kernel");
}

static const char *supports_range(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    switch (out[0].dtype) {
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_BF16:
    case KILN_DTYPE_I16: case KILN_DTYPE_I32: case KILN_DTYPE_I64: return NULL;
    default: return "dtype not one of Range's";
    }
}

static kiln_status run_range(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_dtype t = in[0]->dtype;
    double fs = 0, fd = 0;
    int64_t is = 0, id = 0;
    if (kiln_dtype_is_float(t)) {
        fs = kiln_load_f64(t, in[0]->data, 0);
        fd = kiln_load_f64(t, in[2]->data, 0);
    } else {
        is = kiln_load_i64(t, in[0]->data, 0);
        id = kiln_load_i64(t, in[2]->data, 0);
    }
    return kiln_data_check(kiln_data_range(out->data, kiln_cuda_ctype(out->dtype), out->dims[0], fs, fd, is, id, r->stream),
                           n, "range kernel");
}

static const char *supports_one_hot(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!in[0] || !in[2]) return "input missing";
    if (in[0]->dtype == KILN_DTYPE_BOOL || kiln_cuda_ctype(in[0]->dtype) < 0) return "indices dtype";
    return kiln_data_movable(in[2]->dtype);
}

static kiln_status run_one_hot(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = n->params;
    const kiln_tensor *values = in[2];
    int rank = out->rank, axis = (int)(p->axis < 0 ? p->axis + rank : p->axis);
    size_t es = kiln_dtype_size(values->dtype);
    int64_t outer = kiln_shape_prod(out->dims, 0, axis), inner = kiln_shape_prod(out->dims, axis + 1, rank);
    uint64_t off = element_bits(values->data, es), on = element_bits((const char *)values->data + es, es);
    return kiln_data_check(kiln_data_one_hot(out->data, in[0]->data, kiln_cuda_ctype(in[0]->dtype), (int)es, outer,
                                             out->dims[axis], inner, off, on, r->stream),
                           n, "one-hot kernel");
}

/* ---- registration ---- */

static void set(kiln_cuda_op *t, int op, const char *(*supports)(const kiln_node *, kiln_tensor *const *, const kiln_tensor *),
                kiln_status (*run)(kiln_cuda_run *, const kiln_node *, kiln_tensor *const *, kiln_tensor *), uint32_t host_inputs,
                const char *kernel) {
    t[op].supports = supports;
    t[op].run = run;
    t[op].host_inputs = host_inputs;
    t[op].kernel = kernel;
}

#define BIT(k) (1u << (k))

void kiln_cuda_register_data(kiln_cuda_op *t) {
    set(t, KILN_OP_Identity, supports_reshape, run_reshape, 0, "copy");
    set(t, KILN_OP_Reshape, supports_reshape, run_reshape, BIT(1), "copy");
    set(t, KILN_OP_Flatten, supports_reshape, run_reshape, 0, "copy");
    set(t, KILN_OP_Squeeze, supports_reshape, run_reshape, BIT(1), "copy");
    set(t, KILN_OP_Unsqueeze, supports_reshape, run_reshape, BIT(1), "copy");
    set(t, KILN_OP_Transpose, supports_transpose, run_transpose, 0, "transpose");
    set(t, KILN_OP_DepthToSpace, supports_transpose, run_transpose, 0, "transpose");
    set(t, KILN_OP_SpaceToDepth, supports_transpose, run_transpose, 0, "transpose");
    set(t, KILN_OP_Concat, supports_concat, run_concat, 0, "row-copy");
    set(t, KILN_OP_Split, supports_split, run_split, BIT(1), "row-copy");
    set(t, KILN_OP_Slice, supports_transpose, run_slice, BIT(1) | BIT(2) | BIT(3) | BIT(4), "strided-copy");
    set(t, KILN_OP_Expand, supports_transpose, run_expand, BIT(1), "strided-copy");
    set(t, KILN_OP_Tile, supports_transpose, run_tile, BIT(1), "strided-copy");
    set(t, KILN_OP_Pad, supports_transpose, run_pad, BIT(1) | BIT(2) | BIT(3), "pad");
    set(t, KILN_OP_CenterCropPad, supports_transpose, run_pad, BIT(1), "pad");
    set(t, KILN_OP_ConstantOfShape, supports_constant_of_shape, run_constant_of_shape, BIT(0), "fill");
    set(t, KILN_OP_EyeLike, supports_eye_like, run_eye_like, 0, "eye");
    set(t, KILN_OP_Trilu, supports_trilu, run_trilu, BIT(1), "trilu");
    set(t, KILN_OP_Range, supports_range, run_range, BIT(0) | BIT(1) | BIT(2), "range");
    set(t, KILN_OP_OneHot, supports_one_hot, run_one_hot, BIT(1) | BIT(2), "one-hot");
    kiln_cuda_register_data_index(t);
    kiln_cuda_register_data_nn(t);
}
