/* precision.c — FP16 / BF16 engines: float32 compute moves to a 16-bit float type.
 *
 * Each node of an op that computes well in 16 bits (convolutions, matrix products, element-wise
 * math, normalizations and softmax — whose GPU kernels accumulate in float32 —, pooling, and
 * the data-movement ops) has its float32 inputs and outputs turned into the 16-bit type:
 * weights are converted once, here; values coming from float32 nodes (or graph inputs) pass
 * through one shared Cast; values read by float32 nodes (or that are graph outputs) get a Cast
 * back (Shape and Size, which read only dims, read the 16-bit twin). Graph inputs and outputs
 * keep their float32 type and their names, so callers see the same engine interface at every
 * precision. Nodes named in keep_fp32 (--layer-precision
 * NODE:fp32) and ops that lose too much in 16 bits (Pow, Exp-based reductions, ReduceProd,
 * cumulative sums...) stay float32. So do Sin and Cos, with the arithmetic that computes their
 * argument (see keep_phases), and the statistics computed from a Pow (see keep_statistics). */
#include "pass_util.h"
#include "passes.h"

#include <string.h>

/* Ops that may run in 16 bits; for Resize/Upsample only the data input (scales and roi stay). */
static bool lowerable(int op) {
    switch (op) {
    case KILN_OP_Abs: case KILN_OP_Neg: case KILN_OP_Floor: case KILN_OP_Ceil: case KILN_OP_Round: case KILN_OP_Sqrt:
    case KILN_OP_Reciprocal: case KILN_OP_Exp: case KILN_OP_Log: case KILN_OP_Sin: case KILN_OP_Cos: case KILN_OP_Tanh:
    case KILN_OP_Erf: case KILN_OP_Sign:
    case KILN_OP_Relu: case KILN_OP_Sigmoid: case KILN_OP_Softplus: case KILN_OP_Softsign: case KILN_OP_HardSigmoid:
    case KILN_OP_HardSwish: case KILN_OP_Elu: case KILN_OP_Selu: case KILN_OP_Celu: case KILN_OP_LeakyRelu:
    case KILN_OP_ThresholdedRelu: case KILN_OP_Mish: case KILN_OP_Gelu: case KILN_OP_Swish: case KILN_OP_PRelu:
    case KILN_OP_Add: case KILN_OP_Sub: case KILN_OP_Mul: case KILN_OP_Div:
    case KILN_OP_Equal: case KILN_OP_Less: case KILN_OP_Greater: case KILN_OP_LessOrEqual: case KILN_OP_GreaterOrEqual:
    case KILN_OP_Sum: case KILN_OP_Mean: case KILN_OP_Max: case KILN_OP_Min: case KILN_OP_Where: case KILN_OP_Clip:
    case KILN_OP_Conv: case KILN_OP_ConvTranspose: case KILN_OP_MaxPool: case KILN_OP_AveragePool:
    case KILN_OP_GlobalAveragePool: case KILN_OP_GlobalMaxPool:
    case KILN_OP_BatchNormalization: case KILN_OP_InstanceNormalization: case KILN_OP_LayerNormalization:
    case KILN_OP_GroupNormalization: case KILN_OP_RMSNormalization:
    case KILN_OP_Resize: case KILN_OP_Upsample: case KILN_OP_MatMul: case KILN_OP_Gemm: case KILN_OP_FusedMatMul:
    case KILN_OP_Softmax: case KILN_OP_LogSoftmax: case KILN_OP_ReduceMean: case KILN_OP_ReduceMax: case KILN_OP_ReduceMin:
    case KILN_OP_Attention:
    case KILN_OP_Concat: case KILN_OP_Split: case KILN_OP_Slice: case KILN_OP_Gather: case KILN_OP_Transpose:
    case KILN_OP_Reshape: case KILN_OP_Flatten: case KILN_OP_Squeeze: case KILN_OP_Unsqueeze: case KILN_OP_Identity:
    case KILN_OP_Expand: case KILN_OP_Tile: case KILN_OP_Pad: case KILN_OP_DepthToSpace: case KILN_OP_SpaceToDepth:
        return true;
    default: return false;
    }
}

static bool converts_input(int op, int k) {
    if (op == KILN_OP_Resize || op == KILN_OP_Upsample) return k == 0;
    return true;
}

typedef struct lower_ctx {
    pass_ctx pc;
    kiln_dtype to;
    int *low;  /* per original value: its 16-bit twin, -1 if none yet */
    int n_orig;
    int casts, consts, nodes;
} lower_ctx;

static kiln_status add_cast(lower_ctx *lc, int from, int to_value, kiln_dtype to, const char *why) {
    kiln_attr a = {.name = "to", .type = KILN_ATTR_INT, .i = to};
    char base[300];
    snprintf(base, sizeof base, "Cast_%s_%s", lc->pc.g->values[from].name, why);
    int ni;
    KILN_TRY(pc_add_node(&lc->pc, KILN_OP_Cast, base, &from, 1, &to_value, 1, &a, 1, &ni));
    lc->casts++;
    return KILN_STATUS_OK;
}

/* The 16-bit twin of float32 value v, made on first need. */
static kiln_status twin(lower_ctx *lc, int v, int *out) {
    kiln_graph *g = lc->pc.g;
    if (v < lc->n_orig && lc->low[v] >= 0) {
        *out = lc->low[v];
        return KILN_STATUS_OK;
    }
    const kiln_value *val = &g->values[v];
    char base[300];
    snprintf(base, sizeof base, "%s_%s", val->name, lc->to == KILN_DTYPE_F16 ? "fp16" : "bf16");
    int t;
    if ((val->flags & KILN_VALUE_CONST) && !(val->flags & KILN_VALUE_INPUT) && val->type.data) {
        kiln_tensor c = {0};
        KILN_TRY(kiln_tensor_alloc(&c, lc->to, val->type.rank, val->type.dims));
        int64_t n = kiln_shape_count(val->type.rank, val->type.dims);
        const float *src = g->values[v].type.data;
        uint16_t *dst = c.data;
        for (int64_t i = 0; i < n; i++) dst[i] = lc->to == KILN_DTYPE_F16 ? kiln_f32_to_f16(src[i]) : kiln_f32_to_bf16(src[i]);
        kiln_status s = pc_add_const(&lc->pc, base, &c, &t);
        kiln_tensor_release(&c);
        KILN_TRY(s);
        lc->consts++;
    } else {
        KILN_TRY(pc_add_value(&lc->pc, base, &t));
        g->values[t].type = g->values[v].type;
        g->values[t].type.data = NULL;
        g->values[t].type.flags = 0;
        g->values[t].type.dtype = lc->to;
        KILN_TRY(add_cast(lc, v, t, lc->to, "down"));
    }
    if (v < lc->n_orig) lc->low[v] = t;
    *out = t;
    return KILN_STATUS_OK;
}

static bool is_f32(const kiln_graph *g, int v) { return v >= 0 && g->values[v].type.dtype == KILN_DTYPE_F32; }

/* Ops through which a Sin/Cos argument is computed: arithmetic, products and data movement. */
static bool phase_op(int op) {
    switch (op) {
    case KILN_OP_Add: case KILN_OP_Sub: case KILN_OP_Mul: case KILN_OP_Div: case KILN_OP_Neg: case KILN_OP_MatMul:
    case KILN_OP_Concat: case KILN_OP_Slice: case KILN_OP_Gather: case KILN_OP_Transpose: case KILN_OP_Reshape:
    case KILN_OP_Flatten: case KILN_OP_Squeeze: case KILN_OP_Unsqueeze: case KILN_OP_Identity: case KILN_OP_Expand:
    case KILN_OP_Tile:
        return true;
    default: return false;
    }
}

/* Marks every Sin and Cos, and the nodes computing their argument back to its non-float or
 * constant sources, to stay float32. A sinusoidal timestep or position embedding takes the sine of
 * t * f with t up to a thousand or more: in fp16 the argument's spacing there is 0.5 (in bf16, 8),
 * so the phase, and the embedding, would be noise; the result itself is in [-1, 1] and fine. */
static kiln_status keep_phases(const kiln_graph *g, bool *keep) {
    int *stack = kiln_malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1)), top = 0;
    if (!stack) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == KILN_OP_Sin || g->nodes[i].op == KILN_OP_Cos) {
            keep[i] = true;
            stack[top++] = i;
        }
    while (top > 0) {
        const kiln_node *n = &g->nodes[stack[--top]];
        for (int k = 0; k < n->n_declared; k++) {
            int v = n->inputs[k], p = v >= 0 && is_f32(g, v) ? g->values[v].producer : -1;
            if (p < 0 || keep[p] || !phase_op(g->nodes[p].op)) continue;
            keep[p] = true; /* each node enters the stack once, so it never overflows */
            stack[top++] = p;
        }
    }
    free(stack);
    return KILN_STATUS_OK;
}

/* Marks the statistics a float32 Pow feeds to stay float32 too: the mean of its squares
 * (ReduceMean), the epsilon added to it (Add of a constant), the root and its reciprocal — an
 * exported RMSNorm or variance up to the division. A mean square in fp16 is infinite once the RMS
 * passes 256 (65504 = 256^2), which transformer hidden states with outlier channels reach; the
 * root is back in range, and the division or product by it runs in 16 bits as usual. */
static void keep_statistics(const kiln_graph *g, bool *keep, bool *stat) {
    for (int i = 0; i < g->n_nodes; i++) { /* topological order: a node's producers come first */
        const kiln_node *n = &g->nodes[i];
        bool mean = n->op == KILN_OP_ReduceMean;
        if (!mean && n->op != KILN_OP_Add && n->op != KILN_OP_Sqrt && n->op != KILN_OP_Reciprocal) continue;
        bool from = false, rest_const = true; /* fed by a Pow (the mean) or a statistic (the rest), else constants */
        for (int k = 0; k < n->n_declared; k++) {
            int v = n->inputs[k];
            if (!is_f32(g, v)) continue;
            int p = g->values[v].producer;
            if (p >= 0 && (mean ? g->nodes[p].op == KILN_OP_Pow : stat[p])) from = true;
            else if (!(g->values[v].flags & KILN_VALUE_CONST)) rest_const = false;
        }
        stat[i] = from && rest_const;
        keep[i] |= stat[i];
    }
}

static bool kept(const kiln_node *n, const char *const *keep, int n_keep) {
    for (int k = 0; k < n_keep; k++)
        if (strcmp(n->name, keep[k]) == 0) return true;
    return false;
}

kiln_status kiln_pass_reduce_precision(kiln_graph *g, kiln_dtype to, const char *const *keep_fp32, int n_keep,
                                       kiln_pass_stats *st) {
    if (st) *st = (kiln_pass_stats){.pass = to == KILN_DTYPE_F16 ? "fp16" : "bf16"};
    if (to != KILN_DTYPE_F16 && to != KILN_DTYPE_BF16)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "reduced precision must be fp16 or bf16");
    lower_ctx lc = {.to = to, .n_orig = g->n_values};
    lc.low = kiln_malloc(sizeof(int) * (size_t)(g->n_values ? g->n_values : 1));
    if (!lc.low) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int v = 0; v < g->n_values; v++) lc.low[v] = -1;
    bool *up = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(bool)); /* outputs moved to a twin */
    int n_nodes = g->n_nodes;
    bool *phase = kiln_calloc((size_t)(n_nodes ? n_nodes : 1), sizeof(bool)); /* Sin/Cos and their arguments */
    bool *stat = kiln_calloc((size_t)(n_nodes ? n_nodes : 1), sizeof(bool)); /* statistics after a Pow */
    kiln_status s = up && phase && stat ? keep_phases(g, phase) : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s == KILN_STATUS_OK) keep_statistics(g, phase, stat);
    if (s == KILN_STATUS_OK) s = pc_init(&lc.pc, g);
    for (int i = 0; s == KILN_STATUS_OK && i < n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        if ((n->op == KILN_OP_Shape || n->op == KILN_OP_Size) && n->n_inputs > 0) {
            /* only the dims are read: the 16-bit twin, where there is one, saves a Cast back */
            int v = n->inputs[0];
            if (v >= 0 && v < lc.n_orig && lc.low[v] >= 0) s = pc_set_input(&lc.pc, i, 0, lc.low[v]);
            continue;
        }
        if (!lowerable(n->op) || phase[i] || kept(n, keep_fp32, n_keep)) continue;
        bool any = false;
        for (int k = 0; k < n->n_inputs; k++) any |= is_f32(g, n->inputs[k]) && converts_input(n->op, k);
        for (int j = 0; j < n->n_outputs; j++) any |= is_f32(g, n->outputs[j]);
        if (!any) continue;
        lc.nodes++;
        for (int k = 0; s == KILN_STATUS_OK && k < g->nodes[i].n_declared; k++) {
            int v = g->nodes[i].inputs[k];
            if (!is_f32(g, v) || !converts_input(g->nodes[i].op, k)) continue;
            int t;
            if ((s = twin(&lc, v, &t)) == KILN_STATUS_OK) s = pc_set_input(&lc.pc, i, k, t);
        }
        for (int j = 0; s == KILN_STATUS_OK && j < g->nodes[i].n_outputs; j++) {
            int v = g->nodes[i].outputs[j];
            if (!is_f32(g, v) || v >= lc.n_orig) continue;
            int t;
            char base[300];
            snprintf(base, sizeof base, "%s_%s", g->values[v].name, to == KILN_DTYPE_F16 ? "fp16" : "bf16");
            if ((s = pc_add_value(&lc.pc, base, &t))) break;
            g->values[t].type = g->values[v].type;
            g->values[t].type.data = NULL;
            g->values[t].type.flags = 0;
            g->values[t].type.dtype = to;
            pc_set_output(&lc.pc, i, j, t);
            lc.low[v] = t;
            up[v] = true;
        }
    }
    /* float32 readers (and graph outputs) of moved values read them through a Cast back */
    for (int v = 0; s == KILN_STATUS_OK && v < lc.n_orig; v++)
        if (up[v] && kiln_graph_uses(g, v) > 0) s = add_cast(&lc, lc.low[v], v, KILN_DTYPE_F32, "up");
    if (s == KILN_STATUS_OK) s = pc_commit(&lc.pc);
    else pc_free(&lc.pc);
    free(lc.low);
    free(up);
    free(phase);
    free(stat);
    if (s == KILN_STATUS_OK) s = kiln_graph_infer(g);
    if (st) {
        st->fused = lc.nodes;
        st->folded = lc.consts;
    }
    return s;
}
