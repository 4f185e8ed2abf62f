/* exec.c — the reference interpreter (see ref.h). Each value lives from its producer to its
 * last reader, then is freed; constants and caller inputs are borrowed, never copied. */
#include "ref.h"

#include "../../ops/op.h"

#include <string.h>

typedef struct slot {
    kiln_tensor *t; /* NULL until produced */
    bool owned;     /* t (and its data) belong to the interpreter */
    int uses;       /* readers still to come (+1 for a graph output, which is never freed here) */
} slot;

static void slot_drop(slot *s) {
    if (s->owned && s->t) {
        kiln_tensor_release(s->t);
        free(s->t);
    }
    s->t = NULL;
    s->owned = false;
}

/* Hands out[j] over to a heap tensor in the value's slot. */
static kiln_status keep_output(slot *s, kiln_tensor *out) {
    kiln_tensor *t = kiln_malloc(sizeof *t);
    if (!t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    *t = *out;
    memset(out, 0, sizeof *out);
    s->t = t;
    s->owned = true;
    return KILN_STATUS_OK;
}

static kiln_status run_node(const kiln_node *n, slot *slots, const kiln_graph *g) {
    kiln_tensor *in[256];
    kiln_tensor out[64];
    if (n->n_inputs > 256 || n->n_outputs > 64)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "too many inputs or outputs");
    for (int k = 0; k < n->n_inputs; k++) {
        in[k] = n->inputs[k] >= 0 ? slots[n->inputs[k]].t : NULL;
        if (n->inputs[k] >= 0 && !in[k])
            return kiln_node_error(n, KILN_STATUS_INTERNAL, "input '%s' was not computed", g->values[n->inputs[k]].name);
    }
    memset(out, 0, sizeof(kiln_tensor) * (size_t)n->n_outputs);
    for (int j = 0; j < n->n_outputs; j++) out[j].rank = -1;
    const kiln_op_def *op = &kiln_op_table[n->op];
    kiln_status s = op->infer(n, in, out);
    for (int j = 0; s == KILN_STATUS_OK && j < n->n_outputs; j++)
        if (out[j].rank >= 0 && kiln_shape_known(&out[j]))
            s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
    if (s == KILN_STATUS_OK) s = op->ref(n, in, out);
    if (s == KILN_STATUS_OK && n->act.kind != KILN_ACT_NONE && out[0].data) kiln_act_apply(&n->act, &out[0]);
    for (int j = 0; s == KILN_STATUS_OK && j < n->n_outputs; j++) {
        int v = n->outputs[j];
        if (v < 0) continue;
        if (out[j].rank < 0 || (!out[j].data && kiln_shape_count(out[j].rank, out[j].dims) != 0))
            s = kiln_node_error(n, KILN_STATUS_INTERNAL, "output %d ('%s') was not produced", j, g->values[v].name);
        else if (!out[j].data)
            s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
        if (s == KILN_STATUS_OK) s = keep_output(&slots[v], &out[j]);
    }
    for (int j = 0; j < n->n_outputs; j++) kiln_tensor_release(&out[j]);
    return s;
}

kiln_status kiln_ref_run_graph(const kiln_graph *g, kiln_tensor *const *inputs, kiln_tensor *const *captures,
                               kiln_tensor *outputs) {
    return kiln_ref_run_graph_observed(g, inputs, captures, outputs, NULL, NULL);
}

kiln_status kiln_ref_run_graph_observed(const kiln_graph *g, kiln_tensor *const *inputs, kiln_tensor *const *captures,
                                        kiln_tensor *outputs, kiln_ref_observer observe, void *user) {
    slot *slots = kiln_calloc((size_t)g->n_values, sizeof(slot));
    if (!slots) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].flags & KILN_VALUE_CONST) slots[v].t = (kiln_tensor *)&g->values[v].type;
    for (int i = 0; i < g->n_inputs; i++)
        if (inputs && inputs[i]) slots[g->inputs[i]].t = inputs[i];
    for (int c = 0; c < g->n_captures; c++) slots[g->captures[c]].t = captures[c];
    kiln_status s = KILN_STATUS_OK;
    for (int i = 0; i < g->n_inputs; i++)
        if (!slots[g->inputs[i]].t) {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "graph '%s': input '%s' was not given", g->name,
                           g->values[g->inputs[i]].name);
            goto out;
        }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) slots[g->nodes[i].inputs[k]].uses++;
    for (int j = 0; j < g->n_outputs; j++) slots[g->outputs[j]].uses++;

    for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
        const kiln_node *n = &g->nodes[i];
        s = run_node(n, slots, g);
        for (int j = 0; s == KILN_STATUS_OK && observe && j < n->n_outputs; j++)
            if (n->outputs[j] >= 0 && slots[n->outputs[j]].t) s = observe(g, n->outputs[j], slots[n->outputs[j]].t, user);
        for (int k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            if (v >= 0 && --slots[v].uses == 0) slot_drop(&slots[v]);
        }
        /* Outputs nobody reads are dropped at once. */
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0 && slots[n->outputs[j]].uses == 0) slot_drop(&slots[n->outputs[j]]);
    }
    for (int j = 0; s == KILN_STATUS_OK && j < g->n_outputs; j++) {
        slot *sl = &slots[g->outputs[j]];
        memset(&outputs[j], 0, sizeof outputs[j]);
        if (sl->owned && sl->uses == 1) { /* hand it over */
            outputs[j] = *sl->t;
            free(sl->t);
            sl->t = NULL;
            sl->owned = false;
        } else { /* an input, a constant, or listed twice: copy */
            s = kiln_tensor_alloc(&outputs[j], sl->t->dtype, sl->t->rank, sl->t->dims);
            if (s == KILN_STATUS_OK && kiln_tensor_bytes(sl->t)) memcpy(outputs[j].data, sl->t->data, kiln_tensor_bytes(sl->t));
        }
        sl->uses--;
        if (s != KILN_STATUS_OK)
            for (int k = 0; k < j; k++) kiln_tensor_release(&outputs[k]);
    }
out:
    for (int v = 0; v < g->n_values; v++) slot_drop(&slots[v]);
    free(slots);
    return s;
}
