// Fused elementwise parts of one LSTM step (the h @ W_hh^T GEMM runs in cuBLAS before them).
//
// Gates are stored i, f, o, g per row (the kernels' internal order, see kernels/lstm/layout.py).
// sigmoid(x) = 0.5 * tanh(0.5 * x) + 0.5 never overflows. One thread per (row n, unit j).
// active: one byte per row, read only when masked != 0 (else every row is active); inactive
// rows keep their state.
// Include-free so NVRTC can compile it without CUDA headers.

template <typename T>
__device__ __forceinline__ T sigmoid_(T x) { return T(0.5) * tanh(T(0.5) * x) + T(0.5); }

template <typename T>
__global__ void lstm_step_forward(T* __restrict__ gates, const T* __restrict__ h_prev,
                                  const T* __restrict__ c_prev, T* __restrict__ h_new,
                                  T* __restrict__ c_new, T* __restrict__ tanh_c,
                                  const unsigned char* __restrict__ active, int masked, int N,
                                  int H) {
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)N * H) return;
    const long long n = index / H;
    const long long j = index - n * H;
    T* row = gates + n * 4 * H;
    const T i = sigmoid_(row[j]);
    const T f = sigmoid_(row[H + j]);
    const T o = sigmoid_(row[2 * H + j]);
    const T g = tanh(row[3 * H + j]);
    row[j] = i;
    row[H + j] = f;
    row[2 * H + j] = o;
    row[3 * H + j] = g;
    const T c = f * c_prev[index] + i * g;
    const T tc = tanh(c);
    tanh_c[index] = tc;
    if (masked == 0 || active[n]) {
        c_new[index] = c;
        h_new[index] = o * tc;
    } else {
        c_new[index] = c_prev[index];
        h_new[index] = h_prev[index];
    }
}

// dh: the hidden-state gradient carried from the next step; dy: this step's output gradient
// (ignored on inactive rows, whose output is a constant zero). Writes this step's gate
// gradients (i, f, o, g order), the cell gradient carried to the previous step, and dh_skip:
// the part of the carried hidden gradient that bypasses the cell (all of dh on inactive rows).
// The rest, d_gates @ W_hh, is a cuBLAS GEMM afterwards.
template <typename T>
__global__ void lstm_step_backward(const T* __restrict__ gates, const T* __restrict__ c_prev,
                                   const T* __restrict__ tanh_c, const T* __restrict__ dh,
                                   const T* __restrict__ dy, const T* __restrict__ dc,
                                   T* __restrict__ d_gates, T* __restrict__ dc_prev,
                                   T* __restrict__ dh_skip,
                                   const unsigned char* __restrict__ active, int masked,
                                   int N, int H) {
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)N * H) return;
    const long long n = index / H;
    const long long j = index - n * H;
    const T* row = gates + n * 4 * H;
    T* d_row = d_gates + n * 4 * H;
    const bool on = masked == 0 || active[n];
    const T dh_step = on ? dh[index] + dy[index] : T(0);
    const T dc_step = on ? dc[index] : T(0);
    const T i = row[j], f = row[H + j], o = row[2 * H + j], g = row[3 * H + j];
    const T tc = tanh_c[index];
    const T dc_total = dc_step + dh_step * o * (T(1) - tc * tc);
    d_row[j] = dc_total * g * i * (T(1) - i);
    d_row[H + j] = dc_total * c_prev[index] * f * (T(1) - f);
    d_row[2 * H + j] = dh_step * tc * o * (T(1) - o);
    d_row[3 * H + j] = dc_total * i * (T(1) - g * g);
    dc_prev[index] = dc_total * f + (on ? T(0) : dc[index]);
    dh_skip[index] = on ? T(0) : dh[index];
}
