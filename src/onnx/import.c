/* import.c — ONNX ModelProto (protobuf-c over Debian's onnx.proto) to kiln's graph IR.
 *
 * Does: opset checks, initializers (raw, typed fields, external data mmap'ed beside the model),
 * Constant nodes turned into constants, symbolic dims, subgraphs (If/Loop/Scan) with captures of
 * outer values, attribute parsing into each op's typed struct, topological order and shape
 * inference. Does not: optimise anything (src/passes/) or run anything (src/backends/).
 * Every failure names the file and the node, tensor or field. Tested by tests/models/
 * test_malformed.py, test_ort_parity.py and the conformance suite. */
#include "import.h"

#include "../ops/op.h"
#include "export.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KILN_MIN_OPSET 7
#define KILN_MAX_OPSET 28
#define KILN_MAX_MODEL_BYTES ((size_t)2 << 30) /* protobuf's own limit */
#define KILN_MAX_GRAPH_DEPTH 32

typedef struct import_ctx {
    kiln_model *model;
    const char *file; /* for messages */
    int opset;
    int depth;
} import_ctx;

/* ---- mappings of external data files, owned by the model ---- */

static kiln_status map_file(kiln_model *m, const char *path, const char *what, const void **data,
                            size_t *size) {
    const void *p;
    size_t n;
    KILN_TRY(kiln_file_map(path, what, &p, &n));
    kiln_mapping *mp = realloc(m->maps, sizeof(kiln_mapping) * (size_t)(m->n_maps + 1));
    if (!mp) {
        kiln_file_unmap(p, n);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    m->maps = mp;
    m->maps[m->n_maps].path = kiln_strdup(path);
    m->maps[m->n_maps].data = p;
    m->maps[m->n_maps].size = n;
    m->n_maps++;
    *data = p;
    *size = n;
    return KILN_STATUS_OK;
}

static kiln_status find_mapping(kiln_model *m, const char *path, const char *what, const void **data,
                                size_t *size) {
    for (int i = 0; i < m->n_maps; i++)
        if (strcmp(m->maps[i].path, path) == 0) {
            *data = m->maps[i].data;
            *size = m->maps[i].size;
            return KILN_STATUS_OK;
        }
    return map_file(m, path, what, data, size);
}

/* ---- tensors ---- */

static bool dtype_supported(int32_t t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_U8 || t == KILN_DTYPE_I8 || t == KILN_DTYPE_U16 ||
           t == KILN_DTYPE_I16 || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64 || t == KILN_DTYPE_BOOL ||
           t == KILN_DTYPE_F16 || t == KILN_DTYPE_F64 || t == KILN_DTYPE_U32 || t == KILN_DTYPE_U64 ||
           t == KILN_DTYPE_BF16;
}

static const char *onnx_dtype_name(int32_t t) {
    static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                  "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                  "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                                  "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2"};
    return t >= 0 && t < (int32_t)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

static kiln_status check_dtype(const import_ctx *cx, int32_t t, const char *what, const char *name) {
    if (dtype_supported(t)) return KILN_STATUS_OK;
    return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: %s '%s' has element type %s (%d), which kiln does not support",
                      cx->file, what, name, onnx_dtype_name(t), (int)t);
}

/* Is location a plain relative path that stays inside the model's folder? */
static bool safe_relative_path(const char *loc) {
    if (!*loc || loc[0] == '/') return false;
    const char *p = loc;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!slash) break;
        p = slash + 1;
    }
    return strchr(loc, '\\') == NULL;
}

static kiln_status external_data(import_ctx *cx, const Onnx__TensorProto *tp, kiln_tensor *t, size_t bytes) {
    const char *name = tp->name ? tp->name : "";
    const char *location = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        const char *k = e->key ? e->key : "", *v = e->value ? e->value : "";
        char *end;
        if (strcmp(k, "location") == 0) location = v;
        else if (strcmp(k, "offset") == 0 || strcmp(k, "length") == 0) {
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || *end || x < 0)
                return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s': external data %s '%s' is not a byte count",
                                  cx->file, name, k, v);
            if (k[0] == 'o') offset = x;
            else length = x;
        }
    }
    if (!location)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' has external data without a location", cx->file, name);
    if (cx->model->engine_graph && strcmp(location, KILN_WEIGHTS_LOCATION) == 0) {
        if ((uint64_t)offset > cx->model->weights_size || bytes > cx->model->weights_size - (size_t)offset)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' lies beyond the end of the weights section",
                              cx->file, name);
        const char *src = (const char *)cx->model->weights + offset;
        size_t al = kiln_dtype_size(t->dtype);
        if (al && (uintptr_t)src % al == 0) {
            t->data = (void *)src; /* zero-copy into the engine's mapping */
            return KILN_STATUS_OK;
        }
        KILN_TRY(kiln_tensor_alloc(t, t->dtype, t->rank, t->dims));
        memcpy(t->data, src, bytes);
        return KILN_STATUS_OK;
    }
    if (!safe_relative_path(location))
        return kiln_error(KILN_STATUS_INVALID_MODEL,
                          "%s: tensor '%s': external data location '%s' must be a relative path inside the model's folder",
                          cx->file, name, location);
    if (length >= 0 && (uint64_t)length != bytes)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s': external data length %lld, but its shape needs %zu bytes",
                          cx->file, name, (long long)length, bytes);
    char path[4096];
    const char *base = cx->model->base_dir ? cx->model->base_dir : ".";
    if ((size_t)snprintf(path, sizeof path, "%s/%s", base, location) >= sizeof path)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s': external data path too long", cx->file, name);
    const void *data = NULL;
    size_t size = 0;
    char what[512];
    snprintf(what, sizeof what, "%s: tensor '%s' external data", cx->file, name);
    KILN_TRY(find_mapping(cx->model, path, what, &data, &size));
    if ((uint64_t)offset > size || bytes > size - (size_t)offset)
        return kiln_error(KILN_STATUS_INVALID_MODEL,
                          "%s: tensor '%s': external data [%lld, +%zu) lies beyond the end of '%s' (%zu bytes)",
                          cx->file, name, (long long)offset, bytes, location, size);
    const char *src = (const char *)data + offset;
    size_t align = kiln_dtype_size(t->dtype);
    if (align && ((uintptr_t)src % align) == 0) {
        t->data = (void *)src; /* zero-copy: points into the mapping, which the model owns */
        return KILN_STATUS_OK;
    }
    KILN_TRY(kiln_tensor_alloc(t, t->dtype, t->rank, t->dims)); /* misaligned: copy */
    memcpy(t->data, src, bytes);
    return KILN_STATUS_OK;
}

/* Builds a tensor from a TensorProto. Raw data stays in the protobuf message (owned by the
 * model, never freed before it), external data in its mapping; typed fields are converted. */
static kiln_status tensor_from_proto(import_ctx *cx, const Onnx__TensorProto *tp, kiln_tensor *t) {
    const char *name = tp->name ? tp->name : "";
    memset(t, 0, sizeof *t);
    if (tp->segment)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: tensor '%s' is segmented", cx->file, name);
    KILN_TRY(check_dtype(cx, tp->data_type, "tensor", name));
    if (tp->n_dims > KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: tensor '%s' has rank %zu, above kiln's limit of %d",
                          cx->file, name, tp->n_dims, KILN_MAX_RANK);
    t->dtype = (kiln_dtype)tp->data_type;
    t->rank = (int)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' has negative dim %lld", cx->file,
                              name, (long long)tp->dims[i]);
        t->dims[i] = tp->dims[i];
    }
    int64_t count = kiln_shape_count(t->rank, t->dims);
    size_t esz = kiln_dtype_size(t->dtype), bytes;
    if (count < 0 || kiln_checked_bytes(count, esz, &bytes) != KILN_STATUS_OK)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' has an absurd size (%s)", cx->file, name,
                          kiln_tensor_describe(t, (char[200]){0}, 200));
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return external_data(cx, tp, t, bytes);
    if (tp->has_raw_data) {
        if (tp->raw_data.len != bytes)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' has %zu bytes of raw data, its shape %s needs %zu",
                              cx->file, name, tp->raw_data.len, kiln_tensor_describe(t, (char[200]){0}, 200), bytes);
        if (bytes == 0) return kiln_tensor_alloc(t, t->dtype, t->rank, t->dims);
        if ((uintptr_t)tp->raw_data.data % (esz ? esz : 1) == 0) {
            t->data = tp->raw_data.data;
            return KILN_STATUS_OK;
        }
        KILN_TRY(kiln_tensor_alloc(t, t->dtype, t->rank, t->dims));
        memcpy(t->data, tp->raw_data.data, bytes);
        return KILN_STATUS_OK;
    }
    /* Typed fields: which one holds the values depends on the dtype (see onnx.proto). */
    size_t have;
    switch (t->dtype) {
    case KILN_DTYPE_F32: have = tp->n_float_data; break;
    case KILN_DTYPE_F64: have = tp->n_double_data; break;
    case KILN_DTYPE_I64: have = tp->n_int64_data; break;
    case KILN_DTYPE_U32: case KILN_DTYPE_U64: have = tp->n_uint64_data; break;
    default: have = tp->n_int32_data; break;
    }
    if (have != (size_t)count)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: tensor '%s' holds %zu values, its shape %s needs %lld",
                          cx->file, name, have, kiln_tensor_describe(t, (char[200]){0}, 200), (long long)count);
    KILN_TRY(kiln_tensor_alloc(t, t->dtype, t->rank, t->dims));
    for (int64_t i = 0; i < count; i++) {
        switch (t->dtype) {
        case KILN_DTYPE_F32: ((float *)t->data)[i] = tp->float_data[i]; break;
        case KILN_DTYPE_F64: ((double *)t->data)[i] = tp->double_data[i]; break;
        case KILN_DTYPE_I64: ((int64_t *)t->data)[i] = tp->int64_data[i]; break;
        case KILN_DTYPE_U32: ((uint32_t *)t->data)[i] = (uint32_t)tp->uint64_data[i]; break;
        case KILN_DTYPE_U64: ((uint64_t *)t->data)[i] = tp->uint64_data[i]; break;
        case KILN_DTYPE_F16: case KILN_DTYPE_BF16: /* bit patterns in int32_data */
            ((uint16_t *)t->data)[i] = (uint16_t)tp->int32_data[i];
            break;
        default: kiln_store_i64(t->dtype, t->data, i, tp->int32_data[i]); break;
        }
    }
    return KILN_STATUS_OK;
}

/* ---- types ---- */

static int symbol_id(kiln_graph *g, const char *name) {
    for (int i = 0; i < g->n_symbols; i++)
        if (strcmp(g->symbols[i], name) == 0) return i;
    char **s = realloc(g->symbols, sizeof(char *) * (size_t)(g->n_symbols + 1));
    if (!s) return -1;
    g->symbols = s;
    g->symbols[g->n_symbols] = kiln_strdup(name);
    return g->n_symbols++;
}

/* A ValueInfoProto's tensor type into t (no data). Non-tensor types are UNSUPPORTED. */
static kiln_status type_from_proto(import_ctx *cx, kiln_graph *g, const Onnx__ValueInfoProto *vi, kiln_tensor *t) {
    const char *name = vi->name ? vi->name : "";
    t->rank = -1;
    t->dtype = KILN_DTYPE_UNDEFINED;
    if (!vi->type) return KILN_STATUS_OK;
    if (vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: graph '%s': '%s' is a %s, kiln supports tensors only",
                          cx->file, g->name, name,
                          vi->type->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE ? "sequence"
                          : vi->type->value_case == ONNX__TYPE_PROTO__VALUE_MAP_TYPE    ? "map"
                          : vi->type->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE ? "optional"
                                                                                        : "non-tensor value");
    const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (!tt) return KILN_STATUS_OK;
    if (tt->has_elem_type && tt->elem_type != 0) {
        KILN_TRY(check_dtype(cx, tt->elem_type, "value", name));
        t->dtype = (kiln_dtype)tt->elem_type;
    }
    if (!tt->shape) return KILN_STATUS_OK;
    if (tt->shape->n_dim > KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: '%s' has rank %zu, above kiln's limit of %d", cx->file,
                          name, tt->shape->n_dim, KILN_MAX_RANK);
    t->rank = (int)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        t->dims[i] = KILN_DIM_UNKNOWN;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
            t->dims[i] = d->dim_value;
        else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param && *d->dim_param) {
            int id = symbol_id(g, d->dim_param);
            if (id < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            t->dims[i] = -2 - (int64_t)id;
        }
    }
    return KILN_STATUS_OK;
}

/* ---- graphs ---- */

static kiln_status import_graph(import_ctx *cx, const Onnx__GraphProto *gp, kiln_graph *parent, kiln_graph **out);

static char *binary_to_str(ProtobufCBinaryData b) {
    char *s = kiln_malloc(b.len + 1);
    if (!s) return NULL;
    if (b.len) memcpy(s, b.data, b.len);
    s[b.len] = 0;
    return s;
}

static kiln_status import_attrs(import_ctx *cx, kiln_graph *g, const Onnx__NodeProto *np, const char *node_name,
                                kiln_attrs *a) {
    a->items = kiln_calloc(np->n_attribute ? np->n_attribute : 1, sizeof(kiln_attr));
    if (!a->items) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < np->n_attribute; i++) {
        const Onnx__AttributeProto *ap = np->attribute[i];
        kiln_attr *at = &a->items[a->n++];
        at->name = kiln_strdup(ap->name ? ap->name : "");
        if (!at->name) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        if (ap->ref_attr_name && *ap->ref_attr_name)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s': attribute '%s' refers to a function attribute outside a function",
                              cx->file, node_name, at->name);
        switch (ap->has_type ? (int)ap->type : 0) {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: at->type = KILN_ATTR_FLOAT; at->f = ap->f; break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: at->type = KILN_ATTR_INT; at->i = ap->i; break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
            at->type = KILN_ATTR_STRING;
            at->s = binary_to_str(ap->s);
            if (!at->s) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
            at->type = KILN_ATTR_FLOATS;
            at->n = (int)ap->n_floats;
            at->floats = kiln_malloc(sizeof(float) * (ap->n_floats ? ap->n_floats : 1));
            if (!at->floats) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            if (ap->n_floats) memcpy(at->floats, ap->floats, sizeof(float) * ap->n_floats);
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
            at->type = KILN_ATTR_INTS;
            at->n = (int)ap->n_ints;
            at->ints = kiln_malloc(sizeof(int64_t) * (ap->n_ints ? ap->n_ints : 1));
            if (!at->ints) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            if (ap->n_ints) memcpy(at->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
            at->type = KILN_ATTR_STRINGS;
            at->strings = kiln_calloc(ap->n_strings ? ap->n_strings : 1, sizeof(char *));
            if (!at->strings) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            for (size_t k = 0; k < ap->n_strings; k++, at->n++)
                if (!(at->strings[k] = binary_to_str(ap->strings[k])))
                    return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
            if (!ap->t)
                return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s': tensor attribute '%s' has no tensor",
                                  cx->file, node_name, at->name);
            at->type = KILN_ATTR_TENSOR;
            kiln_tensor tmp;
            kiln_status s = tensor_from_proto(cx, ap->t, &tmp);
            if (s) {
                kiln_tensor_release(&tmp);
                return kiln_error_prefix(s, "node '%s' attribute '%s'", node_name, at->name);
            }
            /* Attribute tensors are owned by whoever takes them: give them their own copy. */
            s = kiln_tensor_clone(&tmp, &at->t);
            kiln_tensor_release(&tmp);
            KILN_TRY(s);
            break;
        }
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
            if (!ap->g)
                return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s': graph attribute '%s' has no graph",
                                  cx->file, node_name, at->name);
            at->type = KILN_ATTR_GRAPH;
            KILN_TRY(import_graph(cx, ap->g, g, &at->g));
            at->g_view = at->g;
            break;
        default: at->type = KILN_ATTR_OTHER; break; /* sparse tensors, type protos, lists of graphs: refused if read */
        }
    }
    return KILN_STATUS_OK;
}

/* Finds name in g, else in the enclosing graphs, making it a capture of g (and of every graph
 * in between). Returns the value id in g, or -1 if defined nowhere. */
static int resolve(kiln_graph *g, const char *name) {
    int v = kiln_graph_find(g, name);
    if (v >= 0 || !g->parent) return v;
    int outer = resolve(g->parent, name);
    if (outer < 0) return -1;
    v = kiln_graph_add_value(g, name);
    if (v < 0) return -1;
    g->values[v].flags |= KILN_VALUE_CAPTURED;
    g->values[v].type = g->parent->values[outer].type;
    g->values[v].type.data = NULL; /* the outer value's data stays the outer graph's */
    g->values[v].type.flags = 0;
    int *c = realloc(g->captures, sizeof(int) * (size_t)(g->n_captures + 1));
    int *ci = realloc(g->capture_index, sizeof(int) * (size_t)(g->n_captures + 1));
    if (c) g->captures = c;
    if (ci) g->capture_index = ci;
    if (!c || !ci) return -1;
    g->captures[g->n_captures] = v;
    g->capture_index[g->n_captures] = -1; /* set when the owning node is wired */
    g->n_captures++;
    return v;
}

/* Turns a Constant node into a constant value. */
static kiln_status constant_node(import_ctx *cx, kiln_graph *g, const Onnx__NodeProto *np, const char *node_name) {
    if (np->n_output != 1 || !np->output[0] || !*np->output[0])
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: Constant node '%s' must have one output", cx->file, node_name);
    if (np->n_attribute != 1)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: Constant node '%s' must have exactly one attribute", cx->file, node_name);
    const Onnx__AttributeProto *ap = np->attribute[0];
    const char *an = ap->name ? ap->name : "";
    int v = kiln_graph_add_value(g, np->output[0]);
    if (v < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_tensor *t = &g->values[v].type;
    g->values[v].flags |= KILN_VALUE_CONST;
    if (strcmp(an, "value") == 0 && ap->t) return tensor_from_proto(cx, ap->t, t);
    int64_t n = -1;
    if (strcmp(an, "value_float") == 0) {
        KILN_TRY(kiln_tensor_alloc(t, KILN_DTYPE_F32, 0, NULL));
        *(float *)t->data = ap->f;
    } else if (strcmp(an, "value_int") == 0) {
        KILN_TRY(kiln_tensor_alloc(t, KILN_DTYPE_I64, 0, NULL));
        *(int64_t *)t->data = ap->i;
    } else if (strcmp(an, "value_floats") == 0) {
        n = (int64_t)ap->n_floats;
        KILN_TRY(kiln_tensor_alloc(t, KILN_DTYPE_F32, 1, &n));
        if (n) memcpy(t->data, ap->floats, sizeof(float) * (size_t)n);
    } else if (strcmp(an, "value_ints") == 0) {
        n = (int64_t)ap->n_ints;
        KILN_TRY(kiln_tensor_alloc(t, KILN_DTYPE_I64, 1, &n));
        if (n) memcpy(t->data, ap->ints, sizeof(int64_t) * (size_t)n);
    } else if (strncmp(an, "value_string", 12) == 0) {
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: Constant node '%s': string tensors are not supported", cx->file, node_name);
    } else {
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: Constant node '%s': attribute '%s' is not supported", cx->file,
                          node_name, an);
    }
    return KILN_STATUS_OK;
}

static kiln_status add_node(import_ctx *cx, kiln_graph *g, const Onnx__NodeProto *np, int index) {
    char fallback[96];
    const char *op_type = np->op_type ? np->op_type : "";
    snprintf(fallback, sizeof fallback, "%s_%d", op_type, index);
    const char *node_name = np->name && *np->name ? np->name : fallback;
    const char *domain = np->domain ? np->domain : "";
    bool internal = cx->model->engine_graph && strcmp(domain, KILN_INTERNAL_DOMAIN) == 0;
    if (*domain && strcmp(domain, "ai.onnx") != 0 && !internal)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: node '%s': op '%s' of domain '%s' is not supported (kiln runs the default ONNX domain only)",
                          cx->file, node_name, op_type, domain);
    if (strcmp(op_type, "Constant") == 0) return constant_node(cx, g, np, node_name);
    int op = kiln_op_find(op_type);
    if (op >= 0 && kiln_op_is_internal(op) != internal) op = -1; /* kiln's own ops only in engines */
    if (op < 0)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: node '%s': op '%s' is not supported", cx->file, node_name, op_type);
    /* an engine's graph may hold a newer op than its opset: one a pass made (RMSNormalization) */
    if (cx->opset < kiln_op_table[op].since && !cx->model->engine_graph)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: node '%s': op '%s' is supported from opset %d, the model uses opset %d",
                          cx->file, node_name, op_type, kiln_op_table[op].since, cx->opset);
    if (np->n_input > 4096 || np->n_output > 4096)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s' has too many inputs or outputs", cx->file, node_name);
    int outs[4096];
    for (size_t j = 0; j < np->n_output; j++) {
        const char *on = np->output[j];
        outs[j] = -1;
        if (!on || !*on) continue;
        if (kiln_graph_find(g, on) >= 0)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s': output '%s' is already defined in graph '%s'",
                              cx->file, node_name, on, g->name);
        outs[j] = kiln_graph_add_value(g, on);
        if (outs[j] < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    int ins[1] = {0};
    int ni = kiln_graph_add_node(g, op, node_name, cx->opset, ins, 0, outs, (int)np->n_output);
    if (ni < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    return KILN_STATUS_OK;
}

/* A fused activation written as kiln_activation / kiln_alpha / kiln_beta (engine graphs). */
static kiln_status take_activation(import_ctx *cx, kiln_node *n, kiln_attrs *a) {
    if (!kiln_attr_has(a, "kiln_activation")) return KILN_STATUS_OK;
    char name[32];
    KILN_TRY(kiln_attr_string(a, "kiln_activation", "", name, sizeof name));
    int k = kiln_act_find(name);
    if (k <= 0)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: node '%s': unknown kiln_activation '%s'", cx->file, n->name, name);
    n->act.kind = (kiln_act_kind)k;
    KILN_TRY(kiln_attr_float(a, "kiln_alpha", 0.0f, &n->act.alpha));
    KILN_TRY(kiln_attr_float(a, "kiln_beta", 0.0f, &n->act.beta));
    return KILN_STATUS_OK;
}

/* Second pass over a node: inputs, attributes (subgraphs need this graph's names), captures. */
static kiln_status wire_node(import_ctx *cx, kiln_graph *g, const Onnx__NodeProto *np, kiln_node *n) {
    int *ins = kiln_malloc(sizeof(int) * (np->n_input ? np->n_input : 1));
    if (!ins) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (size_t k = 0; k < np->n_input; k++) {
        const char *in = np->input[k];
        ins[k] = -1;
        if (!in || !*in) continue;
        ins[k] = resolve(g, in);
        if (ins[k] < 0) {
            free(ins);
            return kiln_error(KILN_STATUS_INVALID_MODEL,
                              "%s: node '%s' (%s) reads tensor '%s', which no node, graph input or initializer defines",
                              cx->file, n->name, kiln_op_name(n->op), in);
        }
    }
    free(n->inputs);
    n->inputs = ins;
    n->n_inputs = n->n_declared = (int)np->n_input;

    kiln_attrs attrs = {0};
    attrs.node_name = n->name;
    attrs.op_name = kiln_op_name(n->op);
    kiln_status s = import_attrs(cx, g, np, n->name, &attrs);
    /* Outer values used inside subgraphs become extra inputs of this node. */
    for (int i = 0; s == KILN_STATUS_OK && i < attrs.n; i++) {
        kiln_graph *sg = attrs.items[i].g;
        if (!sg) continue;
        for (int c = 0; c < sg->n_captures; c++) {
            int outer = resolve(g, sg->values[sg->captures[c]].name);
            if (outer < 0) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
            int slot = -1;
            for (int k = n->n_declared; k < n->n_inputs; k++)
                if (n->inputs[k] == outer) slot = k;
            if (slot < 0) {
                int *ni = realloc(n->inputs, sizeof(int) * (size_t)(n->n_inputs + 1));
                if (!ni) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
                n->inputs = ni;
                slot = n->n_inputs++;
                n->inputs[slot] = outer;
            }
            sg->capture_index[c] = slot;
        }
    }
    if (s == KILN_STATUS_OK) s = take_activation(cx, n, &attrs);
    if (s == KILN_STATUS_OK) s = kiln_op_table[n->op].parse(n, &attrs);
    if (s != KILN_STATUS_OK && strstr(kiln_last_error(), cx->file) == NULL) kiln_error_prefix(s, "%s", cx->file);
    n->attrs = attrs; /* kept: engine files write nodes back out from their raw attributes */
    return s;
}

static kiln_status import_graph(import_ctx *cx, const Onnx__GraphProto *gp, kiln_graph *parent, kiln_graph **out) {
    *out = NULL;
    if (cx->depth >= KILN_MAX_GRAPH_DEPTH)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: subgraphs nest deeper than %d levels", cx->file, KILN_MAX_GRAPH_DEPTH);
    kiln_graph *g = kiln_graph_new(gp->name, cx->opset, parent);
    if (!g) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    cx->depth++;
    kiln_status s = KILN_STATUS_OK;
    if (gp->n_sparse_initializer) {
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: graph '%s' has sparse initializers", cx->file, g->name);
        goto fail;
    }
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *name = tp->name ? tp->name : "";
        if (!*name || kiln_graph_find(g, name) >= 0) {
            s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: graph '%s': initializer %zu has %s name '%s'", cx->file,
                           g->name, i, *name ? "a duplicate" : "an empty", name);
            goto fail;
        }
        int v = kiln_graph_add_value(g, name);
        if (v < 0) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
        g->values[v].flags |= KILN_VALUE_CONST;
        if ((s = tensor_from_proto(cx, tp, &g->values[v].type))) goto fail;
    }
    g->inputs = kiln_malloc(sizeof(int) * (gp->n_input ? gp->n_input : 1));
    if (!g->inputs) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = vi->name ? vi->name : "";
        int v = kiln_graph_find(g, name);
        if (v >= 0 && !(g->values[v].flags & KILN_VALUE_CONST)) {
            s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: graph '%s': input '%s' is declared twice", cx->file, g->name, name);
            goto fail;
        }
        if (!*name) {
            s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: graph '%s': input %zu has no name", cx->file, g->name, i);
            goto fail;
        }
        if (v < 0) {
            v = kiln_graph_add_value(g, name);
            if (v < 0) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
            if ((s = type_from_proto(cx, g, vi, &g->values[v].type))) goto fail;
        }
        /* An input with an initializer (older exporters) is an input with a default value. */
        g->values[v].flags |= KILN_VALUE_INPUT;
        g->inputs[g->n_inputs++] = v;
    }
    /* Pass 1: declare every node output so that order and subgraphs can refer to them. */
    int *node_of = kiln_malloc(sizeof(int) * (gp->n_node ? gp->n_node : 1));
    if (!node_of) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    for (size_t i = 0; i < gp->n_node; i++) {
        int before = g->n_nodes;
        if ((s = add_node(cx, g, gp->node[i], (int)i))) { free(node_of); goto fail; }
        node_of[i] = g->n_nodes > before ? before : -1; /* -1: a Constant, now a constant value */
    }
    /* Pass 2: inputs, attributes, subgraphs. */
    for (size_t i = 0; i < gp->n_node; i++) {
        if (node_of[i] < 0) continue;
        if ((s = wire_node(cx, g, gp->node[i], &g->nodes[node_of[i]]))) { free(node_of); goto fail; }
    }
    free(node_of);
    g->outputs = kiln_malloc(sizeof(int) * (gp->n_output ? gp->n_output : 1));
    if (!g->outputs) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = gp->output[i]->name ? gp->output[i]->name : "";
        int v = resolve(g, name);
        if (v < 0) {
            s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: graph '%s': output '%s' is not produced by any node", cx->file,
                           g->name, name);
            goto fail;
        }
        if (g->values[v].type.rank < 0 && !(g->values[v].flags & KILN_VALUE_CONST)) {
            kiln_tensor declared = {0};
            if ((s = type_from_proto(cx, g, gp->output[i], &declared))) goto fail;
            g->values[v].type.dtype = declared.dtype;
        }
        g->values[v].flags |= KILN_VALUE_OUTPUT;
        g->outputs[g->n_outputs++] = v;
    }
    if ((s = kiln_graph_toposort(g))) { kiln_error_prefix(s, "%s", cx->file); goto fail; }
    if ((s = kiln_graph_infer(g))) { kiln_error_prefix(s, "%s", cx->file); goto fail; }
#ifndef NDEBUG
    kiln_graph_validate(g);
#endif
    cx->depth--;
    *out = g;
    return KILN_STATUS_OK;
fail:
    cx->depth--;
    kiln_graph_free(g);
    return s;
}

/* ---- models ---- */

static kiln_status model_opset(import_ctx *cx, const Onnx__ModelProto *mp) {
    int opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        const char *d = o->domain ? o->domain : "";
        if (*d == 0 || strcmp(d, "ai.onnx") == 0) opset = (int)(o->version > 1000 ? 1000 : o->version < 0 ? 0 : o->version);
    }
    if (opset < 0) {
        if (mp->n_opset_import == 0 && mp->has_ir_version && mp->ir_version < 3) opset = 1;
        else if (mp->n_opset_import > 0)
            return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: the model uses only domain '%s' (kiln runs the default ONNX domain only)",
                              cx->file, mp->opset_import[0]->domain ? mp->opset_import[0]->domain : "");
        else return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the model imports no opset", cx->file);
    }
    if (opset < KILN_MIN_OPSET)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: opset %d is older than %d, the oldest kiln supports (convert it with onnx.version_converter)",
                          cx->file, opset, KILN_MIN_OPSET);
    if (opset > KILN_MAX_OPSET)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: opset %d is newer than %d, the newest kiln knows", cx->file,
                          opset, KILN_MAX_OPSET);
    cx->opset = opset;
    return KILN_STATUS_OK;
}

kiln_status kiln_model_import(const void *data, size_t size, const char *file, const char *base_dir, kiln_model *m) {
    import_ctx cx = {.model = m, .file = file};
    if (size == 0) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the file is empty", file);
    if (size > KILN_MAX_MODEL_BYTES)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: %zu bytes is above protobuf's 2 GiB limit (store weights as external data)",
                          file, size);
    m->base_dir = kiln_strdup(base_dir ? base_dir : ".");
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, data);
    if (!mp)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: not a valid ONNX model (the protobuf does not parse: truncated, corrupt or not ONNX)",
                          file);
    m->proto = mp;
    if (!mp->graph) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the model has no graph", file);
    KILN_TRY(model_opset(&cx, mp));
    for (size_t i = 0; i < mp->graph->n_node; i++) {
        const char *d = mp->graph->node[i]->domain;
        for (size_t f = 0; d && *d && f < mp->n_functions; f++)
            if (mp->functions[f]->domain && strcmp(mp->functions[f]->domain, d) == 0)
                return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: node '%s' calls model-local function '%s' (domain '%s'); kiln does not inline functions yet",
                                  file, mp->graph->node[i]->name ? mp->graph->node[i]->name : "",
                                  mp->graph->node[i]->op_type ? mp->graph->node[i]->op_type : "", d);
    }
    m->opset = cx.opset;
    return import_graph(&cx, mp->graph, NULL, &m->graph);
}

void kiln_model_free_contents(kiln_model *m) {
    kiln_graph_free(m->graph);
    if (m->proto) onnx__model_proto__free_unpacked(m->proto, NULL);
    for (int i = 0; i < m->n_maps; i++) {
        kiln_file_unmap(m->maps[i].data, m->maps[i].size);
        free(m->maps[i].path);
    }
    free(m->maps);
    free(m->base_dir);
    free(m->path);
    free(m->owned_weights);
    memset(m, 0, sizeof *m);
}
