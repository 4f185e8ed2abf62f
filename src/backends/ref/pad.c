/* pad.c — reference kernels of Pad and CenterCropPad. Each output axis gets a map from output
 * coordinate to input coordinate (or -1 for "the constant"); the copy then walks the output.
 * Negative pads first crop the input; reflect/edge/wrap then pad what is left, as ONNX Runtime
 * does. Shapes come from src/ops/pad.c. Tested by the pad and center_crop_pad node tests. */
#include "../../ops/shape_internal.h"

/* Input coordinate for coordinate c (relative to the kept part [lo, lo + n)) in mode m. */
static int64_t map_coord(kiln_pad_mode m, int64_t c, int64_t lo, int64_t n) {
    if (c >= 0 && c < n) return lo + c;
    switch (m) {
    case KILN_PAD_EDGE: return lo + (c < 0 ? 0 : n - 1);
    case KILN_PAD_WRAP: return lo + ((c % n) + n) % n;
    case KILN_PAD_REFLECT: {
        if (n == 1) return lo;
        int64_t period = 2 * (n - 1), k = ((c % period) + period) % period;
        return lo + (k < n ? k : period - k);
    }
    default: return -1;
    }
}

/* out[i] = x at the mapped coordinates, or *value where a map says -1. maps[k] has out->dims[k]
 * entries. Row by row: the outer coordinates map once per row of the last axis, and a run of
 * consecutive source elements is one copy. */
static void copy_mapped(const kiln_tensor *x, kiln_tensor *out, int64_t *const *maps, const void *value) {
    int r = x->rank;
    size_t es = kiln_dtype_size(x->dtype);
    int64_t strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_contiguous_strides(r, x->dims, strides);
    int64_t n = kiln_shape_count(out->rank, out->dims), w = r > 0 ? out->dims[r - 1] : 1;
    if (n == 0) return;
    for (int64_t row = 0, i = 0; row < n / w; row++, kiln_shape_next_index(r - 1, out->dims, idx)) {
        int64_t base = 0;
        bool constant = false;
        for (int k = 0; k < r - 1 && !constant; k++) {
            int64_t s = maps[k][idx[k]];
            constant = s < 0;
            base += s * strides[k];
        }
        for (int64_t j = 0; j < w;) {
            int64_t s = r > 0 ? maps[r - 1][j] : 0, run = 1;
            if (constant || s < 0) {
                memcpy((char *)out->data + (size_t)i * es, value, es);
            } else {
                while (j + run < w && maps[r - 1][j + run] == s + run) run++;
                memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)(base + s) * es, (size_t)run * es);
            }
            j += run;
            i += run;
        }
    }
}

/* Allocates the per-axis maps (one block); NULL on failure. */
static int64_t *alloc_maps(const kiln_node *node, const kiln_tensor *out, int64_t **maps) {
    int64_t total = 0;
    for (int k = 0; k < out->rank; k++) total += out->dims[k];
    int64_t *block = kiln_malloc(sizeof(int64_t) * (size_t)(total + 1));
    if (!block) {
        kiln_node_error(node, KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    int64_t at = 0;
    for (int k = 0; k < out->rank; at += out->dims[k], k++) maps[k] = block + at;
    return block;
}

/* https://onnx.ai/onnx/operators/onnx__Pad.html */
static kiln_status pad(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_pad_params *p = node->params;
    const kiln_tensor *x = in[0];
    const kiln_tensor *v = p->from_inputs && node->n_declared > 2 ? in[2] : NULL;
    int64_t begin[KILN_MAX_RANK], end[KILN_MAX_RANK], *maps[KILN_MAX_RANK];
    bool known;
    KILN_TRY(kiln_pad_resolve(node, in, begin, end, &known));
    uint8_t value[8] = {0};
    if (!p->from_inputs) kiln_store_f64(x->dtype, value, 0, p->value);
    else if (v && kiln_shape_count(v->rank, v->dims) > 0) memcpy(value, v->data, kiln_dtype_size(x->dtype));
    int64_t *block = alloc_maps(node, out, maps);
    if (!block) return KILN_STATUS_OUT_OF_MEMORY;
    for (int k = 0; k < x->rank; k++) {
        int64_t lo = begin[k] < 0 ? -begin[k] : 0, before = begin[k] > 0 ? begin[k] : 0;
        int64_t kept = x->dims[k] - lo - (end[k] < 0 ? -end[k] : 0);
        for (int64_t o = 0; o < out->dims[k]; o++) maps[k][o] = map_coord(p->mode, o - before, lo, kept);
    }
    copy_mapped(x, out, maps, value);
    free(block);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__CenterCropPad.html */
static kiln_status center_crop_pad(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t *maps[KILN_MAX_RANK];
    uint8_t zero[8] = {0};
    int64_t *block = alloc_maps(node, out, maps);
    if (!block) return KILN_STATUS_OUT_OF_MEMORY;
    for (int k = 0; k < x->rank; k++) {
        int64_t d = x->dims[k], t = out->dims[k];
        int64_t shift = d >= t ? (d - t) / 2 : -((t - d) / 2); /* crop start, or minus the left padding */
        for (int64_t o = 0; o < t; o++) {
            int64_t c = o + shift;
            maps[k][o] = c >= 0 && c < d ? c : -1;
        }
    }
    copy_mapped(x, out, maps, zero);
    free(block);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_pad(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (kiln_shape_count(out->rank, out->dims) == 0) return KILN_STATUS_OK;
    if (node->op == KILN_OP_CenterCropPad) return center_crop_pad(node, in, out);
    return pad(node, in, out);
}
