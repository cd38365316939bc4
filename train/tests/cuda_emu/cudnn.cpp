// An emulated cuDNN 9 (libcudnn.so.9) over the emulated driver (driver.cpp): the handle,
// descriptor and legacy-convolution calls the CUDA backend makes (backend/cuda/cudnn.rs), NCHW
// float cross-correlation computed directly. It checks what a real cuDNN checks (descriptor
// geometry against each other, known algorithms, a workspace at least as large as the algorithm
// needs) and what a GPU checks by faulting (every tensor and the workspace inside device memory,
// to the last byte). Its heuristics offer, fastest first, an algorithm needing a huge workspace,
// one that is not supported, a non-deterministic one and a deterministic one, so the backend's
// choice among them is exercised; the workspace is scribbled over on every launch.
// CUDNN_EMU_VERSION sets what cudnnGetVersion reports (default 90300, cuDNN 9.3.0 as on
// JetPack 6.1).
#include "abi.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

typedef int cudnnStatus_t;
enum : cudnnStatus_t {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_INITIALIZED = 1001,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_BAD_PARAM_NULL_POINTER = 2002,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_EXECUTION_FAILED = 5000,
};
enum { CUDNN_TENSOR_NCHW = 0, CUDNN_DATA_FLOAT = 0, CUDNN_CROSS_CORRELATION = 1 };
enum { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 };

namespace {
struct Handle {
    void* stream = nullptr;
};
struct Tensor {
    int n = 0, c = 0, h = 0, w = 0;
    bool set = false;
    long long numel() const { return (long long)n * c * h * w; }
};
struct Filter {
    int k = 0, c = 0, r = 0, s = 0;
    bool set = false;
    long long numel() const { return (long long)k * c * r * s; }
};
struct Conv {
    int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, mode = -1, math = 0;
    bool set = false;
};
// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t: all three share this layout.
struct Perf {
    int algo;
    cudnnStatus_t status;
    float time;
    std::size_t memory;
    int determinism;
    int math_type;
    int reserved[3];
};
struct Offer {
    int algo;
    cudnnStatus_t status;
    int determinism;
    // Workspace bytes: 0, "huge" (1 TiB, beyond any budget) or per output element.
    enum { NONE, HUGE_WS, PER_ELEMENT } ws;
};

enum Op { FWD, BWD_DATA, BWD_FILTER };
// Fastest first, as cuDNN orders its heuristics.
const std::vector<Offer>& offers(Op op) {
    static const std::vector<Offer> fwd = {{4, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, Offer::HUGE_WS},
                                           {6, CUDNN_STATUS_NOT_SUPPORTED, CUDNN_DETERMINISTIC, Offer::NONE},
                                           {0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, Offer::NONE},
                                           {1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, Offer::PER_ELEMENT}};
    static const std::vector<Offer> data = {{2, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, Offer::HUGE_WS},
                                            {0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, Offer::NONE},
                                            {1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, Offer::PER_ELEMENT}};
    static const std::vector<Offer> filter = {{0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, Offer::NONE},
                                              {5, CUDNN_STATUS_NOT_SUPPORTED, CUDNN_DETERMINISTIC, Offer::NONE},
                                              {3, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, Offer::PER_ELEMENT},
                                              {1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, Offer::PER_ELEMENT}};
    return op == FWD ? fwd : op == BWD_DATA ? data : filter;
}

// The output of x under w and conv, as cudnnGetConvolution2dForwardOutputDim computes it.
int out_dim(int in, int pad, int filter, int stride, int dil) {
    return 1 + (in + 2 * pad - (dil * (filter - 1) + 1)) / stride;
}

// Whether the four descriptors describe one convolution (x → y under w), as cuDNN checks.
cudnnStatus_t check(const Tensor* x, const Filter* w, const Conv* c, const Tensor* y) {
    if (!x || !w || !c || !y) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (!x->set || !w->set || !c->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
    if (c->mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_NOT_SUPPORTED;
    if (x->c != w->c || y->n != x->n || y->c != w->k) return CUDNN_STATUS_BAD_PARAM;
    if (y->h != out_dim(x->h, c->pad_h, w->r, c->u, c->dil_h) ||
        y->w != out_dim(x->w, c->pad_w, w->s, c->v, c->dil_w))
        return CUDNN_STATUS_BAD_PARAM;
    return CUDNN_STATUS_SUCCESS;
}

const Offer* find(Op op, int algo) {
    for (const Offer& o : offers(op))
        if (o.algo == algo && o.status == CUDNN_STATUS_SUCCESS) return &o;
    return nullptr;
}

std::size_t bytes_for(const Offer& o, const Tensor* y) {
    switch (o.ws) {
        case Offer::HUGE_WS: return (std::size_t)1 << 40;
        case Offer::PER_ELEMENT: return (std::size_t)y->numel() * sizeof(float) + 64;
        default: return 0;
    }
}

cudnnStatus_t heuristics(Op op, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y,
                         int requested, int* returned, Perf* perf) {
    if (cudnnStatus_t s = check(x, w, c, y)) return s;
    if (!returned || !perf || requested < 1) return CUDNN_STATUS_BAD_PARAM;
    int n = 0;
    for (const Offer& o : offers(op)) {
        if (n == requested) break;
        perf[n++] = Perf{o.algo, o.status, 0.01f * (n + 1), bytes_for(o, y), o.determinism, c->math, {0, 0, 0}};
    }
    *returned = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t workspace_size(Op op, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y,
                             int algo, std::size_t* bytes) {
    if (cudnnStatus_t s = check(x, w, c, y)) return s;
    const Offer* o = find(op, algo);
    if (!o) return CUDNN_STATUS_NOT_SUPPORTED;
    if (!bytes) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *bytes = bytes_for(*o, y);
    return CUDNN_STATUS_SUCCESS;
}

bool on_device(const void* p, long long floats) {
    return floats == 0 || (p && emu_device_range_ok(p, (std::size_t)floats * sizeof(float)));
}

// Everything a launch checks before it computes: descriptors, algorithm, workspace, pointers.
cudnnStatus_t launch_checks(const char* what, Op op, Handle* h, const Tensor* x, const void* xp,
                            const Filter* w, const void* wp, const Conv* c, int algo, void* ws,
                            std::size_t ws_bytes, const Tensor* y, const void* yp, const float* alpha,
                            const float* beta) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    if (cudnnStatus_t s = check(x, w, c, y)) return s;
    if (!alpha || !beta) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    const Offer* o = find(op, algo);
    if (!o) return CUDNN_STATUS_NOT_SUPPORTED;
    std::size_t need = bytes_for(*o, y);
    if (ws_bytes < need) {
        std::fprintf(stderr, "emulated cuDNN: %s algo %d needs %zu workspace bytes, got %zu\n", what, algo,
                     need, ws_bytes);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!on_device(xp, x->numel()) || !on_device(wp, w->numel()) || !on_device(yp, y->numel()) ||
        (ws_bytes > 0 && !(ws && emu_device_range_ok(ws, ws_bytes)))) {
        std::fprintf(stderr, "emulated cuDNN: %s: a tensor or the workspace runs past its device buffer\n", what);
        return CUDNN_STATUS_EXECUTION_FAILED;
    }
    if (ws_bytes > 0) std::memset(ws, 0x5a, ws_bytes);
    return CUDNN_STATUS_SUCCESS;
}

// beta = 0 overwrites without reading, as cuDNN does (the output may hold garbage).
inline void blend(float& out, float alpha, float sum, float beta) {
    out = beta == 0.0f ? alpha * sum : alpha * sum + beta * out;
}
}  // namespace

extern "C" {

std::size_t cudnnGetVersion() {
    const char* v = std::getenv("CUDNN_EMU_VERSION");
    return v ? std::strtoull(v, nullptr, 10) : 90300;
}

const char* cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
        case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
        case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
        case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
        default: return "CUDNN_STATUS (emulated)";
    }
}

cudnnStatus_t cudnnCreate(Handle** h) {
    if (!h) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *h = new Handle;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(Handle* h) {
    if (!h) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    delete h;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(Handle* h, void* stream) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    h->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(Tensor** t) {
    if (!t) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *t = new Tensor;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(Tensor* t, int format, int dtype, int n, int c, int h, int w) {
    if (!t) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (format != CUDNN_TENSOR_NCHW || dtype != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    *t = Tensor{n, c, h, w, true};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(Tensor* t) {
    delete t;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(Filter** f) {
    if (!f) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *f = new Filter;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(Filter* f, int dtype, int format, int k, int c, int r, int s) {
    if (!f) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (format != CUDNN_TENSOR_NCHW || dtype != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (k <= 0 || c <= 0 || r <= 0 || s <= 0) return CUDNN_STATUS_BAD_PARAM;
    *f = Filter{k, c, r, s, true};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(Filter* f) {
    delete f;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(Conv** c) {
    if (!c) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *c = new Conv;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(Conv* c, int pad_h, int pad_w, int u, int v, int dil_h,
                                              int dil_w, int mode, int compute) {
    if (!c) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0 || compute != CUDNN_DATA_FLOAT)
        return CUDNN_STATUS_BAD_PARAM;
    c->pad_h = pad_h, c->pad_w = pad_w, c->u = u, c->v = v, c->dil_h = dil_h, c->dil_w = dil_w;
    c->mode = mode, c->set = true;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(Conv* c, int math) {
    if (!c) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (math < 0 || math > 3) return CUDNN_STATUS_BAD_PARAM;
    c->math = math;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(Conv* c) {
    delete c;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(Handle* h, const Tensor* x, const Filter* w,
                                                     const Conv* c, const Tensor* y, int requested,
                                                     int* returned, Perf* perf) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return heuristics(FWD, x, w, c, y, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(Handle* h, const Filter* w, const Tensor* dy,
                                                          const Conv* c, const Tensor* dx, int requested,
                                                          int* returned, Perf* perf) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return heuristics(BWD_DATA, dx, w, c, dy, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(Handle* h, const Tensor* x, const Tensor* dy,
                                                            const Conv* c, const Filter* dw, int requested,
                                                            int* returned, Perf* perf) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return heuristics(BWD_FILTER, x, dw, c, dy, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(Handle* h, const Tensor* x, const Filter* w,
                                                      const Conv* c, const Tensor* y, int algo,
                                                      std::size_t* bytes) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return workspace_size(FWD, x, w, c, y, algo, bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(Handle* h, const Filter* w, const Tensor* dy,
                                                           const Conv* c, const Tensor* dx, int algo,
                                                           std::size_t* bytes) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return workspace_size(BWD_DATA, dx, w, c, dy, algo, bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(Handle* h, const Tensor* x, const Tensor* dy,
                                                             const Conv* c, const Filter* dw, int algo,
                                                             std::size_t* bytes) {
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    return workspace_size(BWD_FILTER, x, dw, c, dy, algo, bytes);
}

cudnnStatus_t cudnnConvolutionForward(Handle* h, const float* alpha, const Tensor* xd, const float* x,
                                      const Filter* wd, const float* w, const Conv* c, int algo, void* ws,
                                      std::size_t ws_bytes, const float* beta, const Tensor* yd, float* y) {
    if (cudnnStatus_t s = launch_checks("forward", FWD, h, xd, x, wd, w, c, algo, ws, ws_bytes, yd, y, alpha, beta))
        return s;
    for (int n = 0; n < yd->n; ++n)
        for (int k = 0; k < yd->c; ++k)
            for (int oy = 0; oy < yd->h; ++oy)
                for (int ox = 0; ox < yd->w; ++ox) {
                    float sum = 0.0f;
                    for (int ci = 0; ci < xd->c; ++ci)
                        for (int r = 0; r < wd->r; ++r) {
                            int iy = oy * c->u - c->pad_h + r * c->dil_h;
                            if (iy < 0 || iy >= xd->h) continue;
                            for (int s = 0; s < wd->s; ++s) {
                                int ix = ox * c->v - c->pad_w + s * c->dil_w;
                                if (ix < 0 || ix >= xd->w) continue;
                                sum += x[((long long)(n * xd->c + ci) * xd->h + iy) * xd->w + ix] *
                                       w[((long long)(k * wd->c + ci) * wd->r + r) * wd->s + s];
                            }
                        }
                    blend(y[((long long)(n * yd->c + k) * yd->h + oy) * yd->w + ox], *alpha, sum, *beta);
                }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(Handle* h, const float* alpha, const Filter* wd, const float* w,
                                           const Tensor* dyd, const float* dy, const Conv* c, int algo,
                                           void* ws, std::size_t ws_bytes, const float* beta,
                                           const Tensor* dxd, float* dx) {
    if (cudnnStatus_t s = launch_checks("backward data", BWD_DATA, h, dxd, dx, wd, w, c, algo, ws, ws_bytes,
                                        dyd, dy, alpha, beta))
        return s;
    std::vector<float> acc((std::size_t)dxd->numel(), 0.0f);
    for (int n = 0; n < dyd->n; ++n)
        for (int k = 0; k < dyd->c; ++k)
            for (int oy = 0; oy < dyd->h; ++oy)
                for (int ox = 0; ox < dyd->w; ++ox) {
                    float g = dy[((long long)(n * dyd->c + k) * dyd->h + oy) * dyd->w + ox];
                    for (int ci = 0; ci < dxd->c; ++ci)
                        for (int r = 0; r < wd->r; ++r) {
                            int iy = oy * c->u - c->pad_h + r * c->dil_h;
                            if (iy < 0 || iy >= dxd->h) continue;
                            for (int s = 0; s < wd->s; ++s) {
                                int ix = ox * c->v - c->pad_w + s * c->dil_w;
                                if (ix < 0 || ix >= dxd->w) continue;
                                acc[((std::size_t)(n * dxd->c + ci) * dxd->h + iy) * dxd->w + ix] +=
                                    g * w[((long long)(k * wd->c + ci) * wd->r + r) * wd->s + s];
                            }
                        }
                }
    for (std::size_t i = 0; i < acc.size(); ++i) blend(dx[i], *alpha, acc[i], *beta);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(Handle* h, const float* alpha, const Tensor* xd, const float* x,
                                             const Tensor* dyd, const float* dy, const Conv* c, int algo,
                                             void* ws, std::size_t ws_bytes, const float* beta,
                                             const Filter* dwd, float* dw) {
    if (cudnnStatus_t s = launch_checks("backward filter", BWD_FILTER, h, xd, x, dwd, dw, c, algo, ws, ws_bytes,
                                        dyd, dy, alpha, beta))
        return s;
    for (int k = 0; k < dwd->k; ++k)
        for (int ci = 0; ci < dwd->c; ++ci)
            for (int r = 0; r < dwd->r; ++r)
                for (int s = 0; s < dwd->s; ++s) {
                    float sum = 0.0f;
                    for (int n = 0; n < dyd->n; ++n)
                        for (int oy = 0; oy < dyd->h; ++oy) {
                            int iy = oy * c->u - c->pad_h + r * c->dil_h;
                            if (iy < 0 || iy >= xd->h) continue;
                            for (int ox = 0; ox < dyd->w; ++ox) {
                                int ix = ox * c->v - c->pad_w + s * c->dil_w;
                                if (ix < 0 || ix >= xd->w) continue;
                                sum += dy[((long long)(n * dyd->c + k) * dyd->h + oy) * dyd->w + ox] *
                                       x[((long long)(n * xd->c + ci) * xd->h + iy) * xd->w + ix];
                            }
                        }
                    blend(dw[((long long)(k * dwd->c + ci) * dwd->r + r) * dwd->s + s], *alpha, sum, *beta);
                }
    return CUDNN_STATUS_SUCCESS;
}

}  // extern "C"
