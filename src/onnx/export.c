/* export.c — kiln's graph IR back to an ONNX ModelProto (the GRAPH section of .kiln engines).
 *
 * Nodes are written from their raw attributes (node->attrs) plus kiln_activation /
 * kiln_alpha / kiln_beta for fused activations; kiln-internal ops go to domain "kiln".
 * Constants larger than KILN_INLINE_BYTES go to a weights blob (64-byte aligned) and are
 * referenced as external data at location "@weights" with offset and length; smaller ones are
 * inlined. Output is deterministic: the same graph gives the same bytes. Re-imported by
 * import.c with kiln_import_options.weights. Tested through the engine round trips. */
#include "export.h"

#include "../ops/op.h"
#include "onnx.pb-c.h"

#include <string.h>

#define KILN_INLINE_BYTES 256

/* Every allocation made while building the message, freed together after packing. */
typedef struct pool {
    void **items;
    size_t n, cap;
    bool failed;
} pool;

static void *pool_alloc(pool *p, size_t size) {
    if (p->failed) return NULL;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        void **ni = realloc(p->items, nc * sizeof *ni);
        if (!ni) { p->failed = true; return NULL; }
        p->items = ni;
        p->cap = nc;
    }
    void *m = kiln_calloc(1, size ? size : 1);
    if (!m) { p->failed = true; return NULL; }
    p->items[p->n++] = m;
    return m;
}

static char *pool_str(pool *p, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pool_alloc(p, n);
    if (d) memcpy(d, s, n);
    return d;
}

static void pool_free(pool *p) {
    for (size_t i = 0; i < p->n; i++) free(p->items[i]);
    free(p->items);
}

static bool blob_append(kiln_blob *b, const void *data, size_t n, size_t *offset) {
    size_t start = (b->size + 63) & ~(size_t)63;
    if (start + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < start + n) nc *= 2;
        uint8_t *nd = realloc(b->data, nc);
        if (!nd) return false;
        b->data = nd;
        b->cap = nc;
    }
    memset(b->data + b->size, 0, start - b->size);
    if (n) memcpy(b->data + start, data, n);
    b->size = start + n;
    *offset = start;
    return true;
}

typedef struct ex_ctx {
    pool *p;
    kiln_blob *weights;
} ex_ctx;

static Onnx__TensorProto *tensor_proto(ex_ctx *cx, const char *name, const kiln_tensor *t) {
    Onnx__TensorProto *tp = pool_alloc(cx->p, sizeof *tp);
    if (!tp) return NULL;
    *tp = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    tp->name = pool_str(cx->p, name);
    tp->has_data_type = 1;
    tp->data_type = (int32_t)t->dtype;
    tp->n_dims = (size_t)t->rank;
    tp->dims = pool_alloc(cx->p, sizeof(int64_t) * (size_t)(t->rank ? t->rank : 1));
    if (!tp->dims) return NULL;
    for (int i = 0; i < t->rank; i++) tp->dims[i] = t->dims[i];
    size_t bytes = kiln_tensor_bytes(t);
    if (bytes <= KILN_INLINE_BYTES || !cx->weights) {
        tp->has_raw_data = 1;
        tp->raw_data.len = bytes;
        tp->raw_data.data = pool_alloc(cx->p, bytes);
        if (!tp->raw_data.data) return NULL;
        if (bytes) memcpy(tp->raw_data.data, t->data, bytes);
        return tp;
    }
    size_t off;
    if (!blob_append(cx->weights, t->data, bytes, &off)) { cx->p->failed = true; return NULL; }
    tp->has_data_location = 1;
    tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    tp->n_external_data = 3;
    tp->external_data = pool_alloc(cx->p, sizeof(Onnx__StringStringEntryProto *) * 3);
    if (!tp->external_data) return NULL;
    const char *keys[3] = {"location", "offset", "length"};
    char vals[3][32];
    snprintf(vals[0], sizeof vals[0], "%s", KILN_WEIGHTS_LOCATION);
    snprintf(vals[1], sizeof vals[1], "%zu", off);
    snprintf(vals[2], sizeof vals[2], "%zu", bytes);
    for (int k = 0; k < 3; k++) {
        Onnx__StringStringEntryProto *e = pool_alloc(cx->p, sizeof *e);
        if (!e) return NULL;
        *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        e->key = pool_str(cx->p, keys[k]);
        e->value = pool_str(cx->p, vals[k]);
        tp->external_data[k] = e;
    }
    return tp;
}

static Onnx__ValueInfoProto *value_info(ex_ctx *cx, const kiln_graph *g, const kiln_value *v) {
    Onnx__ValueInfoProto *vi = pool_alloc(cx->p, sizeof *vi);
    Onnx__TypeProto *tp = pool_alloc(cx->p, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = pool_alloc(cx->p, sizeof *tt);
    if (!vi || !tp || !tt) return NULL;
    *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    vi->name = pool_str(cx->p, v->name);
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = v->type.dtype != KILN_DTYPE_UNDEFINED;
    tt->elem_type = (int32_t)v->type.dtype;
    if (v->type.rank < 0) return vi;
    Onnx__TensorShapeProto *sp = pool_alloc(cx->p, sizeof *sp);
    if (!sp) return NULL;
    *sp = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    sp->n_dim = (size_t)v->type.rank;
    sp->dim = pool_alloc(cx->p, sizeof(Onnx__TensorShapeProto__Dimension *) * (size_t)(v->type.rank ? v->type.rank : 1));
    if (!sp->dim) return NULL;
    for (int i = 0; i < v->type.rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = pool_alloc(cx->p, sizeof *d);
        if (!d) return NULL;
        *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        int64_t x = v->type.dims[i];
        if (x >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = x;
        } else if (x <= -2 && -2 - x < g->n_symbols) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = pool_str(cx->p, g->symbols[-2 - x]);
        }
        sp->dim[i] = d;
    }
    tt->shape = sp;
    return vi;
}

static Onnx__GraphProto *graph_proto(ex_ctx *cx, const kiln_graph *g);

static Onnx__AttributeProto *attr_proto(ex_ctx *cx, const kiln_attr *at) {
    Onnx__AttributeProto *ap = pool_alloc(cx->p, sizeof *ap);
    if (!ap) return NULL;
    *ap = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    ap->name = pool_str(cx->p, at->name);
    ap->has_type = 1;
    switch (at->type) {
    case KILN_ATTR_FLOAT: ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT; ap->has_f = 1; ap->f = at->f; break;
    case KILN_ATTR_INT: ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT; ap->has_i = 1; ap->i = at->i; break;
    case KILN_ATTR_STRING:
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        ap->has_s = 1;
        ap->s.len = strlen(at->s);
        ap->s.data = (uint8_t *)pool_str(cx->p, at->s);
        break;
    case KILN_ATTR_FLOATS:
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
        ap->n_floats = (size_t)at->n;
        ap->floats = pool_alloc(cx->p, sizeof(float) * (size_t)(at->n ? at->n : 1));
        if (ap->floats && at->n) memcpy(ap->floats, at->floats, sizeof(float) * (size_t)at->n);
        break;
    case KILN_ATTR_INTS:
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        ap->n_ints = (size_t)at->n;
        ap->ints = pool_alloc(cx->p, sizeof(int64_t) * (size_t)(at->n ? at->n : 1));
        if (ap->ints && at->n) memcpy(ap->ints, at->ints, sizeof(int64_t) * (size_t)at->n);
        break;
    case KILN_ATTR_STRINGS:
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
        ap->n_strings = (size_t)at->n;
        ap->strings = pool_alloc(cx->p, sizeof(ProtobufCBinaryData) * (size_t)(at->n ? at->n : 1));
        for (int k = 0; ap->strings && k < at->n; k++) {
            ap->strings[k].len = strlen(at->strings[k]);
            ap->strings[k].data = (uint8_t *)pool_str(cx->p, at->strings[k]);
        }
        break;
    case KILN_ATTR_TENSOR: {
        ex_ctx inline_cx = {cx->p, NULL}; /* attribute tensors stay inline */
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
        ap->t = at->t ? tensor_proto(&inline_cx, "", at->t) : NULL;
        break;
    }
    case KILN_ATTR_GRAPH:
        ap->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
        ap->g = at->g_view ? graph_proto(cx, at->g_view) : NULL;
        if (!ap->g) cx->p->failed = true;
        break;
    case KILN_ATTR_OTHER: return NULL; /* never imported in a form we could write back */
    }
    return ap;
}

static Onnx__AttributeProto *simple_attr(ex_ctx *cx, const char *name, kiln_attr_type type, const char *s, float f) {
    kiln_attr at = {.name = (char *)name, .type = type, .s = (char *)s, .f = f};
    return attr_proto(cx, &at);
}

static Onnx__NodeProto *node_proto(ex_ctx *cx, const kiln_graph *g, const kiln_node *n) {
    Onnx__NodeProto *np = pool_alloc(cx->p, sizeof *np);
    if (!np) return NULL;
    *np = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    np->name = pool_str(cx->p, n->name);
    np->op_type = pool_str(cx->p, kiln_op_name(n->op));
    np->domain = pool_str(cx->p, kiln_op_is_internal(n->op) ? KILN_INTERNAL_DOMAIN : "");
    np->n_input = (size_t)n->n_declared;
    np->input = pool_alloc(cx->p, sizeof(char *) * (size_t)(n->n_declared ? n->n_declared : 1));
    np->n_output = (size_t)n->n_outputs;
    np->output = pool_alloc(cx->p, sizeof(char *) * (size_t)(n->n_outputs ? n->n_outputs : 1));
    if (!np->input || !np->output) return NULL;
    for (int k = 0; k < n->n_declared; k++) np->input[k] = pool_str(cx->p, n->inputs[k] >= 0 ? g->values[n->inputs[k]].name : "");
    for (int j = 0; j < n->n_outputs; j++) np->output[j] = pool_str(cx->p, n->outputs[j] >= 0 ? g->values[n->outputs[j]].name : "");
    int extra = n->act.kind != KILN_ACT_NONE ? 3 : 0;
    np->attribute = pool_alloc(cx->p, sizeof(Onnx__AttributeProto *) * (size_t)(n->attrs.n + extra + 1));
    if (!np->attribute) return NULL;
    for (int i = 0; i < n->attrs.n; i++) {
        Onnx__AttributeProto *ap = attr_proto(cx, &n->attrs.items[i]);
        if (ap) np->attribute[np->n_attribute++] = ap;
    }
    if (extra) {
        np->attribute[np->n_attribute++] = simple_attr(cx, "kiln_activation", KILN_ATTR_STRING, kiln_act_name(n->act.kind), 0);
        np->attribute[np->n_attribute++] = simple_attr(cx, "kiln_alpha", KILN_ATTR_FLOAT, NULL, n->act.alpha);
        np->attribute[np->n_attribute++] = simple_attr(cx, "kiln_beta", KILN_ATTR_FLOAT, NULL, n->act.beta);
    }
    return np;
}

static Onnx__GraphProto *graph_proto(ex_ctx *cx, const kiln_graph *g) {
    Onnx__GraphProto *gp = pool_alloc(cx->p, sizeof *gp);
    if (!gp) return NULL;
    *gp = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    gp->name = pool_str(cx->p, g->name);
    gp->node = pool_alloc(cx->p, sizeof(Onnx__NodeProto *) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    gp->input = pool_alloc(cx->p, sizeof(Onnx__ValueInfoProto *) * (size_t)(g->n_inputs ? g->n_inputs : 1));
    gp->output = pool_alloc(cx->p, sizeof(Onnx__ValueInfoProto *) * (size_t)(g->n_outputs ? g->n_outputs : 1));
    gp->initializer = pool_alloc(cx->p, sizeof(Onnx__TensorProto *) * (size_t)(g->n_values ? g->n_values : 1));
    bool *used = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(bool));
    if (!gp->node || !gp->input || !gp->output || !gp->initializer || !used) {
        free(used);
        cx->p->failed = true;
        return NULL;
    }
    /* Constants that anything still reads (or that are inputs with defaults, or outputs). */
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) used[g->nodes[i].inputs[k]] = true;
    for (int j = 0; j < g->n_outputs; j++) used[g->outputs[j]] = true;
    for (int i = 0; i < g->n_inputs; i++) used[g->inputs[i]] = true;
    for (int v = 0; v < g->n_values; v++) {
        const kiln_value *val = &g->values[v];
        if (!used[v] || !(val->flags & KILN_VALUE_CONST) || (val->flags & KILN_VALUE_CAPTURED)) continue;
        Onnx__TensorProto *tp = tensor_proto(cx, val->name, &val->type);
        if (tp) gp->initializer[gp->n_initializer++] = tp;
    }
    free(used);
    for (int i = 0; i < g->n_inputs; i++) gp->input[gp->n_input++] = value_info(cx, g, &g->values[g->inputs[i]]);
    for (int j = 0; j < g->n_outputs; j++) gp->output[gp->n_output++] = value_info(cx, g, &g->values[g->outputs[j]]);
    for (int i = 0; i < g->n_nodes; i++) gp->node[gp->n_node++] = node_proto(cx, g, &g->nodes[i]);
    return gp;
}

kiln_status kiln_onnx_export(const kiln_graph *g, int opset, kiln_blob *weights, kiln_blob *out) {
    pool p = {0};
    ex_ctx cx = {&p, weights};
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto ops[2] = {ONNX__OPERATOR_SET_ID_PROTO__INIT, ONNX__OPERATOR_SET_ID_PROTO__INIT};
    Onnx__OperatorSetIdProto *opp[2] = {&ops[0], &ops[1]};
    ops[0].domain = "";
    ops[0].has_version = 1;
    ops[0].version = opset;
    ops[1].domain = KILN_INTERNAL_DOMAIN;
    ops[1].has_version = 1;
    ops[1].version = 1;
    mp.has_ir_version = 1;
    mp.ir_version = 8;
    mp.producer_name = "kiln";
    mp.producer_version = KILN_VERSION_STRING;
    mp.n_opset_import = 2;
    mp.opset_import = opp;
    mp.graph = graph_proto(&cx, g);
    kiln_status s = KILN_STATUS_OK;
    if (p.failed || !mp.graph) {
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory writing graph '%s'", g->name);
    } else {
        size_t n = onnx__model_proto__get_packed_size(&mp);
        out->data = kiln_malloc(n);
        if (!out->data) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory writing graph '%s'", g->name);
        else out->size = out->cap = onnx__model_proto__pack(&mp, out->data);
    }
    pool_free(&p);
    return s;
}
