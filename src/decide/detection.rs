//! Detection recall and precision against ground truth (the synthetic line, or a replayed
//! generated set): what a line engineer asks of a model — how many real defects got rejected,
//! and how many rejects were real.
use crate::decide::Verdict;
use contextrast_train::data::synth::FrameTruth;
use serde::Serialize;
use std::collections::BTreeMap;

/// Boxes closer than this (frame pixels) count as touching: a thin scratch's predicted box can
/// sit a pixel beside the labelled one.
pub const MATCH_MARGIN_PX: u32 = 2;

/// Running counts of verdicts against ground truth; [`DetectionTally::summary`] gives the rates.
#[derive(Clone, Debug, Default)]
pub struct DetectionTally {
    /// Per class id: (truth instances, detected by a predicted defect of any class).
    truth: BTreeMap<u8, (u64, u64)>,
    predicted: u64,
    predicted_matched: u64,
    frames: u64,
    /// Frame level: defective in truth × rejected.
    tp: u64,
    fp: u64,
    fn_: u64,
}

/// Recall of one defect class.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ClassRecall {
    /// Labelled instances of the class.
    pub truth: u64,
    /// Of those, how many a predicted defect (of any class) touched.
    pub detected: u64,
    /// `detected / truth`; 1 when there were none.
    pub recall: f64,
}

/// Detection rates over a run, against ground truth. A rate whose denominator is 0 reads 1.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DetectionSummary {
    /// Frames tallied.
    pub frames: u64,
    /// Defect instances found (a predicted defect touches the labelled box) / all labelled.
    pub instance_recall: f64,
    /// Predicted defects touching a labelled defect / all predicted.
    pub instance_precision: f64,
    /// Defective frames rejected / defective frames.
    pub frame_recall: f64,
    /// Rejected frames that were defective / rejected frames.
    pub frame_precision: f64,
    /// Defective frames that were rejected.
    pub frames_true_reject: u64,
    /// Good frames that were rejected.
    pub frames_false_reject: u64,
    /// Defective frames that were not rejected.
    pub frames_missed: u64,
    /// Recall per class, by class name (`classN` when the model has no name for it).
    pub by_class: BTreeMap<String, ClassRecall>,
}

fn touches(a: [u32; 4], b: [u32; 4]) -> bool {
    let m = MATCH_MARGIN_PX;
    a[0] < b[2] + m && b[0] < a[2] + m && a[1] < b[3] + m && b[1] < a[3] + m
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl DetectionTally {
    /// Tallies one frame's verdict against its truth (boxes within [`MATCH_MARGIN_PX`] match).
    pub fn add(&mut self, truth: &FrameTruth, verdict: &Verdict) {
        self.frames += 1;
        let boxes: Vec<[u32; 4]> = truth
            .defects
            .iter()
            .map(|d| [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1])
            .collect();
        for (t, b) in truth.defects.iter().zip(&boxes) {
            let e = self.truth.entry(t.class_id).or_default();
            e.0 += 1;
            if verdict.defects.iter().any(|d| touches(d.bbox, *b)) {
                e.1 += 1;
            }
        }
        self.predicted += verdict.defects.len() as u64;
        self.predicted_matched += verdict
            .defects
            .iter()
            .filter(|d| boxes.iter().any(|b| touches(d.bbox, *b)))
            .count() as u64;
        match (truth.is_defective(), verdict.reject) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    /// Frames tallied so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The rates so far; `class_names` names the classes by id.
    pub fn summary(&self, class_names: &[String]) -> DetectionSummary {
        let (t, d) = self
            .truth
            .values()
            .fold((0, 0), |(t, d), &(a, b)| (t + a, d + b));
        DetectionSummary {
            frames: self.frames,
            instance_recall: ratio(d, t),
            instance_precision: ratio(self.predicted_matched, self.predicted),
            frame_recall: ratio(self.tp, self.tp + self.fn_),
            frame_precision: ratio(self.tp, self.tp + self.fp),
            frames_true_reject: self.tp,
            frames_false_reject: self.fp,
            frames_missed: self.fn_,
            by_class: self
                .truth
                .iter()
                .map(|(&c, &(t, d))| {
                    let name = class_names
                        .get(usize::from(c))
                        .cloned()
                        .unwrap_or_else(|| format!("class{c}"));
                    (
                        name,
                        ClassRecall {
                            truth: t,
                            detected: d,
                            recall: ratio(d, t),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Defect;
    use contextrast_train::data::synth::{BBox, DefectTruth};

    fn truth(boxes: &[(u8, [u32; 4])]) -> FrameTruth {
        FrameTruth {
            defects: boxes
                .iter()
                .map(|&(c, [x0, y0, x1, y1])| DefectTruth {
                    class_id: c,
                    area: 1,
                    bbox: BBox { x0, y0, x1, y1 },
                })
                .collect(),
            parts: 1,
        }
    }

    fn verdict(boxes: &[[u32; 4]]) -> Verdict {
        let defects: Vec<Defect> = boxes
            .iter()
            .map(|&bbox| Defect {
                class_id: 3,
                area_px: 1.0,
                bbox,
                score: 0.9,
                mean_score: 0.9,
            })
            .collect();
        Verdict {
            seq: 0,
            defective: !defects.is_empty(),
            reject: !defects.is_empty(),
            defects,
        }
    }

    #[test]
    fn counts_instances_and_frames() {
        let names: Vec<String> = ["belt", "part", "scratch", "pit"]
            .map(String::from)
            .to_vec();
        let mut t = DetectionTally::default();
        // Frame 1: pit found (box one pixel off), scratch missed, one false defect far away.
        t.add(
            &truth(&[(3, [10, 10, 14, 14]), (2, [50, 50, 80, 52])]),
            &verdict(&[[15, 10, 18, 13], [200, 200, 210, 210]]),
        );
        // Frame 2: clean and passed. Frame 3: clean but rejected. Frame 4: defective, passed.
        t.add(&truth(&[]), &verdict(&[]));
        t.add(&truth(&[]), &verdict(&[[0, 0, 3, 3]]));
        t.add(&truth(&[(3, [5, 5, 6, 6])]), &verdict(&[]));
        let s = t.summary(&names);
        assert_eq!(s.frames, 4);
        assert_eq!(
            s.by_class["pit"],
            ClassRecall {
                truth: 2,
                detected: 1,
                recall: 0.5
            }
        );
        assert_eq!(s.by_class["scratch"].detected, 0);
        assert!((s.instance_recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.instance_precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (s.frames_true_reject, s.frames_false_reject, s.frames_missed),
            (1, 1, 1)
        );
        assert_eq!(s.frame_recall, 0.5);
        assert_eq!(s.frame_precision, 0.5);
    }
}
