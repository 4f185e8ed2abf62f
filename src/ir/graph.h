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
/* Takes ownership of a tensor or graph attribute (NULL when absent). */
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
/* Checks the invariants (ids in range, one producer per value, order); aborts via KILN_ASSERT. */
void kiln_graph_validate(const kiln_graph *g);

#endif /* KILN_IR_GRAPH_H */
