/* dnnl_common.c — the oneDNN kernels' shared pieces (see dnnl_common.h): engine, errors,
 * descriptors, post-ops, prepared primitives, weights reorders, shape keys and the per-thread
 * scratch buffer. No op lives here. Tested through tests/models/test_cpu_kernels.py. */
#include "dnnl_common.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- the engine ---- */

static dnnl_engine_t engine;
static dnnl_status_t engine_status;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void make_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

dnnl_engine_t kiln_dnnl_engine(void) {
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) {
        kiln_error(KILN_STATUS_RUNTIME_ERROR, "oneDNN cannot create its CPU engine (status %d)", (int)engine_status);
        return NULL;
    }
    return engine;
}

kiln_status kiln_dnnl_check(dnnl_status_t s, const kiln_node *n, const char *what) {
    switch (s) {
    case dnnl_success: return KILN_STATUS_OK;
    case dnnl_unimplemented:
    case dnnl_invalid_arguments:
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "%s: oneDNN has no implementation for it (status %d)", what, (int)s);
    case dnnl_out_of_memory: return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "%s: oneDNN is out of memory", what);
    default: return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "%s: oneDNN status %d", what, (int)s);
    }
}

/* ---- descriptors ---- */

dnnl_data_type_t kiln_dnnl_dtype(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F32: return dnnl_f32;
    case KILN_DTYPE_I8: return dnnl_s8;
    case KILN_DTYPE_U8: return dnnl_u8;
    case KILN_DTYPE_I32: return dnnl_s32;
    default: return dnnl_data_type_undef;
    }
}

dnnl_status_t kiln_dnnl_md(dnnl_memory_desc_t *md, int rank, const int64_t *dims, kiln_dtype t) {
    if (rank < 1 || rank > DNNL_MAX_NDIMS) return dnnl_invalid_arguments;
    dnnl_dims_t d, s;
    int64_t acc = 1;
    for (int i = rank - 1; i >= 0; i--) {
        d[i] = dims[i];
        s[i] = acc;
        acc *= dims[i] > 0 ? dims[i] : 1;
    }
    return dnnl_memory_desc_init_by_strides(md, rank, d, kiln_dnnl_dtype(t), s);
}

size_t kiln_dnnl_md_bytes(const dnnl_memory_desc_t *md) { return dnnl_memory_desc_get_size(md); }

/* ---- activations as post-ops ---- */

static bool act_alg(const kiln_act *a, dnnl_alg_kind_t *alg, float *alpha, float *beta) {
    *alpha = 0;
    *beta = 0;
    switch (a->kind) {
    case KILN_ACT_RELU: *alg = dnnl_eltwise_relu; return true;
    case KILN_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu; *alpha = a->alpha; return true;
    case KILN_ACT_CLIP: *alg = dnnl_eltwise_clip_v2; *alpha = a->alpha; *beta = a->beta; return true;
    case KILN_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; return true;
    case KILN_ACT_SILU: *alg = dnnl_eltwise_swish; *alpha = 1; return true;
    /* x * min(max(x + 3, 0), 6) / 6; later oneDNN versions read alpha, beta as 1/6, 1/2 */
    case KILN_ACT_HARDSWISH: *alg = dnnl_eltwise_hardswish; *alpha = 1.0f / 6; *beta = 0.5f; return true;
    case KILN_ACT_GELU: *alg = dnnl_eltwise_gelu_erf; return true;
    case KILN_ACT_GELU_TANH: *alg = dnnl_eltwise_gelu_tanh; return true;
    case KILN_ACT_TANH: *alg = dnnl_eltwise_tanh; return true;
    default: return false;
    }
}

bool kiln_dnnl_act_ok(const kiln_act *a) {
    dnnl_alg_kind_t alg;
    float al, be;
    return a->kind == KILN_ACT_NONE || act_alg(a, &alg, &al, &be);
}

kiln_status kiln_dnnl_attr(const kiln_node *n, dnnl_post_ops_t po, dnnl_primitive_attr_t *attr) {
    *attr = NULL;
    dnnl_post_ops_t own = NULL;
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    dnnl_alg_kind_t alg;
    float alpha, beta;
    if (s == dnnl_success && n->act.kind != KILN_ACT_NONE) {
        if (!act_alg(&n->act, &alg, &alpha, &beta)) {
            dnnl_primitive_attr_destroy(*attr);
            *attr = NULL;
            return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "fused activation %s has no oneDNN post-op", kiln_act_name(n->act.kind));
        }
        if (!po) s = dnnl_post_ops_create(&own);
        if (s == dnnl_success) s = dnnl_post_ops_append_eltwise(po ? po : own, 1.0f, alg, alpha, beta);
    }
    if (s == dnnl_success && (po || own)) s = dnnl_primitive_attr_set_post_ops(*attr, po ? po : own);
    if (own) dnnl_post_ops_destroy(own);
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return kiln_dnnl_check(s, n, "primitive attributes");
}

kiln_status kiln_dnnl_pd(const kiln_node *n, const_dnnl_op_desc_t op_desc, const char *what, dnnl_primitive_desc_t *pd) {
    dnnl_primitive_attr_t attr;
    KILN_TRY(kiln_dnnl_attr(n, NULL, &attr));
    kiln_status s = kiln_dnnl_check(dnnl_primitive_desc_create(pd, op_desc, attr, kiln_dnnl_engine(), NULL), n, what);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

/* ---- this thread's scratch ---- */

typedef struct scratch {
    void *p[KILN_CPU_SCRATCH_SLOTS];
    size_t bytes[KILN_CPU_SCRATCH_SLOTS];
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
    scratch *s = v;
    for (int i = 0; i < KILN_CPU_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

void *kiln_cpu_scratch(int slot, size_t bytes, const kiln_node *n) {
    pthread_once(&scratch_once, scratch_key_make);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s)) || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "per-thread scratch");
            return NULL;
        }
    }
    if (s->bytes[slot] < bytes || !s->p[slot]) {
        size_t want = (bytes + 63) / 64 * 64 + 64;
        void *p = aligned_alloc(64, want);
        if (!p) {
            kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "%zu bytes of scratch", bytes);
            return NULL;
        }
        free(s->p[slot]);
        s->p[slot] = p;
        s->bytes[slot] = want;
    }
    return s->p[slot];
}

/* ---- prepared primitives ---- */

const dnnl_memory_desc_t *kiln_dnnl_pd_md(const_dnnl_primitive_desc_t pd, int arg) {
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

static kiln_status add_arg(kiln_dnnl_prim *p, const dnnl_memory_desc_t *md, int arg, const kiln_node *n) {
    if (p->n_args >= KILN_DNNL_MAX_ARGS) return kiln_node_error(n, KILN_STATUS_INTERNAL, "too many oneDNN arguments");
    dnnl_memory_t m;
    KILN_TRY(kiln_dnnl_check(dnnl_memory_create(&m, md, kiln_dnnl_engine(), DNNL_MEMORY_NONE), n, "argument memory"));
    p->args[p->n_args++] = (dnnl_exec_arg_t){.arg = arg, .memory = m};
    return KILN_STATUS_OK;
}

kiln_status kiln_dnnl_prim_create(kiln_dnnl_prim *p, const_dnnl_primitive_desc_t pd, const int *arg_ids, int n_ids,
                                  const kiln_node *n) {
    memset(p, 0, sizeof *p);
    kiln_status s = kiln_dnnl_check(dnnl_primitive_create(&p->prim, pd), n, "primitive");
    if (s == KILN_STATUS_OK) s = kiln_dnnl_check(dnnl_stream_create(&p->stream, kiln_dnnl_engine(), dnnl_stream_default_flags), n, "stream");
    for (int i = 0; s == KILN_STATUS_OK && i < n_ids; i++) {
        const dnnl_memory_desc_t *md = kiln_dnnl_pd_md(pd, arg_ids[i]);
        if (md && md->ndims > 0) s = add_arg(p, md, arg_ids[i], n);
    }
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (s == KILN_STATUS_OK && sp && sp->ndims > 0 && kiln_dnnl_md_bytes(sp) > 0) {
        s = add_arg(p, sp, DNNL_ARG_SCRATCHPAD, n);
        p->needs_scratch = true;
    }
    if (s != KILN_STATUS_OK) kiln_dnnl_prim_destroy(p);
    return s;
}

void kiln_dnnl_prim_destroy(kiln_dnnl_prim *p) {
    for (int i = 0; i < p->n_args; i++) dnnl_memory_destroy(p->args[i].memory);
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->stream) dnnl_stream_destroy(p->stream);
    memset(p, 0, sizeof *p);
}

void kiln_dnnl_prim_set(kiln_dnnl_prim *p, int arg, const void *data) {
    for (int i = 0; i < p->n_args; i++)
        if (p->args[i].arg == arg) dnnl_memory_set_data_handle(p->args[i].memory, (void *)data);
}

kiln_status kiln_dnnl_prim_execute(kiln_dnnl_prim *p, const kiln_node *n) {
    if (p->needs_scratch) {
        const dnnl_memory_desc_t *md;
        dnnl_memory_t m = NULL;
        for (int i = 0; i < p->n_args; i++)
            if (p->args[i].arg == DNNL_ARG_SCRATCHPAD) m = p->args[i].memory;
        dnnl_memory_get_memory_desc(m, &md);
        void *buf = kiln_cpu_scratch(KILN_CPU_SCRATCH_DNNL, kiln_dnnl_md_bytes(md), n);
        if (!buf) return KILN_STATUS_OUT_OF_MEMORY;
        dnnl_memory_set_data_handle(m, buf);
    }
    KILN_TRY(kiln_dnnl_check(dnnl_primitive_execute(p->prim, p->stream, p->n_args, p->args), n, "execute"));
    return kiln_dnnl_check(dnnl_stream_wait(p->stream), n, "stream wait");
}

/* ---- reorders and weights ---- */

kiln_status kiln_dnnl_reorder_prim(kiln_dnnl_prim *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                   const kiln_node *n) {
    memset(p, 0, sizeof *p);
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return KILN_STATUS_RUNTIME_ERROR;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    kiln_status s = kiln_dnnl_check(dnnl_primitive_attr_create(&attr), n, "reorder attributes");
    if (s == KILN_STATUS_OK) s = kiln_dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), n, "reorder attributes");
    if (s == KILN_STATUS_OK) s = kiln_dnnl_check(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr), n, "reorder");
    static const int ids[] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    if (s == KILN_STATUS_OK) s = kiln_dnnl_prim_create(p, pd, ids, 2, n);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

kiln_status kiln_dnnl_reorder(const dnnl_memory_desc_t *from, const void *src, const dnnl_memory_desc_t *to, void *dst,
                              const kiln_node *n) {
    kiln_dnnl_prim p;
    kiln_status s = kiln_dnnl_reorder_prim(&p, from, to, n);
    if (s == KILN_STATUS_OK) {
        kiln_dnnl_prim_set(&p, DNNL_ARG_FROM, src);
        kiln_dnnl_prim_set(&p, DNNL_ARG_TO, dst);
        s = kiln_dnnl_prim_execute(&p, n);
    }
    kiln_dnnl_prim_destroy(&p);
    return s;
}

kiln_status kiln_dnnl_io_init(kiln_dnnl_io *io, const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *src,
                              const dnnl_memory_desc_t *dst, const kiln_node *n) {
    const dnnl_memory_desc_t *src_md = kiln_dnnl_pd_md(pd, DNNL_ARG_SRC), *dst_md = kiln_dnnl_pd_md(pd, DNNL_ARG_DST);
    kiln_status s = KILN_STATUS_OK;
    if (!dnnl_memory_desc_equal(src_md, src)) {
        s = kiln_dnnl_reorder_prim(&io->to_src, src, src_md, n);
        io->src_bytes = kiln_dnnl_md_bytes(src_md);
    }
    if (s == KILN_STATUS_OK && !dnnl_memory_desc_equal(dst_md, dst)) {
        s = kiln_dnnl_reorder_prim(&io->from_dst, dst_md, dst, n);
        io->dst_bytes = kiln_dnnl_md_bytes(dst_md);
    }
    return s;
}

void kiln_dnnl_io_destroy(kiln_dnnl_io *io) {
    kiln_dnnl_prim_destroy(&io->to_src);
    kiln_dnnl_prim_destroy(&io->from_dst);
    io->src_bytes = io->dst_bytes = 0;
}

kiln_status kiln_dnnl_io_run(kiln_dnnl_io *io, kiln_dnnl_prim *p, const void *x, void *y, const kiln_node *n) {
    const void *src = x;
    void *dst = y;
    if (io->to_src.prim) {
        void *buf = kiln_cpu_scratch(KILN_CPU_SCRATCH_SRC, io->src_bytes, n);
        if (!buf) return KILN_STATUS_OUT_OF_MEMORY;
        kiln_dnnl_prim_set(&io->to_src, DNNL_ARG_FROM, x);
        kiln_dnnl_prim_set(&io->to_src, DNNL_ARG_TO, buf);
        KILN_TRY(kiln_dnnl_prim_execute(&io->to_src, n));
        src = buf;
    }
    if (io->from_dst.prim && !(dst = kiln_cpu_scratch(KILN_CPU_SCRATCH_DST, io->dst_bytes, n))) return KILN_STATUS_OUT_OF_MEMORY;
    kiln_dnnl_prim_set(p, DNNL_ARG_SRC, src);
    kiln_dnnl_prim_set(p, DNNL_ARG_DST, dst);
    KILN_TRY(kiln_dnnl_prim_execute(p, n));
    if (!io->from_dst.prim) return KILN_STATUS_OK;
    kiln_dnnl_prim_set(&io->from_dst, DNNL_ARG_FROM, dst);
    kiln_dnnl_prim_set(&io->from_dst, DNNL_ARG_TO, y);
    return kiln_dnnl_prim_execute(&io->from_dst, n);
}

dnnl_status_t kiln_dnnl_any(dnnl_memory_desc_t *any, const dnnl_memory_desc_t *md) {
    return dnnl_memory_desc_init_by_tag(any, md->ndims, md->dims, md->data_type, dnnl_format_tag_any);
}

kiln_status kiln_dnnl_weights_init(kiln_dnnl_weights *w, const dnnl_memory_desc_t *have, const dnnl_memory_desc_t *want,
                                   const kiln_node *n) {
    kiln_dnnl_weights_free(w);
    w->want = *want;
    w->direct = dnnl_memory_desc_equal(have, want) != 0;
    if (w->direct) return KILN_STATUS_OK;
    size_t bytes = kiln_dnnl_md_bytes(want);
    w->buf = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!w->buf) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "reordered weights of %zu bytes", bytes);
    return KILN_STATUS_OK;
}

kiln_status kiln_dnnl_weights_get(kiln_dnnl_weights *w, const dnnl_memory_desc_t *have, const kiln_tensor *t,
                                  const kiln_node *n, const void **data) {
    if (w->direct) {
        *data = t->data;
        return KILN_STATUS_OK;
    }
    if (!w->ready) {
        KILN_TRY(kiln_dnnl_reorder(have, t->data, &w->want, w->buf, n));
        w->ready = (t->flags & KILN_TENSOR_CONSTANT) != 0;
    }
    *data = w->buf;
    return KILN_STATUS_OK;
}

void kiln_dnnl_weights_free(kiln_dnnl_weights *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* ---- keys ---- */

bool kiln_cpu_key_make(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out, kiln_cpu_key *k) {
    k->n = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        const kiln_tensor *t = in[i];
        int need = 2 + (t && t->rank > 0 ? t->rank : 0);
        if (k->n + need > KILN_CPU_KEY_MAX) return false;
        k->v[k->n++] = t ? (int64_t)t->dtype : -1;
        k->v[k->n++] = t ? t->rank : -1;
        for (int d = 0; t && d < t->rank; d++) k->v[k->n++] = t->dims[d];
    }
    if (k->n + 1 + out->rank > KILN_CPU_KEY_MAX) return false;
    k->v[k->n++] = out->rank;
    for (int d = 0; d < out->rank; d++) k->v[k->n++] = out->dims[d];
    return true;
}

bool kiln_cpu_key_equal(const kiln_cpu_key *a, const kiln_cpu_key *b) {
    return a->n == b->n && a->n > 0 && memcmp(a->v, b->v, sizeof(int64_t) * (size_t)a->n) == 0;
}

/* ---- per-node state ---- */

static void state_free(void *st) {
    kiln_cpu_cache *c = st;
    if (!c) return;
    c->clear(st);
    free(c->values);
    free(st);
}

/* The bytes of the inputs in c->value_inputs, one after another, in a malloc'ed block (NULL
 * with *bytes 0 when there are none; NULL with *bytes > 0 when out of memory). */
static void *input_values(const kiln_cpu_cache *c, const kiln_node *n, kiln_tensor *const *in, size_t *bytes) {
    *bytes = 0;
    for (int k = 0; k < n->n_inputs && k < 32; k++)
        if ((c->value_inputs >> k & 1) && in[k] && in[k]->data) *bytes += kiln_tensor_bytes(in[k]);
    if (!*bytes) return NULL;
    uint8_t *v = malloc(*bytes), *p = v;
    for (int k = 0; v && k < n->n_inputs && k < 32; k++)
        if ((c->value_inputs >> k & 1) && in[k] && in[k]->data) {
            memcpy(p, in[k]->data, kiln_tensor_bytes(in[k]));
            p += kiln_tensor_bytes(in[k]);
        }
    return v;
}

/* Are the inputs in c->value_inputs what c->values holds? (No copy: this runs every time.) */
static bool values_equal(const kiln_cpu_cache *c, const kiln_node *n, kiln_tensor *const *in) {
    size_t off = 0;
    for (int k = 0; k < n->n_inputs && k < 32; k++)
        if ((c->value_inputs >> k & 1) && in[k] && in[k]->data) {
            size_t b = kiln_tensor_bytes(in[k]);
            if (off + b > c->values_bytes || memcmp((const uint8_t *)c->values + off, in[k]->data, b) != 0) return false;
            off += b;
        }
    return off == c->values_bytes;
}

void *kiln_cpu_state(const kiln_node *n, void **state, void (**state_free_out)(void *), size_t size, void (*clear)(void *)) {
    if (*state) return *state;
    kiln_cpu_cache *c = calloc(1, size);
    if (!c) {
        kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "kernel state of %zu bytes", size);
        return NULL;
    }
    c->clear = clear;
    *state = c;
    *state_free_out = state_free;
    return c;
}

kiln_status kiln_cpu_prepare(void *st, kiln_cpu_build_fn build, const kiln_node *n, kiln_tensor *const *in,
                             const kiln_tensor *out) {
    kiln_cpu_cache *c = st;
    for (int i = 0; i < n->n_inputs; i++) /* empty tensors: the reference kernels' edge cases */
        if (in[i] && kiln_shape_count(in[i]->rank, in[i]->dims) == 0) return KILN_STATUS_UNSUPPORTED;
    kiln_cpu_key key;
    bool keyed = kiln_cpu_key_make(n, in, out, &key);
    if (keyed && kiln_cpu_key_equal(&key, &c->key) && values_equal(c, n, in))
        return c->unsupported ? kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "oneDNN refused these shapes") : KILN_STATUS_OK;
    size_t vbytes = 0;
    void *vals = c->value_inputs ? input_values(c, n, in, &vbytes) : NULL;
    if (vbytes && !vals) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "kernel parameters");
    free(c->values);
    c->values = vals;
    c->values_bytes = vbytes;
    c->clear(st);
    c->key.n = 0;
    c->unsupported = false;
    kiln_status s = build(st, n, in, out);
    if (s != KILN_STATUS_OK) c->clear(st);
    if (kiln_cpu_verbose()) {
        char d[160];
        fprintf(stderr, "kiln cpu: node '%s' (%s) %s: %s%s\n", n->name ? n->name : "", kiln_op_name(n->op),
                kiln_tensor_describe(out, d, sizeof d), s == KILN_STATUS_OK ? "onednn" : "reference kernel: ",
                s == KILN_STATUS_OK ? "" : kiln_last_error());
    }
    if (keyed && (s == KILN_STATUS_OK || s == KILN_STATUS_UNSUPPORTED)) {
        c->key = key;
        c->unsupported = s == KILN_STATUS_UNSUPPORTED;
    }
    return s;
}

/* ---- 8-bit tensors as floats ---- */

float kiln_cpu_q8_to_float(const kiln_tensor *t, const kiln_tensor *zp, bool per_col, float *dst) {
    int64_t count = kiln_shape_count(t->rank, t->dims), nz = zp ? kiln_shape_count(zp->rank, zp->dims) : 1;
    int64_t cols = t->rank > 0 ? t->dims[t->rank - 1] : 1;
    float mx = 0;
    if (per_col && nz > 1) { /* one zero point per column */
        for (int64_t i = 0; i < count; i++) {
            dst[i] = (float)(kiln_cpu_q8_at(t, i) - kiln_cpu_q8_at(zp, i % cols));
            mx = fmaxf(mx, fabsf(dst[i]));
        }
        return mx;
    }
    int64_t row = nz > 1 ? count / nz : count;
    for (int64_t r = 0; row > 0 && r < count / row; r++) {
        int32_t z = zp ? kiln_cpu_q8_at(zp, nz > 1 ? r : 0) : 0;
        float *d = dst + r * row;
        if (t->dtype == KILN_DTYPE_U8) {
            const uint8_t *p = (const uint8_t *)t->data + r * row;
            for (int64_t i = 0; i < row; i++) d[i] = (float)((int32_t)p[i] - z);
        } else {
            const int8_t *p = (const int8_t *)t->data + r * row;
            for (int64_t i = 0; i < row; i++) d[i] = (float)((int32_t)p[i] - z);
        }
        for (int64_t i = 0; i < row; i++) mx = fmaxf(mx, fabsf(d[i]));
    }
    return mx;
}

kiln_tensor kiln_cpu_float_view(const kiln_tensor *t, void *data) {
    kiln_tensor v = *t;
    v.dtype = KILN_DTYPE_F32;
    v.data = data;
    v.flags = t->flags & KILN_TENSOR_CONSTANT;
    return v;
}
