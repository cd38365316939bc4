// An emulated cuBLAS (libcublas.so.12) over the emulated driver (driver.cpp): handles and the
// single-precision GEMMs the CUDA backend calls, column-major as cuBLAS is, with cuBLAS's
// argument checks (negative sizes, leading dimensions below the rows they must hold) and one more
// a GPU makes by faulting: every matrix must lie inside device memory, to its last element.
#include "abi.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

typedef int cublasStatus_t;
enum : cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

namespace {
struct Handle {
    void* stream = nullptr;
};

// Whether an rows × cols column-major matrix with leading dimension ld lies in device memory
// (as the last batch entry of `batch`, `stride` floats apart).
bool in_device(const float* p, long long rows, long long cols, long long ld, long long stride,
               long long batch) {
    if (rows == 0 || cols == 0 || batch == 0) return true;
    long long last = (batch - 1) * stride + (cols - 1) * ld + rows;  // floats from p
    return p && stride >= 0 && emu_device_range_ok(p, (std::size_t)last * sizeof(float));
}

cublasStatus_t gemm(Handle* h, int ta, int tb, int m, int n, int k, const float* alpha,
                    const float* a, int lda, long long sa, const float* b, int ldb, long long sb,
                    const float* beta, float* c, int ldc, long long sc, int batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    bool at = ta != CUBLAS_OP_N, bt = tb != CUBLAS_OP_N;
    if (ta < 0 || ta > 2 || tb < 0 || tb > 2 || m < 0 || n < 0 || k < 0 || batch < 0 || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    // op(A) is m × k, op(B) is k × n, C is m × n; A and B are stored as written (ld = rows).
    long long a_rows = at ? k : m, a_cols = at ? m : k, b_rows = bt ? n : k, b_cols = bt ? k : n;
    if (lda < std::max<long long>(1, a_rows) || ldb < std::max<long long>(1, b_rows) ||
        ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!in_device(a, a_rows, a_cols, lda, sa, k > 0 ? batch : 0) ||
        !in_device(b, b_rows, b_cols, ldb, sb, k > 0 ? batch : 0) ||
        !in_device(c, m, n, ldc, sc, batch)) {
        std::fprintf(stderr, "emulated cuBLAS: sgemm(m=%d, n=%d, k=%d, batch=%d): a matrix runs past its device buffer\n",
                     m, n, k, batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    std::vector<float> ap((std::size_t)m * k), bp((std::size_t)n * k);
    for (int q = 0; q < batch; ++q) {
        const float* A = a + q * sa;
        const float* B = b + q * sb;
        float* C = c + q * sc;
        // Pack op(A) row by row and op(B) column by column, both contiguous in k.
        for (int i = 0; i < m; ++i)
            for (int l = 0; l < k; ++l) ap[(std::size_t)i * k + l] = at ? A[i * (long long)lda + l] : A[l * (long long)lda + i];
        for (int j = 0; j < n; ++j)
            for (int l = 0; l < k; ++l) bp[(std::size_t)j * k + l] = bt ? B[l * (long long)ldb + j] : B[j * (long long)ldb + l];
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < m; ++i) {
                const float* x = &ap[(std::size_t)i * k];
                const float* y = &bp[(std::size_t)j * k];
                float s = 0.0f;
                for (int l = 0; l < k; ++l) s += x[l] * y[l];
                float& out = C[j * (long long)ldc + i];
                // beta = 0 overwrites without reading, as cuBLAS does (C may hold garbage).
                out = *beta == 0.0f ? *alpha * s : *alpha * s + *beta * out;
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(Handle** h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new Handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(Handle* h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(Handle* h, void* stream) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(Handle* h, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, const float* b, int ldb, const float* beta,
                              float* c, int ldc) {
    return gemm(h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(Handle* h, int ta, int tb, int m, int n, int k,
                                         const float* alpha, const float* a, int lda, long long sa,
                                         const float* b, int ldb, long long sb, const float* beta,
                                         float* c, int ldc, long long sc, int batch) {
    return gemm(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

}  // extern "C"
