//! Running totals of what the contrastive loss sampled, per anchor class, so that a training log
//! can show whether BANE found mis-predicted regions to draw hard negatives from.
use super::contrast::AnchorCount;
use std::collections::BTreeMap;

/// Totals over the steps since the last report, summed over scales.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassSampling {
    /// The class's name (its id when the name is unknown).
    pub class: String,
    /// Anchors formed (one per scale and step where the class had positives and negatives).
    pub anchors: u64,
    /// Positives sampled.
    pub positives: u64,
    /// BANE hard negatives sampled.
    pub hard: u64,
    /// Random negatives sampled.
    pub random: u64,
}

impl ClassSampling {
    /// Share of this class's negatives that BANE supplied.
    pub fn hard_share(&self) -> f64 {
        let all = self.hard + self.random;
        if all == 0 {
            0.0
        } else {
            self.hard as f64 / all as f64
        }
    }
}

/// Accumulates [`AnchorCount`]s between reports.
pub struct SamplingTally {
    by_class: BTreeMap<u8, [u64; 4]>,
    /// First step of the current window.
    pub since_step: u64,
}

impl SamplingTally {
    /// An empty tally whose window starts at `step`.
    pub fn from_step(step: u64) -> Self {
        SamplingTally {
            by_class: BTreeMap::new(),
            since_step: step,
        }
    }

    /// Adds one step's anchors to their classes' totals.
    pub fn add(&mut self, anchors: &[AnchorCount]) {
        for a in anchors {
            let t = self.by_class.entry(a.class).or_default();
            t[0] += 1;
            t[1] += a.positives as u64;
            t[2] += a.hard as u64;
            t[3] += a.random as u64;
        }
    }

    /// Whether nothing was added since the last [`SamplingTally::take`].
    pub fn is_empty(&self) -> bool {
        self.by_class.is_empty()
    }

    /// The totals in class-id order, named from `names` (the id where a name is missing), and a
    /// fresh start from `step`.
    pub fn take(&mut self, names: &[String], step: u64) -> Vec<ClassSampling> {
        self.since_step = step;
        std::mem::take(&mut self.by_class)
            .into_iter()
            .map(|(id, t)| ClassSampling {
                class: names
                    .get(usize::from(id))
                    .cloned()
                    .unwrap_or_else(|| id.to_string()),
                anchors: t[0],
                positives: t[1],
                hard: t[2],
                random: t[3],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(class: u8, hard: usize, random: usize) -> AnchorCount {
        AnchorCount {
            scale: 0,
            class,
            positives: 10,
            hard,
            random,
        }
    }

    #[test]
    fn totals_per_class_and_share() {
        let mut t = SamplingTally::from_step(0);
        t.add(&[count(2, 30, 70), count(0, 0, 100)]);
        t.add(&[count(2, 10, 90)]);
        let names = ["belt".to_string(), "part".to_string()];
        let rows = t.take(&names, 5);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].class, "belt");
        assert_eq!(rows[0].hard_share(), 0.0);
        // Class 2 has no name: its id stands in.
        assert_eq!(rows[1].class, "2");
        assert_eq!((rows[1].anchors, rows[1].positives), (2, 20));
        assert!((rows[1].hard_share() - 0.2).abs() < 1e-12);
        assert!(t.is_empty());
        assert_eq!(t.since_step, 5);
    }
}
