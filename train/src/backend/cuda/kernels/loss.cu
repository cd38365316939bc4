// Softmax cross-entropy with ignore label and class weights, and per-pixel argmax.
// Logits [N, C, HW]; labels [N, HW] (u8, 255 = ignore; ids ≥ C are skipped the same way).
#define IGNORE_LABEL 255

// Per pixel: the weighted loss term, its weight, and the unnormalised gradient
// w·(softmax − onehot), which ce_reduce's 1/Σw later scales into the mean's gradient.
extern "C" __global__ void ce_pixel(const float* logits, const unsigned char* labels,
                                    const float* weights, int has_weights, float* grad,
                                    float* pix_loss, float* pix_w, int N, int C, int HW) {
    long long pixels = (long long)N * HW;
    GRID_STRIDE(i, pixels) {
        long long n = i / HW, p = i % HW;
        long long base = n * C * HW + p;
        int y = labels[i];
        if (y == IGNORE_LABEL || y >= C) {
            for (int c = 0; c < C; ++c) grad[base + (long long)c * HW] = 0.0f;
            pix_loss[i] = 0.0f;
            pix_w[i] = 0.0f;
            continue;
        }
        float m = logits[base];
        for (int c = 1; c < C; ++c) m = fmaxf(m, logits[base + (long long)c * HW]);
        float s = 0.0f;
        for (int c = 0; c < C; ++c) s += expf(logits[base + (long long)c * HW] - m);
        float lse = m + logf(s);
        float w = has_weights ? weights[y] : 1.0f;
        pix_loss[i] = w * (lse - logits[base + (long long)y * HW]);
        pix_w[i] = w;
        for (int c = 0; c < C; ++c) {
            long long k = base + (long long)c * HW;
            float prob = expf(logits[k] - m) / s;
            grad[k] = w * (prob - (c == y ? 1.0f : 0.0f));
        }
    }
}

// One block: loss = Σ pix_loss / Σ pix_w and inv_w = 1 / Σ pix_w (both 0 without weight).
extern "C" __global__ void ce_reduce(const float* pix_loss, const float* pix_w, int P,
                                     float* loss, float* inv_w) {
    __shared__ double sh[32];
    double l = 0.0, w = 0.0;
    for (int i = threadIdx.x; i < P; i += blockDim.x) {
        l += pix_loss[i];
        w += pix_w[i];
    }
    l = block_sum(l, sh);
    w = block_sum(w, sh);
    if (threadIdx.x == 0) {
        loss[0] = w > 0.0 ? (float)(l / w) : 0.0f;
        inv_w[0] = w > 0.0 ? (float)(1.0 / w) : 0.0f;
    }
}

// x *= s[0], with the scalar read on the device (no host round trip).
extern "C" __global__ void scale_by_scalar(float* x, const float* s, int n) {
    float k = s[0];
    GRID_STRIDE(i, n) x[i] *= k;
}

// First maximum wins on ties, like PyTorch and NumPy.
extern "C" __global__ void argmax_channels(const float* logits, unsigned char* out, int N, int C,
                                           int HW) {
    long long pixels = (long long)N * HW;
    GRID_STRIDE(i, pixels) {
        long long n = i / HW, p = i % HW;
        const float* v = logits + n * C * HW + p;
        float best = v[0];
        int arg = 0;
        for (int c = 1; c < C; ++c) {
            float x = v[(long long)c * HW];
            if (x > best) {
                best = x;
                arg = c;
            }
        }
        out[i] = (unsigned char)arg;
    }
}
