/* ew_program.h — the program of kiln.FusedElementwise: a short list of element-wise steps over
 * a few float32 registers, and the one definition of what each step computes.
 *
 * Plain C with no kiln types, so that the reference kernel (src/backends/ref/fused_ew.c), the
 * op's parse/infer (src/ops/fused_ew.c), the pass that writes programs (src/passes/ew_fuse.c)
 * and the CUDA kernel (src/backends/cuda/elementwise_fused.cu, through nvcc) share it.
 *
 * Execution of one output element: registers 0 .. n_in-1 hold the node's inputs at that element
 * (broadcast onto the output), converted to float32; step k computes
 *     r[dst] = code(r[a], r[b]; alpha, beta)          (b unused by one-operand codes)
 * in order; the result is the register written by the last step, rounded once to the output's
 * dtype. In the node (and so in engine files) a program is two attributes:
 *     program  INTS   4 per step: code, dst, a, b (b = -1 for one-operand codes)
 *     params   FLOATS 2 per step: alpha, beta (CONST: alpha is the value)
 * The code numbers below are part of the engine format: only append. */
#ifndef KILN_OPS_EW_PROGRAM_H
#define KILN_OPS_EW_PROGRAM_H

#include <math.h>
#include <stdint.h>

#define KILN_EWP_MAX_IN 4   /* tensor inputs of one node */
#define KILN_EWP_MAX_OPS 16 /* steps of one program */
#define KILN_EWP_MAX_REGS 8 /* registers, inputs included */

enum {
    KILN_EWP_CONST = 0,     /* alpha */
    /* one operand (a) */
    KILN_EWP_NEG, KILN_EWP_ABS, KILN_EWP_EXP, KILN_EWP_LOG, KILN_EWP_SQRT, KILN_EWP_RECIPROCAL,
    KILN_EWP_TANH, KILN_EWP_SIGMOID, KILN_EWP_ERF, KILN_EWP_RELU,
    KILN_EWP_LEAKY_RELU,    /* alpha */
    KILN_EWP_HARD_SIGMOID,  /* alpha, beta */
    KILN_EWP_HARD_SWISH,
    KILN_EWP_GELU,          /* erf form */
    KILN_EWP_GELU_TANH,
    KILN_EWP_CLIP,          /* [alpha, beta] = [min, max]; max wins when min > max, NaN passes */
    KILN_EWP_SWISH,         /* x * sigmoid(alpha * x) */
    /* two operands (a, b) */
    KILN_EWP_ADD, KILN_EWP_SUB, KILN_EWP_MUL, KILN_EWP_DIV, KILN_EWP_POW,
    KILN_EWP_MAX, KILN_EWP_MIN, /* NaN in either operand gives NaN (numpy.maximum/minimum) */
    KILN_EWP_COUNT
};

typedef struct kiln_ewp_step {
    uint8_t code, dst, a, b; /* b is 0 for one-operand codes */
    float alpha, beta;
} kiln_ewp_step;

typedef struct kiln_ewp {
    int n_in;   /* tensor inputs: registers 0 .. n_in-1 */
    int n_ops;  /* steps, 1 .. KILN_EWP_MAX_OPS */
    int n_regs; /* registers used (1 + the highest index), <= KILN_EWP_MAX_REGS */
    int out;    /* the result's register: the last step's dst */
    kiln_ewp_step ops[KILN_EWP_MAX_OPS];
} kiln_ewp;

#ifdef __CUDACC__
#define KILN_EWP_FN static __host__ __device__ __forceinline__
#else
#define KILN_EWP_FN static inline
#endif

KILN_EWP_FN int kiln_ewp_arity(int code) { return code == KILN_EWP_CONST ? 0 : code >= KILN_EWP_ADD ? 2 : 1; }

/* sigmoid without overflow for large |x| */
KILN_EWP_FN float kiln_ewp_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* One step in float32: the semantics of the ONNX ops it stands for (src/backends/ref/
 * activation.c, unary.c, binary.c, variadic.c and where_clip.c compute them in double). */
KILN_EWP_FN float kiln_ewp_apply(int code, float x, float y, float alpha, float beta) {
    switch (code) {
    case KILN_EWP_CONST: return alpha;
    case KILN_EWP_NEG: return -x;
    case KILN_EWP_ABS: return fabsf(x);
    case KILN_EWP_EXP: return expf(x);
    case KILN_EWP_LOG: return logf(x);
    case KILN_EWP_SQRT: return sqrtf(x);
    case KILN_EWP_RECIPROCAL: return 1.0f / x;
    case KILN_EWP_TANH: return tanhf(x);
    case KILN_EWP_SIGMOID: return kiln_ewp_sigmoid(x);
    case KILN_EWP_ERF: return erff(x);
    case KILN_EWP_RELU: return x < 0.0f ? 0.0f : x;
    case KILN_EWP_LEAKY_RELU: return x < 0.0f ? alpha * x : x;
    case KILN_EWP_HARD_SIGMOID: {
        float v = alpha * x + beta;
        return v != v ? v : v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    case KILN_EWP_HARD_SWISH: {
        float v = x / 6.0f + 0.5f;
        return x * (v != v ? v : v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v);
    }
    case KILN_EWP_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case KILN_EWP_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));
    case KILN_EWP_CLIP: {
        float v = x < alpha ? alpha : x; /* NaN < alpha is false: NaN stays */
        return v > beta ? beta : v;
    }
    case KILN_EWP_SWISH: return x * kiln_ewp_sigmoid(alpha * x);
    case KILN_EWP_ADD: return x + y;
    case KILN_EWP_SUB: return x - y;
    case KILN_EWP_MUL: return x * y;
    case KILN_EWP_DIV: return x / y;
    case KILN_EWP_POW: return y == 2.0f ? x * x : powf(x, y);
    case KILN_EWP_MAX: return x != x || x > y ? x : y;
    case KILN_EWP_MIN: return x != x || x < y ? x : y;
    default: return x;
    }
}

#endif /* KILN_OPS_EW_PROGRAM_H */
