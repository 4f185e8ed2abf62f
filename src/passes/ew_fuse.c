/* ew_fuse.c — element-wise fusion: connected groups of element-wise nodes become one
 * kiln.FusedElementwise node (src/ops/fused_ew.c) whose program (src/ops/ew_program.h) computes
 * the whole group per element in float32, so a chain of k launches becomes one.
 *
 * What fuses: Neg, Abs, Exp, Log, Sqrt, Reciprocal, Tanh, Sigmoid, Erf, Relu, LeakyRelu,
 * HardSigmoid, HardSwish, Gelu (both forms), Swish, Clip with constant (or absent) bounds, and
 * Add, Sub, Mul, Div, Pow, Max and Min of two operands — whose output is f32, f16 or bf16 and
 * which carry no fused activation. An operand is either a constant holding one element (it
 * becomes an immediate in the program) or a tensor of the group's dtype of any shape that
 * broadcasts onto the group's output (the kernels broadcast it by index arithmetic); Pow's
 * exponent must be one of those too. x * Sigmoid(x) (SiLU) and similar small DAGs fuse as they
 * are: every node of a group writes a tensor of the group output's shape.
 *
 * How: nodes are taken in reverse topological order; an unfused node starts a group (its root)
 * and the group takes in the producers of its operands while (a) every reader of the produced
 * value is already in the group and the value is no graph output and no subgraph capture — so
 * only the root's value leaves the group, and the group is convex —, (b) the producer's output
 * has the root's shape, and (c) the program still fits: at most KILN_EWP_MAX_IN tensor
 * operands, KILN_EWP_MAX_OPS steps and KILN_EWP_MAX_REGS registers (allocated by liveness).
 * One tensor operand must have the root's full shape (so the node's inferred shape is the
 * root's). A group of one node stays as it is: fusing only pays when it saves a launch.
 *
 * Not fused: integer and f64 tensors, Cast, comparisons, Where, variadic Sum/Mean and Max/Min
 * of more than two inputs, Clip with tensor bounds, and anything whose shape is not known.
 * Run by the builder after precision lowering (passes.h), so 16-bit engines fuse their 16-bit
 * chains and compute them in float32 (see src/backends/ref/fused_ew.c for what that does to
 * accuracy). Tested by tests/models/test_passes.py (ew_fuse cases). */
#include "../ops/ew_program.h"
#include "../ops/math_internal.h"
#include "pass_util.h"

#include <string.h>

#define MAX_GROUP 32 /* nodes looked at per group; programs hold KILN_EWP_MAX_OPS steps anyway */

static bool group_dtype(kiln_dtype t) { return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16; }

/* The step code of node n and its immediate parameters; false when n is not fusable as such.
 * *n_operands: how many of its inputs are operands (the rest, Clip's bounds, are parameters). */
static bool step_of(const kiln_graph *g, const kiln_node *n, int *code, float *alpha, float *beta, int *n_operands) {
    const math_act_params *ap = n->params;
    *alpha = *beta = 0;
    *n_operands = 1;
    switch (n->op) {
    case KILN_OP_Neg: *code = KILN_EWP_NEG; return true;
    case KILN_OP_Abs: *code = KILN_EWP_ABS; return true;
    case KILN_OP_Exp: *code = KILN_EWP_EXP; return true;
    case KILN_OP_Log: *code = KILN_EWP_LOG; return true;
    case KILN_OP_Sqrt: *code = KILN_EWP_SQRT; return true;
    case KILN_OP_Reciprocal: *code = KILN_EWP_RECIPROCAL; return true;
    case KILN_OP_Tanh: *code = KILN_EWP_TANH; return true;
    case KILN_OP_Sigmoid: *code = KILN_EWP_SIGMOID; return true;
    case KILN_OP_Erf: *code = KILN_EWP_ERF; return true;
    case KILN_OP_Relu: *code = KILN_EWP_RELU; return true;
    case KILN_OP_HardSwish: *code = KILN_EWP_HARD_SWISH; return true;
    case KILN_OP_LeakyRelu: *code = KILN_EWP_LEAKY_RELU; if (!ap) return false; *alpha = ap->alpha; return true;
    case KILN_OP_HardSigmoid:
        if (!ap) return false;
        *code = KILN_EWP_HARD_SIGMOID;
        *alpha = ap->alpha;
        *beta = ap->beta;
        return true;
    case KILN_OP_Swish: *code = KILN_EWP_SWISH; if (!ap) return false; *alpha = ap->alpha; return true;
    case KILN_OP_Gelu: if (!ap) return false; *code = ap->gelu_tanh ? KILN_EWP_GELU_TANH : KILN_EWP_GELU; return true;
    case KILN_OP_Clip: {
        *code = KILN_EWP_CLIP;
        if (n->opset < 11) {
            const math_clip_params *cp = n->params;
            if (!cp) return false;
            *alpha = cp->min;
            *beta = cp->max;
            return true;
        }
        /* Absent bounds are the dtype's lowest/highest finite values (ref where_clip.c); in the
         * float32 program the group's dtype's range is what matters. */
        kiln_dtype dt = g->values[n->outputs[0]].type.dtype;
        float big = dt == KILN_DTYPE_F16 ? 65504.0f : dt == KILN_DTYPE_BF16 ? 3.3895313892515355e38f : 3.4028234663852886e38f;
        float b[2] = {-big, big};
        for (int k = 1; k <= 2; k++) {
            int v = pass_in(n, k);
            double d;
            if (v < 0) continue;
            if (!pass_const_scalar(g, v, &d)) return false;
            b[k - 1] = (float)d;
        }
        *alpha = b[0];
        *beta = b[1];
        return true;
    }
    case KILN_OP_Add: *code = KILN_EWP_ADD; break;
    case KILN_OP_Sub: *code = KILN_EWP_SUB; break;
    case KILN_OP_Mul: *code = KILN_EWP_MUL; break;
    case KILN_OP_Div: *code = KILN_EWP_DIV; break;
    case KILN_OP_Pow: *code = KILN_EWP_POW; break;
    case KILN_OP_Max: *code = KILN_EWP_MAX; break;
    case KILN_OP_Min: *code = KILN_EWP_MIN; break;
    default: return false;
    }
    *n_operands = 2;
    return n->n_declared == 2;
}

/* Node n can be a member of a group of dtype dt (its own output's when dt is UNDEFINED). */
static bool fusable(const pass_ctx *c, int n, kiln_dtype dt) {
    const kiln_graph *g = c->g;
    const kiln_node *nd = &g->nodes[n];
    if (!pc_open(c, n) || nd->n_outputs != 1 || nd->n_inputs != nd->n_declared || nd->act.kind != KILN_ACT_NONE) return false;
    int y = nd->outputs[0];
    if (y < 0) return false;
    kiln_dtype t = g->values[y].type.dtype;
    if (!group_dtype(t) || (dt != KILN_DTYPE_UNDEFINED && t != dt) || g->values[y].type.rank < 0) return false;
    int code, nops;
    float a, b;
    if (!step_of(g, nd, &code, &a, &b, &nops)) return false;
    for (int k = 0; k < nops; k++) {
        int v = nd->inputs[k];
        double d;
        if (v < 0) return false;
        if (pass_const_scalar(g, v, &d)) continue; /* an immediate */
        const kiln_tensor *vt = &g->values[v].type;
        if (vt->dtype != t || vt->rank < 0 || vt->rank > g->values[y].type.rank) return false;
    }
    return true;
}

typedef struct group {
    int nodes[MAX_GROUP]; /* in topological order (ascending index) */
    int n;
    int root_value;
    /* the compiled program and its tensor operands */
    int inputs[KILN_EWP_MAX_IN];
    int n_in;
    int64_t prog[4 * KILN_EWP_MAX_OPS];
    float params[2 * KILN_EWP_MAX_OPS];
    int n_ops;
} group;

static bool in_group(const group *gr, int n) {
    for (int i = 0; i < gr->n; i++)
        if (gr->nodes[i] == n) return true;
    return false;
}

/* Steps of the group (member order) that read value v, after step position `after` (member index). */
static bool read_later(const kiln_graph *g, const group *gr, int after, int v) {
    for (int i = after + 1; i < gr->n; i++) {
        const kiln_node *nd = &g->nodes[gr->nodes[i]];
        for (int k = 0; k < nd->n_declared; k++)
            if (nd->inputs[k] == v) return true;
    }
    return false;
}

/* Allocates the lowest free register (regs[r] holds value id or -1). */
static int alloc_reg(int *regs, int v) {
    for (int r = 0; r < KILN_EWP_MAX_REGS; r++)
        if (regs[r] == -1) {
            regs[r] = v;
            return r;
        }
    return -1;
}

static int reg_of(const int *regs, int v) {
    for (int r = 0; r < KILN_EWP_MAX_REGS; r++)
        if (regs[r] == v) return r;
    return -1;
}

/* Writes the group's program; false when it does not fit (operands, steps, registers) or no
 * tensor operand has the root's shape. */
static bool compile(const pass_ctx *c, group *gr) {
    const kiln_graph *g = c->g;
    gr->n_in = 0;
    gr->n_ops = 0;
    /* tensor operands: values read by members and produced outside the group, not immediates */
    for (int i = 0; i < gr->n; i++) {
        const kiln_node *nd = &g->nodes[gr->nodes[i]];
        int code, nops;
        float a, b;
        step_of(g, nd, &code, &a, &b, &nops);
        for (int k = 0; k < nops; k++) {
            int v = nd->inputs[k], p = g->values[v].producer;
            double d;
            if ((p >= 0 && in_group(gr, p)) || pass_const_scalar(g, v, &d)) continue;
            bool seen = false;
            for (int j = 0; j < gr->n_in; j++) seen |= gr->inputs[j] == v;
            if (seen) continue;
            if (gr->n_in == KILN_EWP_MAX_IN) return false;
            gr->inputs[gr->n_in++] = v;
        }
    }
    bool full = false;
    for (int j = 0; j < gr->n_in; j++) full |= pass_same_shape(g, gr->inputs[j], gr->root_value);
    if (!full) return false;
    int regs[KILN_EWP_MAX_REGS];
    for (int r = 0; r < KILN_EWP_MAX_REGS; r++) regs[r] = r < gr->n_in ? gr->inputs[r] : -1;
    for (int i = 0; i < gr->n; i++) {
        const kiln_node *nd = &g->nodes[gr->nodes[i]];
        int code, nops;
        float alpha, beta;
        step_of(g, nd, &code, &alpha, &beta, &nops);
        int opr[2] = {0, -1};
        int tmp[2] = {-1, -1}; /* registers holding immediates, freed after this step */
        for (int k = 0; k < nops; k++) {
            int v = nd->inputs[k];
            double d;
            int p = g->values[v].producer;
            if (!(p >= 0 && in_group(gr, p)) && pass_const_scalar(g, v, &d)) {
                int r = alloc_reg(regs, -2 - k); /* a sentinel id that no value has */
                if (r < 0 || gr->n_ops == KILN_EWP_MAX_OPS) return false;
                int64_t *s = &gr->prog[4 * gr->n_ops];
                s[0] = KILN_EWP_CONST, s[1] = r, s[2] = -1, s[3] = -1;
                gr->params[2 * gr->n_ops] = (float)d;
                gr->params[2 * gr->n_ops + 1] = 0;
                gr->n_ops++;
                opr[k] = tmp[k] = r;
            } else {
                opr[k] = reg_of(regs, v);
                if (opr[k] < 0) return false; /* cannot happen: every operand is an input or computed */
            }
        }
        /* free what this step reads for the last time (the result may take its register) */
        for (int k = 0; k < 2; k++)
            if (tmp[k] >= 0) regs[tmp[k]] = -1;
        for (int k = 0; k < nops; k++) {
            int v = nd->inputs[k], r = reg_of(regs, v);
            if (r >= 0 && !read_later(g, gr, i, v)) regs[r] = -1;
        }
        int dst = alloc_reg(regs, nd->outputs[0]);
        if (dst < 0 || gr->n_ops == KILN_EWP_MAX_OPS) return false;
        int64_t *s = &gr->prog[4 * gr->n_ops];
        s[0] = code, s[1] = dst, s[2] = opr[0], s[3] = nops == 2 ? opr[1] : -1;
        gr->params[2 * gr->n_ops] = alpha;
        gr->params[2 * gr->n_ops + 1] = beta;
        gr->n_ops++;
    }
    return true;
}

/* Adds node p to the group in topological position. */
static void group_insert(group *gr, int p) {
    int i = gr->n++;
    while (i > 0 && gr->nodes[i - 1] > p) {
        gr->nodes[i] = gr->nodes[i - 1];
        i--;
    }
    gr->nodes[i] = p;
}

/* Grows the group rooted at node root as far as it goes; compiles it. */
static bool grow(const pass_ctx *c, int root, group *gr) {
    const kiln_graph *g = c->g;
    gr->n = 1;
    gr->nodes[0] = root;
    gr->root_value = g->nodes[root].outputs[0];
    kiln_dtype dt = g->values[gr->root_value].type.dtype;
    bool changed = true;
    while (changed && gr->n < MAX_GROUP) {
        changed = false;
        for (int i = 0; i < gr->n && gr->n < MAX_GROUP; i++) {
            const kiln_node *nd = &g->nodes[gr->nodes[i]];
            for (int k = 0; k < nd->n_declared && gr->n < MAX_GROUP; k++) {
                int v = nd->inputs[k], p = pc_producer(c, v);
                if (p < 0 || in_group(gr, p) || !fusable(c, p, dt) || !pc_internal(c, v)) continue;
                if (!pass_same_shape(g, v, gr->root_value)) continue;
                if (pass_reads(g, gr->nodes, gr->n, v) != pc_uses(c, v)) continue; /* read outside the group */
                group trial = *gr;
                group_insert(&trial, p);
                if (!compile(c, &trial)) continue;
                *gr = trial;
                changed = true;
            }
        }
    }
    return gr->n >= 2 && compile(c, gr);
}

kiln_status kiln_pass_ew_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "ew_fuse");
    pass_ctx c;
    KILN_TRY(pc_init(&c, g));
    int fused = 0, removed = 0;
    kiln_status s = KILN_STATUS_OK;
    int n_nodes = g->n_nodes;
    for (int i = n_nodes - 1; i >= 0 && s == KILN_STATUS_OK; i--) {
        if (!fusable(&c, i, KILN_DTYPE_UNDEFINED)) continue;
        group gr;
        if (!grow(&c, i, &gr)) continue;
        kiln_attr attrs[2] = {
            {.name = "program", .type = KILN_ATTR_INTS, .n = 4 * gr.n_ops, .ints = gr.prog},
            {.name = "params", .type = KILN_ATTR_FLOATS, .n = 2 * gr.n_ops, .floats = gr.params},
        };
        for (int k = 0; k < gr.n; k++) pc_kill(&c, gr.nodes[k]);
        s = pc_add_replacement(&c, KILN_OP_FusedElementwise, gr.inputs, gr.n_in, gr.root_value, attrs, 2);
        fused++;
        removed += gr.n - 1;
    }
    kiln_status cs = pc_commit(&c);
    KILN_TRY(s ? s : cs);
    if (st) {
        st->fused = fused;
        st->removed = removed;
    }
    return pass_finish(g, fused > 0);
}

bool kiln_ew_fuse_wanted(bool gpu) {
    const char *v = getenv("KILN_EW_FUSE");
    if (v && *v) return strcmp(v, "0") != 0;
    /* On for CUDA engines (one launch a group, checked by tests/gpu/ and the node tests on an
     * H100); off for CPU engines, whose oneDNN kernels fuse on their own and where the fused
     * node would run the reference kernel. */
    return gpu;
}
