/* registry.c — the CPU op table (filled once from each family's register function), the
 * KILN_CPU_REF switch and the kernel names kiln inspect shows. Tested through the executor by
 * tests/models/test_cpu_kernels.py. */
#include "cpu_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static kiln_cpu_op table[KILN_OP_COUNT];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void fill_table(void) {
    kiln_cpu_register_attention(table);
    kiln_cpu_register_quant(table);
    kiln_cpu_register_elementwise(table);
#ifdef KILN_HAVE_DNNL
    kiln_cpu_register_dnnl_conv(table);
    kiln_cpu_register_dnnl_matmul(table);
    kiln_cpu_register_dnnl_pool(table);
    kiln_cpu_register_dnnl_norm(table);
    kiln_cpu_register_dnnl_eltwise(table);
#endif
}

const kiln_cpu_op *kiln_cpu_ops(void) {
    pthread_once(&table_once, fill_table);
    return table;
}

bool kiln_cpu_verbose(void) {
    const char *v = getenv("KILN_CPU_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

int32_t kiln_cpu_q8_at(const kiln_tensor *t, int64_t i) {
    return t->dtype == KILN_DTYPE_U8 ? ((const uint8_t *)t->data)[i] : ((const int8_t *)t->data)[i];
}

void kiln_cpu_report(const kiln_node *n, const kiln_tensor *out, const char *kernel) {
    if (!kiln_cpu_verbose()) return;
    char desc[160];
    fprintf(stderr, "kiln cpu: node '%s' (%s) %s: %s\n", n->name ? n->name : "", kiln_op_name(n->op),
            kiln_tensor_describe(out, desc, sizeof desc), kernel);
}

bool kiln_cpu_forced_ref(void) {
    const char *v = getenv("KILN_CPU_REF");
    return v && *v && strcmp(v, "0") != 0;
}

const char *kiln_cpu_kernel_name(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (kiln_cpu_forced_ref()) return "ref";
    const kiln_cpu_op *op = &kiln_cpu_ops()[n->op];
    return op->run && op->supports && op->supports(n, in, out) ? op->kernel : "ref";
}
