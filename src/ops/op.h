/* op.h — the op table: one entry per ONNX op, generated from the X-macro list in ops.def.
 *
 * Each entry names the ONNX op, the first opset kiln accepts it from, and its family. A family
 * "foo" provides three functions (one file src/ops/foo.c for parse + infer, one file
 * src/backends/ref/foo.c for the reference kernel), shared by the ops listed with that family:
 *
 *   kiln_status kiln_parse_foo(kiln_node *node, kiln_attrs *attrs);
 *       Reads the ONNX attributes once, at import, into the op's own typed struct stored in
 *       node->params (set node->params_free if the struct holds pointers). Dispatch on node->op
 *       and node->opset. Errors: INVALID_MODEL / UNSUPPORTED naming the node.
 *   kiln_status kiln_infer_foo(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out);
 *       in[i] (NULL for an omitted optional input) carries dtype and shape; in[i]->data is set
 *       when the value is known (always at run time, for constants at import). Fills out[j]'s
 *       dtype, rank and dims for every output j < node->n_outputs. When a needed input rank
 *       or data is not known (rank < 0, data NULL), it calls kiln_infer_unknown and returns OK.
 *       Unknown dims (< 0) must propagate, never be computed with. Unsupported dtypes:
 *       UNSUPPORTED naming the node and dtype.
 *   kiln_status kiln_ref_foo(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out);
 *       The reference kernel: plain loops. Runs after infer on the same inputs; out[j] has data
 *       allocated when its shape was fully known after infer (otherwise the kernel allocates it
 *       with kiln_tensor_alloc, e.g. NonZero). Omitted outputs (node->outputs[j] < 0) may be
 *       computed or skipped.
 *
 * Adding an op is one line in a family's .def file (plus its code in that family's files). */
#ifndef KILN_OPS_OP_H
#define KILN_OPS_OP_H

#include "../ir/graph.h"

typedef enum kiln_op {
#define KILN_OP(id, onnx, since, family) KILN_OP_##id,
#include "ops.def"
#undef KILN_OP
    KILN_OP_COUNT
} kiln_op;

typedef kiln_status (*kiln_parse_fn)(kiln_node *node, kiln_attrs *attrs);
typedef kiln_status (*kiln_infer_fn)(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out);
typedef kiln_status (*kiln_ref_fn)(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out);

typedef struct kiln_op_def {
    const char *name;  /* ONNX op_type */
    int since;         /* first opset of the default domain kiln accepts */
    const char *family;
    kiln_parse_fn parse;
    kiln_infer_fn infer;
    kiln_ref_fn ref;
} kiln_op_def;

#define KILN_OP(id, onnx, since, family)                                                           \
    kiln_status kiln_parse_##family(kiln_node *node, kiln_attrs *attrs);                           \
    kiln_status kiln_infer_##family(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out); \
    kiln_status kiln_ref_##family(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out);
#include "ops.def"
#undef KILN_OP

extern const kiln_op_def kiln_op_table[KILN_OP_COUNT];

/* The op for an ONNX op_type, or -1. */
int kiln_op_find(const char *onnx_name);
const char *kiln_op_name(int op);

/* True when the op's outputs are a function of its declared inputs alone: not random, and no
 * subgraph (If, Loop, Scan). Such nodes may be evaluated ahead of time. */
bool kiln_op_pure(int op);
/* True for kiln-internal ops made by passes (families "fused", "fused_ew"): domain "kiln" in
 * engine files. */
bool kiln_op_is_internal(int op);
/* kiln.FusedElementwise's program as an expression over its inputs x0..x3, e.g.
 * "Add(Mul(x0, Sigmoid(x0)), x1)", into buf (truncated with "..."); src/ops/fused_ew.c. */
const char *kiln_fused_ew_describe(const kiln_node *node, char *buf, size_t n);
/* The name of a program step's code (ew_program.h), "?" if unknown. */
const char *kiln_ewp_code_name(int code);

/* Sets every output of the node to "type not known" (rank -1), keeping dtypes already set. */
void kiln_infer_unknown(const kiln_node *node, kiln_tensor *out);
/* True when every present input has a known rank (>= 0). */
bool kiln_infer_ranks_known(const kiln_node *node, kiln_tensor *const *in);

/* Messages that name the node: return kiln_node_error(node, KILN_STATUS_..., "fmt", ...). */
kiln_status kiln_node_error(const kiln_node *node, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* UNSUPPORTED: "node 'n' (Op): dtype X of input i is not supported". */
kiln_status kiln_node_bad_dtype(const kiln_node *node, int input, kiln_dtype t);
/* Checks that node has between lo and hi declared inputs (hi < 0: no limit) and n outputs. */
kiln_status kiln_node_check_arity(const kiln_node *node, int lo, int hi);

#endif /* KILN_OPS_OP_H */
