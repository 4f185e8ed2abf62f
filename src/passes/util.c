/* util.c — the passes' shared machinery (see pass_util.h): the per-round use index, the
 * editors that keep it honest, new nodes and constants, constant inspection, and the round
 * driver of the fusing passes. */
#include "pass_util.h"

#include <math.h>
#include <string.h>

#define PC_MANY 1000000

kiln_status pc_init(pass_ctx *c, kiln_graph *g) {
    memset(c, 0, sizeof *c);
    c->g = g;
    c->n_values = g->n_values;
    size_t nv = (size_t)(g->n_values ? g->n_values : 1);
    c->cap_nodes = g->n_nodes + 16;
    c->uses = kiln_calloc(nv, sizeof(int));
    c->reader = kiln_malloc(nv * sizeof(int));
    c->is_output = kiln_calloc(nv, sizeof(bool));
    c->captured = kiln_calloc(nv, sizeof(bool));
    c->dirty = kiln_calloc(nv, sizeof(bool));
    c->dead = kiln_calloc((size_t)c->cap_nodes, sizeof(bool));
    c->touched = kiln_calloc((size_t)c->cap_nodes, sizeof(bool));
    if (!c->uses || !c->reader || !c->is_output || !c->captured || !c->dirty || !c->dead || !c->touched) {
        pc_free(c);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory indexing graph '%s'", g->name);
    }
    for (int v = 0; v < g->n_values; v++) c->reader[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            if (v < 0) continue;
            c->uses[v]++;
            c->reader[v] = i;
            if (k >= n->n_declared) c->captured[v] = true;
        }
    }
    for (int j = 0; j < g->n_outputs; j++) {
        c->uses[g->outputs[j]]++;
        c->is_output[g->outputs[j]] = true;
    }
    return KILN_STATUS_OK;
}

void pc_free(pass_ctx *c) {
    free(c->uses);
    free(c->reader);
    free(c->is_output);
    free(c->captured);
    free(c->dirty);
    free(c->dead);
    free(c->touched);
    c->uses = c->reader = NULL;
    c->is_output = c->captured = c->dirty = c->dead = c->touched = NULL;
}

kiln_status pc_commit(pass_ctx *c) {
    kiln_graph *g = c->g;
    bool any_dead = false;
    for (int i = 0; i < g->n_nodes; i++) any_dead |= c->dead[i];
    if (any_dead) kiln_graph_remove_nodes(g, c->dead);
    kiln_status s = KILN_STATUS_OK;
    if (c->need_sort) s = kiln_graph_toposort(g);
    pc_free(c);
    return s;
}

static bool pc_known(const pass_ctx *c, int v) { return v >= 0 && v < c->n_values && !c->dirty[v]; }

int pc_uses(const pass_ctx *c, int v) { return pc_known(c, v) ? c->uses[v] : PC_MANY; }

int pc_sole_reader(const pass_ctx *c, int v) {
    if (!pc_known(c, v) || c->uses[v] != 1 || c->is_output[v] || c->captured[v]) return -1;
    int r = c->reader[v];
    return r >= 0 && !c->dead[r] ? r : -1;
}

int pc_producer(const pass_ctx *c, int v) {
    if (v < 0 || v >= c->g->n_values) return -1;
    int p = c->g->values[v].producer;
    if (p < 0 || p >= c->g->n_nodes || c->dead[p] || c->touched[p]) return -1;
    return p;
}

bool pc_open(const pass_ctx *c, int n) { return n >= 0 && n < c->g->n_nodes && !c->dead[n] && !c->touched[n]; }

bool pc_internal(const pass_ctx *c, int v) {
    return pc_known(c, v) && !c->is_output[v] && !c->captured[v];
}

void pc_kill(pass_ctx *c, int n) {
    kiln_node *nd = &c->g->nodes[n];
    c->dead[n] = true;
    c->changes++;
    for (int k = 0; k < nd->n_inputs; k++)
        if (nd->inputs[k] >= 0 && nd->inputs[k] < c->n_values) c->dirty[nd->inputs[k]] = true;
    for (int j = 0; j < nd->n_outputs; j++) {
        int v = nd->outputs[j];
        if (v >= 0 && c->g->values[v].producer == n) c->g->values[v].producer = -1;
    }
}

void pc_touch(pass_ctx *c, int n) {
    c->touched[n] = true;
    c->changes++;
}

static void mark_dirty(pass_ctx *c, int v) {
    if (v >= 0 && v < c->n_values) c->dirty[v] = true;
}

void pc_replace_uses(pass_ctx *c, int old_v, int new_v) {
    kiln_graph *g = c->g;
    /* Only live nodes: a dead one keeps what it read (it is freed at commit anyway). */
    for (int i = 0; i < g->n_nodes; i++) {
        if (c->dead[i]) continue;
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == old_v) g->nodes[i].inputs[k] = new_v;
    }
    for (int j = 0; j < g->n_outputs; j++)
        if (g->outputs[j] == old_v) g->outputs[j] = new_v;
    mark_dirty(c, old_v);
    mark_dirty(c, new_v);
    c->need_sort = true; /* new_v may be produced after a reader of old_v */
    c->changes++;
}

void pc_set_output(pass_ctx *c, int n, int j, int v) {
    kiln_graph *g = c->g;
    int old = g->nodes[n].outputs[j];
    if (old >= 0 && g->values[old].producer == n) g->values[old].producer = -1;
    g->nodes[n].outputs[j] = v;
    if (v >= 0) g->values[v].producer = n;
    mark_dirty(c, old);
    mark_dirty(c, v);
    c->need_sort = true;
    c->changes++;
}

kiln_status pc_set_input(pass_ctx *c, int n, int k, int v) {
    kiln_node *nd = &c->g->nodes[n];
    if (k >= nd->n_declared) {
        KILN_ASSERT(k == nd->n_declared);
        /* Captures (if any) follow the declared inputs: shift them up by one. */
        int *ni = realloc(nd->inputs, sizeof(int) * (size_t)(nd->n_inputs + 1));
        if (!ni) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        nd->inputs = ni;
        KILN_ASSERT(nd->n_inputs == nd->n_declared); /* nodes with subgraphs are never edited */
        nd->n_inputs++;
        nd->n_declared++;
    } else {
        mark_dirty(c, nd->inputs[k]);
    }
    nd->inputs[k] = v;
    mark_dirty(c, v);
    c->need_sort = true;
    c->changes++;
    return KILN_STATUS_OK;
}

static kiln_status grow_nodes(pass_ctx *c) {
    if (c->g->n_nodes < c->cap_nodes) return KILN_STATUS_OK;
    int nc = c->cap_nodes * 2;
    bool *d = realloc(c->dead, (size_t)nc * sizeof(bool));
    if (d) c->dead = d;
    bool *t = realloc(c->touched, (size_t)nc * sizeof(bool));
    if (t) c->touched = t;
    if (!d || !t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    memset(c->dead + c->cap_nodes, 0, (size_t)(nc - c->cap_nodes) * sizeof(bool));
    memset(c->touched + c->cap_nodes, 0, (size_t)(nc - c->cap_nodes) * sizeof(bool));
    c->cap_nodes = nc;
    return KILN_STATUS_OK;
}

/* A node name not used by another node: base, base_1, ... */
static const char *unique_node_name(const kiln_graph *g, const char *base, char *buf, size_t n) {
    snprintf(buf, n, "%s", base);
    for (int i = 1;; i++) {
        bool taken = false;
        for (int k = 0; k < g->n_nodes && !taken; k++) taken = strcmp(g->nodes[k].name, buf) == 0;
        if (!taken) return buf;
        snprintf(buf, n, "%s_%d", base, i);
    }
}

kiln_status pc_add_node(pass_ctx *c, int op, const char *name_base, const int *inputs, int n_inputs,
                        const int *outputs, int n_outputs, const kiln_attr *attrs, int n_attrs, int *out) {
    kiln_graph *g = c->g;
    KILN_TRY(grow_nodes(c));
    char name[256];
    unique_node_name(g, name_base, name, sizeof name);
    int idx = kiln_graph_add_node(g, op, name, g->opset, inputs, n_inputs, outputs, n_outputs);
    if (idx < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory adding node '%s'", name);
    kiln_node *n = &g->nodes[idx];
    kiln_attrs src = {.items = (kiln_attr *)attrs, .n = n_attrs};
    kiln_status s = kiln_attrs_copy(&src, &n->attrs);
    c->dead[idx] = false;
    c->touched[idx] = true;
    c->need_sort = true;
    c->changes++;
    for (int j = 0; j < n_outputs; j++)
        if (outputs[j] >= 0) {
            int old = g->values[outputs[j]].producer;
            if (old >= 0 && old != idx && !c->dead[old]) {
                /* The pattern's last node is dead by now; anything else is a bug in a pass. */
                KILN_ASSERT(!"new node writes a value a live node writes");
            }
            g->values[outputs[j]].producer = idx;
            mark_dirty(c, outputs[j]);
        }
    for (int k = 0; k < n_inputs; k++) mark_dirty(c, inputs[k]);
    if (s == KILN_STATUS_OK) {
        n->attrs.node_name = n->name;
        n->attrs.op_name = kiln_op_name(op);
        s = kiln_op_table[op].parse(n, &n->attrs);
    }
    if (s != KILN_STATUS_OK) {
        /* Leave nothing half-made: a dead node that commit removes. */
        c->dead[idx] = true;
        for (int j = 0; j < n_outputs; j++)
            if (outputs[j] >= 0 && g->values[outputs[j]].producer == idx) g->values[outputs[j]].producer = -1;
        return kiln_error_prefix(s, "pass building node '%s'", name);
    }
    *out = idx;
    return KILN_STATUS_OK;
}

kiln_status pc_add_replacement(pass_ctx *c, int op, const int *inputs, int n_inputs, int y, const kiln_attr *attrs,
                               int n_attrs) {
    char base[256];
    snprintf(base, sizeof base, "%s_%s", kiln_op_name(op), c->g->values[y].name);
    int ni;
    return pc_add_node(c, op, base, inputs, n_inputs, &y, 1, attrs, n_attrs, &ni);
}

kiln_status pc_add_const(pass_ctx *c, const char *base, const kiln_tensor *t, int *out) {
    char name[256];
    kiln_graph_unique_name(c->g, base, name, sizeof name);
    int v = kiln_graph_add_const(c->g, name, t);
    if (v < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory adding constant '%s'", name);
    *out = v;
    return KILN_STATUS_OK;
}

kiln_status pc_add_value(pass_ctx *c, const char *base, int *out) {
    char name[256];
    kiln_graph_unique_name(c->g, base, name, sizeof name);
    int v = kiln_graph_add_value(c->g, name);
    if (v < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory adding value '%s'", name);
    *out = v;
    return KILN_STATUS_OK;
}

/* ---- pattern matching ---- */

int pc_prod_op(const pass_ctx *c, int v, int op) {
    int p = pc_producer(c, v);
    if (p < 0) return -1;
    const kiln_node *n = &c->g->nodes[p];
    if (n->op != op || n->outputs[0] != v || n->n_inputs != n->n_declared || n->act.kind != KILN_ACT_NONE) return -1;
    return p;
}

int pass_other(const kiln_node *n, int v) {
    if (n->n_declared != 2) return -1;
    if (n->inputs[0] == v) return n->inputs[1];
    if (n->inputs[1] == v) return n->inputs[0];
    return -1;
}

int pass_reads(const kiln_graph *g, const int *nodes, int n, int v) {
    int r = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[nodes[i]].n_inputs; k++) r += g->nodes[nodes[i]].inputs[k] == v;
    return r;
}

bool pc_closed(const pass_ctx *c, const int *nodes, int n, int keep) {
    const kiln_graph *g = c->g;
    for (int i = 0; i < n; i++) {
        if (!pc_open(c, nodes[i])) return false;
        for (int j = 0; j < i; j++)
            if (nodes[j] == nodes[i]) return false;
    }
    for (int i = 0; i < n; i++) {
        const kiln_node *nd = &g->nodes[nodes[i]];
        for (int j = 0; j < nd->n_outputs; j++) {
            int v = nd->outputs[j];
            if (v < 0 || v == keep) continue;
            if (!pc_internal(c, v) || pc_uses(c, v) != pass_reads(g, nodes, n, v)) return false;
        }
    }
    return true;
}

/* ---- constants ---- */

bool pass_is_const(const kiln_graph *g, int v) {
    if (v < 0 || v >= g->n_values) return false;
    const kiln_value *val = &g->values[v];
    if (!(val->flags & KILN_VALUE_CONST) || (val->flags & (KILN_VALUE_INPUT | KILN_VALUE_CAPTURED))) return false;
    if (val->type.rank < 0) return false;
    int64_t n = kiln_shape_count(val->type.rank, val->type.dims);
    return n == 0 || (n > 0 && val->type.data != NULL);
}

int64_t pass_const_count(const kiln_graph *g, int v) {
    if (!pass_is_const(g, v)) return -1;
    return kiln_shape_count(g->values[v].type.rank, g->values[v].type.dims);
}

static bool numeric(kiln_dtype t) { return kiln_dtype_is_float(t) || kiln_dtype_is_int(t) || t == KILN_DTYPE_BOOL; }

bool pass_const_scalar(const kiln_graph *g, int v, double *out) {
    if (pass_const_count(g, v) != 1) return false;
    const kiln_tensor *t = &g->values[v].type;
    if (!numeric(t->dtype)) return false;
    *out = kiln_load_f64(t->dtype, t->data, 0);
    return true;
}

bool pass_const_all(const kiln_graph *g, int v, double x, double tol) {
    int64_t n = pass_const_count(g, v);
    if (n <= 0) return false;
    const kiln_tensor *t = &g->values[v].type;
    if (!numeric(t->dtype)) return false;
    for (int64_t i = 0; i < n; i++) {
        double y = kiln_load_f64(t->dtype, t->data, i);
        if (!(fabs(y - x) <= tol * fmax(1.0, fabs(x)))) return false;
    }
    return true;
}

/* ---- misc ---- */

bool pass_shape_static(const kiln_graph *g, int v) {
    if (v < 0) return false;
    const kiln_tensor *t = &g->values[v].type;
    return t->rank >= 0 && kiln_shape_count(t->rank, t->dims) >= 0;
}

bool pass_same_shape(const kiln_graph *g, int a, int b) {
    const kiln_tensor *x = &g->values[a].type, *y = &g->values[b].type;
    if (x->rank < 0 || x->rank != y->rank) return false;
    for (int i = 0; i < x->rank; i++)
        if (x->dims[i] != y->dims[i] || x->dims[i] == KILN_DIM_UNKNOWN) return false;
    return true;
}

bool pass_op_available(const kiln_graph *g, int op) {
    return kiln_op_is_internal(op) || g->opset >= kiln_op_table[op].since;
}

void pass_stats_init(kiln_pass_stats *st, const char *name) {
    if (!st) return;
    memset(st, 0, sizeof *st);
    st->pass = name;
}

kiln_status pass_finish(kiln_graph *g, bool changed) {
    if (!changed) return KILN_STATUS_OK;
    return kiln_graph_infer(g);
}

kiln_status pass_fuse_rounds(kiln_graph *g, kiln_pass_stats *st, pass_visit_fn visit, void *arg) {
    int fused = 0, removed = 0;
    for (int round = 0; round < 64; round++) {
        pass_ctx c;
        KILN_TRY(pc_init(&c, g));
        int before = fused, n0 = g->n_nodes;
        kiln_status s = KILN_STATUS_OK;
        for (int i = 0; i < n0 && s == KILN_STATUS_OK; i++) {
            if (!pc_open(&c, i)) continue;
            bool done = false;
            s = visit(&c, i, arg, &done);
            fused += done;
        }
        for (int i = 0; i < g->n_nodes; i++) removed += c.dead[i];
        removed -= g->n_nodes - n0;
        kiln_status cs = pc_commit(&c);
        KILN_TRY(s ? s : cs);
        if (fused == before) break;
    }
    if (st) {
        st->fused = fused;
        st->removed = removed;
    }
    return pass_finish(g, fused > 0);
}
