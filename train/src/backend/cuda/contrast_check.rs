//! The check behind the default L_PA path ([`super::contrast::LossPath::Checked`]): the first
//! step computes L_PA with the device kernels *and* the CPU reference and compares them here.
//! Agreement means the kernels run on this GPU as they did in parity testing, so every later
//! step stays on the device; disagreement (a driver, an architecture or a kernel bug) sends the
//! rest of the run to the host reference instead of training on wrong gradients.
use super::Cuda;
use super::contrast::LossPath;
use crate::Result;
use crate::backend::ops::Memory as _;
use crate::backend::{BackendContrast, ContrastReport};
use crate::loss::contrast::{AnchorCount, SCALES};

/// Relative tolerance of the loss and the per-scale losses: f64 sums that differ only in order
/// agree to ~1e-12; the parity suite asserts 1e-9. A wrong kernel is off by far more.
pub const LOSS_RTOL: f64 = 1e-6;
/// Gradient tolerance, relative to the largest reference gradient of the scale: f32 outputs of
/// f64 sums in another order agree to ~1e-7; the parity suite asserts 1e-5.
pub const GRAD_RTOL: f64 = 1e-4;

/// One L_PA result on the host, as the comparison needs it.
pub struct LossSummary<'a> {
    pub loss: f64,
    pub per_scale: [f64; SCALES],
    pub anchors_used: [usize; SCALES],
    pub anchors: &'a [AnchorCount],
    pub grads: [&'a [f32]; SCALES],
}

/// How close the device came: the losses and the worst gradient difference, relative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    pub reference_loss: f64,
    pub device_loss: f64,
    /// max over scales of max|Δg| / max|g_ref|.
    pub worst_grad: f64,
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "L_PA {:.6} on the host vs {:.6} on the device, worst gradient difference {:.1e} of the largest",
            self.reference_loss, self.device_loss, self.worst_grad
        )
    }
}

/// Compares the device's result with the reference: sample sizes identical (sampling is
/// integer-exact), losses within [`LOSS_RTOL`], gradients within [`GRAD_RTOL`]. The error
/// names the first thing that differs, with both values.
pub fn compare(
    reference: &LossSummary<'_>,
    device: &LossSummary<'_>,
) -> std::result::Result<Agreement, String> {
    if reference.anchors_used != device.anchors_used {
        return Err(format!(
            "anchors used per scale {:?} on the host vs {:?} on the device",
            reference.anchors_used, device.anchors_used
        ));
    }
    if reference.anchors.len() != device.anchors.len() {
        return Err(format!(
            "{} anchors on the host vs {} on the device",
            reference.anchors.len(),
            device.anchors.len()
        ));
    }
    if let Some((r, d)) = reference
        .anchors
        .iter()
        .zip(device.anchors)
        .find(|(r, d)| r != d)
    {
        return Err(format!(
            "scale {} class {}: samples (positives, hard, random) ({}, {}, {}) on the host vs \
             ({}, {}, {}) on the device",
            r.scale + 1,
            r.class,
            r.positives,
            r.hard,
            r.random,
            d.positives,
            d.hard,
            d.random
        ));
    }
    let losses = std::iter::once(("L_PA".to_string(), reference.loss, device.loss)).chain(
        (0..SCALES).map(|i| {
            (
                format!("L_{}", i + 1),
                reference.per_scale[i],
                device.per_scale[i],
            )
        }),
    );
    for (what, r, d) in losses {
        if !close(r, d, LOSS_RTOL) {
            return Err(format!(
                "{what} {r} on the host vs {d} on the device (beyond {LOSS_RTOL:e} relative)"
            ));
        }
    }
    let mut worst_grad = 0f64;
    for i in 0..SCALES {
        let (r, d) = (reference.grads[i], device.grads[i]);
        if r.len() != d.len() {
            return Err(format!(
                "scale {} gradient has {} values on the host vs {} on the device",
                i + 1,
                r.len(),
                d.len()
            ));
        }
        let scale = r.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        for (j, (&a, &b)) in r.iter().zip(d).enumerate() {
            let diff = (f64::from(a) - f64::from(b)).abs();
            if diff.is_nan() || diff > GRAD_RTOL * scale.max(f64::MIN_POSITIVE) {
                return Err(format!(
                    "scale {} gradient [{j}] {a} on the host vs {b} on the device (beyond \
                     {GRAD_RTOL:e} of the largest, {scale:e})",
                    i + 1
                ));
            }
            if scale > 0.0 {
                worst_grad = worst_grad.max(diff / scale);
            }
        }
    }
    Ok(Agreement {
        reference_loss: reference.loss,
        device_loss: device.loss,
        worst_grad,
    })
}

/// The path [`LossPath::Checked`] settled on, and why.
#[derive(Clone, Debug)]
pub(super) struct Verdict {
    /// `Device` or `Host`.
    pub path: LossPath,
    pub why: String,
}

impl Cuda {
    /// L_PA on [`LossPath::Checked`], given the two ways to compute it: the first call runs
    /// both, compares them and settles the backend's path; later calls take that path alone. A
    /// call without anchors (nothing to compare but zeros) settles nothing, so the next one
    /// checks again. A failing device path counts as a disagreement; a failing reference is the
    /// caller's error. The checking call waits for the device; later ones do not.
    pub(super) fn contrastive_loss_checked(
        &self,
        host: impl FnOnce() -> Result<BackendContrast<Cuda>>,
        device: impl FnOnce() -> Result<BackendContrast<Cuda>>,
    ) -> Result<BackendContrast<Cuda>> {
        if let Some(v) = self.loss_verdict.get() {
            return match v.path {
                LossPath::Host => host(),
                _ => device(),
            };
        }
        let reference = host()?.resolve(self)?;
        let (path, why, out) = match device()
            .and_then(|d| d.resolve(self))
            .and_then(|d| Ok((self.compare_results(&reference, &d)?, d)))
        {
            Ok((Ok(_), d)) if reference.0.anchors_used.iter().sum::<usize>() == 0 => {
                return Ok(BackendContrast::ready(d));
            }
            Ok((Ok(agreement), d)) => {
                log::info!(
                    "CUDA contrastive loss: the device agrees with the host reference on the first step ({agreement}); it stays on the device"
                );
                let why = format!("agreed with the host reference on the first step ({agreement})");
                (LossPath::Device, why, d)
            }
            Ok((Err(diff), _)) => {
                log::warn!(
                    "CUDA contrastive loss: the device disagrees with the host reference on the first step ({diff}); the rest of the run uses the host reference"
                );
                let why = format!("the device disagreed with it on the first step: {diff}");
                (LossPath::Host, why, reference)
            }
            Err(e) => {
                log::warn!(
                    "CUDA contrastive loss: the device kernels failed on the first step ({e}); the rest of the run uses the host reference"
                );
                let why = format!("the device kernels failed on the first step: {e}");
                (LossPath::Host, why, reference)
            }
        };
        // A second thread that settled first wins; both results are right for this step.
        let _ = self.loss_verdict.set(Verdict { path, why });
        Ok(BackendContrast::ready(out))
    }

    /// [`compare`] of two results of this backend; errors only if a download fails.
    fn compare_results(
        &self,
        reference: &Resolved,
        device: &Resolved,
    ) -> Result<std::result::Result<Agreement, String>> {
        let down = |r: &Resolved| {
            r.1.iter()
                .map(|g| self.download(g))
                .collect::<Result<Vec<_>>>()
        };
        let (rg, dg) = (down(reference)?, down(device)?);
        Ok(compare(&summary(reference, &rg), &summary(device, &dg)))
    }

    /// Where this backend computes L_PA, in words, for benchmark reports and tests.
    pub fn loss_label(&self) -> String {
        match (self.loss_path(), self.loss_verdict.get()) {
            (LossPath::Host, _) => "host reference (CONTEXTRAST_CUDA_LOSS=host)".into(),
            (LossPath::Device, _) => "device, unchecked (CONTEXTRAST_CUDA_LOSS=device)".into(),
            (LossPath::Checked, None) => {
                "device, to be checked against the host reference on the first step".into()
            }
            (LossPath::Checked, Some(v)) => match v.path {
                LossPath::Host => format!("host reference: {}", v.why),
                _ => format!("device: {}", v.why),
            },
        }
    }

    /// The path the first step settled on under [`LossPath::Checked`] (`Device` or `Host`),
    /// `None` before it ran or on the other paths.
    pub fn checked_loss_path(&self) -> Option<LossPath> {
        self.loss_verdict.get().map(|v| v.path)
    }
}

/// An L_PA result read back: its report and its gradients (still on the device).
type Resolved = (ContrastReport, [cudarc::driver::CudaSlice<f32>; SCALES]);

/// `r` with its gradients downloaded (`g`).
fn summary<'a>(r: &'a Resolved, g: &'a [Vec<f32>]) -> LossSummary<'a> {
    let r = &r.0;
    LossSummary {
        loss: r.loss,
        per_scale: r.per_scale,
        anchors_used: r.anchors_used,
        anchors: &r.anchors,
        grads: std::array::from_fn(|i| g[i].as_slice()),
    }
}

/// `|r − d| ≤ rtol·max(|r|, |d|)`, exact zeros equal, NaN never close.
fn close(r: f64, d: f64, rtol: f64) -> bool {
    r == d || (r - d).abs() <= rtol * r.abs().max(d.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors() -> Vec<AnchorCount> {
        vec![
            AnchorCount {
                scale: 0,
                class: 1,
                positives: 30,
                hard: 12,
                random: 4,
            },
            AnchorCount {
                scale: 3,
                class: 2,
                positives: 7,
                hard: 0,
                random: 9,
            },
        ]
    }

    fn grads() -> [Vec<f32>; SCALES] {
        std::array::from_fn(|i| {
            (0..50)
                .map(|j| (j as f32 - 20.0) * 0.01 * (i + 1) as f32)
                .collect()
        })
    }

    fn summary<'a>(a: &'a [AnchorCount], g: &'a [Vec<f32>; SCALES], loss: f64) -> LossSummary<'a> {
        LossSummary {
            loss,
            per_scale: [loss, loss / 2.0, loss / 3.0, loss / 4.0],
            anchors_used: [1, 0, 0, 1],
            anchors: a,
            grads: std::array::from_fn(|i| g[i].as_slice()),
        }
    }

    #[test]
    fn identical_results_agree_with_zero_difference() {
        let (a, g) = (anchors(), grads());
        let ok = compare(&summary(&a, &g, 1.25), &summary(&a, &g, 1.25));
        assert_eq!(
            ok,
            Ok(Agreement {
                reference_loss: 1.25,
                device_loss: 1.25,
                worst_grad: 0.0
            })
        );
    }

    #[test]
    fn summation_order_noise_agrees_and_is_measured() {
        let (a, g) = (anchors(), grads());
        let mut noisy = g.clone();
        noisy[2][7] += 1e-7;
        let ok = compare(&summary(&a, &g, 1.25), &summary(&a, &noisy, 1.25 + 1e-12));
        let worst = ok.map(|o| o.worst_grad).unwrap_or(f64::NAN);
        // One f32 rounding of 1e-7 against the largest scale-3 gradient, 29 · 0.03 = 0.87.
        let want = (f64::from(noisy[2][7]) - f64::from(g[2][7])).abs() / f64::from(g[2][49]);
        assert!(
            want > 0.0 && (worst - want).abs() < 1e-12,
            "{worst} vs {want}"
        );
    }

    #[test]
    fn a_wrong_gradient_is_named_by_scale_and_index() {
        let (a, g) = (anchors(), grads());
        let mut bad = g.clone();
        bad[1][13] *= -1.0;
        let e = compare(&summary(&a, &g, 1.25), &summary(&a, &bad, 1.25)).unwrap_err();
        assert!(e.starts_with("scale 2 gradient [13]"), "{e}");
        let mut nan = g.clone();
        nan[0][0] = f32::NAN;
        let e = compare(&summary(&a, &g, 1.25), &summary(&a, &nan, 1.25)).unwrap_err();
        assert!(e.starts_with("scale 1 gradient [0]"), "{e}");
    }

    #[test]
    fn a_wrong_loss_or_sample_size_is_named() {
        let (a, g) = (anchors(), grads());
        let e = compare(&summary(&a, &g, 1.25), &summary(&a, &g, 1.2501)).unwrap_err();
        assert!(e.starts_with("L_PA 1.25 on the host vs 1.2501"), "{e}");
        let mut fewer = anchors();
        fewer[1].random = 8;
        let e = compare(&summary(&a, &g, 1.25), &summary(&fewer, &g, 1.25)).unwrap_err();
        assert!(
            e.contains("scale 4 class 2") && e.contains("(7, 0, 9)"),
            "{e}"
        );
        let mut used = summary(&a, &g, 1.25);
        used.anchors_used = [1, 1, 0, 1];
        let e = compare(&summary(&a, &g, 1.25), &used).unwrap_err();
        assert!(e.starts_with("anchors used per scale"), "{e}");
    }
}
