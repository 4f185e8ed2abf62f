/* control.h — typed attributes of If, Loop and Scan, shared by their parse/infer (src/ops/
 * control.c) and reference kernels (src/backends/ref/control.c). */
#ifndef KILN_OPS_CONTROL_H
#define KILN_OPS_CONTROL_H

#include "op.h"

typedef struct kiln_control_params {
    kiln_graph *then_branch, *else_branch; /* If */
    kiln_graph *body;                      /* Loop, Scan */
    int num_scan_inputs;                   /* Scan */
    int64_t scan_input_axes[64], scan_input_directions[64];
    int64_t scan_output_axes[64], scan_output_directions[64];
    int n_scan_input_axes, n_scan_input_directions, n_scan_output_axes, n_scan_output_directions;
} kiln_control_params;

#endif /* KILN_OPS_CONTROL_H */
