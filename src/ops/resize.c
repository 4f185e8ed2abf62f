/* resize.c — parse and shape inference of Resize (https://onnx.ai/onnx/operators/onnx__Resize.html)
 * and the deprecated Upsample (onnx__Upsample.html).
 * Inputs by version: Upsample-7 X (scales attribute); Upsample-9 and Resize-10 X, scales;
 * Resize-11+ X, roi, scales, sizes (one of scales / sizes non-empty; 18+ with `axes` and
 * keep_aspect_ratio_policy). Output size: floor(in * scale), or sizes (rounded by the aspect
 * policy). Upsample and Resize-10 use the asymmetric transform and the "simple" nearest rule.
 * The kernel is src/backends/ref/resize.c. Tested by test_resize*, test_upsample*. */
#include "nn_internal.h"

#include <math.h>
#include <string.h>

static kiln_status parse_enum(kiln_node *node, kiln_attrs *attrs, const char *name, const char *def,
                              const char *const *names, int n, int *out) {
    char buf[64];
    KILN_TRY(kiln_attr_string(attrs, name, def, buf, sizeof buf));
    for (int i = 0; i < n; i++)
        if (strcmp(buf, names[i]) == 0) {
            *out = i;
            return KILN_STATUS_OK;
        }
    return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute %s = '%s' is not valid", name, buf);
}

kiln_status kiln_parse_resize(kiln_node *node, kiln_attrs *attrs) {
    kiln_resize_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    static const char *const modes[] = {"nearest", "linear", "cubic", "bilinear", "trilinear"};
    int m = 0;
    KILN_TRY(parse_enum(node, attrs, "mode", "nearest", modes, 5, &m));
    p->mode = m == 0 ? KILN_RESIZE_NEAREST : m == 2 ? KILN_RESIZE_CUBIC : KILN_RESIZE_LINEAR;
    p->in_roi = p->in_scales = p->in_sizes = -1;
    bool old = node->op == KILN_OP_Upsample || node->opset < 11;
    if (old) {
        if (p->mode == KILN_RESIZE_CUBIC)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "mode 'cubic' needs Resize from opset 11");
        p->coord = KILN_COORD_ASYMMETRIC;
        p->nearest = KILN_NEAREST_SIMPLE;
        p->cubic_a = -0.75;
        if (node->op == KILN_OP_Upsample && node->opset < 9) {
            float *sc;
            int n;
            bool present;
            KILN_TRY(kiln_attr_floats(attrs, "scales", &sc, &n, &present));
            if (!present || n > KILN_MAX_RANK) {
                free(sc);
                return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute scales is missing or too long");
            }
            memcpy(p->attr_scales, sc, sizeof(float) * (size_t)n);
            p->n_attr_scales = n;
            free(sc);
        } else {
            p->in_scales = 1;
        }
        return KILN_STATUS_OK;
    }
    p->in_roi = 1;
    p->in_scales = 2;
    p->in_sizes = 3;
    static const char *const coords[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                         "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    static const char *const aspects[] = {"stretch", "not_larger", "not_smaller"};
    int v = 0;
    KILN_TRY(parse_enum(node, attrs, "coordinate_transformation_mode", "half_pixel", coords, 7, &v));
    p->coord = (kiln_resize_coord)v;
    KILN_TRY(parse_enum(node, attrs, "nearest_mode", "round_prefer_floor", nearests, 4, &v));
    p->nearest = (kiln_resize_nearest)v;
    KILN_TRY(parse_enum(node, attrs, "keep_aspect_ratio_policy", "stretch", aspects, 3, &v));
    p->aspect = (kiln_resize_aspect)v;
    float a, ev;
    int64_t ex, aa;
    KILN_TRY(kiln_attr_float(attrs, "cubic_coeff_a", -0.75f, &a));
    KILN_TRY(kiln_attr_float(attrs, "extrapolation_value", 0.0f, &ev));
    KILN_TRY(kiln_attr_int(attrs, "exclude_outside", 0, &ex));
    KILN_TRY(kiln_attr_int(attrs, "antialias", 0, &aa));
    p->cubic_a = a;
    p->extrapolation = ev;
    p->exclude_outside = ex != 0;
    p->antialias = aa != 0 && p->mode != KILN_RESIZE_NEAREST;
    KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &p->n_axes));
    return KILN_STATUS_OK;
}

/* The tensor at input position i when present and non-empty, else NULL. */
static const kiln_tensor *opt_input(const kiln_node *node, kiln_tensor *const *in, int i) {
    if (i < 0 || i >= node->n_declared || !in[i]) return NULL;
    if (in[i]->rank >= 0 && kiln_shape_count(in[i]->rank, in[i]->dims) == 0) return NULL;
    return in[i];
}

kiln_status kiln_resize_resolve(const kiln_node *node, kiln_tensor *const *in, kiln_resize_geom *g) {
    const kiln_resize_params *p = node->params;
    const kiln_tensor *x = in[0];
    int r = x->rank;
    char s1[160], s2[160];
    int axes[KILN_MAX_RANK], n = p->n_axes ? p->n_axes : r;
    bool seen[KILN_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) {
        if (!p->n_axes) {
            axes[i] = i;
            continue;
        }
        if (kiln_norm_axis(p->axes[i], r, &axes[i]) || seen[axes[i]])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axes[%d] = %lld is invalid for X %s", i,
                                   (long long)p->axes[i], kiln_dims_str(r, x->dims, s1, sizeof s1));
        seen[axes[i]] = true;
    }
    g->known = true;
    for (int a = 0; a < r; a++) {
        g->scale[a] = 1.0;
        g->out[a] = x->dims[a];
        g->roi_start[a] = 0.0;
        g->roi_end[a] = 1.0;
    }
    const kiln_tensor *scales = opt_input(node, in, p->in_scales), *sizes = opt_input(node, in, p->in_sizes);
    if (scales && sizes)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "both scales and sizes are given");
    const kiln_tensor *vals = scales ? scales : sizes;
    if (!vals && !p->n_attr_scales)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "neither scales nor sizes is given");
    if (vals && (vals->rank != 1 || (vals->dims[0] >= 0 && vals->dims[0] != n)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s has shape %s, expected (%d) for X %s",
                               scales ? "scales" : "sizes", kiln_dims_str(vals->rank, vals->dims, s1, sizeof s1), n,
                               kiln_dims_str(r, x->dims, s2, sizeof s2));
    if (!vals && p->n_attr_scales != r)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "attribute scales has %d values for X %s",
                               p->n_attr_scales, kiln_dims_str(r, x->dims, s1, sizeof s1));
    if (vals && !vals->data) {
        g->known = false;
        for (int i = 0; i < n; i++) g->out[axes[i]] = KILN_DIM_UNKNOWN;
        return KILN_STATUS_OK;
    }
    if (!sizes) {
        for (int i = 0; i < n; i++) {
            int a = axes[i];
            double sc = vals ? kiln_load_f64(vals->dtype, vals->data, i) : p->attr_scales[i];
            if (!(sc > 0) || isinf(sc))
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "scale %g for axis %d is not positive", sc, a);
            g->scale[a] = sc;
            if (sc == 1.0) g->out[a] = x->dims[a]; /* keeps a symbolic dim */
            else g->out[a] = x->dims[a] < 0 ? KILN_DIM_UNKNOWN : (int64_t)floor((double)x->dims[a] * sc);
        }
    } else {
        if (sizes->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, p->in_sizes, sizes->dtype);
        double pick = 0;
        bool unknown = false;
        for (int i = 0; i < n; i++) {
            int a = axes[i];
            int64_t sz = kiln_nn_get_i64(sizes, i);
            if (sz < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "sizes[%d] = %lld is negative", i, (long long)sz);
            g->out[a] = sz;
            if (x->dims[a] <= 0) {
                unknown |= x->dims[a] < 0;
                g->scale[a] = 1.0;
                continue;
            }
            double sc = (double)sz / (double)x->dims[a];
            g->scale[a] = sc;
            if (i == 0 || (p->aspect == KILN_ASPECT_NOT_LARGER ? sc < pick : sc > pick)) pick = sc;
        }
        if (p->aspect != KILN_ASPECT_STRETCH)
            for (int i = 0; i < n; i++) {
                int a = axes[i];
                g->scale[a] = pick;
                g->out[a] = unknown || x->dims[a] < 0 ? KILN_DIM_UNKNOWN : (int64_t)(pick * (double)x->dims[a] + 0.5);
            }
    }
    const kiln_tensor *roi = opt_input(node, in, p->in_roi);
    if (p->coord == KILN_COORD_TF_CROP_AND_RESIZE && roi) {
        if (!roi->data) return KILN_STATUS_OK; /* the output shape does not depend on it */
        if (roi->rank != 1 || roi->dims[0] != 2 * n)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "roi has shape %s, expected (%d)",
                                   kiln_dims_str(roi->rank, roi->dims, s1, sizeof s1), 2 * n);
        for (int i = 0; i < n; i++) {
            g->roi_start[axes[i]] = kiln_load_f64(roi->dtype, roi->data, i);
            g->roi_end[axes[i]] = kiln_load_f64(roi->dtype, roi->data, n + i);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_resize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_resize_params *p = node->params;
    int max_in = p->in_sizes >= 0 ? 4 : p->in_scales >= 0 ? 2 : 1;
    KILN_TRY(kiln_node_check_arity(node, p->in_scales == 2 && node->opset < 13 ? 3 : 1, max_in));
    const kiln_tensor *x = in[0];
    if (x->dtype == KILN_DTYPE_STRING || (!kiln_nn_is_float(x->dtype) && !kiln_dtype_is_int(x->dtype) && x->dtype != KILN_DTYPE_BOOL))
        return kiln_node_bad_dtype(node, 0, x->dtype);
    if (p->in_scales >= 0 && p->in_scales < node->n_declared && in[p->in_scales] &&
        !kiln_nn_is_float(in[p->in_scales]->dtype))
        return kiln_node_bad_dtype(node, p->in_scales, in[p->in_scales]->dtype);
    if (p->in_roi >= 0 && p->in_roi < node->n_declared && in[p->in_roi] && !kiln_nn_is_float(in[p->in_roi]->dtype))
        return kiln_node_bad_dtype(node, p->in_roi, in[p->in_roi]->dtype);
    out[0].dtype = x->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    kiln_resize_geom g;
    KILN_TRY(kiln_resize_resolve(node, in, &g));
    out[0].rank = x->rank;
    for (int a = 0; a < x->rank; a++) out[0].dims[a] = g.out[a];
    return KILN_STATUS_OK;
}
