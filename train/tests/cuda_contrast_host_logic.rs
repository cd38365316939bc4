//! The integer logic of kernels/contrast.cu without a GPU: its device functions `ctr_splitmix64`,
//! `ctr_key` and `ctr_edt_line` are plain C++, so this test compiles them with the host C++
//! compiler (`c++`) and checks them against the CPU reference (sampling.rs keys, edt.rs). The
//! parallel parts (selection, reductions) need a GPU: tests/cuda_contrast_parity.rs.
//! Without a C++ compiler the test prints "SKIPPED (no c++): ..." and passes.
use contextrast_train::loss::edt::edt_squared;
use contextrast_train::loss::sampling::{anchor_key_base, key_from_base, splitmix64};
use std::process::{Command, Stdio};

const KERNELS: &str = include_str!("../src/backend/cuda/kernels/contrast.cu");

/// The source of the function that starts with `head`, up to its closing brace at column 0.
fn function(head: &str) -> &'static str {
    let start = KERNELS
        .find(head)
        .unwrap_or_else(|| panic!("contrast.cu has no {head}"));
    let len = KERNELS[start..]
        .find("\n}\n")
        .unwrap_or_else(|| panic!("{head} has no end"));
    &KERNELS[start..start + len + 3]
}

const DRIVER: &str = r#"
#include <cstdio>
#include <vector>
int main() {
    int cases;
    if (scanf("%d", &cases) != 1) return 1;
    for (int c = 0; c < cases; ++c) {
        unsigned long long base;
        int h, w;
        if (scanf("%llu %d %d", &base, &h, &w) != 3) return 1;
        int n = h * w, m = h > w ? h : w;
        std::vector<int> mask(n);
        for (int& v : mask) if (scanf("%d", &v) != 1) return 1;
        // Keys of every pixel index.
        for (int p = 0; p < n; ++p) printf("%llu ", ctr_key(base, (unsigned int)p));
        printf("\n");
        // The two passes of ctr_edt_cols / ctr_edt_rows, one line at a time.
        std::vector<long long> g(n), f(h), v(m), z(m), out(w);
        for (int x = 0; x < w; ++x) {
            for (int r = 0; r < h; ++r) f[r] = mask[r * w + x] ? CTR_INF : 0;
            ctr_edt_line(f.data(), 1, g.data() + x, w, h, v.data(), z.data());
        }
        for (int r = 0; r < h; ++r) {
            ctr_edt_line(g.data() + (long long)r * w, 1, out.data(), 1, w, v.data(), z.data());
            for (int x = 0; x < w; ++x) {
                long long val = out[x];
                printf("%u ", (val >= 0 && val < (long long)CTR_NO_BACKGROUND)
                                  ? (unsigned int)val : CTR_NO_BACKGROUND);
            }
        }
        printf("\n");
    }
    return 0;
}
"#;

/// SplitMix64 stream for the test masks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        splitmix64(self.0)
    }
    fn mask(&mut self, n: usize, density: f64) -> Vec<bool> {
        (0..n)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - density)
            .collect()
    }
}

#[test]
fn device_keys_and_edt_match_the_cpu_reference() {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&compiler).arg("--version").output().is_err() {
        println!("SKIPPED (no c++): host build of contrast.cu's ctr_key and ctr_edt_line");
        return;
    }
    let source = format!(
        "#define __device__\n#define __forceinline__ inline\n\
         #define CTR_INF 0x7fffffffffffffffLL\n#define CTR_NO_BACKGROUND 0xffffffffu\n{}\n{}\n{}\n{DRIVER}",
        function("__device__ __forceinline__ unsigned long long ctr_splitmix64"),
        function("__device__ __forceinline__ unsigned long long ctr_key"),
        function("__device__ void ctr_edt_line"),
    );
    let dir = std::env::temp_dir().join(format!("contextrast-ctr-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (src, bin) = (dir.join("ctr.cpp"), dir.join("ctr"));
    std::fs::write(&src, source).expect("write source");
    let built = Command::new(&compiler)
        .args(["-std=c++17", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run c++");
    assert!(
        built.status.success(),
        "contrast.cu's device functions do not build as C++:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    // Masks: empty, full, one pixel, random densities, a rectangle; odd and degenerate sizes.
    let mut rng = Rng(9);
    let mut cases: Vec<(u64, usize, usize, Vec<bool>)> = Vec::new();
    for (i, &(h, w)) in [(1, 1), (1, 9), (9, 1), (7, 5), (16, 16), (33, 17), (64, 96)]
        .iter()
        .enumerate()
    {
        let n = h * w;
        let base = anchor_key_base(i as u64, 17 * i as u64, 1 + i as u32 % 4, i as u32);
        let mut one = vec![false; n];
        one[n / 2] = true;
        let mut rect = vec![false; n];
        for r in h / 4..(3 * h).div_ceil(4) {
            for c in w / 3..w {
                rect[r * w + c] = true;
            }
        }
        for m in [vec![false; n], vec![true; n], one, rect] {
            cases.push((base, h, w, m));
        }
        for density in [0.1, 0.5, 0.9, 0.99] {
            cases.push((base, h, w, rng.mask(n, density)));
        }
    }
    let mut input = format!("{}\n", cases.len());
    for (base, h, w, m) in &cases {
        input.push_str(&format!("{base} {h} {w}\n"));
        for &v in m {
            input.push_str(if v { "1 " } else { "0 " });
        }
        input.push('\n');
    }
    // Input through a file: a pipe written while the output pipe fills would deadlock.
    let input_path = dir.join("input.txt");
    std::fs::write(&input_path, input).expect("write input");
    let out = Command::new(&bin)
        .stdin(std::fs::File::open(&input_path).expect("open input"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the host build");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    for (base, h, w, m) in &cases {
        let keys: Vec<u64> = lines
            .next()
            .expect("keys line")
            .split_whitespace()
            .map(|v| v.parse().expect("key"))
            .collect();
        let want: Vec<u64> = (0..(h * w) as u32)
            .map(|p| key_from_base(*base, p))
            .collect();
        assert_eq!(keys, want, "keys {h}×{w}");
        let d2: Vec<u32> = lines
            .next()
            .expect("EDT line")
            .split_whitespace()
            .map(|v| v.parse().expect("d2"))
            .collect();
        let want = edt_squared(m, *h, *w).expect("edt_squared");
        assert_eq!(d2, want, "EDT {h}×{w}");
    }
}
