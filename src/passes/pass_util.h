/* pass_util.h — what the passes share (private to src/passes/): a use index over the graph
 * that stays truthful while a pass edits it, constant inspection, and making new nodes and
 * constants. Tested through the passes (tests/models/test_passes.py).
 *
 * A pass works in rounds: pc_init indexes the graph (who reads each value, how often, whether a
 * subgraph captures it), the pass rewrites what it matches, marking nodes dead or touched and
 * rewiring through the pc_* editors, then pc_commit removes the dead nodes and re-sorts. The
 * index is not updated by edits; instead every value whose readers changed is marked dirty and
 * any question about its uses answers "many", so no match in the same round relies on stale
 * counts. A pass repeats rounds while the previous one changed something. */
#ifndef KILN_PASSES_UTIL_H
#define KILN_PASSES_UTIL_H

#include "../ops/op.h"
#include "passes.h"

typedef struct pass_ctx {
    kiln_graph *g;
    int n_values;     /* values indexed (new ones are dirty) */
    int *uses;        /* per value: node inputs (captures included) and graph outputs reading it */
    int *reader;      /* per value: a node reading it (the only one when uses == 1) */
    bool *is_output;  /* per value: a graph output */
    bool *captured;   /* per value: read by a node as a subgraph capture */
    bool *dirty;      /* per value: readers changed this round */
    bool *dead;       /* per node: to be removed at commit */
    bool *touched;    /* per node: edited this round, matched no more */
    int cap_nodes;
    bool need_sort;   /* nodes were added or producers moved */
    int changes;      /* edits this round */
} pass_ctx;

kiln_status pc_init(pass_ctx *c, kiln_graph *g);
void pc_free(pass_ctx *c);
/* Removes dead nodes, re-sorts if needed, frees the index. */
kiln_status pc_commit(pass_ctx *c);

/* Readers of v (node inputs + graph outputs); a large number for dirty or new values. */
int pc_uses(const pass_ctx *c, int v);
/* The node that is v's only reader (not a graph output, not captured, not dirty), else -1. */
int pc_sole_reader(const pass_ctx *c, int v);
/* The live, untouched node producing v, else -1. */
int pc_producer(const pass_ctx *c, int v);
/* A node still open to matching: not dead, not touched. */
bool pc_open(const pass_ctx *c, int n);
/* v is not a graph output, not captured: it may disappear. */
bool pc_internal(const pass_ctx *c, int v);

void pc_kill(pass_ctx *c, int n);
void pc_touch(pass_ctx *c, int n);
/* Every reader of old_v reads new_v instead (old_v must not be captured: check pc_internal). */
void pc_replace_uses(pass_ctx *c, int old_v, int new_v);
/* Node n's output j becomes value v (which had no producer); its old value loses its producer. */
void pc_set_output(pass_ctx *c, int n, int j, int v);
/* Node n's input k becomes v (k may be n_declared: appends an input; inputs are reallocated). */
kiln_status pc_set_input(pass_ctx *c, int n, int k, int v);
/* Adds a node with ONNX-style raw attributes (copied; may be NULL), parses them with the op's
 * parse function, sets the outputs' producer and marks the node touched. Returns its index in
 * *out. opset is the graph's. */
kiln_status pc_add_node(pass_ctx *c, int op, const char *name_base, const int *inputs, int n_inputs,
                        const int *outputs, int n_outputs, const kiln_attr *attrs, int n_attrs, int *out);
/* Adds the node that replaces a matched pattern: op reading inputs and writing the pattern's
 * last value y, named "<op>_<y's name>" (made unique); attributes as for pc_add_node. */
kiln_status pc_add_replacement(pass_ctx *c, int op, const int *inputs, int n_inputs, int y, const kiln_attr *attrs,
                               int n_attrs);
/* Adds a constant (a copy of t) named from base, made unique. Returns its id in *out. */
kiln_status pc_add_const(pass_ctx *c, const char *base, const kiln_tensor *t, int *out);
/* A fresh anonymous-looking value named from base, for intermediate outputs of new nodes. */
kiln_status pc_add_value(pass_ctx *c, const char *base, int *out);

/* ---- pattern matching ---- */
/* The open node producing v when its op is op (and it writes v as output 0), else -1. */
int pc_prod_op(const pass_ctx *c, int v, int op);
/* For a node with two declared inputs, one of which is v: the other one, else -1. */
int pass_other(const kiln_node *n, int v);
/* Reads of v by the nodes listed. */
int pass_reads(const kiln_graph *g, const int *nodes, int n, int v);
/* The nodes listed are distinct and open, and every value they write except `keep` is read only
 * by them (and is no graph output nor capture): the pattern can be replaced as a whole. */
bool pc_closed(const pass_ctx *c, const int *nodes, int n, int keep);

/* ---- constants ---- */
/* A true constant: initializer or folded value with data, not a graph input (overridable). */
bool pass_is_const(const kiln_graph *g, int v);
/* Number of elements of constant v, -1 if not a constant. */
int64_t pass_const_count(const kiln_graph *g, int v);
/* A constant holding one element (any rank), as double. */
bool pass_const_scalar(const kiln_graph *g, int v, double *out);
/* A constant whose elements all equal (within rel. tolerance tol) x; false for empty ones. */
bool pass_const_all(const kiln_graph *g, int v, double x, double tol);
/* Does the producer input k of node n exist (declared and present)? */
static inline int pass_in(const kiln_node *n, int k) { return k < n->n_declared ? n->inputs[k] : -1; }

/* ---- misc ---- */
/* Value v's type has a fully known shape. */
bool pass_shape_static(const kiln_graph *g, int v);
/* Shapes of a and b are equal (same rank; each dim equal, known or the same symbol). */
bool pass_same_shape(const kiln_graph *g, int a, int b);
/* The ONNX op can be created in this graph (its first opset is not above the graph's). */
bool pass_op_available(const kiln_graph *g, int op);
/* Fills st and returns s; for the pass entry points. */
void pass_stats_init(kiln_pass_stats *st, const char *name);
/* Sorts (if needed) and re-infers after a pass that changed the graph. */
kiln_status pass_finish(kiln_graph *g, bool changed);

/* ---- the rounds of a fusing pass ---- */
/* Looks at open node n; sets *fused when it replaced a pattern there. */
typedef kiln_status (*pass_visit_fn)(pass_ctx *c, int n, void *arg, bool *fused);
/* Runs rounds (at most 64): index the graph, visit each open node present at the round's start
 * (stopping at an error), commit; again while a round fused something. Fills st's fused and
 * removed counts and ends with pass_finish. st is already initialised (pass_stats_init). */
kiln_status pass_fuse_rounds(kiln_graph *g, kiln_pass_stats *st, pass_visit_fn visit, void *arg);

#endif /* KILN_PASSES_UTIL_H */
