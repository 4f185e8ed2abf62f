/* test_fused_ew.c — unit tests of kiln.FusedElementwise's op code (src/ops/fused_ew.c) and
 * reference kernel (src/backends/ref/fused_ew.c): programs that parse, programs refused with
 * INVALID_MODEL (unknown code, register out of range, read before write, params of the wrong
 * length, too many inputs), shape inference with broadcasting and its dtype checks, the
 * expression kiln inspect prints, and the kernel on broadcast f32 and f16 inputs against the
 * same formula computed by hand in double and rounded once. Prints one line per failed check
 * and a closing "N passed, N failed". */
#include "core/core.h"
#include "ir/graph.h"
#include "ops/ew_program.h"
#include "ops/op.h"

#include <math.h>
#include <string.h>

#include "check.h"

/* Parses a FusedElementwise node of n_in inputs from the program's ints and floats. */
static kiln_status parse(kiln_node *node, int n_in, const int64_t *prog, int np, const float *params, int nf) {
    memset(node, 0, sizeof *node);
    node->op = KILN_OP_FusedElementwise;
    node->name = "fe";
    node->n_inputs = node->n_declared = n_in;
    node->n_outputs = 1;
    kiln_attr items[2] = {
        {.name = "program", .type = KILN_ATTR_INTS, .n = np, .ints = (int64_t *)prog},
        {.name = "params", .type = KILN_ATTR_FLOATS, .n = nf, .floats = (float *)params},
    };
    kiln_attrs attrs = {.items = items, .n = 2, .node_name = "fe", .op_name = "FusedElementwise"};
    return kiln_op_table[KILN_OP_FusedElementwise].parse(node, &attrs);
}

static void drop(kiln_node *node) {
    free(node->params);
    node->params = NULL;
}

/* y = Add(Mul(x0, Sigmoid(x0)), x1) * 0.5: registers 0, 1 inputs; 2 = Sigmoid(0); 2 = Mul(0, 2);
 * 0 = Add(2, 1); 1 = Const 0.5; 0 = Mul(0, 1). */
static const int64_t SILU_PROG[] = {
    KILN_EWP_SIGMOID, 2, 0, -1, KILN_EWP_MUL, 2, 0, 2, KILN_EWP_ADD, 0, 2, 1, KILN_EWP_CONST, 1, -1, -1, KILN_EWP_MUL, 0, 0, 1,
};
static const float SILU_PARAMS[10] = {0, 0, 0, 0, 0, 0, 0.5f, 0, 0, 0};

static void test_parse(void) {
    kiln_node n;
    CHECK(parse(&n, 2, SILU_PROG, 20, SILU_PARAMS, 10) == KILN_STATUS_OK);
    const kiln_ewp *p = n.params;
    CHECK(p && p->n_in == 2 && p->n_ops == 5 && p->n_regs == 3 && p->out == 0);
    char buf[128];
    CHECK(strcmp(kiln_fused_ew_describe(&n, buf, sizeof buf), "Mul(Add(Mul(x0, Sigmoid(x0)), x1), 0.5)") == 0);
    char tiny[12];
    kiln_fused_ew_describe(&n, tiny, sizeof tiny);
    CHECK(strlen(tiny) < sizeof tiny && strstr(tiny, "...") != NULL); /* truncated, marked, terminated */
    drop(&n);

    const int64_t bad_code[] = {KILN_EWP_COUNT, 1, 0, -1};
    const int64_t bad_reg[] = {KILN_EWP_NEG, KILN_EWP_MAX_REGS, 0, -1};
    const int64_t unwritten[] = {KILN_EWP_ADD, 1, 0, 3};      /* register 3 read before any write */
    const int64_t unary_b[] = {KILN_EWP_NEG, 1, 0, 0};        /* b must be -1 for one operand */
    const int64_t binary_nob[] = {KILN_EWP_ADD, 1, 0, -1};    /* b missing for two operands */
    const float two[2] = {0, 0};
    CHECK(parse(&n, 1, bad_code, 4, two, 2) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 1, bad_reg, 4, two, 2) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 1, unwritten, 4, two, 2) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 1, unary_b, 4, two, 2) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 1, binary_nob, 4, two, 2) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 2, SILU_PROG, 20, SILU_PARAMS, 8) == KILN_STATUS_INVALID_MODEL && !n.params); /* params short */
    CHECK(parse(&n, 2, SILU_PROG, 19, SILU_PARAMS, 10) == KILN_STATUS_INVALID_MODEL && !n.params); /* not 4 a step */
    CHECK(parse(&n, KILN_EWP_MAX_IN + 1, SILU_PROG, 20, SILU_PARAMS, 10) == KILN_STATUS_INVALID_MODEL && !n.params);
    CHECK(parse(&n, 0, SILU_PROG, 20, SILU_PARAMS, 10) == KILN_STATUS_INVALID_MODEL && !n.params);
}

static void test_infer(void) {
    kiln_node n;
    CHECK(parse(&n, 2, SILU_PROG, 20, SILU_PARAMS, 10) == KILN_STATUS_OK);
    kiln_tensor a = {.dtype = KILN_DTYPE_F16, .rank = 3, .dims = {2, 3, 5}};
    kiln_tensor b = {.dtype = KILN_DTYPE_F16, .rank = 2, .dims = {3, 1}};
    kiln_tensor *in[2] = {&a, &b}, out = {0};
    CHECK(kiln_op_table[KILN_OP_FusedElementwise].infer(&n, in, &out) == KILN_STATUS_OK);
    CHECK(out.dtype == KILN_DTYPE_F16 && out.rank == 3 && out.dims[0] == 2 && out.dims[1] == 3 && out.dims[2] == 5);
    b.dtype = KILN_DTYPE_F32; /* one dtype for all */
    CHECK(kiln_op_table[KILN_OP_FusedElementwise].infer(&n, in, &out) == KILN_STATUS_INVALID_MODEL);
    a.dtype = b.dtype = KILN_DTYPE_I32; /* floats only */
    CHECK(kiln_op_table[KILN_OP_FusedElementwise].infer(&n, in, &out) == KILN_STATUS_UNSUPPORTED);
    a.dtype = b.dtype = KILN_DTYPE_F32;
    b.dims[0] = 4; /* (2, 3, 5) and (4, 1) do not broadcast */
    CHECK(kiln_op_table[KILN_OP_FusedElementwise].infer(&n, in, &out) != KILN_STATUS_OK);
    drop(&n);
}

/* The kernel against the formula in double, rounded once to dt. */
static void test_ref(kiln_dtype dt) {
    kiln_node n;
    CHECK(parse(&n, 2, SILU_PROG, 20, SILU_PARAMS, 10) == KILN_STATUS_OK);
    kiln_tensor a = {0}, b = {0}, y = {0};
    const int64_t da[3] = {2, 3, 5}, db[2] = {3, 1};
    CHECK(kiln_tensor_alloc(&a, dt, 3, da) == KILN_STATUS_OK);
    CHECK(kiln_tensor_alloc(&b, dt, 2, db) == KILN_STATUS_OK);
    CHECK(kiln_tensor_alloc(&y, dt, 3, da) == KILN_STATUS_OK);
    for (int i = 0; i < 30; i++) kiln_store_f64(dt, a.data, i, -3.0 + 0.21 * i);
    for (int i = 0; i < 3; i++) kiln_store_f64(dt, b.data, i, 0.75 - 0.5 * i);
    kiln_tensor *in[2] = {&a, &b};
    CHECK(kiln_op_table[KILN_OP_FusedElementwise].ref(&n, in, &y) == KILN_STATUS_OK);
    int bad = 0;
    for (int i = 0; i < 30; i++) {
        double x = kiln_load_f64(dt, a.data, i), c = kiln_load_f64(dt, b.data, (i / 5) % 3);
        double want = (x / (1.0 + exp(-x)) + c) * 0.5;
        kiln_tensor w = {0};
        kiln_tensor_alloc(&w, dt, 0, NULL);
        kiln_store_f64(dt, w.data, 0, want);
        double got = kiln_load_f64(dt, y.data, i), exact = kiln_load_f64(dt, w.data, 0);
        /* float32 steps: a few f32 ulps of the terms (the sum may cancel); then one rounding to
         * dt: the correctly rounded value or, near a tie, its neighbour */
        double f32_err = 4 * 1.2e-7 * (fabs(x / (1.0 + exp(-x))) + fabs(c));
        double ulp = dt == KILN_DTYPE_F32 ? f32_err : fabs(exact) * (dt == KILN_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 128) + f32_err;
        if (fabs(got - exact) > ulp) {
            if (bad++ < 5) printf("  %s element %d: got %.9g, expected %.9g\n", kiln_dtype_name(dt), i, got, exact);
        }
        kiln_tensor_release(&w);
    }
    CHECK(bad == 0);
    kiln_tensor_release(&a);
    kiln_tensor_release(&b);
    kiln_tensor_release(&y);
    drop(&n);
}

/* Step semantics the kernels share: NaN through Max/Min and Clip, Clip's max winning. */
static void test_steps(void) {
    CHECK(isnan(kiln_ewp_apply(KILN_EWP_MAX, NAN, 1, 0, 0)) && isnan(kiln_ewp_apply(KILN_EWP_MAX, 1, NAN, 0, 0)));
    CHECK(isnan(kiln_ewp_apply(KILN_EWP_MIN, NAN, 1, 0, 0)) && isnan(kiln_ewp_apply(KILN_EWP_MIN, 1, NAN, 0, 0)));
    CHECK(isnan(kiln_ewp_apply(KILN_EWP_CLIP, NAN, 0, -1, 1)));
    CHECK(kiln_ewp_apply(KILN_EWP_CLIP, 0.5f, 0, 2, 1) == 1); /* min > max: max, as numpy.clip */
    CHECK(kiln_ewp_apply(KILN_EWP_SIGMOID, -100, 0, 0, 0) >= 0 && kiln_ewp_apply(KILN_EWP_SIGMOID, -100, 0, 0, 0) < 1e-40f);
    CHECK(kiln_ewp_apply(KILN_EWP_HARD_SWISH, 3, 0, 0, 0) == 3 && kiln_ewp_apply(KILN_EWP_HARD_SWISH, -3, 0, 0, 0) == 0);
    CHECK(kiln_ewp_apply(KILN_EWP_LEAKY_RELU, -2, 0, 0.1f, 0) == -0.2f);
    CHECK(kiln_ewp_apply(KILN_EWP_POW, -3, 2, 0, 0) == 9);
    CHECK(kiln_ewp_arity(KILN_EWP_CONST) == 0 && kiln_ewp_arity(KILN_EWP_SWISH) == 1 && kiln_ewp_arity(KILN_EWP_MIN) == 2);
}

int main(void) {
    test_parse();
    test_infer();
    test_ref(KILN_DTYPE_F32);
    test_ref(KILN_DTYPE_F16);
    test_ref(KILN_DTYPE_BF16);
    test_steps();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
