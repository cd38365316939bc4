// Bilinear resize with half-pixel centres (PyTorch align_corners=False): source coordinate
// s = (d + 0.5)·in/out − 0.5, clamped below at 0; the upper neighbour clamps to the edge.

__device__ void src_coord(int d, int in, int out, int* i0, int* i1, float* l1) {
    float scale = (float)in / (float)out;
    float s = scale * ((float)d + 0.5f) - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int a = (int)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = s - (float)a;
}

// x [NC, H, W] → y [NC, OH, OW].
extern "C" __global__ void resize_forward(const float* x, float* y, int NC, int H, int W, int OH,
                                          int OW) {
    long long total = (long long)NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ox = (int)(i % OW), oy = (int)((i / OW) % OH);
        long long nc = i / ((long long)OH * OW);
        int y0, y1, x0, x1;
        float ly, lx;
        src_coord(oy, H, OH, &y0, &y1, &ly);
        src_coord(ox, W, OW, &x0, &x1, &lx);
        const float* p = x + nc * H * W;
        float hy = 1.0f - ly, hx = 1.0f - lx;
        y[i] = hy * (hx * p[y0 * W + x0] + lx * p[y0 * W + x1]) +
               ly * (hx * p[y1 * W + x0] + lx * p[y1 * W + x1]);
    }
}

// Scatter of each dy into its four sources; dx must start at zero.
extern "C" __global__ void resize_backward(const float* dy, float* dx, int NC, int H, int W,
                                           int OH, int OW) {
    long long total = (long long)NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ox = (int)(i % OW), oy = (int)((i / OW) % OH);
        long long nc = i / ((long long)OH * OW);
        int y0, y1, x0, x1;
        float ly, lx;
        src_coord(oy, H, OH, &y0, &y1, &ly);
        src_coord(ox, W, OW, &x0, &x1, &lx);
        float* p = dx + nc * H * W;
        float g = dy[i], hy = 1.0f - ly, hx = 1.0f - lx;
        atomicAdd(&p[y0 * W + x0], hy * hx * g);
        atomicAdd(&p[y0 * W + x1], hy * lx * g);
        atomicAdd(&p[y1 * W + x0], ly * hx * g);
        atomicAdd(&p[y1 * W + x1], ly * lx * g);
    }
}
