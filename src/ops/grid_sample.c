/* grid_sample.c — parse and shape inference of GridSample
 * (https://onnx.ai/onnx/operators/onnx__GridSample.html): X (N, C, D1..Dr) sampled at grid
 * (N, O1..Or, r) normalized coordinates (last dim in reverse axis order: x, y, z) ->
 * Y (N, C, O1..Or); opset 16 is 2-D with modes bilinear/nearest/bicubic, opset 20 N-D with
 * linear/nearest/cubic (both spellings accepted). And AffineGrid
 * (https://onnx.ai/onnx/operators/onnx__AffineGrid.html): theta (N, 2, 3) or (N, 3, 4) and size
 * (N, C, H, W) or (N, C, D, H, W) -> grid (N, H, W, 2) or (N, D, H, W, 3).
 * Kernels in src/backends/ref/grid_sample.c. Tested by test_gridsample*, test_affine_grid*. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_parse_grid_sample(kiln_node *node, kiln_attrs *attrs) {
    kiln_grid_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    int64_t ac;
    KILN_TRY(kiln_attr_int(attrs, "align_corners", 0, &ac));
    p->align_corners = ac != 0;
    if (node->op == KILN_OP_AffineGrid) return KILN_STATUS_OK;
    char mode[32], pad[32];
    KILN_TRY(kiln_attr_string(attrs, "mode", node->opset >= 20 ? "linear" : "bilinear", mode, sizeof mode));
    KILN_TRY(kiln_attr_string(attrs, "padding_mode", "zeros", pad, sizeof pad));
    if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear")) p->mode = KILN_GRID_LINEAR;
    else if (!strcmp(mode, "nearest")) p->mode = KILN_GRID_NEAREST;
    else if (!strcmp(mode, "cubic") || !strcmp(mode, "bicubic")) p->mode = KILN_GRID_CUBIC;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute mode = '%s' is not valid", mode);
    if (!strcmp(pad, "zeros")) p->padding = KILN_GRID_ZEROS;
    else if (!strcmp(pad, "border")) p->padding = KILN_GRID_BORDER;
    else if (!strcmp(pad, "reflection")) p->padding = KILN_GRID_REFLECTION;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute padding_mode = '%s' is not valid", pad);
    return KILN_STATUS_OK;
}

static kiln_status infer_affine_grid(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *theta = in[0], *size = in[1];
    if (!kiln_nn_is_float(theta->dtype)) return kiln_node_bad_dtype(node, 0, theta->dtype);
    if (size->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, size->dtype);
    out[0].dtype = theta->dtype;
    char s1[160], s2[160];
    if (theta->rank >= 0 && size->rank >= 0) {
        int64_t nd = size->dims[0] >= 0 ? size->dims[0] - 2 : -1;
        bool bad = theta->rank != 3 || size->rank != 1 || (nd >= 0 && nd != 2 && nd != 3) ||
                   (nd >= 0 && ((theta->dims[1] >= 0 && theta->dims[1] != nd) ||
                                (theta->dims[2] >= 0 && theta->dims[2] != nd + 1)));
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                   "theta %s and size %s: expected (N, 2, 3) and (4), or (N, 3, 4) and (5)",
                                   kiln_dims_str(theta->rank, theta->dims, s1, sizeof s1),
                                   kiln_dims_str(size->rank, size->dims, s2, sizeof s2));
    }
    if (!size->data || size->rank != 1) {
        kiln_infer_unknown(node, out);
        if (size->rank == 1 && (size->dims[0] == 4 || size->dims[0] == 5)) { /* rank known, dims not */
            out[0].rank = (int)size->dims[0];
            for (int i = 0; i < out[0].rank; i++) out[0].dims[i] = KILN_DIM_UNKNOWN;
            out[0].dims[0] = theta->rank == 3 ? theta->dims[0] : KILN_DIM_UNKNOWN;
            out[0].dims[out[0].rank - 1] = size->dims[0] - 2;
        }
        return KILN_STATUS_OK;
    }
    int nd = (int)size->dims[0] - 2;
    out[0].rank = nd + 2;
    for (int i = 0; i < nd + 1; i++) {
        int64_t v = kiln_nn_get_i64(size, i == 0 ? 0 : i + 1);
        if (v < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "size has a negative value %lld", (long long)v);
        out[0].dims[i] = v;
    }
    if (theta->rank == 3 && theta->dims[0] >= 0 && theta->dims[0] != out[0].dims[0])
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "theta %s does not match N = %lld of size",
                               kiln_dims_str(theta->rank, theta->dims, s1, sizeof s1), (long long)out[0].dims[0]);
    out[0].dims[nd + 1] = nd;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_grid_sample(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 2));
    if (node->op == KILN_OP_AffineGrid) return infer_affine_grid(node, in, out);
    const kiln_tensor *x = in[0], *grid = in[1];
    if (!kiln_nn_is_float(x->dtype) && !kiln_dtype_is_int(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (!kiln_nn_is_float(grid->dtype)) return kiln_node_bad_dtype(node, 1, grid->dtype);
    out[0].dtype = x->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160], s2[160];
    int r = x->rank - 2;
    bool bad = r < 1 || grid->rank != x->rank || (grid->dims[x->rank - 1] >= 0 && grid->dims[x->rank - 1] != r) ||
               (x->dims[0] >= 0 && grid->dims[0] >= 0 && x->dims[0] != grid->dims[0]);
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s and grid %s: expected (N, C, D1..Dr), (N, O1..Or, r)",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(grid->rank, grid->dims, s2, sizeof s2));
    out[0].rank = x->rank;
    out[0].dims[0] = x->dims[0];
    out[0].dims[1] = x->dims[1];
    for (int i = 0; i < r; i++) out[0].dims[2 + i] = grid->dims[1 + i];
    return KILN_STATUS_OK;
}
