/* op_table.c — the op table expanded from ops.def, op lookup, and the helpers every op uses
 * for messages and unknown types. */
#include "op.h"

#include <stdarg.h>
#include <string.h>

const kiln_op_def kiln_op_table[KILN_OP_COUNT] = {
#define KILN_OP(id, onnx, since, family)                                                           \
    [KILN_OP_##id] = {onnx, since, #family, kiln_parse_##family, kiln_infer_##family, kiln_ref_##family},
#include "ops.def"
#undef KILN_OP
};

int kiln_op_find(const char *onnx_name) {
    for (int i = 0; i < KILN_OP_COUNT; i++)
        if (strcmp(kiln_op_table[i].name, onnx_name) == 0) return i;
    return -1;
}

const char *kiln_op_name(int op) {
    return op >= 0 && op < KILN_OP_COUNT ? kiln_op_table[op].name : "?";
}

bool kiln_op_pure(int op) {
    switch (op) {
    case KILN_OP_If: case KILN_OP_Loop: case KILN_OP_Scan:
    case KILN_OP_RandomNormal: case KILN_OP_RandomUniform: case KILN_OP_RandomNormalLike:
    case KILN_OP_RandomUniformLike: case KILN_OP_Bernoulli: case KILN_OP_Multinomial:
        return false;
    default: return true;
    }
}

bool kiln_op_is_internal(int op) {
    return op >= 0 && op < KILN_OP_COUNT && strncmp(kiln_op_table[op].family, "fused", 5) == 0; /* fused, fused_ew */
}

void kiln_infer_unknown(const kiln_node *node, kiln_tensor *out) {
    for (int j = 0; j < node->n_outputs; j++) out[j].rank = -1;
}

bool kiln_infer_ranks_known(const kiln_node *node, kiln_tensor *const *in) {
    for (int i = 0; i < node->n_inputs; i++)
        if (in[i] && in[i]->rank < 0) return false;
    return true;
}

kiln_status kiln_node_error(const kiln_node *node, kiln_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(s, "node '%s' (%s): %s", node->name, kiln_op_name(node->op), msg);
}

kiln_status kiln_node_bad_dtype(const kiln_node *node, int input, kiln_dtype t) {
    return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "dtype %s of input %d is not supported",
                           kiln_dtype_name(t), input);
}

kiln_status kiln_node_check_arity(const kiln_node *node, int lo, int hi) {
    if (node->n_declared < lo || (hi >= 0 && node->n_declared > hi))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d inputs, expected %d to %d",
                               node->n_declared, lo, hi);
    return KILN_STATUS_OK;
}
