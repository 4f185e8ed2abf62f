/* graph.h — kiln's graph IR: values (typed, possibly symbolic shapes, constant data), nodes
 * (op id, value ids, typed attribute struct), graph inputs/outputs, subgraph captures.
 * It knows nothing of ONNX protobuf (src/onnx/ builds it) or of execution (src/backends/).
 *
 * Ownership: a graph owns its values, nodes, their params and nested subgraphs (through the
 * params of If/Loop/Scan). Initializer data is either owned (flag in the tensor) or points into
 * a mapping the model owns. Tested through tests/unit and the conformance suite. */
#ifndef KILN_IR_GRAPH_H
#define KILN_IR_GRAPH_H

#include "../core/core.h"

/* ---- raw attributes, as imported; parse functions turn them into typed structs ---- */
typedef enum kiln_attr_type {
    KILN_ATTR_FLOAT = 1, KILN_ATTR_INT, KILN_ATTR_STRING, KILN_ATTR_TENSOR, KILN_ATTR_GRAPH,
    KILN_ATTR_FLOATS, KILN_ATTR_INTS, KILN_ATTR_STRINGS, KILN_ATTR_OTHER
} kiln_attr_type;

struct kiln_graph;

typedef struct kiln_attr {
    char *name;
    kiln_attr_type type;
    float f;
    int64_t i;
    char *s;               /* STRING: NUL-terminated copy */
    int n;                 /* FLOATS / INTS / STRINGS: count */
    float *floats;
    int64_t *ints;
    char **strings;
    kiln_tensor *t;        /* TENSOR: owned until taken */
    struct kiln_graph *g;  /* GRAPH: owned until taken */
    struct kiln_graph *g_view; /* GRAPH: stays pointing at the graph after it is taken (not owned) */
    bool used;             /* set by the getters: unread attributes are reported */
} kiln_attr;

typedef struct kiln_attrs {
    kiln_attr *items;
    int n;
    const char *node_name; /* for messages */
    const char *op_name;
} kiln_attrs;

/* Getters for parse functions. A missing attribute gives the default and OK; a present one of
 * the wrong type gives INVALID_MODEL naming node, op and attribute. */
kiln_status kiln_attr_int(kiln_attrs *a, const char *name, int64_t def, int64_t *out);
kiln_status kiln_attr_float(kiln_attrs *a, const char *name, float def, float *out);
/* Copies the string into buf (truncation is an error); def may be NULL for "". */
kiln_status kiln_attr_string(kiln_attrs *a, const char *name, const char *def, char *buf, size_t n);
/* *out is a malloc'ed array the caller frees (NULL and *n = 0 when absent); *present tells. */
kiln_status kiln_attr_ints(kiln_attrs *a, const char *name, int64_t **out, int *n, bool *present);
kiln_status kiln_attr_floats(kiln_attrs *a, const char *name, float **out, int *n, bool *present);
/* A tensor attribute as a new tensor the caller owns (a copy), or a graph attribute whose
 * ownership moves to the caller (g_view keeps pointing at it). NULL when absent. */
kiln_status kiln_attr_take_tensor(kiln_attrs *a, const char *name, kiln_tensor **out);
kiln_status kiln_attr_take_graph(kiln_attrs *a, const char *name, struct kiln_graph **out);
bool kiln_attr_has(const kiln_attrs *a, const char *name);
/* Copies up to cap ints into fixed storage; more than cap is INVALID_MODEL. */
kiln_status kiln_attr_ints_fixed(kiln_attrs *a, const char *name, int64_t *out, int cap, int *n);

/* ---- values ---- */
enum {
    KILN_VALUE_INPUT = 1u,       /* a graph input */
    KILN_VALUE_OUTPUT = 2u,      /* a graph output */
    KILN_VALUE_CONST = 4u,       /* an initializer or folded constant: type.data holds it */
    KILN_VALUE_CAPTURED = 8u,    /* a subgraph's reference to a value of an enclosing graph */
};

typedef struct kiln_value {
    char *name;
    kiln_tensor type; /* dtype and shape; data != NULL only for constants */
    int producer;     /* node index, or -1 for inputs, constants and captures */
    uint32_t flags;
} kiln_value;

/* ---- fused activations ----
 * An activation folded into the node that produces its input (Conv, ConvTranspose, Gemm,
 * MatMul, kiln.FusedMatMul): applied to output 0 after the op, by the executor for the
 * reference backend and inside the kernel by fast backends. In ONNX form (the .kiln graph
 * section) it is the node attribute kiln_activation (string) with kiln_alpha / kiln_beta. */
typedef enum kiln_act_kind {
    KILN_ACT_NONE = 0, KILN_ACT_RELU, KILN_ACT_CLIP, KILN_ACT_SIGMOID, KILN_ACT_SILU, KILN_ACT_HARDSWISH,
    KILN_ACT_GELU, KILN_ACT_GELU_TANH, KILN_ACT_LEAKY_RELU, KILN_ACT_TANH, KILN_ACT_COUNT
} kiln_act_kind;

typedef struct kiln_act {
    kiln_act_kind kind;
    float alpha, beta; /* CLIP: min, max; LEAKY_RELU: alpha */
} kiln_act;

const char *kiln_act_name(kiln_act_kind k);
int kiln_act_find(const char *name); /* -1 if unknown */
double kiln_act_eval(const kiln_act *a, double x);
/* Applies a to every element of a float tensor, in place. */
void kiln_act_apply(const kiln_act *a, kiln_tensor *t);

/* ---- nodes ---- */
typedef struct kiln_node {
    int op;              /* kiln_op, see src/ops/op.h */
    char *name;          /* the ONNX name, or "OpType_<index>" when it had none */
    int opset;           /* the model's opset of the default domain */
    int n_inputs;        /* declared inputs, then captures of subgraphs (see n_declared) */
    int n_declared;      /* inputs as written in the model */
    int n_outputs;
    int *inputs;         /* value ids; -1 marks an omitted optional input */
    int *outputs;        /* value ids; -1 marks an omitted optional output */
    void *params;        /* the op's typed attribute struct (owned) or NULL */
    void (*params_free)(void *params); /* NULL means free() */
    kiln_attrs attrs;    /* the raw attributes, kept to write the node back out (engine files) */
    kiln_act act;        /* fused activation on output 0, KILN_ACT_NONE if none */
} kiln_node;

typedef struct kiln_graph {
    char *name;
    int opset;
    kiln_value *values;
    int n_values, cap_values;
    kiln_node *nodes;    /* in topological order after kiln_graph_toposort */
    int n_nodes, cap_nodes;
    int *inputs;         /* graph inputs (value ids), in declared order */
    int n_inputs;
    int *outputs;
    int n_outputs;
    char **symbols;      /* dim_param names; symbolic dim k is stored as -2 - k */
    int n_symbols;
    struct kiln_graph *parent;  /* enclosing graph of a subgraph, else NULL */
    int *captures;       /* value ids here that stand for outer values ... */
    int *capture_index;  /* ... and which input of the owning node each one is */
    int n_captures;
} kiln_graph;

kiln_graph *kiln_graph_new(const char *name, int opset, kiln_graph *parent);
void kiln_graph_free(kiln_graph *g);
/* Adds a value (name copied; NULL or "" allowed for anonymous) and returns its id, or -1 on OOM. */
int kiln_graph_add_value(kiln_graph *g, const char *name);
/* Value id by name in this graph only, -1 if none. */
int kiln_graph_find(const kiln_graph *g, const char *name);
/* Adds a node; inputs/outputs arrays are copied. Returns index or -1 on OOM. */
int kiln_graph_add_node(kiln_graph *g, int op, const char *name, int opset, const int *inputs,
                        int n_inputs, const int *outputs, int n_outputs);
/* Reorders nodes topologically (stable); INVALID_MODEL naming a node on a cycle or reading an
 * undefined value. */
kiln_status kiln_graph_toposort(kiln_graph *g);
/* Runs shape inference over the graph, filling every value's type. Errors name the node. */
kiln_status kiln_graph_infer(kiln_graph *g);
/* ---- editing (used by src/passes/) ---- */
/* Number of node inputs and graph outputs that read value v. */
int kiln_graph_uses(const kiln_graph *g, int v);
/* Index of the only node reading v, or -1 if none or several (graph outputs count as readers). */
int kiln_graph_sole_reader(const kiln_graph *g, int v);
/* Makes every node input and graph output that reads old_v read new_v instead. */
void kiln_graph_replace_uses(kiln_graph *g, int old_v, int new_v);
/* Adds a constant value owning a copy of t's data; returns its id or -1 on OOM. */
int kiln_graph_add_const(kiln_graph *g, const char *name, const kiln_tensor *t);
/* Removes the nodes marked dead[i] (freeing them) and keeps the others in order. */
void kiln_graph_remove_nodes(kiln_graph *g, const bool *dead);
/* A name not used by any value of g, built from base ("base", "base_1", ...), into buf. */
const char *kiln_graph_unique_name(const kiln_graph *g, const char *base, char *buf, size_t n);
/* Frees raw attributes (and graphs still owned by them). */
void kiln_attrs_free(kiln_attrs *a);
/* Deep copy of raw attributes; graph attributes are copied as views (not owned). */
kiln_status kiln_attrs_copy(const kiln_attrs *src, kiln_attrs *dst);

/* Checks the invariants (ids in range, one producer per value, order); aborts via KILN_ASSERT. */
void kiln_graph_validate(const kiln_graph *g);

#endif /* KILN_IR_GRAPH_H */
