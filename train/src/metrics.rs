//! Segmentation metrics: confusion matrix, per-class IoU / mIoU, pixel accuracy, and Boundary
//! IoU (Cheng et al., CVPR 2021), which scores the contour quality BANE targets and mIoU barely
//! sees (a one-pixel boundary error on a large region hardly moves its IoU).
use crate::backend::IGNORE;
use crate::{Error, Result};

/// Counts `[gt][pred]` over all labelled pixels (label [`IGNORE`] skipped).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An all-zero `classes × classes` matrix.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels of ground-truth class `gt` predicted as `pred`.
    pub fn count(&self, gt: usize, pred: usize) -> u64 {
        self.counts[gt * self.classes + pred]
    }

    /// Adds one prediction/label pair (same length, flat). Errors on a length mismatch or a
    /// class id out of range (a label ≥ classes that is not 255 means the dataset and model
    /// disagree on classes: silently skipping it would inflate the scores).
    pub fn add(&mut self, pred: &[u8], label: &[u8]) -> Result<()> {
        if pred.len() != label.len() {
            return Err(Error::Shape(format!(
                "prediction has {} pixels, label {}",
                pred.len(),
                label.len()
            )));
        }
        let c = self.classes;
        for (&p, &l) in pred.iter().zip(label) {
            if l == IGNORE {
                continue;
            }
            let (p, l) = (p as usize, l as usize);
            if p >= c || l >= c {
                return Err(Error::Shape(format!(
                    "class id {} out of range for {c} classes",
                    p.max(l)
                )));
            }
            self.counts[l * c + p] += 1;
        }
        Ok(())
    }

    /// Rebuilds a matrix from `counts[gt][pred]` (as [`ConfusionMatrix::counts`] returns and
    /// reports store it). The class count is the number of rows; missing entries count as 0.
    pub fn from_counts(rows: Vec<Vec<u64>>) -> Self {
        let c = rows.len();
        let mut m = ConfusionMatrix::new(c);
        for (g, row) in rows.iter().enumerate() {
            for (p, &v) in row.iter().take(c).enumerate() {
                m.counts[g * c + p] = v;
            }
        }
        m
    }

    /// The counts as rows `[gt][pred]`, for reports (JSON) and [`ConfusionMatrix::from_counts`].
    pub fn counts(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    /// Adds another matrix (e.g. from a parallel worker).
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        if other.classes != self.classes {
            return Err(Error::Shape(format!(
                "merging {} classes into {}",
                other.classes, self.classes
            )));
        }
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// Ground-truth pixels of class `k` (row sum).
    pub fn gt_total(&self, k: usize) -> u64 {
        (0..self.classes).map(|p| self.count(k, p)).sum()
    }

    /// Pixels predicted as class `k` (column sum, labelled pixels only).
    pub fn pred_total(&self, k: usize) -> u64 {
        (0..self.classes).map(|g| self.count(g, k)).sum()
    }

    /// Per-class IoU = TP / (TP + FP + FN); `None` for a class absent from both prediction and
    /// ground truth (it must not count as 0 or as 1 in the mean).
    pub fn iou(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|k| {
                let tp = self.count(k, k);
                let union = self.gt_total(k) + self.pred_total(k) - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes that occur (0 when nothing was labelled or predicted).
    pub fn miou(&self) -> f64 {
        mean_present(&self.iou())
    }

    /// Fraction of labelled pixels predicted correctly (0 when none was labelled).
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.classes).map(|k| self.count(k, k)).sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }

    /// An aligned text table: per class IoU, recall, ground-truth and predicted pixels, then
    /// mIoU and pixel accuracy. Classes without a name in `class_names` are shown as `class<i>`.
    pub fn table(&self, class_names: &[String]) -> String {
        let names: Vec<String> = (0..self.classes)
            .map(|k| {
                class_names
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| format!("class{k}"))
            })
            .collect();
        let width = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let pct =
            |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.2}", 100.0 * v));
        let total: u64 = self.counts.iter().sum();
        let mut out = format!(
            "{:<width$}  {:>7}  {:>7}  {:>12}  {:>12}\n",
            "class", "IoU %", "recall%", "gt px", "pred px"
        );
        for (k, (name, iou)) in names.iter().zip(self.iou()).enumerate() {
            let gt = self.gt_total(k);
            let recall = (gt > 0).then(|| self.count(k, k) as f64 / gt as f64);
            out += &format!(
                "{name:<width$}  {:>7}  {:>7}  {:>12}  {:>12}\n",
                pct(iou),
                pct(recall),
                gt,
                self.pred_total(k)
            );
        }
        let overall = |v: f64| pct((total > 0).then_some(v));
        out += &format!("{:<width$}  {:>7}\n", "mIoU", overall(self.miou()));
        out += &format!(
            "{:<width$}  {:>7}\n",
            "pixacc",
            overall(self.pixel_accuracy())
        );
        out
    }
}

/// Mean of the present values; 0 when none is (an empty evaluation scores nothing, and a plain
/// `f64` keeps reports and JSON simple; callers refuse empty evaluations upstream).
fn mean_present(v: &[Option<f64>]) -> f64 {
    let present: Vec<f64> = v.iter().flatten().copied().collect();
    if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f64>() / present.len() as f64
    }
}

/// Band width `d` for an `h`×`w` image: `max(1, round(0.02 · diagonal))`, rounding half to
/// even as Python's `round` does in the reference implementation (75×100 gives 2.5 → 2).
pub fn boundary_width(h: usize, w: usize) -> usize {
    let diag = ((h * h + w * w) as f64).sqrt();
    ((0.02 * diag).round_ties_even() as usize).max(1)
}

/// The boundary band of a binary mask (row-major `h`×`w`), exactly as the reference
/// implementation (`boundary_iou_api`, `mask_to_boundary`) computes it with OpenCV: the mask is
/// padded by one background pixel, eroded `d` times by a 3×3 square, and the eroded mask is
/// subtracted. So the band is the mask pixels within Chebyshev distance `d` of a background
/// pixel — a (2d+1)×(2d+1) square, not a disc — and **the image border counts as background**
/// (a mask touching the border has a band along it).
pub fn boundary_band(mask: &[bool], h: usize, w: usize, d: usize) -> Vec<bool> {
    // Erosion by a square is separable: a pixel survives iff every pixel within `d` along its
    // row survives, then the same along its column. `inside_run` does one 1-D pass.
    let mut rows = vec![false; h * w];
    for y in 0..h {
        inside_run(&mask[y * w..(y + 1) * w], &mut rows[y * w..(y + 1) * w], d);
    }
    let mut col = vec![false; h];
    let mut eroded_col = vec![false; h];
    let mut band = vec![false; h * w];
    for x in 0..w {
        for y in 0..h {
            col[y] = rows[y * w + x];
        }
        inside_run(&col, &mut eroded_col, d);
        for y in 0..h {
            band[y * w + x] = mask[y * w + x] && !eroded_col[y];
        }
    }
    band
}

/// `out[i]` = every `line[j]` with `|i − j| ≤ d` is set, positions outside the line counting as
/// unset (the zero padding).
fn inside_run(line: &[bool], out: &mut [bool], d: usize) {
    let n = line.len();
    // Distance to the nearest unset position on the left (index −1 is unset)...
    let mut left = vec![0usize; n];
    let mut run = 0;
    for i in 0..n {
        run = if line[i] { run + 1 } else { 0 };
        left[i] = run;
    }
    // ...and on the right (index n is unset); both must exceed d.
    run = 0;
    for i in (0..n).rev() {
        run = if line[i] { run + 1 } else { 0 };
        out[i] = left[i] > d && run > d;
    }
}

/// Boundary IoU per class, accumulated over images: for each class, the intersection and union
/// of the prediction's and the ground truth's boundary bands ([`boundary_band`]), summed over
/// images before dividing (as the confusion matrix does for mIoU). Bands are computed on the
/// full masks (an ignored region is simply not the class), then pixels labelled 255 are left
/// out of both counts.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundaryIou {
    intersection: Vec<u64>,
    union: Vec<u64>,
}

impl BoundaryIou {
    /// Empty totals for `classes` classes.
    pub fn new(classes: usize) -> Self {
        BoundaryIou {
            intersection: vec![0; classes],
            union: vec![0; classes],
        }
    }

    /// Adds one `h`×`w` image. Errors on lengths that do not match `h·w` or out-of-range ids.
    pub fn add(&mut self, pred: &[u8], label: &[u8], h: usize, w: usize) -> Result<()> {
        let c = self.intersection.len();
        if pred.len() != h * w || label.len() != h * w {
            return Err(Error::Shape(format!(
                "boundary IoU of {h}x{w}: prediction has {} pixels, label {}",
                pred.len(),
                label.len()
            )));
        }
        if let Some(&bad) = pred
            .iter()
            .chain(label)
            .find(|&&v| v as usize >= c && v != IGNORE)
        {
            return Err(Error::Shape(format!(
                "class id {bad} out of range for {c} classes"
            )));
        }
        let d = boundary_width(h, w);
        for k in 0..c {
            let kk = k as u8;
            let gt_mask: Vec<bool> = label.iter().map(|&l| l == kk).collect();
            let pred_mask: Vec<bool> = pred.iter().map(|&p| p == kk).collect();
            if !gt_mask.iter().any(|&b| b) && !pred_mask.iter().any(|&b| b) {
                continue;
            }
            let gb = boundary_band(&gt_mask, h, w, d);
            let pb = boundary_band(&pred_mask, h, w, d);
            for i in 0..h * w {
                if label[i] == IGNORE {
                    continue;
                }
                self.intersection[k] += (gb[i] && pb[i]) as u64;
                self.union[k] += (gb[i] || pb[i]) as u64;
            }
        }
        Ok(())
    }

    /// Per-class Boundary IoU; `None` for a class whose bands never appeared.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.intersection
            .iter()
            .zip(&self.union)
            .map(|(&i, &u)| (u > 0).then(|| i as f64 / u as f64))
            .collect()
    }

    /// Mean over the classes that appeared (0 when none did).
    pub fn mean(&self) -> f64 {
        mean_present(&self.per_class())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `h`×`w` map of `bg` with the rectangle rows `y0..y1`, cols `x0..x1` set to `fg`.
    fn rect(
        h: usize,
        w: usize,
        bg: u8,
        fg: u8,
        (y0, y1): (usize, usize),
        (x0, x1): (usize, usize),
    ) -> Vec<u8> {
        let mut m = vec![bg; h * w];
        for y in y0..y1 {
            for x in x0..x1 {
                m[y * w + x] = fg;
            }
        }
        m
    }

    #[test]
    fn confusion_matrix_counts_and_iou() {
        let mut cm = ConfusionMatrix::new(3);
        // gt:   0 0 1 1 2 255
        // pred: 0 1 1 1 0 2
        cm.add(&[0, 1, 1, 1, 0, 2], &[0, 0, 1, 1, 2, 255]).unwrap();
        assert_eq!(cm.count(0, 1), 1);
        assert_eq!(cm.count(2, 0), 1);
        let iou = cm.iou();
        // class 0: tp 1, fp 1 (the 2 predicted as 0), fn 1 → 1/3; class 1: tp 2, fp 1 → 2/3;
        // class 2: tp 0, fn 1 → 0.
        assert_eq!(iou, vec![Some(1.0 / 3.0), Some(2.0 / 3.0), Some(0.0)]);
        assert!((cm.miou() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(cm.pixel_accuracy(), 3.0 / 5.0);
    }

    #[test]
    fn absent_class_is_none_and_excluded_from_mean() {
        let mut cm = ConfusionMatrix::new(3);
        cm.add(&[0, 0, 1], &[0, 0, 1]).unwrap();
        assert_eq!(cm.iou(), vec![Some(1.0), Some(1.0), None]);
        assert_eq!(cm.miou(), 1.0);
        assert_eq!(ConfusionMatrix::new(2).miou(), 0.0);
        assert_eq!(ConfusionMatrix::new(2).pixel_accuracy(), 0.0);
    }

    #[test]
    fn confusion_matrix_rejects_bad_input() {
        let mut cm = ConfusionMatrix::new(2);
        assert!(
            cm.add(&[0, 1], &[0])
                .unwrap_err()
                .to_string()
                .contains("2 pixels")
        );
        assert!(
            cm.add(&[0], &[5])
                .unwrap_err()
                .to_string()
                .contains("class id 5")
        );
        assert!(
            cm.add(&[7], &[255]).is_ok(),
            "ignored pixels are not inspected"
        );
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = ConfusionMatrix::new(2);
        a.add(&[0, 1], &[0, 0]).unwrap();
        let mut b = ConfusionMatrix::new(2);
        b.add(&[1], &[1]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!((a.count(0, 0), a.count(0, 1), a.count(1, 1)), (1, 1, 1));
        assert!(a.merge(&ConfusionMatrix::new(3)).is_err());
        assert_eq!(a.counts(), vec![vec![1, 1], vec![0, 1]]);
        assert_eq!(ConfusionMatrix::from_counts(a.counts()), a);
        // Ragged rows: missing entries are 0, extra ones dropped.
        let r = ConfusionMatrix::from_counts(vec![vec![5], vec![1, 2, 9]]);
        assert_eq!(r.counts(), vec![vec![5, 0], vec![1, 2]]);
    }

    #[test]
    fn table_is_aligned_and_names_classes() {
        let mut cm = ConfusionMatrix::new(3);
        cm.add(&[0, 1, 1, 0], &[0, 1, 1, 1]).unwrap();
        let t = cm.table(&["background".into(), "scratch".into()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 1 + 3 + 2);
        assert!(
            lines[1].starts_with("background") && lines[1].contains("50.00"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("scratch   ") && lines[2].contains("66.67"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("class2") && lines[3].contains(" -"),
            "{t}"
        );
        // Header and class rows have the same width, so the columns line up.
        assert!(lines[..4].iter().all(|l| l.len() == lines[0].len()), "{t}");
        assert!(
            lines[4].starts_with("mIoU") && lines[4].contains("58.33"),
            "{t}"
        );
    }

    #[test]
    fn band_width_follows_reference_rounding() {
        assert_eq!(boundary_width(20, 20), 1); // 0.566 → 1
        assert_eq!(boundary_width(3, 4), 1); // 0.1 rounds to 0, clamped to 1
        assert_eq!(boundary_width(75, 100), 2); // 2.5 → 2 (half to even, like Python)
        assert_eq!(boundary_width(512, 512), 14); // 14.48
    }

    #[test]
    fn band_is_inner_ring_and_border_counts_as_background() {
        // A 6×6 square inside 10×10, d = 1: the band is its outer ring, 36 − 16 = 20 pixels.
        let m: Vec<bool> = rect(10, 10, 0, 1, (2, 8), (2, 8))
            .iter()
            .map(|&v| v == 1)
            .collect();
        let band = boundary_band(&m, 10, 10, 1);
        assert_eq!(band.iter().filter(|&&b| b).count(), 20);
        assert!(band[2 * 10 + 2] && !band[3 * 10 + 3]);
        // d = 2 takes two rings: 36 − 4.
        assert_eq!(
            boundary_band(&m, 10, 10, 2).iter().filter(|&&b| b).count(),
            32
        );
        // A full 5×5 mask has a band along the image border (padding is background): 25 − 9.
        let full = vec![true; 25];
        let band = boundary_band(&full, 5, 5, 1);
        assert_eq!(band.iter().filter(|&&b| b).count(), 16);
        assert!(!band[2 * 5 + 2]);
    }

    #[test]
    fn band_uses_square_not_disc() {
        // A full 21×21 mask with one background pixel at the centre, d = 2. Around the hole the
        // band is its 5×5 square neighbourhood (24 pixels; a Euclidean disc would give 12), plus
        // two rings along the image border (441 − 17²).
        let mut m = vec![true; 21 * 21];
        m[10 * 21 + 10] = false;
        let band = boundary_band(&m, 21, 21, 2);
        assert_eq!(band.iter().filter(|&&b| b).count(), 24 + (441 - 289));
        assert!(
            band[12 * 21 + 12],
            "diagonal offset (2, 2) is within the square"
        );
        assert!(!band[13 * 21 + 10], "offset (3, 0) is outside");
    }

    #[test]
    fn boundary_iou_identical_is_one() {
        let m = rect(20, 20, 0, 1, (5, 11), (5, 11));
        let mut b = BoundaryIou::new(2);
        b.add(&m, &m, 20, 20).unwrap();
        assert_eq!(b.per_class(), vec![Some(1.0), Some(1.0)]);
        assert_eq!(b.mean(), 1.0);
        assert_eq!(BoundaryIou::new(2).mean(), 0.0);
    }

    #[test]
    fn boundary_iou_square_shifted_by_one_pixel() {
        // 6×6 square, prediction shifted right by 1, 20×20 image so d = 1. Each band is the
        // square's 20-pixel ring; they share the top and bottom rows' 5 common columns: 10
        // pixels. Boundary IoU = 10 / (20 + 20 − 10) = 1/3 (mask IoU would be 30/42).
        let gt = rect(20, 20, 0, 1, (5, 11), (5, 11));
        let pred = rect(20, 20, 0, 1, (5, 11), (6, 12));
        let mut b = BoundaryIou::new(2);
        b.add(&pred, &gt, 20, 20).unwrap();
        let fg = b.per_class()[1].unwrap();
        assert!((fg - 1.0 / 3.0).abs() < 1e-12, "{fg}");
        let mut cm = ConfusionMatrix::new(2);
        cm.add(&pred, &gt).unwrap();
        assert!((cm.iou()[1].unwrap() - 30.0 / 42.0).abs() < 1e-12);
    }

    #[test]
    fn boundary_iou_skips_ignored_pixels_and_checks_input() {
        // Row 5 (the square's top row) is ignored.
        let gt = rect(20, 20, 0, 1, (5, 11), (5, 11));
        let mut label = gt.clone();
        label[5 * 20..6 * 20].fill(IGNORE);
        let mut b = BoundaryIou::new(2);
        b.add(&gt, &label, 20, 20).unwrap();
        // Prediction = the original square: ring of 20, of which row 5 (6 pixels) is ignored,
        // leaving 14 counted. Ground truth (label == 1) is rows 6..11: its ring is 30 − 12 = 18
        // pixels. Shared: row 10 (6) and columns 5 and 10 of rows 6..10 (8) = 14.
        // Boundary IoU = 14 / (14 + 18 − 14) = 7/9.
        let fg = b.per_class()[1].unwrap();
        assert!((fg - 7.0 / 9.0).abs() < 1e-12, "{fg}");
        assert!(b.add(&gt, &gt[1..], 20, 20).is_err());
        assert!(
            b.add(&vec![3; 400], &gt, 20, 20)
                .unwrap_err()
                .to_string()
                .contains("class id 3")
        );
    }
}
