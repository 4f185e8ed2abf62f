/* dnnl_common.h — what the oneDNN kernels (dnnl_*.c) share: the one CPU engine, oneDNN
 * statuses as kiln errors, memory descriptors for kiln's plain row-major tensors, fused
 * activations as post-ops, a prepared primitive with its argument memories, reordered
 * weights, and the shape key that says when a node's prepared state must be rebuilt.
 *
 * Memory: every primitive is created with a user-managed scratchpad; its scratch comes from a
 * per-thread buffer (a context runs on one thread, and contexts on other threads have their
 * own), so concurrent contexts never share oneDNN's global scratchpad. Threads inside a
 * primitive are oneDNN's CPU runtime (OpenMP in Debian's build: OMP_NUM_THREADS). */
#ifndef KILN_CPU_DNNL_COMMON_H
#define KILN_CPU_DNNL_COMMON_H

#include "cpu_backend.h"

#include <oneapi/dnnl/dnnl.h>

/* The CPU engine, created once; NULL (error set) if oneDNN cannot make one. */
dnnl_engine_t kiln_dnnl_engine(void);

/* OK for dnnl_success; otherwise an error naming the node and `what`: UNSUPPORTED for
 * "unimplemented" and invalid arguments (the reference kernel then runs), OUT_OF_MEMORY, or
 * RUNTIME_ERROR. */
kiln_status kiln_dnnl_check(dnnl_status_t s, const kiln_node *n, const char *what);

/* oneDNN's data type for a kiln dtype, dnnl_data_type_undef if none. */
dnnl_data_type_t kiln_dnnl_dtype(kiln_dtype t);

/* A plain row-major descriptor of rank dims of dtype t (rank 1..DNNL_MAX_NDIMS). */
dnnl_status_t kiln_dnnl_md(dnnl_memory_desc_t *md, int rank, const int64_t *dims, kiln_dtype t);

/* The descriptor's size in bytes. */
size_t kiln_dnnl_md_bytes(const dnnl_memory_desc_t *md);

/* Can the activation be a oneDNN eltwise post-op (all of kiln's can: relu, clip, sigmoid,
 * silu, hardswish, gelu, gelu-tanh, leaky relu, tanh)? */
bool kiln_dnnl_act_ok(const kiln_act *a);

/* A primitive attribute: user-managed scratchpad, then post-ops: the optional `pre` ones the
 * caller appended to *po first (it may pass NULL), then the node's activation. Destroy with
 * dnnl_primitive_attr_destroy. */
kiln_status kiln_dnnl_attr(const kiln_node *n, dnnl_post_ops_t po, dnnl_primitive_attr_t *attr);
/* The primitive descriptor of op_desc with the node's attributes (kiln_dnnl_attr without extra
 * post-ops) on kiln's engine; errors name the node and `what`. */
kiln_status kiln_dnnl_pd(const kiln_node *n, const_dnnl_op_desc_t op_desc, const char *what, dnnl_primitive_desc_t *pd);

/* ---- a prepared primitive ---- */
#define KILN_DNNL_MAX_ARGS 16
typedef struct kiln_dnnl_prim {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    int n_args;
    dnnl_exec_arg_t args[KILN_DNNL_MAX_ARGS]; /* a memory per argument; data handles set per run */
    bool needs_scratch;
} kiln_dnnl_prim;

/* Creates the primitive of pd and an argument memory (no data yet) for each of arg_ids[n_ids]
 * that pd uses (its descriptor there is not empty), plus the scratchpad when pd needs one. */
kiln_status kiln_dnnl_prim_create(kiln_dnnl_prim *p, const_dnnl_primitive_desc_t pd, const int *arg_ids, int n_ids,
                                  const kiln_node *n);
void kiln_dnnl_prim_destroy(kiln_dnnl_prim *p);
/* Points argument `arg` at data (ignored when the primitive does not take that argument). */
void kiln_dnnl_prim_set(kiln_dnnl_prim *p, int arg, const void *data);
/* The descriptor of an argument of pd (empty, ndims 0, when pd does not take it). */
const dnnl_memory_desc_t *kiln_dnnl_pd_md(const_dnnl_primitive_desc_t pd, int arg);
/* Runs it (synchronously) with this thread's scratch buffer. */
kiln_status kiln_dnnl_prim_execute(kiln_dnnl_prim *p, const kiln_node *n);

/* ---- a primitive's src and dst in layouts of its own choosing ----
 * Kernels may let oneDNN pick blocked layouts ("any") for speed; X is then reordered in and Y
 * out around the primitive, through this thread's scratch. */
typedef struct kiln_dnnl_io {
    kiln_dnnl_prim to_src, from_dst; /* X -> the primitive's src, its dst -> Y; prim NULL: none */
    size_t src_bytes, dst_bytes;
} kiln_dnnl_io;
/* Sets io up for pd, whose plain (kiln) src and dst layouts are src and dst. */
kiln_status kiln_dnnl_io_init(kiln_dnnl_io *io, const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *src,
                              const dnnl_memory_desc_t *dst, const kiln_node *n);
void kiln_dnnl_io_destroy(kiln_dnnl_io *io);
/* Runs p from x to y (kiln's layouts), reordering as io says; p's other arguments are set. */
kiln_status kiln_dnnl_io_run(kiln_dnnl_io *io, kiln_dnnl_prim *p, const void *x, void *y, const kiln_node *n);
/* An "any" layout descriptor with md's dims and dtype. */
dnnl_status_t kiln_dnnl_any(dnnl_memory_desc_t *any, const dnnl_memory_desc_t *md);

/* ---- weights reordered to the layout a primitive asked for ---- */
typedef struct kiln_dnnl_weights {
    dnnl_memory_desc_t want; /* the primitive's layout */
    void *buf;               /* the reordered copy (NULL when the source layout already fits) */
    bool ready;              /* buf holds a constant source's reorder */
    bool direct;             /* the source's layout is `want`: no copy */
} kiln_dnnl_weights;

/* Sets w up for source layout `have` and the primitive's `want` (any earlier copy dropped). */
kiln_status kiln_dnnl_weights_init(kiln_dnnl_weights *w, const dnnl_memory_desc_t *have, const dnnl_memory_desc_t *want,
                                   const kiln_node *n);
/* The data to pass for source t (layout `have`): t's own data, or its reorder (made once for a
 * KILN_TENSOR_CONSTANT source, at every run otherwise). */
kiln_status kiln_dnnl_weights_get(kiln_dnnl_weights *w, const dnnl_memory_desc_t *have, const kiln_tensor *t,
                                  const kiln_node *n, const void **data);
void kiln_dnnl_weights_free(kiln_dnnl_weights *w);

/* A prepared reorder from layout `from` to layout `to` (arguments DNNL_ARG_FROM, DNNL_ARG_TO). */
kiln_status kiln_dnnl_reorder_prim(kiln_dnnl_prim *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                   const kiln_node *n);
/* Reorders src (layout `from`) to dst (layout `to`), synchronously. */
kiln_status kiln_dnnl_reorder(const dnnl_memory_desc_t *from, const void *src, const dnnl_memory_desc_t *to, void *dst,
                              const kiln_node *n);

/* ---- this thread's scratch buffers ----
 * Slot 0 is oneDNN's scratchpad (kiln_dnnl_prim_execute); kernels use the others for layouts
 * of their own within one run (valid until the kernel returns). */
enum {
    KILN_CPU_SCRATCH_DNNL, /* oneDNN's scratchpad */
    KILN_CPU_SCRATCH_SRC,  /* kiln_dnnl_io: X in the primitive's layout */
    KILN_CPU_SCRATCH_DST,  /* kiln_dnnl_io: Y in the primitive's layout */
    KILN_CPU_SCRATCH_QIN,  /* int8 kernels: the input as floats */
    KILN_CPU_SCRATCH_QOUT, /* int8 kernels: the accumulator as floats */
    KILN_CPU_SCRATCH_SLOTS
};
/* At least `bytes` of 64-byte aligned memory of this thread's slot; NULL (error set) if none. */
void *kiln_cpu_scratch(int slot, size_t bytes, const kiln_node *n);

/* ---- when to rebuild ----
 * A node's key: each input's presence, dtype and dims, and output 0's dims. */
#define KILN_CPU_KEY_MAX 96
typedef struct kiln_cpu_key {
    int n;
    int64_t v[KILN_CPU_KEY_MAX];
} kiln_cpu_key;
/* Makes the key of (n, in, out) in *k; false when it does not fit (the caller then rebuilds). */
bool kiln_cpu_key_make(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out, kiln_cpu_key *k);
bool kiln_cpu_key_equal(const kiln_cpu_key *a, const kiln_cpu_key *b);

/* The head of every kernel's per-node state: what it was prepared for, and how to let go. */
typedef struct kiln_cpu_cache {
    kiln_cpu_key key;
    bool unsupported;        /* oneDNN refused this key: the reference kernel runs it */
    void (*clear)(void *st); /* frees what the state holds (not the state) */
    uint32_t value_inputs;   /* bit k: input k's values are part of the key too (scales, zero points) */
    void *values;            /* those values as of the last build */
    size_t values_bytes;
} kiln_cpu_cache;
typedef kiln_status (*kiln_cpu_build_fn)(void *st, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out);

/* The node's state of `size` bytes (zeroed at first, a kiln_cpu_cache at its head), made on
 * the first run; NULL on OUT_OF_MEMORY (error set). */
void *kiln_cpu_state(const kiln_node *n, void **state, void (**state_free)(void *), size_t size, void (*clear)(void *));
/* Makes the state ready for these inputs: nothing when the key is unchanged, else clear and
 * build (reported under KILN_CPU_VERBOSE). UNSUPPORTED when oneDNN refused the key (remembered, so later runs do not ask again). */
kiln_status kiln_cpu_prepare(void *st, kiln_cpu_build_fn build, const kiln_node *n, kiln_tensor *const *in,
                             const kiln_tensor *out);

/* ---- small shared checks ---- */
/* in[k] is present with dtype t and a known rank. */
static inline bool kiln_cpu_is(kiln_tensor *const *in, int n_in, int k, kiln_dtype t) {
    return k < n_in && in[k] && in[k]->dtype == t && in[k]->rank >= 0;
}
/* Output j of n is not wanted (omitted in the model). */
static inline bool kiln_cpu_output_omitted(const kiln_node *n, int j) { return j >= n->n_outputs || n->outputs[j] < 0; }

/* ---- 8-bit tensors as floats (the int8 kernels) ---- */
static inline bool kiln_cpu_is_q8(const kiln_tensor *t) {
    return t && t->rank >= 0 && (t->dtype == KILN_DTYPE_U8 || t->dtype == KILN_DTYPE_I8);
}
/* dst = t - zp as floats (exact), for an 8-bit t. zp (NULL: 0) is per tensor, or has one value
 * per row of t's leading dim, or with per_col one per column of t's last dim. Returns max |dst|. */
float kiln_cpu_q8_to_float(const kiln_tensor *t, const kiln_tensor *zp, bool per_col, float *dst);
/* t's dims as an f32 tensor on data. */
kiln_tensor kiln_cpu_float_view(const kiln_tensor *t, void *data);

#endif /* KILN_CPU_DNNL_COMMON_H */
