// Causal dot product as a scan with the running state in registers.
//
// out[i, m] = sum_d q[i, d] * S_i[d, m],  S_i = S_init + sum_{j <= i} k[j, :]^T v[j, m]
//
// One block per (batch*head, tile of value columns); thread m keeps column m of the D x M state
// in registers (DMAX, a template constant, bounds the unrolled loops; d >= D is skipped). Each
// step stages q_i and k_i in shared memory. No atomics: every output element has one writer, so
// results are deterministic. The same kernel runs the backward pass: each gradient is this
// scan on other operands, the last two backwards in time (state gradients flow from the end):
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

// ---- The chunked algorithm in three kernels (any L, D, M) ---------------------------------
// (its equations: the docstring of kernels/causal_product/__init__.py)
//
// Positions are taken in "scan order" p = 0..L-1 (p -> i = L-1-p when reverse, so one set of
// kernels also runs the time-reversed scans of the backward pass), cut into chunks of CHUNK.
// Rows past L read as zero and are never written. Arrays are contiguous (B, L, X) and the
// per-chunk states (B, n_chunks, D, M). Blocks of 256 threads compute 64 x 64 output tiles,
// each thread a 4 x 4 micro-tile at rows ty + 16 r and columns tx + 16 c (conflict-free shared
// reads, coalesced writes); operands are staged in shared memory SLAB rows at a time.
// Each output element has one writer: no atomics, deterministic.

#define SEQLIB_CHUNK 64
#define SEQLIB_TILE 64

__device__ __forceinline__ long long seqlib_row(int p, int L, int reverse) {
    return reverse ? (long long)(L - 1 - p) : (long long)p;
}

// Stage rows [p0, p0 + SLAB) x columns [c0, c0 + 64) of x (B, L, X) as tile[row][column].
template <typename T, int SLAB>
__device__ __forceinline__ void seqlib_stage_rows(T (*tile)[SEQLIB_TILE + 1], const T* x,
                                                  long long b, int p0, int c0, int L, int X,
                                                  int reverse) {
    for (int e = threadIdx.x; e < SLAB * SEQLIB_TILE; e += blockDim.x) {
        const int r = e / SEQLIB_TILE, c = e % SEQLIB_TILE;
        const int p = p0 + r;
        tile[r][c] = (p < L && c0 + c < X) ? x[(b * L + seqlib_row(p, L, reverse)) * X + c0 + c]
                                           : T(0);
    }
}

// Stage columns [c0, c0 + SLAB) of rows [p0, p0 + 64) of x (B, L, X) transposed:
// tile[column][row], so a row's values for one column sit side by side.
template <typename T, int SLAB>
__device__ __forceinline__ void seqlib_stage_columns(T (*tile)[SEQLIB_TILE + 1], const T* x,
                                                     long long b, int p0, int c0, int L, int X,
                                                     int reverse) {
    for (int e = threadIdx.x; e < SLAB * SEQLIB_TILE; e += blockDim.x) {
        const int c = e % SLAB, r = e / SLAB;
        const int p = p0 + r;
        tile[c][r] = (p < L && c0 + c < X) ? x[(b * L + seqlib_row(p, L, reverse)) * X + c0 + c]
                                           : T(0);
    }
}

// acc[r][c] += sum_t a[t][ty + 16 r] * b[t][tx + 16 c]: one thread's 4 x 4 micro-tile of a
// 64 x 64 product, over the SLAB rows staged in shared memory.
template <typename T, int SLAB>
__device__ __forceinline__ void seqlib_accumulate(T (&acc)[4][4],
                                                  const T (*a)[SEQLIB_TILE + 1],
                                                  const T (*b)[SEQLIB_TILE + 1], int tx, int ty) {
#pragma unroll
    for (int t = 0; t < SLAB; ++t) {
        T x[4], w[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) x[r] = a[t][ty + 16 * r];
#pragma unroll
        for (int c = 0; c < 4; ++c) w[c] = b[t][tx + 16 * c];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[r][c] += x[r] * w[c];
    }
}

// u[b, chunk] = K_chunk^T V_chunk, one 64 x 64 tile (of D x M) per block.
// grid (B, n_chunks, tiles_D * tiles_M)
template <typename T, int SLAB>
__global__ void chunk_states(const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ u,
                             int L, int D, int M, int reverse) {
    __shared__ T ks[SLAB][SEQLIB_TILE + 1];
    __shared__ T vs[SLAB][SEQLIB_TILE + 1];
    const long long b = blockIdx.x;
    const int chunk = blockIdx.y;
    const int tiles_m = (M + SEQLIB_TILE - 1) / SEQLIB_TILE;
    const int d0 = (blockIdx.z / tiles_m) * SEQLIB_TILE, m0 = (blockIdx.z % tiles_m) * SEQLIB_TILE;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    T acc[4][4] = {};
    for (int t0 = 0; t0 < SEQLIB_CHUNK; t0 += SLAB) {
        const int p0 = chunk * SEQLIB_CHUNK + t0;
        seqlib_stage_rows<T, SLAB>(ks, k, b, p0, d0, L, D, reverse);
        seqlib_stage_rows<T, SLAB>(vs, v, b, p0, m0, L, M, reverse);
        __syncthreads();
        seqlib_accumulate<T, SLAB>(acc, ks, vs, tx, ty);
        __syncthreads();
    }
    T* out = u + ((b * gridDim.y + chunk) * (long long)D) * M;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int d = d0 + ty + 16 * r;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int m = m0 + tx + 16 * c;
            if (d < D && m < M) out[(long long)d * M + m] = acc[r][c];
        }
    }
}

// In place over u (B, n, D, M): u[b, c] <- state_in[b] + sum_{c' < c} u[b, c'] (exclusive
// prefix over chunks); state_out[b] <- the sum over all chunks. state_mode: 0 = no initial
// state (zeros; state_in is not read), 1 = state_in (B, D, M), 2 = state_in stored transposed
// (B, M, D). One thread per (b, d, m); the loads of a group of chunks are issued together to
// hide their latency.
// grid (B, ceil(D*M / blockDim.x))
template <typename T>
__global__ void chunk_prefix(T* __restrict__ u, const T* __restrict__ state_in,
                             T* __restrict__ state_out, int n, int D, int M, int state_mode) {
    const long long size = (long long)D * M;
    const long long e = (long long)blockIdx.y * blockDim.x + threadIdx.x;
    if (e >= size) return;
    const long long b = blockIdx.x;
    T running = T(0);
    if (state_mode != 0) {
        const long long d = e / M, m = e % M;
        running = state_in[b * size + (state_mode == 2 ? m * D + d : e)];
    }
    T* x = u + b * n * size + e;
    const int GROUP = 8;
    int c = 0;
    for (; c + GROUP <= n; c += GROUP) {
        T values[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; ++g) values[g] = x[(long long)(c + g) * size];
#pragma unroll
        for (int g = 0; g < GROUP; ++g) {
            x[(long long)(c + g) * size] = running;
            running += values[g];
        }
    }
    for (; c < n; ++c) {
        const T value = x[(long long)c * size];
        x[(long long)c * size] = running;
        running += value;
    }
    state_out[b * size + e] = running;
}

// out_chunk = Q_chunk S_chunk + tril(Q_chunk K_chunk^T) V_chunk for one 64-column tile of M.
// s: the states entering each chunk (B, n, D, M) from chunk_prefix, or stored transposed
// ((B, n, M, D), transposed_state != 0: the backward pass reuses one prefix for two outputs).
// grid (B, n_chunks, tiles_M)
template <typename T, int SLAB>
__global__ void chunk_output(const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const T* __restrict__ s,
                             T* __restrict__ out, int L, int D, int M, int reverse,
                             int transposed_state) {
    __shared__ T scores[SEQLIB_CHUNK][SEQLIB_CHUNK + 1];  // transposed: [column][row]
    __shared__ T xs[SLAB][SEQLIB_TILE + 1];
    __shared__ T ys[SLAB][SEQLIB_TILE + 1];
    const long long b = blockIdx.x;
    const int chunk = blockIdx.y;
    const int m0 = blockIdx.z * SEQLIB_TILE;
    const int p0 = chunk * SEQLIB_CHUNK;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    T acc[4][4] = {};
    // scores = Q K^T over D, SLAB columns at a time
    for (int d0 = 0; d0 < D; d0 += SLAB) {
        seqlib_stage_columns<T, SLAB>(xs, q, b, p0, d0, L, D, reverse);
        seqlib_stage_columns<T, SLAB>(ys, k, b, p0, d0, L, D, reverse);
        __syncthreads();
        seqlib_accumulate<T, SLAB>(acc, xs, ys, tx, ty);
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int row = ty + 16 * r, column = tx + 16 * c;
            scores[column][row] = column <= row ? acc[r][c] : T(0);
            acc[r][c] = T(0);
        }
    // acc = Q S over D ...
    const T* state = s + ((b * gridDim.y + chunk) * (long long)D) * M;
    for (int d0 = 0; d0 < D; d0 += SLAB) {
        seqlib_stage_columns<T, SLAB>(xs, q, b, p0, d0, L, D, reverse);
        for (int e = threadIdx.x; e < SLAB * SEQLIB_TILE; e += blockDim.x) {
            // neighbouring threads read neighbouring addresses in either layout
            const int r = transposed_state ? e % SLAB : e / SEQLIB_TILE;
            const int c = transposed_state ? e / SLAB : e % SEQLIB_TILE;
            const long long at = transposed_state ? (long long)(m0 + c) * D + d0 + r
                                                  : (long long)(d0 + r) * M + m0 + c;
            ys[r][c] = (d0 + r < D && m0 + c < M) ? state[at] : T(0);
        }
        __syncthreads();
        seqlib_accumulate<T, SLAB>(acc, xs, ys, tx, ty);
        __syncthreads();
    }
    // ... + scores V over the chunk's positions
    for (int t0 = 0; t0 < SEQLIB_CHUNK; t0 += SLAB) {
        seqlib_stage_rows<T, SLAB>(ys, v, b, p0 + t0, m0, L, M, reverse);
        __syncthreads();
        seqlib_accumulate<T, SLAB>(acc, scores + t0, ys, tx, ty);
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int p = p0 + ty + 16 * r;
        if (p >= L) continue;
        T* row = out + (b * L + seqlib_row(p, L, reverse)) * M;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int m = m0 + tx + 16 * c;
            if (m < M) row[m] = acc[r][c];
        }
    }
}
