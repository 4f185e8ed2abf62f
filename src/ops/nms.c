/* nms.c — parse and shape inference of NonMaxSuppression
 * (https://onnx.ai/onnx/operators/onnx__NonMaxSuppression.html).
 * Inputs: boxes [B, N, 4], scores [B, C, N], and optional max_output_boxes_per_class (int64,
 * default 0 = select none), iou_threshold (float, default 0) and score_threshold (float, no
 * filtering when absent). Attribute center_point_box: 0 = [y1, x1, y2, x2] (any corner order),
 * 1 = [x_center, y_center, width, height]. Output selected_indices [num_selected, 3] int64 of
 * (batch, class, box): its length depends on the data, so infer leaves it unknown and the
 * kernel (src/backends/ref/nms.c) allocates it. Tested by the node tests test_nonmaxsuppression_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_nms(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_nms_params, p);
    int64_t cpb;
    KILN_TRY(kiln_attr_int(attrs, "center_point_box", 0, &cpb));
    if (cpb != 0 && cpb != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'center_point_box' is %lld, expected 0 or 1",
                               (long long)cpb);
    p->center_point_box = cpb == 1;
    return KILN_STATUS_OK;
}

static bool dim_clash(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) && a != b; }

kiln_status kiln_infer_nms(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 5));
    KILN_TRY(red_need_input(node, in, 0, "boxes"));
    KILN_TRY(red_need_input(node, in, 1, "scores"));
    const kiln_tensor *boxes = in[0], *scores = in[1];
    if (!kiln_dtype_is_float(boxes->dtype)) return kiln_node_bad_dtype(node, 0, boxes->dtype);
    if (!kiln_dtype_is_float(scores->dtype)) return kiln_node_bad_dtype(node, 1, scores->dtype);
    if (red_has_input(node, in, 2) && in[2]->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 2, in[2]->dtype);
    for (int i = 3; i < 5; i++)
        if (red_has_input(node, in, i) && !kiln_dtype_is_float(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    out[0].dtype = KILN_DTYPE_I64;
    out[0].rank = 2;
    out[0].dims[0] = KILN_DIM_UNKNOWN;
    out[0].dims[1] = 3;
    if (boxes->rank < 0 || scores->rank < 0) return KILN_STATUS_OK;
    char b1[64], b2[64];
    if (boxes->rank != 3 || scores->rank != 3 || dim_clash(boxes->dims[2], 4) || dim_clash(boxes->dims[0], scores->dims[0]) ||
        dim_clash(boxes->dims[1], scores->dims[2]))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "boxes %s and scores %s do not match [B, N, 4] and [B, C, N]",
                               kiln_dims_str(boxes->rank, boxes->dims, b1, sizeof b1),
                               kiln_dims_str(scores->rank, scores->dims, b2, sizeof b2));
    for (int i = 2; i < 5; i++)
        if (red_has_input(node, in, i) && in[i]->rank >= 0 && kiln_shape_count(in[i]->rank, in[i]->dims) > 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d must hold a single value", i);
    return KILN_STATUS_OK;
}
