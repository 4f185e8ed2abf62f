/* passes.h — graph optimization passes: standalone functions over a kiln_graph, run in order
 * by kiln_passes_run between import and planning.
 *
 * Every pass keeps the graph's meaning: graph inputs and outputs keep their value ids and
 * names, and a fused node writes the value its pattern's last node wrote. Values read by
 * subgraphs (captures) are never renamed. A pass that changed the graph leaves it sorted and
 * re-inferred (kiln_graph_infer); kiln_passes_run also validates it after each pass in debug
 * builds. Passes work on the top-level graph; subgraphs of If/Loop/Scan are left as they are.
 *
 * The passes, in the order kiln_passes_run applies them:
 *   initializer_inputs  (only with promote_initializer_inputs) initializers listed as inputs
 *                   become constants
 *   constant_fold   nodes whose inputs are all constants become constants (deterministic ops
 *                   without subgraphs, outputs up to 64 MiB; Q/DQ nodes are kept for INT8)
 *   shape_fold      Shape / Size (and Gather of Shape) of statically known dims become constants;
 *                   Reshape(x, Concat(pieces of Shape(x))) gets a constant shape (0 = copy a dim)
 *   constant_fold   again, over what shape_fold made constant; the two repeat (shapes inferred
 *                   again between rounds) until nothing more folds
 *   identity_elim   Identity, inference Dropout, Cast to the same dtype, shape ops that keep the
 *                   shape, Transpose with the identity perm
 *   dead_code       nodes none of whose outputs reach a graph output
 *   -- fusions (skipped with no_fusion) --
 *   bn_fold         BatchNormalization into the Conv / ConvTranspose / Gemm before it
 *   scale_fold      Mul / Div / Add by a per-channel constant into the Conv / ConvTranspose / Gemm
 *                   (or into the scale and bias of an inference BatchNormalization)
 *   layernorm_fuse  ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add] -> LayerNormalization;
 *                   Pow/ReduceMean/Add/Sqrt/(Div | Reciprocal, Mul)[/Mul] -> RMSNormalization
 *   attention_fuse  MatMul(Q,K^T) [*scale] [+mask | Where(bool, ., -inf)] Softmax MatMul(.,V)
 *                   -> Attention (at any opset)
 *   matmul_bias     MatMul + Add(constant bias on the last axis) -> kiln.FusedMatMul
 *   gelu_fuse       x*0.5*(1+Erf(x/sqrt 2)) (and the tanh form) -> Gelu, or an act on its producer
 *   act_fuse        Relu/Clip/Sigmoid/SiLU/HardSwish/Gelu/LeakyRelu/Tanh into the producer's act
 *   qdq_int8        Conv/MatMul/Gemm between QuantizeLinear/DequantizeLinear nodes (QAT models)
 *                   -> QLinearConv/QLinearMatMul/ConvInteger/MatMulInteger (quantize.h)
 *   dead_code       again
 *   unused_constants  frees the data of constants nothing reads any more (weights replaced)
 *
 * Run by the builder after those, after quantization and precision lowering (kiln_pass_ew_fuse):
 *   ew_fuse         groups of element-wise nodes (unary math, activations, binary arithmetic
 *                   with scalar-constant or broadcast tensor operands) -> kiln.FusedElementwise,
 *                   one kernel per group (ew_fuse.c). On for CUDA engines at level 2; off for
 *                   CPU engines (oneDNN fuses there), unless KILN_EW_FUSE says otherwise
 *                   (kiln_ew_fuse_wanted).
 *
 * New ONNX ops (LayerNormalization, Gelu) are only created when the graph's opset has them;
 * RMSNormalization and Attention (opset 23) at any opset (an engine's graph is re-imported
 * without the opset check); kiln-internal ops always.
 * Tested by tests/models/test_passes.py through tests/unit/passes_check.c. */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "../ir/graph.h"

typedef struct kiln_pass_stats {
    const char *pass; /* static string */
    int removed;      /* nodes removed (or constants dropped, for "unused_constants") */
    int fused;        /* patterns fused */
    int folded;       /* nodes turned into constants */
} kiln_pass_stats;

typedef struct kiln_pass_report {
    kiln_pass_stats items[32];
    int n;
} kiln_pass_report;

typedef struct kiln_pass_options {
    bool no_fusion; /* folding and cleanup only */
    /* Initializers that are also graph inputs become plain constants and leave the input list
     * (kiln_pass_initializer_inputs). IR < 4 required every initializer to be listed as an
     * input, so ONNX Runtime only lets them be overridden from IR 4 on: set this when the
     * model's ir_version is below 4. Otherwise they stay inputs with defaults, never folded. */
    bool promote_initializer_inputs;
} kiln_pass_options;

/* Runs every pass in order (opt may be NULL: all passes); report (may be NULL) receives one
 * entry per pass run. After each pass, in debug builds (#ifndef NDEBUG), kiln_graph_validate
 * and re-inference. Errors: OUT_OF_MEMORY, or the status of a failing inference naming the node. */
kiln_status kiln_passes_run(kiln_graph *g, const kiln_pass_options *opt, kiln_pass_report *report);

/* Each pass, standalone. st (may be NULL) is filled with the pass's counts. */
/* Graph inputs that have an initializer stop being inputs (removed = how many); see above. */
kiln_status kiln_pass_initializer_inputs(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_constant_fold(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_shape_fold(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_identity_elim(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_dead_code(kiln_graph *g, kiln_pass_stats *st);
/* Frees the data of constants nothing reads (counted as removed); they stay as empty values. */
kiln_status kiln_pass_unused_constants(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_bn_fold(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_scale_fold(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_layernorm_fuse(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_gelu_fuse(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_attention_fuse(kiln_graph *g, kiln_pass_stats *st);
/* FP16/BF16 engines (precision.c): float32 compute of the ops that do well in 16 bits moves to
 * `to` (KILN_DTYPE_F16 or KILN_DTYPE_BF16), with Casts where float32 nodes, graph inputs and
 * graph outputs meet it; nodes named in keep_fp32 stay. fused = nodes lowered, folded = weights
 * converted. Run by the builder after the other passes (and after quantization). */
kiln_status kiln_pass_reduce_precision(kiln_graph *g, kiln_dtype to, const char *const *keep_fp32, int n_keep,
                                       kiln_pass_stats *st);
kiln_status kiln_pass_matmul_bias(kiln_graph *g, kiln_pass_stats *st);
kiln_status kiln_pass_act_fuse(kiln_graph *g, kiln_pass_stats *st);
/* Element-wise groups -> kiln.FusedElementwise (fused = groups, removed = nodes saved). */
kiln_status kiln_pass_ew_fuse(kiln_graph *g, kiln_pass_stats *st);
/* Should a build run kiln_pass_ew_fuse? The environment variable KILN_EW_FUSE decides when set
 * ("1": yes, "0": no, for any device); else yes for CUDA engines (gpu), no for CPU ones. The
 * builder asks only at optimization level 2. */
bool kiln_ew_fuse_wanted(bool gpu);

#endif /* KILN_PASSES_H */
