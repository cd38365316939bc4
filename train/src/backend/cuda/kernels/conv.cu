// Convolution helpers around cuBLAS: im2col, col2im (gather, so deterministic), bias.
// Layouts: x [nb, C, H, W]; col [nb, C·K·K, OH·OW] (row = (c, kh, kw), column = output pixel).

extern "C" __global__ void im2col(const float* x, float* col, int nb, int C, int H, int W,
                                  int K, int S, int P, int OH, int OW) {
    long long ohw = (long long)OH * OW;
    long long rows = (long long)C * K * K;
    long long total = (long long)nb * rows * ohw;
    GRID_STRIDE(i, total) {
        long long pix = i % ohw;
        long long r = (i / ohw) % rows;
        long long n = i / (ohw * rows);
        int ow = (int)(pix % OW), oh = (int)(pix / OW);
        int kw = (int)(r % K), kh = (int)((r / K) % K), c = (int)(r / (K * K));
        int ih = oh * S - P + kh, iw = ow * S - P + kw;
        float v = 0.0f;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[((n * C + c) * H + ih) * W + iw];
        col[i] = v;
    }
}

// dx[n, c, ih, iw] = Σ over (kh, kw) whose window covers (ih, iw) of dcol. Writes, not adds.
extern "C" __global__ void col2im(const float* dcol, float* dx, int nb, int C, int H, int W,
                                  int K, int S, int P, int OH, int OW) {
    long long ohw = (long long)OH * OW;
    long long total = (long long)nb * C * H * W;
    GRID_STRIDE(i, total) {
        int iw = (int)(i % W), ih = (int)((i / W) % H);
        long long nc = i / ((long long)H * W);
        int c = (int)(nc % C);
        long long n = nc / C;
        const float* base = dcol + (n * C + c) * (long long)K * K * ohw;
        float s = 0.0f;
        for (int kh = 0; kh < K; ++kh) {
            int th = ih + P - kh;
            if (th < 0 || th % S != 0) continue;
            int oh = th / S;
            if (oh >= OH) continue;
            for (int kw = 0; kw < K; ++kw) {
                int tw = iw + P - kw;
                if (tw < 0 || tw % S != 0) continue;
                int ow = tw / S;
                if (ow >= OW) continue;
                s += base[(long long)(kh * K + kw) * ohw + (long long)oh * OW + ow];
            }
        }
        dx[i] = s;
    }
}

// y[n, c, p] += b[c].
extern "C" __global__ void bias_add(float* y, const float* b, int N, int C, int HW) {
    long long total = (long long)N * C * HW;
    GRID_STRIDE(i, total) y[i] += b[(i / HW) % C];
}

// db[c] += Σ_{n,p} dy[n, c, p]; one block per channel.
extern "C" __global__ void bias_grad(const float* dy, float* db, int N, int C, int HW) {
    __shared__ double sh[32];
    int c = blockIdx.x;
    double s = 0.0;
    for (int n = 0; n < N; ++n) {
        const float* row = dy + ((long long)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) s += row[p];
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) db[c] += (float)s;
}
