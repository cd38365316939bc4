// The Contextrast loss L_PA on the device (method doc, sections 2–5). CPU reference:
// train/src/loss/{contrast,bane,edt,sampling}.rs; every kernel below names the Rust function it
// mirrors. Sampling is integer-exact and selects the very same pixels as the CPU; the float
// parts accumulate in double like the CPU (only the summation order differs).
//
// Per scale: A anchors (the classes present at the scale, ascending), flat pixel indices
// p = b·HW + y·W + x at that scale (u32, as on the CPU), features z [B, D, HW] (f32).
#define CTR_IGNORE 255
#define CTR_INF 0x7fffffffffffffffLL           // edt.rs INF (i64::MAX)
#define CTR_NO_BACKGROUND 0xffffffffu           // edt.rs NO_BACKGROUND (u32::MAX)
#define CTR_NEG_INF __longlong_as_double(0xfff0000000000000LL)  // −∞ (no math_constants.h)
#define CTR_FLAG_HARD_CAND 1                    // BANE candidate of this anchor
#define CTR_FLAG_HARD_TAKEN 2                   // selected hard negative (not a random one)

// ---------------------------------------------------------------- sampling.rs

// SplitMix64 step: the increment, then the finaliser (all arithmetic mod 2^64).
__device__ __forceinline__ unsigned long long ctr_splitmix64(unsigned long long x) {
    unsigned long long z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// sampling.rs key_from_base; the base (anchor_key_base) comes from the host, computed by the
// Rust function itself.
__device__ __forceinline__ unsigned long long ctr_key(unsigned long long base, unsigned int p) {
    return ctr_splitmix64(base ^ (unsigned long long)p);
}

// ---------------------------------------------------------------- block helpers

// Largest of `v` over the block; every thread gets it. Same contract as block_sum.
__device__ double ctr_block_max(double v, double* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int nw = (blockDim.x + 31) >> 5;
        v = lane < nw ? sh[lane] : CTR_NEG_INF;
        for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

// Exclusive prefix count of `flag` over the block in thread order; `*total` gets the block's
// count. Every thread of the block must call it. `sh` holds 33 ints.
__device__ int ctr_block_scan(int flag, int* sh, int* total) {
    unsigned int ballot = __ballot_sync(0xffffffffu, flag);
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x >> 5;
    int within = __popc(ballot & ((1u << lane) - 1u));
    __syncthreads();
    if (lane == 0) sh[warp] = __popc(ballot);
    __syncthreads();
    if (threadIdx.x == 0) {
        int nw = (blockDim.x + 31) >> 5, acc = 0;
        for (int w = 0; w < nw; ++w) {
            int c = sh[w];
            sh[w] = acc;
            acc += c;
        }
        sh[32] = acc;
    }
    __syncthreads();
    int r = sh[warp] + within;
    *total = sh[32];
    return r;
}

// ---------------------------------------------------------------- bane.rs downsample_nearest

// out[b, y, x] = in[b, y·stride, x·stride]; out is [B, Ho, Wo].
extern "C" __global__ void ctr_downsample(const unsigned char* in, unsigned char* out, int B,
                                          int H, int W, int stride, int Ho, int Wo) {
    long long n = (long long)B * Ho * Wo;
    GRID_STRIDE(i, n) {
        long long b = i / ((long long)Ho * Wo);
        long long r = i % ((long long)Ho * Wo);
        long long y = r / Wo, x = r % Wo;
        out[i] = in[b * H * W + y * stride * W + x * stride];
    }
}

// ---------------------------------------------------------------- contrast.rs class_means

// Per-class pixel counts and feature sums over the batch (ignore excluded): counts [256],
// sums [256, D] (both zeroed by the caller). Grid (chunks, max(D, 1)): block (x, k) sums
// channel k of its pixels into shared memory, then adds them to the global totals; the k = 0
// blocks also count.
extern "C" __global__ void ctr_class_stats(const float* z, const unsigned char* y, int B, int D,
                                           int HW, int* counts, double* sums) {
    __shared__ double sh_sum[256];
    __shared__ int sh_cnt[256];
    int k = blockIdx.y;
    for (int n = threadIdx.x; n < 256; n += blockDim.x) {
        sh_sum[n] = 0.0;
        sh_cnt[n] = 0;
    }
    __syncthreads();
    long long pixels = (long long)B * HW;
    GRID_STRIDE(p, pixels) {
        int l = y[p];
        if (l == CTR_IGNORE) continue;
        long long b = p / HW, pix = p % HW;
        if (k < D) atomicAdd(&sh_sum[l], (double)z[(b * D + k) * HW + pix]);
        if (k == 0) atomicAdd(&sh_cnt[l], 1);
    }
    __syncthreads();
    for (int n = threadIdx.x; n < 256; n += blockDim.x) {
        if (k < D && sh_sum[n] != 0.0) atomicAdd(&sums[(long long)n * D + k], sh_sum[n]);
        if (k == 0 && sh_cnt[n] != 0) atomicAdd(&counts[n], sh_cnt[n]);
    }
}

// The (fused) anchors of one scale, [A, D]: â = a_i^n, or w_l·a_i^n + w_h·a_4^n when `fuse`
// (not the deepest scale) and class n is present at the deepest scale. a = sum / count; zero
// for a class absent at the scale (no positives there, so never used).
extern "C" __global__ void ctr_anchor_vectors(const double* sums, const int* counts,
                                              const double* deep_sums, const int* deep_counts,
                                              const int* classes, int A, int D, int fuse,
                                              double w_l, double w_h, double* anchors) {
    long long n = (long long)A * D;
    GRID_STRIDE(i, n) {
        int a = (int)(i / D), k = (int)(i % D);
        int c = classes[a];
        if (counts[c] == 0) {
            anchors[i] = 0.0;
            continue;
        }
        double own = sums[(long long)c * D + k] / (double)counts[c];
        double v = own;
        if (fuse && deep_counts[c] > 0) {
            double h = deep_sums[(long long)c * D + k] / (double)deep_counts[c];
            v = w_l * own + w_h * h;
        }
        anchors[i] = v;
    }
}

// ---------------------------------------------------------------- edt.rs

// edt.rs Envelope::transform along one line: d[q] = min_p (q − p)² + f[p] over the finite f[p]
// (CTR_INF where there is none). f and d are strided views of length n; v and zb are scratch of
// n entries each. Boundaries are floors of the exact intersections, all in 64-bit integers.
__device__ void ctr_edt_line(const long long* f, long long fs, long long* d, long long ds, int n,
                             long long* v, long long* zb) {
    int len = 0;
    for (int q = 0; q < n; ++q) {
        long long fq = f[q * fs];
        if (fq == CTR_INF) continue;
        long long qq = q;
        for (;;) {
            if (len == 0) {
                v[0] = qq;
                zb[0] = (long long)(-CTR_INF - 1);
                len = 1;
                break;
            }
            long long r = v[len - 1];
            long long fr = f[r * fs];
            long long num = (fq + qq * qq) - (fr + r * r);
            long long den = 2 * (qq - r);
            // div_euclid with a positive divisor: the floor.
            long long s = num / den;
            if (num % den != 0 && num < 0) s -= 1;
            long long zk = zb[len - 1];
            if (len > 1 && s <= zk) {
                --len;
            } else {
                v[len] = qq;
                zb[len] = s;
                ++len;
                break;
            }
        }
    }
    if (len == 0) {
        for (int q = 0; q < n; ++q) d[q * ds] = CTR_INF;
        return;
    }
    int k = 0;
    for (int q = 0; q < n; ++q) {
        while (k + 1 < len && zb[k + 1] < q) ++k;
        long long p = v[k];
        d[q * ds] = (q - p) * (q - p) + f[p * fs];
    }
}

// BANE error region of anchor class m at pixel p: ŷ = m ∧ Y ∉ {m, 255} (bane.rs).
__device__ __forceinline__ bool ctr_in_error(const unsigned char* y, const unsigned char* pred,
                                             long long p, int m) {
    int l = y[p];
    return pred[p] == m && l != m && l != CTR_IGNORE;
}

// Column pass of the EDT of every anchor's error mask: one thread per (image, column), anchor
// blockIdx.y. g [A, B, H, W] (i64); scratch [A, B·W, 3·H] (i64).
extern "C" __global__ void ctr_edt_cols(const unsigned char* y, const unsigned char* pred,
                                        const int* classes, int B, int H, int W, long long* g,
                                        long long* scratch) {
    int a = blockIdx.y;
    int m = classes[a];
    long long cols = (long long)B * W;
    long long npix = (long long)B * H * W;
    GRID_STRIDE(c, cols) {
        long long b = c / W, x = c % W;
        long long* f = scratch + ((long long)a * cols + c) * 3 * H;
        long long* v = f + H;
        long long* zb = v + H;
        long long img = b * H * W;
        for (int r = 0; r < H; ++r)
            f[r] = ctr_in_error(y, pred, img + (long long)r * W + x, m) ? CTR_INF : 0;
        ctr_edt_line(f, 1, g + a * npix + img + x, W, H, v, zb);
    }
}

// Row pass: one thread per (image, row), anchor blockIdx.y. d2 [A, B, H, W] (u32): the squared
// distance, CTR_NO_BACKGROUND where none is finite (a full mask). scratch [A, B·H, 3·W].
extern "C" __global__ void ctr_edt_rows(const long long* g, int B, int H, int W,
                                        unsigned int* d2, long long* scratch) {
    int a = blockIdx.y;
    long long rows = (long long)B * H;
    long long npix = (long long)B * H * W;
    GRID_STRIDE(r, rows) {
        long long* out = scratch + ((long long)a * rows + r) * 3 * W;
        long long* v = out + W;
        long long* zb = v + W;
        const long long* row = g + a * npix + r * W;
        ctr_edt_line(row, 1, out, 1, W, v, zb);
        unsigned int* o = d2 + a * npix + r * W;
        for (int x = 0; x < W; ++x) {
            long long val = out[x];
            o[x] = (val >= 0 && val < (long long)CTR_NO_BACKGROUND) ? (unsigned int)val
                                                                     : CTR_NO_BACKGROUND;
        }
    }
}

// ---------------------------------------------------------------- bane.rs image_candidates

// BANE candidates of anchor blockIdx.y in image blockIdx.x (bane.rs image_candidates): empty E
// gives none, a full E all of it, otherwise the pixels of E with D² ≤ t, t = the ⌈K·|E|⌉-th
// smallest D² in E (rank in f64, clamped to [1, |E|]; ties included). Sets
// flags[a, p] = CTR_FLAG_HARD_CAND. Needs blockDim.x a multiple of 32.
extern "C" __global__ void ctr_bane_candidates(const unsigned char* y, const unsigned char* pred,
                                               const int* classes, const unsigned int* d2,
                                               int B, int HW, double k_percentile,
                                               unsigned char* flags) {
    __shared__ unsigned int hist[256];
    __shared__ double sh[32];
    __shared__ unsigned int sh_prefix, sh_want;
    int a = blockIdx.y, b = blockIdx.x;
    int m = classes[a];
    long long npix = (long long)B * HW;
    long long img = (long long)b * HW;
    const unsigned int* dd = d2 + a * npix + img;
    unsigned char* fl = flags + a * npix + img;

    double cnt = 0.0;
    for (int p = threadIdx.x; p < HW; p += blockDim.x)
        if (ctr_in_error(y, pred, img + p, m)) cnt += 1.0;
    long long size = (long long)block_sum(cnt, sh);
    if (size == 0) return;
    if (size == HW) {
        for (int p = threadIdx.x; p < HW; p += blockDim.x) fl[p] = CTR_FLAG_HARD_CAND;
        return;
    }
    // bane.rs percentile_threshold: rank = ⌈k·n⌉ in f64, clamped to [1, n].
    double rk = ceil(k_percentile * (double)size);
    long long rank = (isnan(rk) || rk < 1.0) ? 1 : (rk > (double)size ? size : (long long)rk);

    // Radix select of the rank-th smallest D² among E, 8 bits at a time from the top.
    if (threadIdx.x == 0) {
        sh_prefix = 0;
        sh_want = (unsigned int)rank;
    }
    unsigned int mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        unsigned int prefix = sh_prefix;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) {
            if (!ctr_in_error(y, pred, img + p, m)) continue;
            unsigned int v = dd[p];
            if ((v & mask) == prefix) atomicAdd(&hist[(v >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned int want = sh_want, cum = 0;
            int bin = 0;
            for (; bin < 255; ++bin) {
                if (cum + hist[bin] >= want) break;
                cum += hist[bin];
            }
            sh_want = want - cum;
            sh_prefix = prefix | ((unsigned int)bin << shift);
        }
        mask |= 255u << shift;
        __syncthreads();
    }
    unsigned int t = sh_prefix;
    for (int p = threadIdx.x; p < HW; p += blockDim.x)
        if (ctr_in_error(y, pred, img + p, m) && dd[p] <= t) fl[p] = CTR_FLAG_HARD_CAND;
}

// ---------------------------------------------------------------- bane.rs sample_anchor

// Which pixels are candidates of list `kind` (0 positives, 1 hard, 2 random) for class m.
__device__ __forceinline__ bool ctr_candidate(int kind, const unsigned char* y,
                                              const unsigned char* fl, long long p, int m) {
    int l = y[p];
    if (kind == 0) return l == m;
    if (kind == 1) return fl[p] == CTR_FLAG_HARD_CAND;
    return l != m && l != CTR_IGNORE && fl[p] != CTR_FLAG_HARD_TAKEN;
}

// One capped list of one anchor, by the whole block (sampling.rs select_smallest_keys): the
// `cap` candidates with the smallest keys, written ascending by index into `out`. Keys are
// distinct (splitmix64 is a bijection and the indices are distinct), so the cut is one key and
// the CPU's (key, index) tie rule never applies. Returns the number written.
__device__ int ctr_select_list(int kind, const unsigned char* y, unsigned char* fl, long long n,
                               int m, unsigned long long base, long long cap, unsigned int* out,
                               unsigned int* hist, int* sh_scan, double* sh_sum,
                               unsigned long long* sh_prefix, unsigned long long* sh_want) {
    double cnt = 0.0;
    for (long long p = threadIdx.x; p < n; p += blockDim.x)
        if (ctr_candidate(kind, y, fl, p, m)) cnt += 1.0;
    long long count = (long long)block_sum(cnt, sh_sum);
    if (count == 0 || cap <= 0) return 0;
    bool all = count <= cap;
    unsigned long long cut = 0;
    if (!all) {
        // Radix select of the cap-th smallest key, 8 bits at a time from the top.
        if (threadIdx.x == 0) {
            *sh_prefix = 0;
            *sh_want = (unsigned long long)cap;
        }
        unsigned long long mask = 0;
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
            __syncthreads();
            unsigned long long prefix = *sh_prefix;
            for (long long p = threadIdx.x; p < n; p += blockDim.x) {
                if (!ctr_candidate(kind, y, fl, p, m)) continue;
                unsigned long long key = ctr_key(base, (unsigned int)p);
                if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255ull], 1u);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                unsigned long long want = *sh_want, cum = 0;
                int bin = 0;
                for (; bin < 255; ++bin) {
                    if (cum + hist[bin] >= want) break;
                    cum += hist[bin];
                }
                *sh_want = want - cum;
                *sh_prefix = prefix | ((unsigned long long)bin << shift);
            }
            mask |= 255ull << shift;
            __syncthreads();
        }
        cut = *sh_prefix;
    }
    // Ordered compaction: chunk by chunk, a block-wide prefix count gives each kept pixel its slot.
    int written = 0;
    for (long long start = 0; start < n; start += blockDim.x) {
        long long p = start + threadIdx.x;
        int keep = 0;
        if (p < n && ctr_candidate(kind, y, fl, p, m))
            keep = all || ctr_key(base, (unsigned int)p) <= cut;
        int total;
        int slot = ctr_block_scan(keep, sh_scan, &total);
        if (keep) {
            out[written + slot] = (unsigned int)p;
            if (kind == 1) fl[p] = CTR_FLAG_HARD_TAKEN;
        }
        written += total;
    }
    __syncthreads();  // the hard flags are visible to the random list's pass
    return written;
}

// Positives, hard and random negatives of every anchor (bane.rs sample_anchor), one block per
// anchor: positives Y = m capped at pos_cap; hard negatives the BANE candidates (flags) capped
// at hard_cap; random negatives Y ∉ {m, 255} not taken as hard, capped at neg_cap − |hard|.
// pos_idx [A, pos_cap]; neg_idx [A, neg_cap] holds the hard ones then the random ones, as the
// CPU concatenates them; counts [A, 3] = (|P|, |hard|, |random|).
extern "C" __global__ void ctr_sample(const unsigned char* y, unsigned char* flags,
                                      const int* classes, const unsigned long long* bases,
                                      long long n, long long pos_cap, long long hard_cap,
                                      long long neg_cap, unsigned int* pos_idx,
                                      unsigned int* neg_idx, int* counts) {
    __shared__ unsigned int hist[256];
    __shared__ int sh_scan[33];
    __shared__ double sh_sum[32];
    __shared__ unsigned long long sh_prefix, sh_want;
    int a = blockIdx.x;
    int m = classes[a];
    unsigned long long base = bases[a];
    unsigned char* fl = flags + (long long)a * n;
    unsigned int* pos = pos_idx + (long long)a * pos_cap;
    unsigned int* neg = neg_idx + (long long)a * neg_cap;
    int np = ctr_select_list(0, y, fl, n, m, base, pos_cap, pos, hist, sh_scan, sh_sum,
                             &sh_prefix, &sh_want);
    int nh = ctr_select_list(1, y, fl, n, m, base, hard_cap, neg, hist, sh_scan, sh_sum,
                             &sh_prefix, &sh_want);
    int nr = ctr_select_list(2, y, fl, n, m, base, neg_cap - nh, neg + nh, hist, sh_scan,
                             sh_sum, &sh_prefix, &sh_want);
    if (threadIdx.x == 0) {
        counts[a * 3 + 0] = np;
        counts[a * 3 + 1] = nh;
        counts[a * 3 + 2] = nr;
    }
}

// ---------------------------------------------------------------- contrast.rs loss

// Flat index of channel k of sampled pixel p in z [B, D, HW].
__device__ __forceinline__ long long ctr_at(unsigned int p, int k, int D, int HW) {
    long long b = p / HW, pix = p % HW;
    return (b * D + k) * HW + pix;
}

// The sampled entry j of anchor a: positives first (j < |P|), then negatives.
__device__ __forceinline__ bool ctr_entry(int a, long long j, const int* counts,
                                          const unsigned int* pos_idx, long long pos_cap,
                                          const unsigned int* neg_idx, long long neg_cap,
                                          unsigned int* p, long long* slot_pos,
                                          long long* slot_neg) {
    int np = counts[a * 3], nn = counts[a * 3 + 1] + counts[a * 3 + 2];
    *slot_pos = -1;
    *slot_neg = -1;
    if (j < np) {
        *slot_pos = (long long)a * pos_cap + j;
        *p = pos_idx[*slot_pos];
        return true;
    }
    if (j < np + nn) {
        *slot_neg = (long long)a * neg_cap + (j - np);
        *p = neg_idx[*slot_neg];
        return true;
    }
    return false;
}

// â·z of every sampled pixel of a used anchor (with positives and negatives), summed over k
// in order like the CPU: pos_dot [A, pos_cap], neg_dot [A, neg_cap]. Grid-stride over
// pos_cap + neg_cap entries, anchor blockIdx.y.
extern "C" __global__ void ctr_dots(const float* z, const double* anchors, const int* counts,
                                    const unsigned int* pos_idx, const unsigned int* neg_idx,
                                    long long pos_cap, long long neg_cap, int D, int HW,
                                    double* pos_dot, double* neg_dot) {
    int a = blockIdx.y;
    if (counts[a * 3] == 0 || counts[a * 3 + 1] + counts[a * 3 + 2] == 0) return;
    const double* an = anchors + (long long)a * D;
    GRID_STRIDE(j, pos_cap + neg_cap) {
        unsigned int p;
        long long sp, sn;
        if (!ctr_entry(a, j, counts, pos_idx, pos_cap, neg_idx, neg_cap, &p, &sp, &sn)) continue;
        double acc = 0.0;
        for (int k = 0; k < D; ++k) acc += an[k] * (double)z[ctr_at(p, k, D, HW)];
        if (sp >= 0) pos_dot[sp] = acc; else neg_dot[sn] = acc;
    }
}

__device__ __forceinline__ double ctr_softplus(double x) {
    return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

__device__ __forceinline__ double ctr_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

// contrast.rs anchor_loss, one block per anchor: loss[a] = mean_P softplus(LSE_N(s) − s_p) with
// s = dot/τ, and the chain-rule coefficients c = (∂loss/∂s)·weight/τ of every sampled pixel
// into pos_coef / neg_coef (in place of the dots' layout), weight = λ_i / (the scale's used
// anchors, counted here from all A anchors' counts). Anchors without positives or negatives
// (unused) get loss 0 and no coefficients.
extern "C" __global__ void ctr_anchor_loss(const int* counts, const double* pos_dot,
                                           const double* neg_dot, long long pos_cap,
                                           long long neg_cap, double tau, double lambda, int A,
                                           double* loss, double* pos_coef, double* neg_coef) {
    __shared__ double sh[32];
    int a = blockIdx.x;
    int np = counts[a * 3], nn = counts[a * 3 + 1] + counts[a * 3 + 2];
    if (np == 0 || nn == 0) {
        if (threadIdx.x == 0) loss[a] = 0.0;
        return;
    }
    int used = 0;
    for (int j = 0; j < A; ++j) used += counts[j * 3] > 0 && counts[j * 3 + 1] + counts[j * 3 + 2] > 0;
    double weight = lambda / (double)used;
    const double* pd = pos_dot + (long long)a * pos_cap;
    const double* nd = neg_dot + (long long)a * neg_cap;
    double m = CTR_NEG_INF;
    for (int j = threadIdx.x; j < nn; j += blockDim.x) m = fmax(m, nd[j] / tau);
    m = ctr_block_max(m, sh);
    double s = 0.0;
    for (int j = threadIdx.x; j < nn; j += blockDim.x) s += exp(nd[j] / tau - m);
    s = block_sum(s, sh);
    double lse = m + log(s);
    double inv_p = 1.0 / (double)np;
    double l = 0.0, total = 0.0;
    for (int j = threadIdx.x; j < np; j += blockDim.x) {
        double x = lse - pd[j] / tau;
        l += ctr_softplus(x);
        double g = ctr_sigmoid(x) * inv_p;
        total += g;
        pos_coef[(long long)a * pos_cap + j] = -g * weight / tau;
    }
    l = block_sum(l, sh);
    total = block_sum(total, sh);
    for (int j = threadIdx.x; j < nn; j += blockDim.x) {
        double g = total * exp(nd[j] / tau - lse);
        neg_coef[(long long)a * neg_cap + j] = g * weight / tau;
    }
    if (threadIdx.x == 0) loss[a] = l * inv_p;
}

// ∂L/∂z of the sampled pixels: grad[p, k] += c_p·â[k] (grad [B, D, HW] in f64; pixels shared
// by several anchors collide, hence the atomics). Grid-stride over entries × D, anchor blockIdx.y.
extern "C" __global__ void ctr_scatter_samples(double* grad, const double* anchors,
                                               const int* counts, const unsigned int* pos_idx,
                                               const unsigned int* neg_idx, const double* pos_coef,
                                               const double* neg_coef, long long pos_cap,
                                               long long neg_cap, int D, int HW) {
    int a = blockIdx.y;
    int np = counts[a * 3], nn = counts[a * 3 + 1] + counts[a * 3 + 2];
    if (np == 0 || nn == 0) return;
    const double* an = anchors + (long long)a * D;
    GRID_STRIDE(i, (long long)(np + nn) * D) {
        long long j = i / D;
        int k = (int)(i % D);
        unsigned int p;
        long long sp, sn;
        ctr_entry(a, j, counts, pos_idx, pos_cap, neg_idx, neg_cap, &p, &sp, &sn);
        double c = sp >= 0 ? pos_coef[sp] : neg_coef[sn];
        atomicAdd(&grad[ctr_at(p, k, D, HW)], c * an[k]);
    }
}

// ∂L/∂â of every anchor: dhat[class, k] = Σ_entries c·z[p, k]. One block per (k, anchor).
// dhat is [256, D] for the scale, zero where the class has no (valid) anchor.
extern "C" __global__ void ctr_anchor_dhat(const float* z, const int* classes, const int* counts,
                                           const unsigned int* pos_idx,
                                           const unsigned int* neg_idx, const double* pos_coef,
                                           const double* neg_coef, long long pos_cap,
                                           long long neg_cap, int D, int HW, double* dhat) {
    __shared__ double sh[32];
    int k = blockIdx.x, a = blockIdx.y;
    int np = counts[a * 3], nn = counts[a * 3 + 1] + counts[a * 3 + 2];
    if (np == 0 || nn == 0) return;
    double acc = 0.0;
    for (long long j = threadIdx.x; j < np + nn; j += blockDim.x) {
        unsigned int p;
        long long sp, sn;
        ctr_entry(a, j, counts, pos_idx, pos_cap, neg_idx, neg_cap, &p, &sp, &sn);
        double c = sp >= 0 ? pos_coef[sp] : neg_coef[sn];
        acc += c * (double)z[ctr_at(p, k, D, HW)];
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) dhat[(long long)classes[a] * D + k] = acc;
}

// ∂L/∂a_i^n for all four scales from the per-scale dhat [4, 256, D], in the CPU's order:
// d_anchor[i] = wl·dhat[i] (wl = w_l when class n is fused, i.e. present at the deepest scale:
// deep_counts[n] > 0, else 1) for i < 3; the deepest scale gets w_h·dhat[i] of every fused
// shallower scale, then its own dhat.
extern "C" __global__ void ctr_anchor_grad(const double* dhat, const int* deep_counts, int D,
                                           double w_l, double w_h, double* d_anchor) {
    long long per = 256LL * D;
    GRID_STRIDE(i, per) {
        int n = (int)(i / D);
        int f = deep_counts[n] > 0;
        double deep = 0.0;
        for (int s = 0; s < 3; ++s) {
            double v = dhat[s * per + i];
            d_anchor[s * per + i] = (f ? w_l : 1.0) * v;
            if (f) deep += w_h * v;
        }
        deep += 1.0 * dhat[3 * per + i];
        d_anchor[3 * per + i] = deep;
    }
}

// Through the means: every labelled pixel of class n gets d_anchor[n, k] / count[n].
extern "C" __global__ void ctr_means_backward(const unsigned char* y, const int* counts,
                                              const double* d_anchor, int B, int D, int HW,
                                              double* grad) {
    long long n = (long long)B * D * HW;
    GRID_STRIDE(i, n) {
        long long b = i / ((long long)D * HW);
        long long r = i % ((long long)D * HW);
        int k = (int)(r / HW);
        long long pix = r % HW;
        int l = y[b * HW + pix];
        if (l == CTR_IGNORE) continue;
        grad[i] += d_anchor[(long long)l * D + k] / (double)counts[l];
    }
}

// out = (float)in.
extern "C" __global__ void ctr_to_f32(const double* in, float* out, long long n) {
    GRID_STRIDE(i, n) out[i] = (float)in[i];
}
