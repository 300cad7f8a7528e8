// Causal dot product as a scan with the running state in registers.
//
// out[i, m] = sum_d q[i, d] * S_i[d, m],  S_i = S_init + sum_{j <= i} k[j, :]^T v[j, m]
//
// One block per (batch*head, tile of value columns); thread m keeps column m of the D x M state
// in registers (DMAX, a template constant, bounds the unrolled loops; d >= D is skipped). Each
// step stages q_i and k_i in shared memory. No atomics: every output element has one writer, so
// results are deterministic. The same kernel runs the backward pass (see KERNELS.md):
//   grad_q = scan(grad_out, v, k), grad_k = reverse scan(v, grad_out, q),
//   grad_v = reverse scan(k, q, grad_out).
// Include-free so NVRTC can compile it without CUDA headers.

template <typename T, int DMAX>
__global__ void causal_scan(const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, const T* __restrict__ state_in,
                            T* __restrict__ out, T* __restrict__ state_out,
                            int L, int D, int M, int reverse) {
    __shared__ T shared_q[DMAX];
    __shared__ T shared_k[DMAX];
    const long long head = blockIdx.x;
    const int m = blockIdx.y * blockDim.x + threadIdx.x;
    const bool active = m < M;
    T state[DMAX];
#pragma unroll
    for (int d = 0; d < DMAX; ++d) {
        state[d] = (d < D && active && state_in != 0) ? state_in[(head * D + d) * M + m] : T(0);
    }
    for (int step = 0; step < L; ++step) {
        const long long i = reverse ? (L - 1 - step) : step;
        const T* q_i = q + (head * L + i) * D;
        const T* k_i = k + (head * L + i) * D;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            shared_q[d] = q_i[d];
            shared_k[d] = k_i[d];
        }
        __syncthreads();
        if (active) {
            const T v_im = v[(head * L + i) * M + m];
            T acc = T(0);
#pragma unroll
            for (int d = 0; d < DMAX; ++d) {
                if (d < D) {
                    state[d] += shared_k[d] * v_im;
                    acc += shared_q[d] * state[d];
                }
            }
            out[(head * L + i) * M + m] = acc;
        }
        __syncthreads();
    }
    if (state_out != 0 && active) {
#pragma unroll
        for (int d = 0; d < DMAX; ++d) {
            if (d < D) state_out[(head * D + d) * M + m] = state[d];
        }
    }
}
