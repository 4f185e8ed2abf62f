/* cpu_backend.h — the fast CPU kernels: a table indexed by kiln_op that the CPU executor
 * (src/runtime/context.c) consults before the reference kernel of each node.
 *
 * The executor calls an entry's run when it has one and its supports says yes for the node's
 * real inputs; otherwise, or when run answers KILN_STATUS_UNSUPPORTED (oneDNN has no
 * implementation for those shapes), the reference kernel runs. The reference kernels stay the
 * definition: every kernel here is tested against them (tests/models/test_cpu_kernels.py runs
 * models both ways, KILN_CPU_REF=1 forcing the reference) and against ONNX Runtime.
 *
 * Families fill their entries in kiln_cpu_register_<family>; registry.c calls them once. The
 * oneDNN families (dnnl_*.c, built with KILN_HAVE_DNNL) use oneDNN's C API; without oneDNN the
 * table is empty and the reference kernels run everything:
 *   dnnl_conv.c     Conv, ConvTranspose (f32), QLinearConv (8-bit, exact-integer f32 products)
 *   dnnl_matmul.c   MatMul, Gemm, kiln.FusedMatMul (f32), QLinearMatMul, MatMulInteger
 *   dnnl_pool.c     MaxPool (f32, 8-bit), AveragePool, GlobalAveragePool, GlobalMaxPool
 *   dnnl_norm.c     Softmax, LogSoftmax, LayerNormalization
 *   dnnl_eltwise.c  Add, Sub, Mul, Div, Sum of two, Relu, LeakyRelu, Sigmoid, Tanh, HardSwish,
 *                   Gelu, Exp, Abs, Sqrt, Transpose
 *   dnnl_common.c   engine, errors, descriptors, post-ops, per-node state, per-thread scratch
 * and, without oneDNN too:
 *   attention.c     Attention (f32; GQA, masks, causal, past keys/values)
 *   quant.c         QuantizeLinear, DequantizeLinear (f32 <-> int8/uint8, per tensor or axis)
 *   elementwise.c   Pow by a constant 2 (f32)
 *
 * What a kernel gets: tensors in host memory, dtypes and dims known; out[0..] are already
 * placed (arena, or the caller's buffer for a graph output), so a kernel only writes
 * out[j].data. An input flagged KILN_TENSOR_CONSTANT is an engine constant whose data does not
 * change while the context lives: kernels keep what they derive from it (reordered weights).
 * A kernel applies the node's fused activation (node->act) itself. */
#ifndef KILN_CPU_BACKEND_H
#define KILN_CPU_BACKEND_H

#include "../../ops/op.h"

typedef struct kiln_cpu_op {
    /* Can run take this node with these inputs and output 0? Decided on dtypes, ranks and
     * attributes, cheaply, at every run. At build time (kiln inspect) dims may be unknown or
     * symbolic and data NULL: supports must not read them beyond "is it known". NULL: no. */
    bool (*supports)(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out);
    /* Runs the node, node->act included. *state is this node's prepared state in this
     * context (NULL at first), kept across runs; the kernel sets *state_free to free it when
     * the context goes. UNSUPPORTED sends the node to the reference kernel. */
    kiln_status (*run)(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                       kiln_tensor *out);
    /* A short kernel name for kiln inspect ("onednn"). */
    const char *kernel;
} kiln_cpu_op;

/* The table (filled once, thread-safe). Entries with run == NULL: the reference kernel. */
const kiln_cpu_op *kiln_cpu_ops(void);

/* True when the environment sets KILN_CPU_REF (to anything but "0"): the reference kernels
 * run every node, for bisecting a difference. */
bool kiln_cpu_forced_ref(void);

/* True when the environment sets KILN_CPU_VERBOSE: each fast kernel names itself on stderr when
 * it (re)builds for a node ("kiln cpu: node 'n' (Op) f32[...]: onednn"), or says why not. */
bool kiln_cpu_verbose(void);
/* Element i of an int8 / uint8 tensor. */
int32_t kiln_cpu_q8_at(const kiln_tensor *t, int64_t i);
/* With KILN_CPU_VERBOSE, that line for node n (output out) run by `kernel`. */
void kiln_cpu_report(const kiln_node *n, const kiln_tensor *out, const char *kernel);

/* The kernel name of a CPU engine's node as kiln inspect shows it, for value types in[] /
 * out (the graph's: shapes may be symbolic): the fast kernel's or "ref". */
const char *kiln_cpu_kernel_name(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out);

/* attention.c: Attention in float32 (plain C, with or without oneDNN) */
void kiln_cpu_register_attention(kiln_cpu_op *table);
/* quant.c: QuantizeLinear / DequantizeLinear, float32 <-> 8-bit (plain C) */
void kiln_cpu_register_quant(kiln_cpu_op *table);
/* elementwise.c: Pow by a constant 2 (plain C) */
void kiln_cpu_register_elementwise(kiln_cpu_op *table);
#ifdef KILN_HAVE_DNNL
void kiln_cpu_register_dnnl_conv(kiln_cpu_op *table);
void kiln_cpu_register_dnnl_matmul(kiln_cpu_op *table);
void kiln_cpu_register_dnnl_pool(kiln_cpu_op *table);
void kiln_cpu_register_dnnl_norm(kiln_cpu_op *table);
void kiln_cpu_register_dnnl_eltwise(kiln_cpu_op *table);
#endif

#endif /* KILN_CPU_BACKEND_H */
