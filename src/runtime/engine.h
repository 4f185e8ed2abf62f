/* engine.h — the engine (an optimized graph, its optimization profiles and memory plans, its
 * weights) and the builder's configuration, shared by src/runtime/ and src/plan/ (the .kiln
 * file). The public face is kiln_builder_* / kiln_engine_* / kiln_context_* in kiln.h.
 *
 * An engine is immutable once built or loaded: contexts only read it, so any number of them
 * may run at once on different threads. */
#ifndef KILN_RUNTIME_ENGINE_H
#define KILN_RUNTIME_ENGINE_H

#include "../onnx/export.h"
#include "../onnx/import.h"
#include "../passes/passes.h"

typedef struct kiln_engine kiln_engine;

/* Where a planned value lives. */
#define KILN_PLAN_EXTERNAL (-1) /* a constant, a graph input or (bound) output: not in the arena */
#define KILN_PLAN_DYNAMIC (-2)  /* size depends on data (NonZero, Loop...): allocated at run time */

#define KILN_ARENA_ALIGN 64

/* min/opt/max dims of one graph input in one profile. */
typedef struct kiln_profile_dims {
    int rank; /* -1: not set (the input is static or a constant) */
    int64_t min[KILN_MAX_RANK], opt[KILN_MAX_RANK], max[KILN_MAX_RANK];
} kiln_profile_dims;

typedef struct kiln_slot_plan {
    int64_t offset; /* in the arena, or KILN_PLAN_EXTERNAL / KILN_PLAN_DYNAMIC */
    uint64_t bytes; /* the most this value needs within the profile */
} kiln_slot_plan;

/* The memory plan of one profile. Slots are the graph's values (ids 0..n_values-1) followed by
 * one slot per omitted optional node output, numbered in node order (kiln_slot_map). */
typedef struct kiln_mem_plan {
    int n_slots;
    kiln_slot_plan *slots;
    uint64_t arena_bytes; /* what a context allocates */
    uint64_t naive_bytes; /* the sum of every planned value: what no reuse would need */
    int n_inplace;        /* outputs sharing their input's memory */
    int n_dynamic;        /* values whose size is only known at run time */
} kiln_mem_plan;

typedef struct kiln_profile {
    kiln_profile_dims *inputs; /* one per graph input */
    kiln_mem_plan plan;
} kiln_profile;

/* Per-layer build decisions, shown by kiln inspect. */
typedef struct kiln_layer_info {
    const char *kernel;    /* "ref" */
    const char *precision; /* "fp32" (the reference kernels compute in the tensors' own dtype) */
} kiln_layer_info;

struct kiln_engine {
    kiln_model model;      /* the optimized graph (and, for a loaded engine, its protobuf) */
    kiln_profile *profiles;
    int n_profiles;
    char backend[16];      /* "ref" */
    char device[96];       /* "cpu", or the GPU's name */
    unsigned precisions;   /* KILN_PRECISION_* allowed at build */
    kiln_pass_report passes;
    char pass_names[32][32]; /* storage for a loaded engine's pass names */
    int nodes_before;      /* in the imported graph, before passes */
    const void *file_map;  /* a loaded engine's mapping of its .kiln file (weights point into it) */
    size_t file_size;
    /* the CUDA backend: the GPU it was tuned for, each node's tactic, the device state */
    int cuda_cc;           /* compute capability major*10+minor, 0 for CPU engines */
    int *tactics;          /* per node, -1 where none was chosen; NULL for CPU engines */
    char tuning_note[240]; /* why the tuning run stopped early (its nodes keep default tactics), or "" */
    bool host_fallback;    /* nodes without a GPU kernel run on the host (kiln_builder_set_host_fallback) */
    struct kiln_cuda_engine *gpu;
};

struct kiln_builder {
    kiln_device device;
    unsigned precisions;
    int opt_level;         /* 0: no passes; 1: folding and cleanup; 2: and fusions (default) */
    uint64_t workspace;
    int n_profiles;
    struct builder_profile {
        int n;
        struct builder_shape { char *name; kiln_profile_dims d; } *shapes;
    } *profiles;
    int n_layer_precisions;
    struct { char *node; kiln_precision p; } *layer_precisions;
    /* INT8 calibration (kiln_builder_set_calibration) */
    char *calib_data, *calib_method, *calib_cache;
    int64_t calib_batch, calib_max;
    void (*calib_progress)(int64_t done, int64_t total, void *user);
    void *calib_user;
    char *timing_cache;    /* the CUDA backend's tactic timing cache file, or NULL */
    bool host_fallback;
    kiln_calibrator calibrator; /* kiln_builder_set_calibrator, when has_calibrator */
    bool has_calibrator;
};

/* The slot written by each node output (see kiln_mem_plan): slot[first[i] + j] for output j of
 * node i. Built once per graph (planner, context), so no lookup walks the graph. */
typedef struct kiln_slot_map {
    int *first; /* per node: index of its first output in slot[] */
    int *slot;  /* per node output, in node order */
} kiln_slot_map;
kiln_status kiln_slot_map_build(const kiln_graph *g, kiln_slot_map *m);
void kiln_slot_map_free(kiln_slot_map *m);
static inline int kiln_slot_of(const kiln_slot_map *m, int node, int output) { return m->slot[m->first[node] + output]; }
int kiln_plan_num_slots(const kiln_graph *g);

/* Plans memory for one profile (the engine's graph, its profile dims) into plan. */
kiln_status kiln_plan_memory(const kiln_graph *g, const kiln_profile_dims *inputs, kiln_mem_plan *plan);
/* The name of KILN_PRECISION_* bit k ("fp32", "fp16", "bf16", "int8", "tf32"), NULL past the last. */
const char *kiln_precision_bit_name(int k);
/* The graph outputs' dtypes and shapes (no data) for these input shapes (input_types: one per
 * graph input, rank < 0 for the declared type), by the planner's shape inference; a dim that
 * depends on data comes out negative. */
kiln_status kiln_infer_output_shapes(const kiln_graph *g, const kiln_tensor *input_types, kiln_tensor *outs);
void kiln_mem_plan_free(kiln_mem_plan *plan);

/* Ops whose output 0 may share input 0's memory; alias ops need no kernel call at all then. */
bool kiln_op_inplace(int op);
bool kiln_op_alias(int op);

void kiln_engine_free_contents(kiln_engine_t *e);
/* What the passes did, as a cJSON array (returned as void * to keep cJSON out of this header). */
void *kiln_passes_json(const kiln_pass_report *r);

/* The .kiln file (src/plan/kiln_file.c). */
kiln_status kiln_engine_write(const kiln_engine_t *e, kiln_blob *out);
kiln_status kiln_engine_read(const void *data, size_t size, const char *what, kiln_engine_t *e);

#endif /* KILN_RUNTIME_ENGINE_H */
