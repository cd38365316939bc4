//! The convolution's matrix product, `C[m × n] = A[m × k] · B[k × n]`, with A (the weights)
//! packed once per plan. Our own rather than the `gemm` crate's for two reasons measured in
//! `bench pipeline`: that crate allocates its packing buffers on every call (one heap
//! allocation per convolution tile, ~340 per frame), and on stable Rust it stops at AVX2
//! while the Xeons we develop on have AVX-512. The kernel is plain Rust over fixed-size
//! arrays that the compiler keeps in vector registers; `target_feature` variants pick the
//! register tile for the CPU at run time.

/// A's rows, packed per block of `mr` rows as `[k][mr]` (zero rows pad the last block).
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub m: usize,
    pub k: usize,
    isa: Isa,
    data: Vec<f32>,
}

/// The register tile (rows × columns of C per kernel call) for this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Rows per register tile of a kernel.
fn mr(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => 8,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => 4,
        Isa::Portable => 4,
    }
}

impl Packed {
    /// Packs the row-major `m × k` matrix `a` for this CPU's kernel.
    pub fn new(a: &[f32], m: usize, k: usize) -> Packed {
        Self::for_isa(a, m, k, isa())
    }

    fn for_isa(a: &[f32], m: usize, k: usize, isa: Isa) -> Packed {
        let mr = mr(isa);
        let blocks = m.div_ceil(mr);
        let mut data = vec![0.0; blocks * k * mr];
        for b in 0..blocks {
            for kk in 0..k {
                for r in 0..mr {
                    let i = b * mr + r;
                    if i < m {
                        data[(b * k + kk) * mr + r] = a[i * k + kk];
                    }
                }
            }
        }
        Packed { m, k, isa, data }
    }
}

/// `C = A · B` for `n` columns: B is `k × n` with rows `ldb` apart, C is `m × n` with rows
/// `ldc` apart.
///
/// # Safety
/// `b` and `c` are valid for those strided reads and writes, and no other thread writes the
/// elements of C addressed here.
pub unsafe fn gemm(a: &Packed, b: *const f32, ldb: usize, n: usize, c: *mut f32, ldc: usize) {
    // SAFETY: the caller's contract is `Dense`'s.
    unsafe { gemm_rows(a, &Dense { b, ldb }, n, c, ldc) }
}

/// The zero-bordered input a direct 3×3 convolution of stride `s` reads: per plane, padded
/// rows (padded row `r` is input row `r − 1`; rows 0 and `h + 1` are zeros), each split into
/// `s` column phases of `wq` values (column `col` of the bordered row at phase `col % s`,
/// index `col / s`), so the taps of a strided convolution are contiguous. A buffer may hold a
/// band of padded rows of every plane (one tile's worth) rather than whole planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadLayout {
    pub h: usize,
    pub w: usize,
    pub s: usize,
    pub wq: usize,
}

impl PadLayout {
    pub fn new(h: usize, w: usize, s: usize) -> PadLayout {
        PadLayout {
            h,
            w,
            s,
            wq: (w + 2).div_ceil(s),
        }
    }

    /// Floats of one plane's band of `rows` padded rows.
    pub fn band(&self, rows: usize) -> usize {
        rows * self.s * self.wq
    }

    /// Padded rows an output band of `out_rows` rows reads.
    pub fn rows_for(&self, out_rows: usize) -> usize {
        (out_rows.max(1) - 1) * self.s + 3
    }

    /// Writes padded rows `r0..r0 + rows` of plane `c` of `x` into `xp` (one plane's band).
    /// Each value of `xp` is written once: border rows and each row's ends get zeros, the
    /// rest the input.
    pub fn pad_rows(&self, x: &[f32], c: usize, r0: usize, rows: usize, xp: &mut [f32]) {
        let (h, w, s, wq) = (self.h, self.w, self.s, self.wq);
        let rw = s * wq;
        for (i, row) in xp[..rows * rw].chunks_exact_mut(rw).enumerate() {
            let r = r0 + i;
            if r == 0 || r > h {
                row.fill(0.0);
                continue;
            }
            let src = &x[(c * h + r - 1) * w..(c * h + r) * w];
            match s {
                1 => {
                    row[0] = 0.0;
                    row[1..=w].copy_from_slice(src);
                    row[w + 1..].fill(0.0);
                }
                2 => {
                    // Bordered column x + 1: odd x go to phase 0 at (x + 1) / 2, even x to
                    // phase 1 at x / 2. Split as pairs so the loop vectorises.
                    let (p0, p1) = row.split_at_mut(wq);
                    p0[0] = 0.0;
                    let pairs = src.chunks_exact(2);
                    let odd_tail = pairs.remainder().first().copied();
                    let n = pairs.len();
                    for ((pair, a), b) in pairs.zip(&mut p1[..n]).zip(&mut p0[1..=n]) {
                        *a = pair[0];
                        *b = pair[1];
                    }
                    let mut e1 = n;
                    if let Some(v) = odd_tail {
                        p1[n] = v;
                        e1 += 1;
                    }
                    p0[n + 1..].fill(0.0);
                    p1[e1..].fill(0.0);
                }
                _ => {
                    row.fill(0.0);
                    for (x, &v) in src.iter().enumerate() {
                        let col = x + 1;
                        row[(col % s) * wq + col / s] = v;
                    }
                }
            }
        }
    }
}

/// `C = A · B` for one output row (`n` columns) of a 3×3, pad-1 convolution of stride
/// `l.s`, without an im2col copy: row `(c, ky, kx)` of B is read straight from `xp`, which
/// holds `rows` padded rows of each plane (see [`PadLayout`]), the output row's first tap
/// row being band row `r`.
///
/// # Safety
/// `xp` holds `c_in` bands of `rows` rows plus `PAD_SLACK` values, `r + 3 ≤ rows`, with
/// `a.k = 9·c_in`; `c` is valid for `a.m` rows of `n` values `ldc` apart that no other thread
/// writes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3_row(
    a: &Packed,
    xp: *const f32,
    l: PadLayout,
    rows: usize,
    r: usize,
    n: usize,
    c: *mut f32,
    ldc: usize,
) {
    debug_assert!(matches!(l.s, 1 | 2));
    let b = Shifted {
        xp,
        wq: l.wq,
        plane: l.band(rows),
        row: l.s * l.wq,
        shift: l.s.trailing_zeros(),
        r,
    };
    // SAFETY: the caller's contract is `Shifted`'s.
    unsafe { gemm_rows(a, &b, n, c, ldc) }
}

/// Floats past the last padded plane that a kernel may read (and ignore) when its last column
/// panel is narrower than its register tile (at most the widest tile, 32, plus a tap).
pub const PAD_SLACK: usize = 64;

/// Rows of B for the kernels: `row` returns a pointer to `pad.len()` readable values holding
/// row `kk`'s columns `j0..j0 + cols` first (lanes beyond `cols` are ignored), either inside
/// B itself or in `pad`, which it fills.
trait BRows {
    /// # Safety
    /// `kk < k` and `j0 + cols ≤ n` of the product being computed.
    unsafe fn row(&self, kk: usize, j0: usize, cols: usize, pad: &mut [f32]) -> *const f32;
}

/// A dense `k × n` B, rows `ldb` apart.
struct Dense {
    b: *const f32,
    ldb: usize,
}

impl BRows for Dense {
    #[inline(always)]
    unsafe fn row(&self, kk: usize, j0: usize, cols: usize, pad: &mut [f32]) -> *const f32 {
        // SAFETY: the caller keeps kk and the columns inside B.
        unsafe {
            let row = self.b.add(kk * self.ldb + j0);
            if cols == pad.len() {
                return row;
            }
            std::ptr::copy_nonoverlapping(row, pad.as_mut_ptr(), cols);
            pad.as_ptr()
        }
    }
}

/// The implicit im2col of a 3×3, pad-1 convolution over a padded band, for one output row:
/// every row of B lies inside `xp`, so nothing is copied. The stride is 1 or 2, so its
/// division and remainder are a shift and a mask (a `div` per row of B cost more than the
/// row's multiply-adds).
struct Shifted {
    xp: *const f32,
    wq: usize,
    /// Floats per plane's band, and per padded row.
    plane: usize,
    row: usize,
    /// log2 of the stride.
    shift: u32,
    /// The band row of the output row's first tap row.
    r: usize,
}

impl BRows for Shifted {
    #[inline(always)]
    unsafe fn row(&self, kk: usize, j0: usize, _cols: usize, _pad: &mut [f32]) -> *const f32 {
        let (c, tap) = (kk / 9, kk % 9);
        let (ky, kx) = (tap / 3, tap % 3);
        let phase = kx & ((1 << self.shift) - 1);
        let at =
            c * self.plane + (self.r + ky) * self.row + phase * self.wq + j0 + (kx >> self.shift);
        // SAFETY: plane c < c_in, band row r + ky < rows, and the NR columns from `at` stay
        // inside the bands plus PAD_SLACK (the caller's contract).
        unsafe { self.xp.add(at) }
    }
}

/// Dispatches to the kernel `a` was packed for.
///
/// # Safety
/// `rows` yields valid rows for `n` columns; `c` is valid for `a.m` rows of `n` values `ldc`
/// apart that no other thread writes.
unsafe fn gemm_rows<B: BRows>(a: &Packed, rows: &B, n: usize, c: *mut f32, ldc: usize) {
    // SAFETY (each arm): `a.isa` came from `isa()` (or a test that checked the CPU), so the
    // CPU has the features the variant is compiled for; the pointer contract is the caller's.
    unsafe {
        match a.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512(a, rows, n, c, ldc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2(a, rows, n, c, ldc),
            Isa::Portable => portable(a, rows, n, c, ldc),
        }
    }
}

/// One x86 kernel: `$mr` rows × two vectors of `$lanes` columns of C in registers, B's row
/// loaded once per k and A's value broadcast per row. The AVX-512 and AVX2 kernels differ
/// only in the vector type, its intrinsics and the register tile, so one body serves both.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernel {
    ($name:ident, $features:literal, $mr:literal, $lanes:literal,
     $zero:ident, $load:ident, $set1:ident, $fmadd:ident, $store:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<B: BRows>(a: &Packed, rows: &B, n: usize, c: *mut f32, ldc: usize) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NR: usize = 2 * $lanes;
            let (m, k) = (a.m, a.k);
            let mut j0 = 0;
            while j0 < n {
                let cols = NR.min(n - j0);
                // A narrow last panel is read through a zero-padded copy, one row at a time.
                let mut pad = [0f32; NR];
                for blk in 0..m.div_ceil(MR) {
                    let ap = a.data[blk * k * MR..(blk + 1) * k * MR].as_ptr();
                    let mut acc = [[$zero(); 2]; MR];
                    for kk in 0..k {
                        // SAFETY: row kk of B holds columns j0..j0+cols (the caller's
                        // contract); `ap` holds k·MR values.
                        unsafe {
                            let src = rows.row(kk, j0, cols, &mut pad);
                            let b0 = $load(src);
                            let b1 = $load(src.add($lanes));
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let av = $set1(*ap.add(kk * MR + r));
                                acc[0] = $fmadd(av, b0, acc[0]);
                                acc[1] = $fmadd(av, b1, acc[1]);
                            }
                        }
                    }
                    let rows = MR.min(m - blk * MR);
                    for (r, acc) in acc.iter().enumerate().take(rows) {
                        let mut out = [0f32; NR];
                        // SAFETY: `out` holds NR floats; row blk·MR + r < m and columns
                        // j0..j0+cols of C are the caller's.
                        unsafe {
                            $store(out.as_mut_ptr(), acc[0]);
                            $store(out.as_mut_ptr().add($lanes), acc[1]);
                            let dst = c.add((blk * MR + r) * ldc + j0);
                            std::ptr::copy_nonoverlapping(out.as_ptr(), dst, cols);
                        }
                    }
                }
                j0 += NR;
            }
        }
    };
}

// 8 × 32: 16 of AVX-512's 32 registers accumulate. 4 × 16: 8 of AVX2's 16.
#[cfg(target_arch = "x86_64")]
x86_kernel!(
    avx512,
    "avx512f,avx2,fma",
    8,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);
#[cfg(target_arch = "x86_64")]
x86_kernel!(
    avx2,
    "avx2,fma",
    4,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);

/// Lanes of the portable kernel's pseudo-vectors: 4 f32 = one SSE or NEON register, which
/// the compiler's SLP vectoriser maps each `[f32; 4]` operation onto.
const L: usize = 4;

/// Multiply-add of 4 lanes: fused where the target has FMA (aarch64), plain elsewhere
/// (`mul_add` would be a libm call on baseline x86-64).
#[inline(always)]
fn madd4(acc: &mut [f32; L], a: f32, b: &[f32; L]) {
    for i in 0..L {
        acc[i] = if cfg!(target_arch = "aarch64") {
            a.mul_add(b[i], acc[i])
        } else {
            acc[i] + a * b[i]
        };
    }
}

/// The portable kernel: 4 rows × 16 columns of C in 16 four-lane accumulators (NEON has 32
/// registers, SSE 16).
unsafe fn portable<B: BRows>(a: &Packed, rows: &B, n: usize, c: *mut f32, ldc: usize) {
    const MR: usize = 4;
    const NR: usize = 16;
    let (m, k) = (a.m, a.k);
    let mut j0 = 0;
    while j0 < n {
        let cols = NR.min(n - j0);
        for blk in 0..m.div_ceil(MR) {
            let ap = &a.data[blk * k * MR..(blk + 1) * k * MR];
            let mut acc = [[[0f32; L]; NR / L]; MR];
            let mut brow = [[0f32; L]; NR / L];
            for kk in 0..k {
                // SAFETY: row kk of B holds columns j0..j0+cols (the caller's contract);
                // `flat` is NR floats.
                unsafe {
                    let flat = std::slice::from_raw_parts_mut(brow.as_mut_ptr().cast::<f32>(), NR);
                    let src = rows.row(kk, j0, cols, flat);
                    if src != flat.as_ptr() {
                        std::ptr::copy_nonoverlapping(src, flat.as_mut_ptr(), cols);
                    }
                }
                let av = &ap[kk * MR..kk * MR + MR];
                for r in 0..MR {
                    for q in 0..NR / L {
                        madd4(&mut acc[r][q], av[r], &brow[q]);
                    }
                }
            }
            let rows = MR.min(m - blk * MR);
            for (r, acc) in acc.iter().enumerate().take(rows) {
                // SAFETY: row blk·MR + r < m and columns j0..j0+cols of C are the caller's.
                unsafe {
                    let dst = c.add((blk * MR + r) * ldc + j0);
                    std::ptr::copy_nonoverlapping(acc.as_ptr().cast::<f32>(), dst, cols);
                }
            }
        }
        j0 += NR;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU can run: the portable one always.
    fn kernels() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let has = |f: &str| match f {
                "avx2" => std::arch::is_x86_feature_detected!("avx2"),
                "fma" => std::arch::is_x86_feature_detected!("fma"),
                _ => std::arch::is_x86_feature_detected!("avx512f"),
            };
            if has("avx2") && has("fma") {
                v.push(Isa::Avx2);
            }
            if has("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    #[test]
    fn every_kernel_matches_a_naive_product_on_odd_shapes() {
        let shapes = [
            (5, 27, 37),
            (16, 144, 64),
            (32, 288, 100),
            (1, 1, 1),
            (9, 3, 33),
            (128, 9, 300),
        ];
        for isa in kernels() {
            for (m, k, n) in shapes {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
                let ldb = n + 3;
                let b: Vec<f32> = (0..k * ldb)
                    .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
                    .collect();
                let ldc = n + 1;
                let mut c = vec![f32::NAN; m * ldc];
                let p = Packed::for_isa(&a, m, k, isa);
                // SAFETY: b is k × ldb, c is m × ldc, n ≤ both strides; `kernels` checked the CPU.
                unsafe { gemm(&p, b.as_ptr(), ldb, n, c.as_mut_ptr(), ldc) };
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|kk| a[i * k + kk] * b[kk * ldb + j]).sum();
                        let got = c[i * ldc + j];
                        let tol = 1e-3 * want.abs().max(1.0);
                        assert!((got - want).abs() <= tol, "{isa:?} {m}x{k}x{n} ({i},{j})");
                    }
                    assert!(c[i * ldc + n].is_nan(), "{isa:?} wrote past column n");
                }
            }
        }
    }

    #[test]
    fn every_kernel_convolves_3x3_rows_without_im2col() {
        let cases = [
            (3, 5, 4, 37, 1),
            (2, 9, 1, 1, 1),
            (4, 8, 3, 64, 1),
            (3, 16, 7, 9, 2),
            (2, 5, 6, 70, 2),
            (1, 3, 1, 2, 2),
        ];
        for isa in kernels() {
            for (c_in, c_out, h, w, s) in cases {
                let k = 9 * c_in;
                let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1);
                let wt: Vec<f32> = (0..c_out * k)
                    .map(|i| ((i * 7) % 13) as f32 - 6.0)
                    .collect();
                let x: Vec<f32> = (0..c_in * h * w)
                    .map(|i| ((i * 5) % 11) as f32 - 5.0)
                    .collect();
                let p = Packed::for_isa(&wt, c_out, k, isa);
                let l = PadLayout::new(h, w, s);
                // Bands of one row, two rows and the whole plane, as tiles pad them.
                for band in [1, 2, oh] {
                    let mut out = vec![f32::NAN; c_out * oh * ow];
                    for y0 in (0..oh).step_by(band) {
                        let y1 = (y0 + band).min(oh);
                        let rows = l.rows_for(y1 - y0);
                        let mut xp = vec![f32::NAN; c_in * l.band(rows) + PAD_SLACK];
                        for (ch, xb) in xp.chunks_exact_mut(l.band(rows)).enumerate().take(c_in) {
                            l.pad_rows(&x, ch, y0 * s, rows, xb);
                        }
                        for y in y0..y1 {
                            // SAFETY: xp holds the bands plus slack; out rows are oh·ow apart.
                            unsafe {
                                conv3x3_row(
                                    &p,
                                    xp.as_ptr(),
                                    l,
                                    rows,
                                    (y - y0) * s,
                                    ow,
                                    out.as_mut_ptr().add(y * ow),
                                    oh * ow,
                                )
                            };
                        }
                    }
                    for o in 0..c_out {
                        for y in 0..oh {
                            for xx in 0..ow {
                                let mut want = 0f32;
                                for c in 0..c_in {
                                    for ky in 0..3 {
                                        for kx in 0..3 {
                                            let (iy, ix) = (y * s + ky, xx * s + kx);
                                            if iy < 1 || ix < 1 || iy > h || ix > w {
                                                continue;
                                            }
                                            let v = x[(c * h + iy - 1) * w + ix - 1];
                                            want += wt[o * k + (c * 3 + ky) * 3 + kx] * v;
                                        }
                                    }
                                }
                                let got = out[(o * oh + y) * ow + xx];
                                let tol = 1e-3 * want.abs().max(1.0);
                                assert!(
                                    (got - want).abs() <= tol,
                                    "{isa:?} s{s} {c_in}x{h}x{w} band {band} o{o} ({y},{xx})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
