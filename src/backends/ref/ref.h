/* ref.h — the reference backend's graph interpreter: runs a graph node by node with each op's
 * infer function (shapes from the real inputs) and reference kernel. Slow and obvious on
 * purpose: it defines what every op means and is the oracle for every other backend. */
#ifndef KILN_BACKENDS_REF_H
#define KILN_BACKENDS_REF_H

#include "../../ir/graph.h"

/* The costliest reference kernels (Conv, MatMul, Gemm, Attention) split independent output rows
 * over OpenMP threads when they do more than this many multiply-adds. Every output is still summed
 * by one thread in one order, so results do not depend on the thread count (OMP_NUM_THREADS). */
#define KILN_REF_PARALLEL_MIN (1 << 18)

/* Runs g. inputs[i] binds graph input i (NULL: use its initializer, an error if it has none);
 * captures[c] binds captured outer value c (g->captures); outputs[j] receives graph output j
 * as a tensor owning its data (the caller releases it with kiln_tensor_release). Inputs are
 * only read. On failure no output is left allocated. */
kiln_status kiln_ref_run_graph(const kiln_graph *g, kiln_tensor *const *inputs, kiln_tensor *const *captures,
                               kiln_tensor *outputs);

/* Called with every value a node of the top graph produces, right after the node ran (the
 * tensor is only valid during the call). A non-OK status stops the run with that status. */
typedef kiln_status (*kiln_ref_observer)(const kiln_graph *g, int value, const kiln_tensor *t, void *user);

/* kiln_ref_run_graph with an observer (calibration, debugging); observe may be NULL. */
kiln_status kiln_ref_run_graph_observed(const kiln_graph *g, kiln_tensor *const *inputs, kiln_tensor *const *captures,
                                        kiln_tensor *outputs, kiln_ref_observer observe, void *user);

#endif /* KILN_BACKENDS_REF_H */
