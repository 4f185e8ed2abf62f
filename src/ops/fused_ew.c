/* fused_ew.c — parse, shape inference and description of kiln.FusedElementwise (ops_fused.def).
 *
 * FusedElementwise(x0, ..., x{n-1}) runs a short program of element-wise steps (ew_program.h)
 * over 1 to KILN_EWP_MAX_IN float tensors of one dtype (f32, f16 or bf16), each broadcast
 * (numpy rules) onto the output, whose shape is the broadcast of all inputs and whose dtype is
 * theirs. Made by src/passes/ew_fuse.c from chains of element-wise nodes; reference kernel in
 * src/backends/ref/fused_ew.c, CUDA kernel in src/backends/cuda/elementwise_fused.*.
 * Parse checks the program completely (codes, register numbers, every read after a write), so
 * kernels can trust it. Tested by tests/models/test_passes.py (ew_fuse cases). */
#include "ew_program.h"
#include "math_internal.h"

#include <stdio.h>

static const char *const CODE_NAMES[KILN_EWP_COUNT] = {
    [KILN_EWP_CONST] = "Const", [KILN_EWP_NEG] = "Neg", [KILN_EWP_ABS] = "Abs", [KILN_EWP_EXP] = "Exp",
    [KILN_EWP_LOG] = "Log", [KILN_EWP_SQRT] = "Sqrt", [KILN_EWP_RECIPROCAL] = "Reciprocal", [KILN_EWP_TANH] = "Tanh",
    [KILN_EWP_SIGMOID] = "Sigmoid", [KILN_EWP_ERF] = "Erf", [KILN_EWP_RELU] = "Relu", [KILN_EWP_LEAKY_RELU] = "LeakyRelu",
    [KILN_EWP_HARD_SIGMOID] = "HardSigmoid", [KILN_EWP_HARD_SWISH] = "HardSwish", [KILN_EWP_GELU] = "Gelu",
    [KILN_EWP_GELU_TANH] = "GeluTanh", [KILN_EWP_CLIP] = "Clip", [KILN_EWP_SWISH] = "Swish", [KILN_EWP_ADD] = "Add",
    [KILN_EWP_SUB] = "Sub", [KILN_EWP_MUL] = "Mul", [KILN_EWP_DIV] = "Div", [KILN_EWP_POW] = "Pow", [KILN_EWP_MAX] = "Max",
    [KILN_EWP_MIN] = "Min",
};

const char *kiln_ewp_code_name(int code) {
    return code >= 0 && code < KILN_EWP_COUNT && CODE_NAMES[code] ? CODE_NAMES[code] : "?";
}

/* The step's parameters that matter when describing it (how many of alpha, beta). */
static int n_params(int code) {
    switch (code) {
    case KILN_EWP_CONST: case KILN_EWP_LEAKY_RELU: case KILN_EWP_SWISH: return 1;
    case KILN_EWP_HARD_SIGMOID: case KILN_EWP_CLIP: return 2;
    default: return 0;
    }
}

kiln_status kiln_parse_fused_ew(kiln_node *node, kiln_attrs *attrs) {
    int64_t *prog = NULL;
    float *params = NULL;
    int np = 0, nf = 0;
    bool has_p, has_f;
    KILN_TRY(kiln_attr_ints(attrs, "program", &prog, &np, &has_p));
    kiln_status s = kiln_attr_floats(attrs, "params", &params, &nf, &has_f);
    kiln_ewp *p = s == KILN_STATUS_OK ? kiln_calloc(1, sizeof *p) : NULL;
    if (s == KILN_STATUS_OK && !p) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s == KILN_STATUS_OK) {
        int n_ops = np / 4;
        p->n_in = node->n_declared;
        p->n_ops = n_ops;
        bool written[KILN_EWP_MAX_REGS] = {0};
        for (int r = 0; r < p->n_in && r < KILN_EWP_MAX_REGS; r++) written[r] = true;
        if (p->n_in < 1 || p->n_in > KILN_EWP_MAX_IN)
            s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d inputs, expected 1 to %d", p->n_in, KILN_EWP_MAX_IN);
        else if (!has_p || np % 4 != 0 || n_ops < 1 || n_ops > KILN_EWP_MAX_OPS)
            s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'program' must hold 4 ints per step, 1 to %d steps (has %d ints)",
                                KILN_EWP_MAX_OPS, np);
        else if (!has_f || nf != 2 * n_ops)
            s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'params' must hold 2 floats per step (%d), has %d", 2 * n_ops, nf);
        int n_regs = p->n_in;
        for (int k = 0; s == KILN_STATUS_OK && k < n_ops; k++) {
            int64_t code = prog[4 * k], dst = prog[4 * k + 1], a = prog[4 * k + 2], b = prog[4 * k + 3];
            int ar = code >= 0 && code < KILN_EWP_COUNT ? kiln_ewp_arity((int)code) : -1;
            bool ok = ar >= 0 && dst >= 0 && dst < KILN_EWP_MAX_REGS;
            ok = ok && (ar < 1 || (a >= 0 && a < KILN_EWP_MAX_REGS && written[a]));
            ok = ok && (ar < 2 ? b == -1 : b >= 0 && b < KILN_EWP_MAX_REGS && written[b]);
            if (!ok) {
                s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                                    "program step %d (code %lld, dst %lld, a %lld, b %lld) is not valid: an unknown code, a register "
                                    "outside 0..%d, or one read before it is written",
                                    k, (long long)code, (long long)dst, (long long)a, (long long)b, KILN_EWP_MAX_REGS - 1);
                break;
            }
            p->ops[k] = (kiln_ewp_step){(uint8_t)code, (uint8_t)dst, (uint8_t)(ar >= 1 ? a : 0), (uint8_t)(ar == 2 ? b : 0),
                                        params[2 * k], params[2 * k + 1]};
            written[dst] = true;
            if (dst + 1 > n_regs) n_regs = (int)dst + 1;
        }
        if (s == KILN_STATUS_OK) {
            p->n_regs = n_regs;
            p->out = p->ops[n_ops - 1].dst;
        }
    }
    free(prog);
    free(params);
    if (s != KILN_STATUS_OK) {
        free(p);
        return s;
    }
    node->params = p;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_fused_ew(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_ewp *p = node->params;
    if (!p) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "no program");
    KILN_TRY(kiln_node_check_arity(node, p->n_in, p->n_in));
    if (node->n_outputs != 1) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1", node->n_outputs);
    for (int i = 0; i < node->n_declared; i++)
        if (!in[i]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is omitted; every input is required", i);
    kiln_dtype dt = in[0]->dtype;
    out[0].dtype = dt;
    if (math_dtype_pending(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (dt != KILN_DTYPE_F32 && dt != KILN_DTYPE_F16 && dt != KILN_DTYPE_BF16) return kiln_node_bad_dtype(node, 0, dt);
    for (int i = 1; i < node->n_declared; i++)
        if (in[i]->dtype != dt)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is %s, input 0 %s: one dtype for all", i,
                                   kiln_dtype_name(in[i]->dtype), kiln_dtype_name(dt));
    return math_broadcast_n(node, in, node->n_declared, &out[0]);
}

/* Appends to buf at *len (keeping it NUL-terminated, marking truncation with "..."). */
static void put(char *buf, size_t n, size_t *len, const char *s) {
    size_t k = strlen(s);
    if (*len + k + 4 >= n) {
        if (*len + 4 <= n) snprintf(buf + *len, n - *len, "...");
        *len = n;
        return;
    }
    memcpy(buf + *len, s, k + 1);
    *len += k;
}

/* The expression held by register r before step `upto`, written out. */
static void expr(const kiln_ewp *p, int r, int upto, char *buf, size_t n, size_t *len, int depth) {
    int k = upto - 1;
    while (k >= 0 && p->ops[k].dst != r) k--;
    char tmp[48];
    if (k < 0) {
        snprintf(tmp, sizeof tmp, "x%d", r);
        put(buf, n, len, tmp);
        return;
    }
    const kiln_ewp_step *st = &p->ops[k];
    if (st->code == KILN_EWP_CONST) {
        snprintf(tmp, sizeof tmp, "%g", (double)st->alpha);
        put(buf, n, len, tmp);
        return;
    }
    if (depth > 32) {
        put(buf, n, len, "...");
        return;
    }
    put(buf, n, len, kiln_ewp_code_name(st->code));
    put(buf, n, len, "(");
    expr(p, st->a, k, buf, n, len, depth + 1);
    if (kiln_ewp_arity(st->code) == 2) {
        put(buf, n, len, ", ");
        expr(p, st->b, k, buf, n, len, depth + 1);
    }
    int np = n_params(st->code);
    if (np > 0) {
        snprintf(tmp, sizeof tmp, np == 1 ? "; %g" : "; %g, %g", (double)st->alpha, (double)st->beta);
        put(buf, n, len, tmp);
    }
    put(buf, n, len, ")");
}

const char *kiln_fused_ew_describe(const kiln_node *node, char *buf, size_t n) {
    const kiln_ewp *p = node->params;
    size_t len = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    if (!p) return buf;
    expr(p, p->out, p->n_ops, buf, n, &len, 0);
    return buf;
}
