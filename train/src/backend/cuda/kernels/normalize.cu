// Per-pixel L2 normalisation over channels, z = v / max(‖v‖, 1e-12): one thread per pixel.
#define L2_EPS 1e-12f

extern "C" __global__ void l2n_forward(const float* x, float* z, int N, int C, int HW) {
    long long pixels = (long long)N * HW;
    GRID_STRIDE(i, pixels) {
        long long n = i / HW, p = i % HW;
        const float* v = x + n * C * HW + p;
        float ss = 0.0f;
        for (int c = 0; c < C; ++c) ss += v[(long long)c * HW] * v[(long long)c * HW];
        float d = fmaxf(sqrtf(ss), L2_EPS);
        float* o = z + n * C * HW + p;
        for (int c = 0; c < C; ++c) o[(long long)c * HW] = v[(long long)c * HW] / d;
    }
}

// Above the clamp dx = (dy − z·(z·dy)) / ‖v‖; at the clamp the denominator is a constant.
extern "C" __global__ void l2n_backward(const float* dy, const float* x, float* dx, int N, int C,
                                        int HW) {
    long long pixels = (long long)N * HW;
    GRID_STRIDE(i, pixels) {
        long long n = i / HW, p = i % HW;
        long long base = n * C * HW + p;
        float ss = 0.0f, dot = 0.0f;
        for (int c = 0; c < C; ++c) {
            float v = x[base + (long long)c * HW];
            ss += v * v;
            dot += v * dy[base + (long long)c * HW];
        }
        float norm = sqrtf(ss);
        if (norm > L2_EPS) {
            float zdot = dot / norm;  // z·dy
            for (int c = 0; c < C; ++c) {
                long long k = base + (long long)c * HW;
                float z = x[k] / norm;
                dx[k] = (dy[k] - z * zdot) / norm;
            }
        } else {
            for (int c = 0; c < C; ++c) {
                long long k = base + (long long)c * HW;
                dx[k] = dy[k] / L2_EPS;
            }
        }
    }
}
