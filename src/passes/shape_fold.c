/* shape_fold.c — shape questions answered at build time. Shape (its [start, end) slice) and
 * Size of a value whose dims there are all known become int64 constants, whatever the value's
 * data; so does Gather(Shape(x), constant indices) on axis 0 when only the gathered dims are
 * known (dynamic batch, static hidden size). Constant folding then folds the Concat / Reshape
 * chains exporters build from them: kiln_passes_run runs it again after this pass.
 * Reshape(x, Concat(Gather(Shape(x), i) [Unsqueezed], constants)) gets a constant shape where
 * each gathered dim is either x's own dim at the same position (written 0: "copy", which keeps
 * a dynamic batch symbolic) or a known one; the Shape chain is then dead code.
 * The outputs become constants in place (same value ids and names). Tested by
 * tests/models/test_passes.py. */
#include "pass_util.h"
#include "../ops/shape_internal.h"

/* Turns value v into an int64 constant of the given shape and data. */
static kiln_status make_const(kiln_graph *g, int v, int rank, const int64_t *dims, const int64_t *data) {
    kiln_tensor t = {0};
    KILN_TRY(kiln_tensor_alloc(&t, KILN_DTYPE_I64, rank, dims));
    int64_t n = kiln_shape_count(rank, dims);
    for (int64_t i = 0; i < n; i++) ((int64_t *)t.data)[i] = data[i];
    kiln_value *val = &g->values[v];
    kiln_tensor_release(&val->type);
    val->type = t;
    val->flags |= KILN_VALUE_CONST;
    val->producer = -1;
    return KILN_STATUS_OK;
}

/* The dims Shape node n reports, with *count of them; false when its input rank is unknown. */
static bool shape_dims(const kiln_graph *g, const kiln_node *n, const int64_t **dims, int *count) {
    int x = pass_in(n, 0);
    if (x < 0 || g->values[x].type.rank < 0) return false;
    const kiln_tensor *t = &g->values[x].type;
    int64_t s, e;
    kiln_shape_of_range(n, t->rank, &s, &e);
    *dims = t->dims + s;
    *count = (int)(e - s);
    return true;
}

static bool all_known(const int64_t *d, int n) {
    for (int i = 0; i < n; i++)
        if (d[i] < 0) return false;
    return true;
}

/* Gather(shape_value, indices) with constant indices on axis 0, every gathered dim known. */
static kiln_status fold_gather(kiln_graph *g, int gi, const int64_t *dims, int count, bool *done) {
    const kiln_node *n = &g->nodes[gi];
    const kiln_axis_params *p = n->params;
    *done = false;
    int idx = pass_in(n, 1), y = n->outputs[0];
    if (n->n_outputs != 1 || y < 0 || !p || (p->axis != 0 && p->axis != -1) || n->act.kind != KILN_ACT_NONE) return KILN_STATUS_OK;
    if (!pass_is_const(g, idx)) return KILN_STATUS_OK;
    const kiln_tensor *ti = &g->values[idx].type;
    if (ti->dtype != KILN_DTYPE_I64 && ti->dtype != KILN_DTYPE_I32) return KILN_STATUS_OK;
    int64_t m = kiln_shape_count(ti->rank, ti->dims);
    if (m < 0 || m > 64) return KILN_STATUS_OK;
    int64_t vals[64];
    for (int64_t i = 0; i < m; i++) {
        int64_t k = kiln_load_i64(ti->dtype, ti->data, i);
        if (k < 0) k += count;
        if (k < 0 || k >= count || dims[k] < 0) return KILN_STATUS_OK;
        vals[i] = dims[k];
    }
    KILN_TRY(make_const(g, y, ti->rank, ti->dims, vals));
    *done = true;
    return KILN_STATUS_OK;
}

/* ---- Reshape(x, Concat(pieces of Shape(x), constants)) -> Reshape(x, constant) ---- */

/* The Shape node (of x, read by Gather gi) that piece value v comes from: v = Gather(Shape(x), idx)
 * or Unsqueeze(Gather(Shape(x), scalar idx), axes = [0]); the gathered dims of x (indices into
 * x's dims) into dims[*n]. */
static bool shape_piece(const kiln_graph *g, int v, int x, int64_t *dims, int *n) {
    int p = v >= 0 ? g->values[v].producer : -1;
    if (p < 0) return false;
    const kiln_node *nd = &g->nodes[p];
    bool unsq = false;
    if (nd->op == KILN_OP_Unsqueeze) {
        const kiln_axes_params *ap = nd->params;
        int64_t axes[KILN_MAX_RANK];
        int na = 0;
        if (!ap) return false;
        if (ap->from_input) {
            int av = pass_in(nd, 1);
            if (!pass_is_const(g, av) || pass_const_count(g, av) != 1) return false;
            axes[0] = kiln_load_i64(g->values[av].type.dtype, g->values[av].type.data, 0);
            na = 1;
        } else {
            na = ap->n_axes;
            for (int i = 0; i < na && i < KILN_MAX_RANK; i++) axes[i] = ap->axes[i];
        }
        if (na != 1 || (axes[0] != 0 && axes[0] != -1)) return false;
        unsq = true;
        p = g->values[pass_in(nd, 0)].producer;
        if (p < 0) return false;
        nd = &g->nodes[p];
    }
    const kiln_axis_params *gp = nd->params;
    if (nd->op != KILN_OP_Gather || !gp || gp->axis != 0) return false;
    int sv = pass_in(nd, 0), idx = pass_in(nd, 1);
    int sp = sv >= 0 ? g->values[sv].producer : -1;
    if (sp < 0 || g->nodes[sp].op != KILN_OP_Shape || pass_in(&g->nodes[sp], 0) != x || !pass_is_const(g, idx)) return false;
    const kiln_tensor *ti = &g->values[idx].type;
    if ((ti->rank == 0) != unsq || ti->rank > 1 || (ti->dtype != KILN_DTYPE_I64 && ti->dtype != KILN_DTYPE_I32)) return false;
    int rank = g->values[x].type.rank;
    int64_t s, e, m = kiln_shape_count(ti->rank, ti->dims);
    if (rank < 0 || m > KILN_MAX_RANK) return false;
    kiln_shape_of_range(&g->nodes[sp], rank, &s, &e);
    for (int64_t i = 0; i < m; i++) {
        int64_t k = kiln_load_i64(ti->dtype, ti->data, i);
        if (k < 0) k += e - s;
        if (k < 0 || k >= e - s) return false;
        dims[i] = s + k;
    }
    *n = (int)m;
    return true;
}

/* Reshape node ri whose shape is a Concat of constants and pieces of Shape(data): a constant
 * shape instead, with 0 ("copy this dim") where a piece asks for the data's own dim at the same
 * position, the dim's value where it is known elsewhere. */
static kiln_status fold_reshape(kiln_graph *g, int ri, bool *done) {
    *done = false;
    const kiln_node *r = &g->nodes[ri];
    const kiln_reshape_params *rp = r->params;
    int x = pass_in(r, 0), sv = pass_in(r, 1);
    if (!rp || rp->allowzero || x < 0 || sv < 0 || pass_is_const(g, sv) || g->values[sv].producer < 0) return KILN_STATUS_OK;
    const kiln_node *cat = &g->nodes[g->values[sv].producer];
    const kiln_axis_params *cp = cat->params;
    if (cat->op != KILN_OP_Concat || !cp || (cp->axis != 0 && cp->axis != -1) || cat->n_inputs != cat->n_declared) return KILN_STATUS_OK;
    const kiln_tensor *xt = &g->values[x].type;
    int64_t shape[KILN_MAX_RANK];
    int n = 0;
    for (int k = 0; k < cat->n_declared; k++) {
        int v = cat->inputs[k];
        int64_t dims[KILN_MAX_RANK];
        int m;
        if (pass_is_const(g, v)) {
            const kiln_tensor *t = &g->values[v].type;
            int64_t c = kiln_shape_count(t->rank, t->dims);
            if (t->rank != 1 || (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32) || n + c > KILN_MAX_RANK) return KILN_STATUS_OK;
            for (int64_t i = 0; i < c; i++) shape[n++] = kiln_load_i64(t->dtype, t->data, i);
            continue;
        }
        if (!shape_piece(g, v, x, dims, &m) || n + m > KILN_MAX_RANK) return KILN_STATUS_OK;
        for (int i = 0; i < m; i++, n++) {
            if (dims[i] == n) shape[n] = 0;
            else if (xt->dims[dims[i]] >= 0) shape[n] = xt->dims[dims[i]];
            else return KILN_STATUS_OK;
            if (dims[i] != n && shape[n] == 0) return KILN_STATUS_OK; /* a real 0 would now mean "copy" */
        }
    }
    kiln_tensor t = {0};
    int64_t len = n;
    KILN_TRY(kiln_tensor_alloc(&t, KILN_DTYPE_I64, 1, &len));
    for (int i = 0; i < n; i++) ((int64_t *)t.data)[i] = shape[i];
    char base[256], name[256];
    snprintf(base, sizeof base, "%s_shape", g->nodes[ri].name);
    kiln_graph_unique_name(g, base, name, sizeof name);
    int c = kiln_graph_add_const(g, name, &t);
    kiln_tensor_release(&t);
    if (c < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    g->nodes[ri].inputs[1] = c;
    *done = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_shape_fold(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "shape_fold");
    bool *dead = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(bool));
    if (!dead) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int folded = 0, removed = 0;
    kiln_status s = KILN_STATUS_OK;
    for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
        const kiln_node *n = &g->nodes[i];
        int y = n->outputs[0];
        if (y < 0 || dead[i]) continue;
        if (n->op == KILN_OP_Size) {
            int x = pass_in(n, 0);
            int64_t count = x >= 0 && g->values[x].type.rank >= 0 ? kiln_shape_count(g->values[x].type.rank, g->values[x].type.dims) : -1;
            if (count < 0) continue;
            if ((s = make_const(g, y, 0, NULL, &count))) break;
            dead[i] = true;
            folded++;
            continue;
        }
        if (n->op != KILN_OP_Shape) continue;
        const int64_t *dims;
        int count;
        if (!shape_dims(g, n, &dims, &count)) continue;
        int64_t copy[KILN_MAX_RANK];
        for (int k = 0; k < count; k++) copy[k] = dims[k];
        if (all_known(copy, count)) {
            int64_t len = count;
            if ((s = make_const(g, y, 1, &len, copy))) break;
            dead[i] = true;
            folded++;
            continue;
        }
        /* Partly known: answer the Gathers that only ask for known dims. */
        for (int r = 0; r < g->n_nodes; r++) {
            if (dead[r] || g->nodes[r].op != KILN_OP_Gather || pass_in(&g->nodes[r], 0) != y) continue;
            bool done;
            if ((s = fold_gather(g, r, copy, count, &done))) break;
            if (done) {
                dead[r] = true;
                folded++;
            }
        }
    }
    for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
        if (dead[i] || g->nodes[i].op != KILN_OP_Reshape) continue;
        bool done;
        if ((s = fold_reshape(g, i, &done))) break;
        folded += done;
    }
    for (int i = 0; i < g->n_nodes; i++) removed += dead[i];
    if (s == KILN_STATUS_OK && removed) kiln_graph_remove_nodes(g, dead);
    free(dead);
    if (s != KILN_STATUS_OK) return s;
    if (st) {
        st->folded = folded;
        st->removed = removed;
    }
    return pass_finish(g, folded > 0);
}
