/* ref.h — the reference backend's graph interpreter: runs a graph node by node with each op's
 * infer function (shapes from the real inputs) and reference kernel. Slow and obvious on
 * purpose: it defines what every op means and is the oracle for every other backend. */
#ifndef KILN_BACKENDS_REF_H
#define KILN_BACKENDS_REF_H

#include "../../ir/graph.h"

/* Runs g. inputs[i] binds graph input i (NULL: use its initializer, an error if it has none);
 * captures[c] binds captured outer value c (g->captures); outputs[j] receives graph output j
 * as a tensor owning its data (the caller releases it with kiln_tensor_release). Inputs are
 * only read. On failure no output is left allocated. */
kiln_status kiln_ref_run_graph(const kiln_graph *g, kiln_tensor *const *inputs, kiln_tensor *const *captures,
                               kiln_tensor *outputs);

#endif /* KILN_BACKENDS_REF_H */
