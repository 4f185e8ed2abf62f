/* layer_norm.c — reference kernels of LayerNormalization, RMSNormalization, GroupNormalization
 * and MeanVarianceNormalization (https://onnx.ai/onnx/operators/onnx__LayerNormalization.html,
 * onnx__RMSNormalization.html, onnx__GroupNormalization.html,
 * onnx__MeanVarianceNormalization.html), statistics in double (two passes: mean, then variance).
 * MeanVarianceNormalization follows its ONNX function: (X - mean) / (sqrt(var) + 1e-9).
 * Tested by test_layer_normalization*, test_rms_normalization*, test_group_normalization*,
 * test_mvn*. */
#include "../../ops/nn_internal.h"

#include <math.h>
#include <string.h>

/* For each position j of the normalized shape X.shape[axis:], the flat index of t broadcast to it. */
static int64_t *bcast_map(const kiln_tensor *t, const kiln_tensor *x, int axis, int64_t cols) {
    int nr = x->rank - axis;
    int64_t str[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    size_t bytes;
    if (kiln_checked_bytes(cols, sizeof(int64_t), &bytes)) return NULL;
    int64_t *map = kiln_malloc(bytes);
    if (!map) {
        kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    kiln_broadcast_strides(t->rank, t->dims, nr, x->dims + axis, str);
    for (int64_t j = 0; j < cols; j++) {
        int64_t o = 0;
        for (int i = 0; i < nr; i++) o += idx[i] * str[i];
        map[j] = o;
        kiln_nn_next(nr, x->dims + axis, idx);
    }
    return map;
}

static kiln_status layer_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    const kiln_tensor *X = in[0], *S = in[1], *B = node->n_declared > 2 ? in[2] : NULL;
    bool rms = node->op == KILN_OP_RMSNormalization;
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, X->rank, &axis));
    int64_t rows = kiln_nn_prod(X->dims, 0, axis), cols = kiln_nn_prod(X->dims, axis, X->rank);
    int64_t *smap = bcast_map(S, X, axis, cols), *bmap = B ? bcast_map(B, X, axis, cols) : NULL;
    if (!smap || (B && !bmap)) {
        free(smap);
        free(bmap);
        return KILN_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = r * cols;
        double mean = 0, var = 0;
        if (!rms) {
            for (int64_t j = 0; j < cols; j++) mean += kiln_load_f64(X->dtype, X->data, base + j);
            mean /= (double)cols;
        }
        for (int64_t j = 0; j < cols; j++) {
            double d = kiln_load_f64(X->dtype, X->data, base + j) - mean;
            var += d * d;
        }
        var /= (double)cols;
        double inv = 1.0 / sqrt(var + p->epsilon);
        for (int64_t j = 0; j < cols; j++) {
            double v = (kiln_load_f64(X->dtype, X->data, base + j) - mean) * inv;
            v *= kiln_load_f64(S->dtype, S->data, smap[j]);
            if (B) v += kiln_load_f64(B->dtype, B->data, bmap[j]);
            kiln_store_f64(out[0].dtype, out[0].data, base + j, v);
        }
        if (node->n_outputs > 1 && out[1].data) kiln_store_f64(out[1].dtype, out[1].data, r, mean);
        if (node->n_outputs > 2 && out[2].data) kiln_store_f64(out[2].dtype, out[2].data, r, inv);
    }
    free(smap);
    free(bmap);
    return KILN_STATUS_OK;
}

static kiln_status group_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    const kiln_tensor *X = in[0], *S = in[1], *B = in[2];
    int64_t N = X->dims[0], C = X->dims[1], G = p->num_groups, Cg = C / G;
    int64_t sp = kiln_nn_prod(X->dims, 2, X->rank), block = Cg * sp;
    bool per_channel = node->opset >= 21;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < G; g++) {
            int64_t base = (n * G + g) * block;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < block; i++) mean += kiln_load_f64(X->dtype, X->data, base + i);
            mean /= (double)block;
            for (int64_t i = 0; i < block; i++) {
                double d = kiln_load_f64(X->dtype, X->data, base + i) - mean;
                var += d * d;
            }
            var /= (double)block;
            double inv = 1.0 / sqrt(var + p->epsilon);
            for (int64_t c = 0; c < Cg; c++) {
                int64_t pc = per_channel ? g * Cg + c : g;
                double sc = kiln_load_f64(S->dtype, S->data, pc), b = kiln_load_f64(B->dtype, B->data, pc);
                for (int64_t i = 0; i < sp; i++) {
                    int64_t k = base + c * sp + i;
                    kiln_store_f64(out[0].dtype, out[0].data, k,
                                   (kiln_load_f64(X->dtype, X->data, k) - mean) * inv * sc + b);
                }
            }
        }
    return KILN_STATUS_OK;
}

static kiln_status mvn(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    const kiln_tensor *X = in[0];
    int r = X->rank;
    int64_t gdims[KILN_MAX_RANK], gstr[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    memcpy(gdims, X->dims, sizeof(int64_t) * (size_t)r);
    for (int i = 0; i < p->n_axes; i++) {
        int a;
        KILN_TRY(kiln_norm_axis(p->axes[i], r, &a));
        gdims[a] = 1;
    }
    int64_t groups = kiln_shape_count(r, gdims), n = kiln_shape_count(r, X->dims);
    if (n == 0) return KILN_STATUS_OK;
    double cnt = (double)n / (double)groups;
    kiln_broadcast_strides(r, gdims, r, X->dims, gstr);
    double *mean = kiln_nn_alloc_f64(groups), *var = kiln_nn_alloc_f64(groups);
    int64_t *gi = NULL;
    size_t bytes;
    if (mean && var && !kiln_checked_bytes(n, sizeof(int64_t), &bytes)) gi = kiln_malloc(bytes);
    if (!mean || !var || !gi) {
        free(mean);
        free(var);
        free(gi);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t g = 0;
        for (int i = 0; i < r; i++) g += idx[i] * gstr[i];
        gi[k] = g;
        mean[g] += kiln_load_f64(X->dtype, X->data, k);
        kiln_nn_next(r, X->dims, idx);
    }
    for (int64_t g = 0; g < groups; g++) mean[g] /= cnt;
    for (int64_t k = 0; k < n; k++) {
        double d = kiln_load_f64(X->dtype, X->data, k) - mean[gi[k]];
        var[gi[k]] += d * d;
    }
    for (int64_t g = 0; g < groups; g++) var[g] = sqrt(var[g] / cnt) + 1e-9;
    for (int64_t k = 0; k < n; k++)
        kiln_store_f64(out[0].dtype, out[0].data, k, (kiln_load_f64(X->dtype, X->data, k) - mean[gi[k]]) / var[gi[k]]);
    free(mean);
    free(var);
    free(gi);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_layer_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_GroupNormalization: return group_norm(node, in, out);
    case KILN_OP_MeanVarianceNormalization: return mvn(node, in, out);
    default: return layer_norm(node, in, out);
    }
}
