/* dropout.c — reference kernel of Dropout (https://onnx.ai/onnx/operators/onnx__Dropout.html).
 * Inference (the default, and always before opset 12): output = data, mask all true.
 * Training (opset 12+, training_mode input true, ratio > 0): element i is kept when u_i >= ratio
 * and scaled by 1 / (1 - ratio), u_i uniform in [0, 1) from MT19937 seeded with the seed
 * attribute (0 when absent) and drawn as numpy's legacy RandomState.uniform does, so the node
 * tests (made with np.random.seed(seed)) are reproduced exactly. Tested by test_dropout*,
 * test_training_dropout*. */
#include "../../ops/nn_internal.h"

#include <string.h>

typedef struct mt19937 {
    uint32_t mt[624];
    int pos;
} mt19937;

static void mt_seed(mt19937 *s, uint32_t seed) {
    s->mt[0] = seed;
    for (int i = 1; i < 624; i++) s->mt[i] = 1812433253u * (s->mt[i - 1] ^ (s->mt[i - 1] >> 30)) + (uint32_t)i;
    s->pos = 624;
}

static uint32_t mt_next(mt19937 *s) {
    if (s->pos >= 624) {
        for (int i = 0; i < 624; i++) {
            uint32_t y = (s->mt[i] & 0x80000000u) | (s->mt[(i + 1) % 624] & 0x7fffffffu);
            s->mt[i] = s->mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        s->pos = 0;
    }
    uint32_t y = s->mt[s->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* A double in [0, 1) with 53 random bits (numpy's random_sample). */
static double mt_double(mt19937 *s) {
    uint32_t a = mt_next(s) >> 5, b = mt_next(s) >> 6;
    return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

kiln_status kiln_ref_dropout(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_dropout_params *p = node->params;
    const kiln_tensor *X = in[0];
    double ratio = 0.5;
    bool training = false;
    if (node->opset >= 12) {
        if (node->n_declared > 1 && in[1]) ratio = kiln_load_f64(in[1]->dtype, in[1]->data, 0);
        if (node->n_declared > 2 && in[2]) training = kiln_load_i64(in[2]->dtype, in[2]->data, 0) != 0;
    }
    int64_t n = kiln_shape_count(X->rank, X->dims);
    bool want_mask = node->n_outputs > 1 && out[1].data;
    if (!training || ratio == 0) {
        memcpy(out[0].data, X->data, (size_t)n * kiln_dtype_size(X->dtype));
        if (want_mask)
            for (int64_t i = 0; i < n; i++) kiln_store_i64(out[1].dtype, out[1].data, i, 1);
        return KILN_STATUS_OK;
    }
    if (!(ratio >= 0 && ratio < 1))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "ratio %g is outside [0, 1)", ratio);
    mt19937 rng;
    mt_seed(&rng, (uint32_t)(p->has_seed ? p->seed : 0));
    double scale = 1.0 / (1.0 - ratio);
    for (int64_t i = 0; i < n; i++) {
        bool keep = mt_double(&rng) >= ratio;
        double v = keep ? kiln_load_f64(X->dtype, X->data, i) * scale : 0.0;
        kiln_store_f64(out[0].dtype, out[0].data, i, v);
        if (want_mask) kiln_store_i64(out[1].dtype, out[1].data, i, keep);
    }
    return KILN_STATUS_OK;
}
