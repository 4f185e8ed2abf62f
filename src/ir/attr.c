/* attr.c — typed getters over a node's raw attributes, used once per node by parse functions. */
#include "graph.h"

#include <string.h>

static kiln_attr *find(kiln_attrs *a, const char *name) {
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->items[i].name, name) == 0) {
            a->items[i].used = true;
            return &a->items[i];
        }
    return NULL;
}

bool kiln_attr_has(const kiln_attrs *a, const char *name) {
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->items[i].name, name) == 0) return true;
    return false;
}

static kiln_status wrong_type(kiln_attrs *a, const char *name, const char *want) {
    return kiln_error(KILN_STATUS_INVALID_MODEL, "node '%s' (%s): attribute '%s' should be %s",
                      a->node_name, a->op_name, name, want);
}

kiln_status kiln_attr_int(kiln_attrs *a, const char *name, int64_t def, int64_t *out) {
    kiln_attr *at = find(a, name);
    if (!at) { *out = def; return KILN_STATUS_OK; }
    if (at->type != KILN_ATTR_INT) return wrong_type(a, name, "an int");
    *out = at->i;
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_float(kiln_attrs *a, const char *name, float def, float *out) {
    kiln_attr *at = find(a, name);
    if (!at) { *out = def; return KILN_STATUS_OK; }
    if (at->type == KILN_ATTR_INT) { *out = (float)at->i; return KILN_STATUS_OK; }
    if (at->type != KILN_ATTR_FLOAT) return wrong_type(a, name, "a float");
    *out = at->f;
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_string(kiln_attrs *a, const char *name, const char *def, char *buf, size_t n) {
    kiln_attr *at = find(a, name);
    const char *s = def ? def : "";
    if (at) {
        if (at->type != KILN_ATTR_STRING) return wrong_type(a, name, "a string");
        s = at->s;
    }
    if (strlen(s) >= n)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "node '%s' (%s): attribute '%s' is too long",
                          a->node_name, a->op_name, name);
    strcpy(buf, s);
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_ints(kiln_attrs *a, const char *name, int64_t **out, int *n, bool *present) {
    kiln_attr *at = find(a, name);
    *out = NULL;
    *n = 0;
    if (present) *present = at != NULL;
    if (!at) return KILN_STATUS_OK;
    if (at->type != KILN_ATTR_INTS) return wrong_type(a, name, "a list of ints");
    *out = kiln_malloc(sizeof(int64_t) * (size_t)(at->n ? at->n : 1));
    if (!*out) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (at->n) memcpy(*out, at->ints, sizeof(int64_t) * (size_t)at->n);
    *n = at->n;
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_floats(kiln_attrs *a, const char *name, float **out, int *n, bool *present) {
    kiln_attr *at = find(a, name);
    *out = NULL;
    *n = 0;
    if (present) *present = at != NULL;
    if (!at) return KILN_STATUS_OK;
    if (at->type != KILN_ATTR_FLOATS) return wrong_type(a, name, "a list of floats");
    *out = kiln_malloc(sizeof(float) * (size_t)(at->n ? at->n : 1));
    if (!*out) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (at->n) memcpy(*out, at->floats, sizeof(float) * (size_t)at->n);
    *n = at->n;
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_ints_fixed(kiln_attrs *a, const char *name, int64_t *out, int cap, int *n) {
    kiln_attr *at = find(a, name);
    *n = 0;
    if (!at) return KILN_STATUS_OK;
    if (at->type != KILN_ATTR_INTS) return wrong_type(a, name, "a list of ints");
    if (at->n > cap)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "node '%s' (%s): attribute '%s' has %d values, at most %d allowed",
                          a->node_name, a->op_name, name, at->n, cap);
    if (at->n) memcpy(out, at->ints, sizeof(int64_t) * (size_t)at->n);
    *n = at->n;
    return KILN_STATUS_OK;
}

kiln_status kiln_attr_take_tensor(kiln_attrs *a, const char *name, kiln_tensor **out) {
    kiln_attr *at = find(a, name);
    *out = NULL;
    if (!at) return KILN_STATUS_OK;
    if (at->type != KILN_ATTR_TENSOR) return wrong_type(a, name, "a tensor");
    if (!at->t) return kiln_error(KILN_STATUS_INVALID_MODEL, "node '%s' (%s): tensor attribute '%s' has no tensor",
                                  a->node_name, a->op_name, name);
    /* The raw attribute keeps its tensor (engines write nodes back out from it): the caller
     * gets a copy of its own. */
    return kiln_tensor_clone(at->t, out);
}

kiln_status kiln_attr_take_graph(kiln_attrs *a, const char *name, kiln_graph **out) {
    kiln_attr *at = find(a, name);
    *out = NULL;
    if (!at) return KILN_STATUS_OK;
    if (at->type != KILN_ATTR_GRAPH) return wrong_type(a, name, "a graph");
    *out = at->g;
    at->g = NULL;
    return KILN_STATUS_OK;
}

void kiln_attrs_free(kiln_attrs *a) {
    for (int i = 0; i < a->n; i++) {
        kiln_attr *at = &a->items[i];
        free(at->name);
        free(at->s);
        free(at->floats);
        free(at->ints);
        for (int k = 0; at->strings && k < at->n; k++) free(at->strings[k]);
        free(at->strings);
        if (at->t) kiln_tensor_destroy(at->t);
        kiln_graph_free(at->g);
    }
    free(a->items);
    a->items = NULL;
    a->n = 0;
}

kiln_status kiln_attrs_copy(const kiln_attrs *src, kiln_attrs *dst) {
    memset(dst, 0, sizeof *dst);
    dst->node_name = src->node_name;
    dst->op_name = src->op_name;
    dst->items = kiln_calloc((size_t)(src->n ? src->n : 1), sizeof(kiln_attr));
    if (!dst->items) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < src->n; i++, dst->n++) {
        const kiln_attr *s = &src->items[i];
        kiln_attr *d = &dst->items[i];
        d->type = s->type;
        d->f = s->f;
        d->i = s->i;
        d->n = s->n;
        d->g_view = s->g_view;
        d->name = kiln_strdup(s->name);
        bool ok = d->name != NULL;
        if (s->s) ok &= (d->s = kiln_strdup(s->s)) != NULL;
        if (s->floats) {
            ok &= (d->floats = kiln_malloc(sizeof(float) * (size_t)(s->n ? s->n : 1))) != NULL;
            if (ok && s->n) memcpy(d->floats, s->floats, sizeof(float) * (size_t)s->n);
        }
        if (s->ints) {
            ok &= (d->ints = kiln_malloc(sizeof(int64_t) * (size_t)(s->n ? s->n : 1))) != NULL;
            if (ok && s->n) memcpy(d->ints, s->ints, sizeof(int64_t) * (size_t)s->n);
        }
        if (s->strings) {
            ok &= (d->strings = kiln_calloc((size_t)(s->n ? s->n : 1), sizeof(char *))) != NULL;
            for (int k = 0; ok && k < s->n; k++) ok &= (d->strings[k] = kiln_strdup(s->strings[k])) != NULL;
        }
        if (s->t && ok) ok &= kiln_tensor_clone(s->t, &d->t) == KILN_STATUS_OK;
        if (!ok) {
            dst->n++;
            kiln_attrs_free(dst);
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory copying attributes");
        }
    }
    return KILN_STATUS_OK;
}
