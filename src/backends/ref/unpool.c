/* unpool.c — reference kernel of MaxUnpool (https://onnx.ai/onnx/operators/onnx__MaxUnpool.html).
 * Y starts at zero; each X element goes to the flat position I names in the unpooled shape
 * ((in - 1) * stride + kernel - pads). With an output_shape input that differs, the unpooled
 * block sits at Y's origin (as the ONNX reference and its test do). Tested by test_maxunpool*. */
#include "../../ops/nn_internal.h"

#include <string.h>

kiln_status kiln_ref_unpool(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *X = in[0], *I = in[1];
    int r = X->rank;
    int64_t udims[KILN_MAX_RANK], ustr[KILN_MAX_RANK], ostr[KILN_MAX_RANK];
    KILN_TRY(kiln_unpool_shape(node, X, udims));
    int64_t usize = kiln_shape_count(r, udims), n = kiln_shape_count(r, X->dims);
    kiln_contiguous_strides(r, udims, ustr);
    kiln_contiguous_strides(r, out[0].dims, ostr);
    size_t esz = kiln_dtype_size(X->dtype);
    /* outputs in an engine's arena hold whatever the last run left there */
    memset(out[0].data, 0, kiln_tensor_bytes(&out[0]));
    for (int64_t j = 0; j < n; j++) {
        int64_t idx = ((const int64_t *)I->data)[j];
        if (idx < 0 || idx >= usize)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "index I[%lld] = %lld is outside [0, %lld)",
                                   (long long)j, (long long)idx, (long long)usize);
        int64_t o = 0, rem = idx;
        bool inside = true;
        for (int a = 0; a < r; a++) {
            int64_t c = rem / ustr[a];
            rem -= c * ustr[a];
            if (c >= out[0].dims[a]) inside = false;
            o += c * ostr[a];
        }
        if (!inside) continue;
        const char *src = (const char *)X->data + (size_t)j * esz;
        char *dst = (char *)out[0].data + (size_t)o * esz;
        for (size_t b = 0; b < esz; b++) dst[b] = src[b];
    }
    return KILN_STATUS_OK;
}
