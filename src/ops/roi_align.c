/* roi_align.c — parse and shape inference of RoiAlign
 * (https://onnx.ai/onnx/operators/onnx__RoiAlign.html): X (N, C, H, W), rois (R, 4) as
 * (x1, y1, x2, y2), batch_indices (R) int64 -> Y (R, C, output_height, output_width).
 * Opset 10 has no coordinate_transformation_mode (it behaves as output_half_pixel); from 16 the
 * default is half_pixel. The kernel is src/backends/ref/roi_align.c. Tested by test_roialign*. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_parse_roi_align(kiln_node *node, kiln_attrs *attrs) {
    kiln_roi_align_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    char mode[32], ctm[32];
    float scale;
    KILN_TRY(kiln_attr_string(attrs, "mode", "avg", mode, sizeof mode));
    KILN_TRY(kiln_attr_string(attrs, "coordinate_transformation_mode", node->opset >= 16 ? "half_pixel" : "output_half_pixel",
                              ctm, sizeof ctm));
    KILN_TRY(kiln_attr_int(attrs, "output_height", 1, &p->out_h));
    KILN_TRY(kiln_attr_int(attrs, "output_width", 1, &p->out_w));
    KILN_TRY(kiln_attr_int(attrs, "sampling_ratio", 0, &p->sampling_ratio));
    KILN_TRY(kiln_attr_float(attrs, "spatial_scale", 1.0f, &scale));
    p->spatial_scale = scale;
    if (strcmp(mode, "avg") && strcmp(mode, "max"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute mode = '%s' is not avg or max", mode);
    p->max_mode = strcmp(mode, "max") == 0;
    if (strcmp(ctm, "half_pixel") && strcmp(ctm, "output_half_pixel"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                               "attribute coordinate_transformation_mode = '%s' is not valid", ctm);
    p->half_pixel = strcmp(ctm, "half_pixel") == 0;
    if (p->out_h <= 0 || p->out_w <= 0 || p->sampling_ratio < 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                               "attributes output_height %lld, output_width %lld, sampling_ratio %lld are out of range",
                               (long long)p->out_h, (long long)p->out_w, (long long)p->sampling_ratio);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_roi_align(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_roi_align_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 3, 3));
    const kiln_tensor *x = in[0], *rois = in[1], *bi = in[2];
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (rois->dtype != x->dtype) return kiln_node_bad_dtype(node, 1, rois->dtype);
    if (bi->dtype != KILN_DTYPE_I64 && bi->dtype != KILN_DTYPE_I32) return kiln_node_bad_dtype(node, 2, bi->dtype);
    out[0].dtype = x->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160], s2[160], s3[160];
    bool bad = x->rank != 4 || rois->rank != 2 || bi->rank != 1 || (rois->dims[1] >= 0 && rois->dims[1] != 4) ||
               (rois->dims[0] >= 0 && bi->dims[0] >= 0 && rois->dims[0] != bi->dims[0]);
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "X %s, rois %s, batch_indices %s: expected (N, C, H, W), (R, 4), (R)",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(rois->rank, rois->dims, s2, sizeof s2),
                               kiln_dims_str(bi->rank, bi->dims, s3, sizeof s3));
    out[0].rank = 4;
    out[0].dims[0] = rois->dims[0] >= 0 ? rois->dims[0] : bi->dims[0];
    out[0].dims[1] = x->dims[1];
    out[0].dims[2] = p->out_h;
    out[0].dims[3] = p->out_w;
    return KILN_STATUS_OK;
}
