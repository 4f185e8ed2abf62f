/* context.h — the context struct, shared by the executor of the reference backend
 * (context.c) and that of the CUDA backend (src/backends/cuda/exec.c). */
#ifndef KILN_RUNTIME_CONTEXT_H
#define KILN_RUNTIME_CONTEXT_H

#include "engine.h"

typedef struct binding {
    void *data;
    size_t bytes;
    bool has_shape;
    int rank;
    int64_t dims[KILN_MAX_RANK];
} binding;

struct kiln_context {
    const kiln_engine *e;
    int profile;
    uint8_t *arena;
    uint64_t arena_bytes;
    bool naive;              /* KILN_NO_MEMORY_PLAN: every slot its own region */
    uint64_t *naive_offsets; /* per slot, when naive */
    binding *inputs;         /* per graph input */
    binding *outputs;        /* per graph output */
    kiln_tensor *slots;      /* per plan slot: the value as of the last run */
    bool *heap;              /* slot data was allocated at run time (dynamic) */
    kiln_slot_map map;       /* node output -> slot */
    int n_slots;
    bool ran;
    bool shapes_changed;     /* an input shape was set since the last successful run */
    kiln_layer_timer layer_timer; /* kiln_context_set_layer_timer, or NULL: layers untimed */
    void *layer_timer_user;
    kiln_run_timing timing;       /* of the last successful run */
    bool cuda_graph, transfers;   /* kiln_context_set_cuda_graph / _set_data_transfers */
    struct kiln_cuda_context *gpu; /* the CUDA executor's state, for a "cuda" engine */
    const struct kiln_cpu_op *cpu; /* the fast CPU kernels (src/backends/cpu); NULL: reference only */
    void **cpu_state;              /* per node: a fast kernel's prepared state, and its free */
    void (**cpu_state_free)(void *state);
};


#endif /* KILN_RUNTIME_CONTEXT_H */
