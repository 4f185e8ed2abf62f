/* control.c — reference kernels of If, Loop and Scan: each runs its subgraph through the
 * reference interpreter (ref.h), binding the node's captured outer values. */
#include "../../ops/control.h"
#include "ref.h"

#include <string.h>

/* The captured outer values of subgraph g, from the node's inputs. */
static kiln_status captures_of(const kiln_node *node, const kiln_graph *g, kiln_tensor *const *in, kiln_tensor ***out) {
    *out = kiln_calloc((size_t)(g->n_captures ? g->n_captures : 1), sizeof(kiln_tensor *));
    if (!*out) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int c = 0; c < g->n_captures; c++) {
        int k = g->capture_index[c];
        if (k < 0 || k >= node->n_inputs || !in[k]) {
            free(*out);
            return kiln_node_error(node, KILN_STATUS_INTERNAL, "captured value '%s' is not bound", g->values[g->captures[c]].name);
        }
        (*out)[c] = in[k];
    }
    return KILN_STATUS_OK;
}

static void move_tensor(kiln_tensor *dst, kiln_tensor *src) {
    kiln_tensor_release(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

static void release_all(kiln_tensor *t, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_release(&t[i]);
}

static kiln_status run_if(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_control_params *c = node->params;
    if (kiln_shape_count(in[0]->rank, in[0]->dims) != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cond must hold one value");
    const kiln_graph *g = ((const uint8_t *)in[0]->data)[0] ? c->then_branch : c->else_branch;
    kiln_tensor **caps;
    KILN_TRY(captures_of(node, g, in, &caps));
    kiln_tensor *res = kiln_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *res);
    kiln_status s = res ? kiln_ref_run_graph(g, NULL, caps, res) : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s == KILN_STATUS_OK)
        for (int j = 0; j < node->n_outputs; j++) move_tensor(&out[j], &res[j]);
    free(res);
    free(caps);
    return s;
}

/* Stacks n step tensors (all of one shape) along a new axis into out; reverse stacks them last
 * step first. */
static kiln_status stack(const kiln_node *node, kiln_tensor *steps, int64_t n, int axis, bool reverse, kiln_dtype dtype,
                         kiln_tensor *out) {
    if (n == 0) {
        int64_t zero = 0;
        return kiln_tensor_alloc(out, dtype, 1, &zero);
    }
    const kiln_tensor *s0 = &steps[0];
    if (s0->rank + 1 > KILN_MAX_RANK) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "scan output rank too high");
    if (axis < 0) axis += s0->rank + 1;
    if (axis < 0 || axis > s0->rank) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "scan output axis out of range");
    for (int64_t t = 1; t < n; t++)
        if (steps[t].rank != s0->rank || memcmp(steps[t].dims, s0->dims, sizeof(int64_t) * (size_t)s0->rank) != 0 ||
            steps[t].dtype != s0->dtype)
            return kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR, "scan outputs change shape between iterations");
    int64_t dims[KILN_MAX_RANK];
    for (int i = 0, k = 0; i <= s0->rank; i++) dims[i] = i == axis ? n : s0->dims[k++];
    KILN_TRY(kiln_tensor_alloc(out, s0->dtype, s0->rank + 1, dims));
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= s0->dims[i];
    for (int i = axis; i < s0->rank; i++) inner *= s0->dims[i];
    size_t es = kiln_dtype_size(s0->dtype);
    for (int64_t t = 0; t < n; t++) {
        const char *src = steps[reverse ? n - 1 - t : t].data;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out->data + ((o * n + t) * inner) * es, src + o * inner * es, (size_t)inner * es);
    }
    return KILN_STATUS_OK;
}

static kiln_status run_loop(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_control_params *c = node->params;
    const kiln_graph *g = c->body;
    int n_carried = node->n_declared - 2, n_scan = node->n_outputs - n_carried;
    int64_t trip = INT64_MAX;
    bool cond = true;
    if (in[0]) {
        if (kiln_shape_count(in[0]->rank, in[0]->dims) != 1) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "M must hold one value");
        trip = kiln_load_i64(in[0]->dtype, in[0]->data, 0);
    }
    if (in[1]) {
        if (kiln_shape_count(in[1]->rank, in[1]->dims) != 1) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cond must hold one value");
        cond = kiln_load_i64(in[1]->dtype, in[1]->data, 0) != 0;
    }
    kiln_tensor **caps;
    KILN_TRY(captures_of(node, g, in, &caps));
    kiln_status s = KILN_STATUS_OK;
    int64_t cap_steps = 0, n_steps = 0;
    kiln_tensor iter = {0}, cond_t = {0};
    kiln_tensor *carried = kiln_calloc((size_t)(n_carried + 1), sizeof *carried);
    kiln_tensor *res = kiln_calloc((size_t)(g->n_outputs + 1), sizeof *res);
    kiln_tensor **body_in = kiln_calloc((size_t)(g->n_inputs + 1), sizeof *body_in);
    kiln_tensor **scans = kiln_calloc((size_t)(n_scan + 1), sizeof *scans); /* scans[k][step] */
    if (!carried || !res || !body_in || !scans) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto out; }
    for (int k = 0; k < n_carried && s == KILN_STATUS_OK; k++) {
        kiln_tensor *copy;
        if (!in[2 + k]) { s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "loop-carried input %d is missing", k); break; }
        s = kiln_tensor_clone(in[2 + k], &copy);
        if (s == KILN_STATUS_OK) { carried[k] = *copy; free(copy); }
    }
    if (s == KILN_STATUS_OK) s = kiln_tensor_alloc(&iter, KILN_DTYPE_I64, 0, NULL);
    if (s == KILN_STATUS_OK) s = kiln_tensor_alloc(&cond_t, KILN_DTYPE_BOOL, 0, NULL);
    for (int64_t i = 0; s == KILN_STATUS_OK && i < trip && cond; i++) {
        *(int64_t *)iter.data = i;
        *(uint8_t *)cond_t.data = cond;
        body_in[0] = &iter;
        body_in[1] = &cond_t;
        for (int k = 0; k < n_carried; k++) body_in[2 + k] = &carried[k];
        s = kiln_ref_run_graph(g, body_in, caps, res);
        if (s != KILN_STATUS_OK) break;
        cond = kiln_shape_count(res[0].rank, res[0].dims) >= 1 ? kiln_load_i64(res[0].dtype, res[0].data, 0) != 0 : false;
        for (int k = 0; k < n_carried; k++) move_tensor(&carried[k], &res[1 + k]);
        if (n_scan && n_steps == cap_steps) {
            int64_t nc = cap_steps ? cap_steps * 2 : 16;
            for (int k = 0; k < n_scan; k++) {
                kiln_tensor *p = realloc(scans[k], sizeof(kiln_tensor) * (size_t)nc);
                if (!p) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
                scans[k] = p;
            }
            cap_steps = nc;
        }
        for (int k = 0; s == KILN_STATUS_OK && k < n_scan; k++) {
            scans[k][n_steps] = res[1 + n_carried + k];
            memset(&res[1 + n_carried + k], 0, sizeof(kiln_tensor));
        }
        release_all(res, g->n_outputs);
        if (s == KILN_STATUS_OK && n_scan) n_steps++;
    }
    for (int k = 0; s == KILN_STATUS_OK && k < n_carried; k++) move_tensor(&out[k], &carried[k]);
    for (int k = 0; s == KILN_STATUS_OK && k < n_scan; k++)
        s = stack(node, scans[k], n_steps, 0, false, out[n_carried + k].dtype ? out[n_carried + k].dtype : KILN_DTYPE_F32,
                  &out[n_carried + k]);
out:
    for (int k = 0; scans && k < n_scan; k++) {
        if (scans[k]) release_all(scans[k], (int)n_steps);
        free(scans[k]);
    }
    free(scans);
    if (carried) release_all(carried, n_carried);
    free(carried);
    if (res) release_all(res, g->n_outputs);
    free(res);
    free(body_in);
    kiln_tensor_release(&iter);
    kiln_tensor_release(&cond_t);
    free(caps);
    return s;
}

/* Copies slice idx along axis of src into dst (rank - 1). */
static kiln_status take_slice(const kiln_tensor *src, int axis, int64_t idx, kiln_tensor *dst) {
    int64_t dims[KILN_MAX_RANK];
    for (int i = 0, k = 0; i < src->rank; i++)
        if (i != axis) dims[k++] = src->dims[i];
    KILN_TRY(kiln_tensor_alloc(dst, src->dtype, src->rank - 1, dims));
    int64_t outer = 1, inner = 1, n = src->dims[axis];
    for (int i = 0; i < axis; i++) outer *= src->dims[i];
    for (int i = axis + 1; i < src->rank; i++) inner *= src->dims[i];
    size_t es = kiln_dtype_size(src->dtype);
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)dst->data + o * inner * es, (const char *)src->data + ((o * n + idx) * inner) * es, (size_t)inner * es);
    return KILN_STATUS_OK;
}

static kiln_status run_scan(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_control_params *c = node->params;
    const kiln_graph *g = c->body;
    int m = c->num_scan_inputs, n_state = node->n_declared - m, n_scan_out = node->n_outputs - n_state;
    int axes[64];
    int64_t len = -1;
    for (int k = 0; k < m; k++) {
        const kiln_tensor *x = in[n_state + k];
        if (!x || x->rank < 1) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "scan input %d must have rank >= 1", k);
        KILN_TRY(kiln_norm_axis(c->n_scan_input_axes ? c->scan_input_axes[k] : 0, x->rank, &axes[k]));
        if (len >= 0 && x->dims[axes[k]] != len)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "scan inputs have different lengths (%lld and %lld)",
                                   (long long)len, (long long)x->dims[axes[k]]);
        len = x->dims[axes[k]];
    }
    kiln_tensor **caps;
    KILN_TRY(captures_of(node, g, in, &caps));
    kiln_status s = KILN_STATUS_OK;
    kiln_tensor *state = kiln_calloc((size_t)(n_state + 1), sizeof *state);
    kiln_tensor *slices = kiln_calloc((size_t)(m + 1), sizeof *slices);
    kiln_tensor *res = kiln_calloc((size_t)(g->n_outputs + 1), sizeof *res);
    kiln_tensor **body_in = kiln_calloc((size_t)(g->n_inputs + 1), sizeof *body_in);
    kiln_tensor *steps = kiln_calloc((size_t)(n_scan_out * (len > 0 ? len : 1) + 1), sizeof *steps); /* [k][t] */
    if (!state || !slices || !res || !body_in || !steps) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto out; }
    for (int k = 0; k < n_state && s == KILN_STATUS_OK; k++) {
        kiln_tensor *copy;
        s = kiln_tensor_clone(in[k], &copy);
        if (s == KILN_STATUS_OK) { state[k] = *copy; free(copy); }
    }
    for (int64_t t = 0; s == KILN_STATUS_OK && t < len; t++) {
        for (int k = 0; k < m && s == KILN_STATUS_OK; k++) {
            bool rev = c->n_scan_input_directions && c->scan_input_directions[k];
            s = take_slice(in[n_state + k], axes[k], rev ? len - 1 - t : t, &slices[k]);
        }
        if (s) break;
        for (int k = 0; k < n_state; k++) body_in[k] = &state[k];
        for (int k = 0; k < m; k++) body_in[n_state + k] = &slices[k];
        s = kiln_ref_run_graph(g, body_in, caps, res);
        if (s) break;
        for (int k = 0; k < n_state; k++) move_tensor(&state[k], &res[k]);
        for (int k = 0; k < n_scan_out; k++) move_tensor(&steps[k * len + t], &res[n_state + k]);
    }
    for (int k = 0; s == KILN_STATUS_OK && k < n_state; k++) move_tensor(&out[k], &state[k]);
    for (int k = 0; s == KILN_STATUS_OK && k < n_scan_out; k++) {
        bool rev = c->n_scan_output_directions && c->scan_output_directions[k];
        int axis = c->n_scan_output_axes ? (int)c->scan_output_axes[k] : 0;
        s = stack(node, &steps[k * len], len, axis, rev, out[n_state + k].dtype, &out[n_state + k]);
    }
out:
    if (state) release_all(state, n_state);
    if (slices) release_all(slices, m);
    if (res) release_all(res, g->n_outputs);
    if (steps) release_all(steps, (int)(n_scan_out * (len > 0 ? len : 0)));
    free(state);
    free(slices);
    free(res);
    free(body_in);
    free(steps);
    free(caps);
    return s;
}

kiln_status kiln_ref_control(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_If: return run_if(node, in, out);
    case KILN_OP_Loop: return run_loop(node, in, out);
    case KILN_OP_Scan: return run_scan(node, in, out);
    default: return kiln_node_error(node, KILN_STATUS_INTERNAL, "not a control-flow op");
    }
}
