/* test_core.c — unit tests of src/core and src/ir: f16/bf16 conversions, dtype load/store,
 * broadcasting, axes, checked sizes, tensor allocation limits, the error buffer, and the graph's
 * topological sort (order kept, cycles and undefined reads refused). Runs under ASan+UBSan in CI.
 * Prints one line per failed check and a closing "N passed, N failed". */
#include "core/core.h"
#include "ir/graph.h"
#include "ops/op.h"

#include <math.h>
#include <string.h>

#include "check.h"

static void test_half(void) {
    CHECK(kiln_f32_to_f16(1.0f) == 0x3c00);
    CHECK(kiln_f32_to_f16(-2.0f) == 0xc000);
    CHECK(kiln_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(kiln_f32_to_f16(65520.0f) == 0x7c00);            /* rounds to inf */
    CHECK(kiln_f32_to_f16(5.960464477539063e-08f) == 0x0001); /* smallest subnormal */
    CHECK(kiln_f32_to_f16(2.98e-08f) == 0x0000 || kiln_f32_to_f16(2.98e-08f) == 0x0001);
    CHECK((kiln_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (kiln_f32_to_f16(NAN) & 0x3ff) != 0);
    CHECK(kiln_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);      /* tie to even */
    CHECK(kiln_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);      /* tie to even, up */
    /* every half round-trips through f32 */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = kiln_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (kiln_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0);
    CHECK(kiln_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(kiln_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(kiln_f32_to_bf16(1.00390625f) == 0x3f80); /* tie to even */
    CHECK(isnan(kiln_bf16_to_f32(kiln_f32_to_bf16(NAN))));
}

static void test_load_store(void) {
    int8_t i8[2];
    kiln_store_i64(KILN_DTYPE_I8, i8, 0, 300); /* wraps as C conversion */
    CHECK(i8[0] == 44);
    double d[1];
    kiln_store_f64(KILN_DTYPE_F64, d, 0, 0.5);
    CHECK(kiln_load_f64(KILN_DTYPE_F64, d, 0) == 0.5);
    int64_t big = INT64_MAX;
    CHECK(kiln_load_i64(KILN_DTYPE_I64, &big, 0) == INT64_MAX);
    float f = NAN;
    CHECK(kiln_load_i64(KILN_DTYPE_F32, &f, 0) == 0); /* defined, not UB */
    uint8_t b = 7;
    CHECK(kiln_load_f64(KILN_DTYPE_BOOL, &b, 0) == 1.0);
    CHECK(kiln_dtype_size(KILN_DTYPE_BF16) == 2 && kiln_dtype_size(KILN_DTYPE_STRING) == 0);
    CHECK(strcmp(kiln_dtype_name(KILN_DTYPE_I64), "int64") == 0);
}

static void test_broadcast(void) {
    int64_t a[] = {2, 1, 4}, b[] = {3, 1}, out[KILN_MAX_RANK];
    int r;
    CHECK(kiln_broadcast_shape(3, a, 2, b, &r, out) == KILN_STATUS_OK && r == 3 && out[0] == 2 && out[1] == 3 && out[2] == 4);
    int64_t c[] = {5};
    CHECK(kiln_broadcast_shape(3, a, 1, c, &r, out) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(kiln_last_error(), "[2,1,4]") != NULL);
    int64_t sym[] = {-2, 4}, one[] = {1, 4};
    CHECK(kiln_broadcast_shape(2, sym, 2, one, &r, out) == KILN_STATUS_OK && out[0] == -2 && out[1] == 4);
    int64_t strides[3], dout[] = {2, 3, 4};
    kiln_broadcast_strides(2, b, 3, dout, strides);
    CHECK(strides[0] == 0 && strides[1] == 1 && strides[2] == 0);
    int ax;
    CHECK(kiln_norm_axis(-1, 3, &ax) == KILN_STATUS_OK && ax == 2);
    CHECK(kiln_norm_axis(3, 3, &ax) == KILN_STATUS_INVALID_ARGUMENT);
}

static void test_tensor_limits(void) {
    kiln_tensor t = {0};
    int64_t huge[] = {(int64_t)1 << 40, (int64_t)1 << 40};
    CHECK(kiln_tensor_alloc(&t, KILN_DTYPE_F32, 2, huge) == KILN_STATUS_OUT_OF_MEMORY);
    int64_t neg[] = {-3};
    CHECK(kiln_tensor_alloc(&t, KILN_DTYPE_F32, 1, neg) == KILN_STATUS_INVALID_ARGUMENT);
    int64_t zero[] = {0, 5};
    CHECK(kiln_tensor_alloc(&t, KILN_DTYPE_F32, 2, zero) == KILN_STATUS_OK && kiln_tensor_bytes(&t) == 0);
    kiln_tensor_release(&t);
    CHECK(kiln_tensor_alloc(&t, KILN_DTYPE_STRING, 1, neg + 0) != KILN_STATUS_OK);
    kiln_tensor_t *pub = NULL;
    int64_t dims[] = {2, 3};
    CHECK(kiln_tensor_create(KILN_DTYPE_I32, 2, dims, &pub) == KILN_STATUS_OK && kiln_tensor_count(pub) == 6);
    kiln_tensor_destroy(pub);
    kiln_tensor_destroy(NULL);
}

static void test_errors(void) {
    kiln_error(KILN_STATUS_IO_ERROR, "file %s", "a.onnx");
    kiln_error_prefix(KILN_STATUS_IO_ERROR, "loading");
    CHECK(strcmp(kiln_last_error(), "loading: file a.onnx") == 0);
    char long_msg[3000];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = 0;
    kiln_error(KILN_STATUS_INTERNAL, "%s", long_msg);
    kiln_error_prefix(KILN_STATUS_INTERNAL, "%s", long_msg); /* truncates, never overflows */
    CHECK(strlen(kiln_last_error()) < 1024);
    CHECK(strcmp(kiln_status_name(KILN_STATUS_UNSUPPORTED), "unsupported") == 0);
}

/* a -> n1 -> b -> n0 -> c, nodes added out of order: sorted, then a cycle is refused. */
static void test_toposort(void) {
    kiln_graph *g = kiln_graph_new("t", 17, NULL);
    int a = kiln_graph_add_value(g, "a"), b = kiln_graph_add_value(g, "b"), c = kiln_graph_add_value(g, "c");
    g->values[a].flags |= KILN_VALUE_INPUT;
    int op = kiln_op_find("If"); /* any op id will do: the sort looks at edges only */
    kiln_graph_add_node(g, op, "n0", 17, &b, 1, &c, 1);
    kiln_graph_add_node(g, op, "n1", 17, &a, 1, &b, 1);
    CHECK(kiln_graph_toposort(g) == KILN_STATUS_OK);
    CHECK(strcmp(g->nodes[0].name, "n1") == 0 && strcmp(g->nodes[1].name, "n0") == 0);
    kiln_graph_free(g);

    g = kiln_graph_new("cyc", 17, NULL);
    a = kiln_graph_add_value(g, "a");
    b = kiln_graph_add_value(g, "b");
    kiln_graph_add_node(g, op, "x", 17, &a, 1, &b, 1);
    kiln_graph_add_node(g, op, "y", 17, &b, 1, &a, 1);
    CHECK(kiln_graph_toposort(g) == KILN_STATUS_INVALID_MODEL);
    CHECK(strstr(kiln_last_error(), "cycle") != NULL);
    kiln_graph_free(g);

    g = kiln_graph_new("undef", 17, NULL);
    a = kiln_graph_add_value(g, "ghost");
    b = kiln_graph_add_value(g, "b");
    kiln_graph_add_node(g, op, "reader", 17, &a, 1, &b, 1);
    CHECK(kiln_graph_toposort(g) == KILN_STATUS_INVALID_MODEL);
    CHECK(strstr(kiln_last_error(), "ghost") != NULL && strstr(kiln_last_error(), "reader") != NULL);
    kiln_graph_free(g);
}

static void test_op_table(void) {
    for (int i = 0; i < KILN_OP_COUNT; i++) {
        CHECK(kiln_op_table[i].name && kiln_op_table[i].parse && kiln_op_table[i].infer && kiln_op_table[i].ref);
        CHECK(kiln_op_find(kiln_op_table[i].name) == i); /* no op listed twice */
    }
    CHECK(kiln_op_find("NoSuchOp") == -1);
}

int main(void) {
    test_half();
    test_load_store();
    test_broadcast();
    test_tensor_limits();
    test_errors();
    test_toposort();
    test_op_table();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
