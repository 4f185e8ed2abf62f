/* elementwise_fused.cu — the kernel of kiln.FusedElementwise: a program of float32 steps
 * (src/ops/ew_program.h, whose kiln_ewp_apply is the one definition the reference kernel uses
 * too) run per element over up to KILN_EWP_MAX_IN broadcast operands, one launch a node.
 *
 * The program is a kernel parameter (__grid_constant__: read from the constant bank, never
 * copied); every thread walks it step by step, the branch on the step's code uniform across
 * the warp. Registers live in a fixed array indexed through unrolled compares, so they stay in
 * hardware registers. Each thread computes N elements (16 bytes of the dtype) at a time:
 *   all operands contiguous or single-element (rank-1 views): grid-stride over 16-byte vectors
 *     on aligned data, a scalar tail;
 *   broadcast operands: merged dims with 32-bit fast division; N at a time along the innermost
 *     dim when it is a multiple of N and each operand runs contiguously there (one 16-byte
 *     load) or is broadcast there (one element repeated); else one element at a time (64-bit
 *     indices past 2^31 elements).
 * Launch shape: 256 threads, at most 4096 blocks (elementwise_common.cuh). */
#include "elementwise_common.cuh"
#include "kernels_ew_fused.h"

namespace ew {

constexpr int kMaxIn = KILN_EWP_MAX_IN;
constexpr int kRegs = KILN_EWP_MAX_REGS;

struct Operands {
    const void *x[kMaxIn];
};

/* N elements' registers; reads and writes by a run-time register number, unrolled. */
template <int N> struct Regs {
    float r[kRegs][N];
    __device__ __forceinline__ void get(int i, float (&out)[N]) const {
#pragma unroll
        for (int j = 0; j < N; j++) out[j] = r[0][j];
#pragma unroll
        for (int k = 1; k < kRegs; k++)
            if (i == k)
#pragma unroll
                for (int j = 0; j < N; j++) out[j] = r[k][j];
    }
    __device__ __forceinline__ void set(int i, const float (&v)[N]) {
#pragma unroll
        for (int k = 0; k < kRegs; k++)
            if (i == k)
#pragma unroll
                for (int j = 0; j < N; j++) r[k][j] = v[j];
    }
};

/* Runs the program over N elements whose operands are already in registers 0..n_in-1. */
template <int N> __device__ __forceinline__ void run_program(const kiln_ewp &p, Regs<N> &rg, float (&res)[N]) {
    for (int s = 0; s < p.n_ops; s++) {
        const kiln_ewp_step st = p.ops[s];
        float a[N], b[N], y[N];
        rg.get(st.a, a);
        rg.get(st.b, b);
#pragma unroll
        for (int j = 0; j < N; j++) y[j] = kiln_ewp_apply(st.code, a[j], b[j], st.alpha, st.beta);
        rg.set(st.dst, y); /* after both reads: dst may be an operand's register */
    }
    rg.get(p.out, res);
}

/* Runs the program over the N elements in registers and stores them as the v-th vector of y. */
template <class T, int N> __device__ __forceinline__ void run_store_vec(const kiln_ewp &p, Regs<N> &rg, T *y, int64_t v) {
    float res[N];
    run_program<N>(p, rg, res);
    Vec<T, N> out;
#pragma unroll
    for (int j = 0; j < N; j++) out.v[j] = FT<T>::store(res[j]);
    reinterpret_cast<Vec<T, N> *>(y)[v] = out;
}

/* Rank-1 views: operand k contiguous, or one element when scalar bit k is set. */
template <class T>
__global__ void __launch_bounds__(kThreads)
    k_fused_flat(const __grid_constant__ kiln_ewp p, Operands ops, unsigned scalar, T *y, int64_t n, int64_t nvec) {
    constexpr int N = 16 / sizeof(T);
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t v = t; v < nvec; v += stride) {
        Regs<N> rg;
#pragma unroll
        for (int k = 0; k < kMaxIn; k++) {
            if (k >= p.n_in) break;
            const T *x = (const T *)ops.x[k];
            if (scalar >> k & 1u) {
                float s = FT<T>::load(x[0]);
#pragma unroll
                for (int j = 0; j < N; j++) rg.r[k][j] = s;
            } else {
                Vec<T, N> xv = reinterpret_cast<const Vec<T, N> *>(x)[v];
#pragma unroll
                for (int j = 0; j < N; j++) rg.r[k][j] = FT<T>::load(xv.v[j]);
            }
        }
        run_store_vec<T, N>(p, rg, y, v);
    }
    for (int64_t i = nvec * N + t; i < n; i += stride) {
        Regs<1> rg;
#pragma unroll
        for (int k = 0; k < kMaxIn; k++) {
            if (k >= p.n_in) break;
            const T *x = (const T *)ops.x[k];
            rg.r[k][0] = FT<T>::load(x[(scalar >> k & 1u) ? 0 : i]);
        }
        float res[1];
        run_program<1>(p, rg, res);
        y[i] = FT<T>::store(res[0]);
    }
}

/* Broadcast walk, one element a thread step. */
template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    k_fused_geo(const __grid_constant__ kiln_ewp p, Operands ops, T *y, I n, Geo<I, kMaxIn> g) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I off[kMaxIn];
        geo_offsets(g, i, off);
        Regs<1> rg;
#pragma unroll
        for (int k = 0; k < kMaxIn; k++) {
            if (k >= p.n_in) break;
            rg.r[k][0] = FT<T>::load(((const T *)ops.x[k])[off[k]]);
        }
        float res[1];
        run_program<1>(p, rg, res);
        y[i] = FT<T>::store(res[0]);
    }
}

/* Broadcast walk N elements at a time along the innermost dim (a multiple of N): operand k is
 * loaded as one vector when bit k of vec is set, else its one element there is repeated. */
template <class T>
__global__ void __launch_bounds__(kThreads)
    k_fused_geo_vec(const __grid_constant__ kiln_ewp p, Operands ops, unsigned vec, T *y, uint32_t nvec,
                    Geo<uint32_t, kMaxIn> g) {
    constexpr int N = 16 / sizeof(T);
    uint32_t stride = gridDim.x * blockDim.x;
    for (uint32_t v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += stride) {
        uint32_t off[kMaxIn];
        geo_offsets(g, v * (uint32_t)N, off);
        Regs<N> rg;
#pragma unroll
        for (int k = 0; k < kMaxIn; k++) {
            if (k >= p.n_in) break;
            const T *x = (const T *)ops.x[k] + off[k];
            if (vec >> k & 1u) {
                Vec<T, N> xv = *reinterpret_cast<const Vec<T, N> *>(x);
#pragma unroll
                for (int j = 0; j < N; j++) rg.r[k][j] = FT<T>::load(xv.v[j]);
            } else {
                float s = FT<T>::load(x[0]);
#pragma unroll
                for (int j = 0; j < N; j++) rg.r[k][j] = s;
            }
        }
        run_store_vec<T, N>(p, rg, y, v);
    }
}

template <class T>
static cudaError_t launch_fused(const kiln_ewp *p, const void *const *x, const kiln_cuda_view *v, void *py,
                                cudaStream_t s) {
    constexpr int N = 16 / sizeof(T);
    int n_in = p->n_in;
    int64_t n = view_count(&v[0]);
    if (n <= 0) return cudaSuccess;
    T *y = (T *)py;
    Operands ops = {};
    for (int k = 0; k < n_in; k++) ops.x[k] = x[k];
    bool flat = views_flat(v, n_in) || v[0].rank == 1;
    unsigned scalar = 0;
    bool aligned = aligned_to(y, 16);
    for (int k = 0; k < n_in && flat; k++) {
        if (view_scalar(&v[k])) scalar |= 1u << k;
        else if (v[k].strides[v[k].rank - 1] != 1) flat = false;
        else aligned = aligned && aligned_to(x[k], 16);
    }
    if (flat) {
        int64_t nvec = aligned ? n / N : 0;
        k_fused_flat<T><<<blocks_for(nvec + (n - nvec * N)), kThreads, 0, s>>>(*p, ops, scalar, y, n, nvec);
        return cudaGetLastError();
    }
    kiln_cuda_view vv[kMaxIn];
    for (int k = 0; k < n_in; k++) vv[k] = v[k];
    unsigned vec = 0;
    bool vec_ok = n <= INT32_MAX && v[0].dims[v[0].rank - 1] % N == 0 && aligned_to(y, 16);
    for (int k = 0; k < n_in && vec_ok; k++) {
        bool kv;
        vec_ok = vec_operand(&v[k], x[k], sizeof(T), N, &kv);
        if (kv) vec |= 1u << k;
    }
    if (vec_ok) {
        int64_t nvec = n / N;
        k_fused_geo_vec<T><<<blocks_for(nvec), kThreads, 0, s>>>(*p, ops, vec, y, (uint32_t)nvec,
                                                                 make_geo<uint32_t, kMaxIn>(vv, n_in));
    } else if (n <= INT32_MAX) {
        k_fused_geo<T, uint32_t><<<blocks_for(n), kThreads, 0, s>>>(*p, ops, y, (uint32_t)n, make_geo<uint32_t, kMaxIn>(vv, n_in));
    } else {
        k_fused_geo<T, uint64_t><<<blocks_for(n), kThreads, 0, s>>>(*p, ops, y, (uint64_t)n, make_geo<uint64_t, kMaxIn>(vv, n_in));
    }
    return cudaGetLastError();
}

} // namespace ew

extern "C" cudaError_t kiln_ew_fused(int ct, const kiln_ewp *prog, const void *const *x, const kiln_cuda_view *v, void *y,
                                     cudaStream_t stream) {
    using namespace ew;
    if (!prog || prog->n_in < 1 || prog->n_in > kMaxIn || prog->n_regs > kRegs) return cudaErrorInvalidValue;
    switch (ct) {
    case KILN_CT_F32: return launch_fused<float>(prog, x, v, y, stream);
    case KILN_CT_F16: return launch_fused<__half>(prog, x, v, y, stream);
    case KILN_CT_BF16: return launch_fused<__nv_bfloat16>(prog, x, v, y, stream);
    default: return cudaErrorInvalidValue;
    }
}
