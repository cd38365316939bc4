//! The contrastive loss never builds a P×N matrix: with 20 000 positives and 20 000 negatives per
//! anchor (P·N·4 bytes = 1.6 GB), the peak extra heap during `contrastive_loss` stays far lower.
use contextrast_train::loss::bane::SamplingConfig;
use contextrast_train::loss::contrast::{ContrastConfig, HostInputs, ScaleInput, contrastive_loss};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_p_by_n_matrix() {
    // One image 800×800 → scale 1 is 200×200 = 40 000 pixels: top half class 0, bottom class 1,
    // so each scale-1 anchor has 20 000 positive and 20 000 negative candidates, all kept.
    let (b, d, full) = (1usize, 4usize, 800usize);
    let strides = [4usize, 8, 16, 32];
    let labels: Vec<u8> = (0..full * full)
        .map(|p| u8::from(p / full >= full / 2))
        .collect();
    let pred = vec![0u8; full * full];
    let z: Vec<Vec<f32>> = strides
        .iter()
        .map(|s| {
            let n = b * d * (full / s) * (full / s);
            (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect()
        })
        .collect();
    let scales: [ScaleInput; 4] = std::array::from_fn(|i| ScaleInput {
        z: &z[i],
        b,
        d,
        h: full / strides[i],
        w: full / strides[i],
        stride: strides[i],
    });
    let cfg = ContrastConfig {
        sampling: SamplingConfig {
            max_pos: 20_000,
            max_neg: 20_000,
            ..SamplingConfig::default()
        },
        ..ContrastConfig::default()
    };
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = contrastive_loss(
        &HostInputs {
            scales: &scales,
            labels: &labels,
            pred: &pred,
            full_h: full,
            full_w: full,
        },
        &cfg,
        1,
        1,
    )
    .unwrap();
    let peak_extra = PEAK.load(Ordering::SeqCst) - before;
    assert_eq!(out.anchors_used[0], 2);
    assert!(out.loss.is_finite());
    let p_by_n = 20_000usize * 20_000 * 4;
    assert!(
        peak_extra < 64 << 20,
        "peak extra heap {peak_extra} bytes (P×N×4 = {p_by_n})"
    );
    println!("peak extra heap {peak_extra} bytes vs P×N×4 = {p_by_n}");
}
