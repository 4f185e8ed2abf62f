/* control.c — If, Loop and Scan: parsing their subgraphs and attributes, and shape inference.
 * Output shapes of control flow generally depend on running the subgraph, so inference gives
 * dtypes (from the subgraph outputs) and leaves shapes to the kernel, except where they are
 * fixed by the inputs. Spec: https://onnx.ai/onnx/operators/onnx__If.html, __Loop, __Scan. */
#include "control.h"

#include <string.h>

static void control_free(void *p) {
    kiln_control_params *c = p;
    kiln_graph_free(c->then_branch);
    kiln_graph_free(c->else_branch);
    kiln_graph_free(c->body);
    free(c);
}

static kiln_status need_graph(const kiln_node *node, kiln_graph *g, const char *attr) {
    if (!g) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute '%s' (a graph) is missing", attr);
    return KILN_STATUS_OK;
}

kiln_status kiln_parse_control(kiln_node *node, kiln_attrs *attrs) {
    kiln_control_params *c = kiln_calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = c;
    node->params_free = control_free;
    switch (node->op) {
    case KILN_OP_If:
        KILN_TRY(kiln_attr_take_graph(attrs, "then_branch", &c->then_branch));
        KILN_TRY(kiln_attr_take_graph(attrs, "else_branch", &c->else_branch));
        KILN_TRY(need_graph(node, c->then_branch, "then_branch"));
        KILN_TRY(need_graph(node, c->else_branch, "else_branch"));
        if (c->then_branch->n_outputs != node->n_outputs || c->else_branch->n_outputs != node->n_outputs)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "the branches have %d and %d outputs, the node %d",
                                   c->then_branch->n_outputs, c->else_branch->n_outputs, node->n_outputs);
        return KILN_STATUS_OK;
    case KILN_OP_Loop: {
        KILN_TRY(kiln_attr_take_graph(attrs, "body", &c->body));
        KILN_TRY(need_graph(node, c->body, "body"));
        int n_carried = node->n_declared - 2;
        if (n_carried < 0) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "needs inputs M and cond (either may be empty)");
        if (c->body->n_inputs != n_carried + 2 || c->body->n_outputs < n_carried + 1 ||
            node->n_outputs != c->body->n_outputs - 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                                   "body has %d inputs and %d outputs; with %d loop-carried values it needs %d inputs and %d outputs",
                                   c->body->n_inputs, c->body->n_outputs, n_carried, n_carried + 2, node->n_outputs + 1);
        return KILN_STATUS_OK;
    }
    case KILN_OP_Scan: {
        KILN_TRY(kiln_attr_take_graph(attrs, "body", &c->body));
        KILN_TRY(need_graph(node, c->body, "body"));
        int64_t m;
        KILN_TRY(kiln_attr_int(attrs, "num_scan_inputs", -1, &m));
        if (m < 1 || m > 64 || m > node->n_declared)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "num_scan_inputs %lld is out of range", (long long)m);
        c->num_scan_inputs = (int)m;
        KILN_TRY(kiln_attr_ints_fixed(attrs, "scan_input_axes", c->scan_input_axes, 64, &c->n_scan_input_axes));
        KILN_TRY(kiln_attr_ints_fixed(attrs, "scan_input_directions", c->scan_input_directions, 64, &c->n_scan_input_directions));
        KILN_TRY(kiln_attr_ints_fixed(attrs, "scan_output_axes", c->scan_output_axes, 64, &c->n_scan_output_axes));
        KILN_TRY(kiln_attr_ints_fixed(attrs, "scan_output_directions", c->scan_output_directions, 64, &c->n_scan_output_directions));
        int n_state = node->n_declared - c->num_scan_inputs;
        if (c->body->n_inputs != node->n_declared || c->body->n_outputs != node->n_outputs || node->n_outputs < n_state)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "body has %d inputs and %d outputs, the node %d and %d",
                                   c->body->n_inputs, c->body->n_outputs, node->n_declared, node->n_outputs);
        if ((c->n_scan_input_axes && c->n_scan_input_axes != m) || (c->n_scan_input_directions && c->n_scan_input_directions != m))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "scan_input_axes/directions need %lld values", (long long)m);
        int k = node->n_outputs - n_state;
        if ((c->n_scan_output_axes && c->n_scan_output_axes != k) || (c->n_scan_output_directions && c->n_scan_output_directions != k))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "scan_output_axes/directions need %d values", k);
        return KILN_STATUS_OK;
    }
    default: return kiln_node_error(node, KILN_STATUS_INTERNAL, "not a control-flow op");
    }
}

static void dtype_of(const kiln_graph *g, int output, kiln_tensor *out) {
    out->dtype = g->values[g->outputs[output]].type.dtype;
    out->rank = -1;
}

kiln_status kiln_infer_control(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_control_params *c = node->params;
    switch (node->op) {
    case KILN_OP_If:
        if (in[0] && in[0]->dtype != KILN_DTYPE_BOOL) return kiln_node_bad_dtype(node, 0, in[0]->dtype);
        for (int j = 0; j < node->n_outputs; j++) {
            dtype_of(c->then_branch, j, &out[j]);
            if (out[j].dtype == KILN_DTYPE_UNDEFINED) dtype_of(c->else_branch, j, &out[j]);
        }
        return KILN_STATUS_OK;
    case KILN_OP_Loop: {
        int n_carried = node->n_declared - 2;
        for (int j = 0; j < node->n_outputs; j++) {
            dtype_of(c->body, j + 1, &out[j]);
            if (j < n_carried && in[2 + j]) out[j].dtype = in[2 + j]->dtype;
        }
        return KILN_STATUS_OK;
    }
    case KILN_OP_Scan: {
        int n_state = node->n_declared - c->num_scan_inputs;
        for (int j = 0; j < node->n_outputs; j++) {
            dtype_of(c->body, j, &out[j]);
            if (j < n_state && in[j]) {
                out[j].dtype = in[j]->dtype;
                out[j].rank = in[j]->rank; /* state keeps its shape */
                if (in[j]->rank > 0) memcpy(out[j].dims, in[j]->dims, sizeof(int64_t) * (size_t)in[j]->rank);
            }
        }
        return KILN_STATUS_OK;
    }
    default: return kiln_node_error(node, KILN_STATUS_INTERNAL, "not a control-flow op");
    }
}
