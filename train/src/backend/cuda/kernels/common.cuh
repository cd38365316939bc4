// Shared helpers, pasted in front of every kernel file (NVRTC has no include path here).
// Grid-stride loop with 64-bit counters, so any length runs on any grid without overflow.
#define GRID_STRIDE(i, n)                                                        \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// Sum of `v` over the whole block; every thread gets the result. Needs blockDim.x to be a
// multiple of 32 and `sh` to hold 32 doubles. Doubles keep long reductions (N·H·W terms)
// within the parity tolerances against the CPU reference.
__device__ double block_sum(double v, double* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x >> 5;
    __syncthreads();  // earlier readers of sh[0] are done
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int nw = (blockDim.x + 31) >> 5;
        v = lane < nw ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}
