// Elementwise ops and the SGD step: one thread per element.

extern "C" __global__ void fill_f32(float* x, float v, int n) {
    GRID_STRIDE(i, n) x[i] = v;
}

extern "C" __global__ void add_f32(const float* a, const float* b, float* y, int n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

extern "C" __global__ void add_assign_f32(float* acc, const float* x, int n) {
    GRID_STRIDE(i, n) acc[i] += x[i];
}

extern "C" __global__ void scale_f32(float* x, float s, int n) {
    GRID_STRIDE(i, n) x[i] *= s;
}

// NaN maps to 0 like f32::max(x, 0.0) on the CPU.
extern "C" __global__ void relu_forward(const float* x, float* y, int n) {
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

extern "C" __global__ void relu_backward(const float* dy, const float* y, float* dx, int n) {
    GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// PyTorch SGD: g = grad + wd·p; v = μ·v + g; p -= lr·v.
extern "C" __global__ void sgd_step(float* p, const float* grad, float* v, float lr, float mu,
                                    float wd, int n) {
    GRID_STRIDE(i, n) {
        float g = grad[i] + wd * p[i];
        float vi = mu * v[i] + g;
        v[i] = vi;
        p[i] = p[i] - lr * vi;
    }
}
