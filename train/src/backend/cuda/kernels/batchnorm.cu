// Batch norm over N, H, W per channel: one block per channel, statistics in double.

extern "C" __global__ void bn_forward_train(const float* x, float* y, const float* gamma,
                                            const float* beta, float* running_mean,
                                            float* running_var, float* mean_out,
                                            float* invstd_out, int N, int C, int HW,
                                            float momentum, float eps) {
    __shared__ double sh[32];
    int c = blockIdx.x;
    double m = (double)N * HW;
    double s = 0.0;
    for (int n = 0; n < N; ++n) {
        const float* row = x + ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) s += row[p];
    }
    double mean = block_sum(s, sh) / m;
    double q = 0.0;
    for (int n = 0; n < N; ++n) {
        const float* row = x + ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) {
            double d = row[p] - mean;
            q += d * d;
        }
    }
    double var = block_sum(q, sh) / m;  // biased: used to normalise
    float meanf = (float)mean;
    float invstd = 1.0f / sqrtf((float)var + eps);
    float g = gamma[c], b = beta[c];
    for (int n = 0; n < N; ++n) {
        long long off = ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x)
            y[off + p] = (x[off + p] - meanf) * invstd * g + b;
    }
    if (threadIdx.x == 0) {
        float unbiased = (float)(var * m / (m - 1.0));  // the host rejects m < 2
        mean_out[c] = meanf;
        invstd_out[c] = invstd;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * meanf;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
}

extern "C" __global__ void bn_forward_eval(const float* x, float* y, const float* gamma,
                                           const float* beta, const float* running_mean,
                                           const float* running_var, int N, int C, int HW,
                                           float eps) {
    long long total = (long long)N * C * HW;
    GRID_STRIDE(i, total) {
        int c = (int)((i / HW) % C);
        float invstd = 1.0f / sqrtf(running_var[c] + eps);
        y[i] = (x[i] - running_mean[c]) * invstd * gamma[c] + beta[c];
    }
}

// dx = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)); dγ += Σ dy·x̂; dβ += Σ dy.
extern "C" __global__ void bn_backward(const float* dy, const float* x, const float* gamma,
                                       const float* mean, const float* invstd, float* dx,
                                       float* dgamma, float* dbeta, int N, int C, int HW) {
    __shared__ double sh[32];
    int c = blockIdx.x;
    double m = (double)N * HW;
    float mu = mean[c], is = invstd[c];
    double sdy = 0.0, sdyx = 0.0;
    for (int n = 0; n < N; ++n) {
        long long off = ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) {
            float d = dy[off + p];
            sdy += d;
            sdyx += (double)d * ((x[off + p] - mu) * is);
        }
    }
    sdy = block_sum(sdy, sh);
    sdyx = block_sum(sdyx, sh);
    float mdy = (float)(sdy / m), mdyx = (float)(sdyx / m);
    float k = gamma[c] * is;
    for (int n = 0; n < N; ++n) {
        long long off = ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) {
            float xh = (x[off + p] - mu) * is;
            dx[off + p] = k * (dy[off + p] - mdy - xh * mdyx);
        }
    }
    if (threadIdx.x == 0) {
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
    }
}
