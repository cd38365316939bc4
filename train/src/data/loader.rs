//! Batches for training: shuffled per epoch, augmented, normalised to NCHW, prefetched by
//! worker threads.
//!
//! Determinism: batch k of a run is a pure function of (seed, epoch, position). The epoch's
//! order is a shuffle seeded by (seed, epoch); each sample's augmentation is seeded by
//! (seed, epoch, item index). Workers build whole batches from numbered tickets and the
//! consumer reorders them, so thread timing and worker count never change what comes out.
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use image::RgbImage;

use super::augment::{AugmentConfig, Sample, augment};
use super::dataset::Dataset;
use crate::{Error, Result};
use contextrast_model::rng::SplitMix64;

/// Domain tags keep the shuffle and augmentation streams independent of each other.
const SHUFFLE: u64 = 0x5348_5546;
const AUGMENT: u64 = 0x4155_4747;

/// A batch: `images` is NCHW f32 normalised as (x/255 − mean)/std, `labels` is N·H·W class ids
/// (255 = ignore).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[n, 3, h, w]` normalised images.
    pub images: Vec<f32>,
    /// `[n, h, w]` class ids.
    pub labels: Vec<u8>,
    /// Samples in the batch.
    pub n: usize,
    /// Height of every sample, in pixels.
    pub h: usize,
    /// Width of every sample, in pixels.
    pub w: usize,
    /// Epoch this batch belongs to.
    pub epoch: u64,
    /// Dataset item index of each sample.
    pub items: Vec<usize>,
}

/// Converts an image to CHW f32, normalised as (x/255 − mean)/std: the evaluation path, and the
/// same arithmetic the loader uses.
pub fn preprocess(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let rgb: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
    let mut out = vec![0.0; rgb.len()];
    normalise_into(&rgb, mean, std, &mut out);
    out
}

/// HWC RGB (0..255) → CHW normalised, written into `out` (length 3·H·W).
fn normalise_into(hwc: &[f32], mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = hwc.len() / 3;
    let scale = std.map(|s| 1.0 / (255.0 * s));
    let offset = [0, 1, 2].map(|k| mean[k] / std[k]);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for k in 0..3 {
            out[k * plane + i] = px[k] * scale[k] - offset[k];
        }
    }
}

/// Everything needed to build batch k, shared by all workers.
struct BatchPlan {
    ds: Arc<Dataset>,
    indices: Vec<usize>,
    batch: usize,
    aug: Option<AugmentConfig>,
    /// Class ids that `augment.defect_crop` centres crops on.
    defects: Vec<u8>,
    mean: [f32; 3],
    std: [f32; 3],
    seed: u64,
    epoch_start: u64,
    per_epoch: u64,
}

impl BatchPlan {
    /// The epoch's sample order, cached per worker (it changes once per epoch).
    fn order<'c>(&self, epoch: u64, cache: &'c mut Option<(u64, Vec<usize>)>) -> &'c [usize] {
        if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order = self.indices.clone();
            SplitMix64::from_words(&[self.seed, epoch, SHUFFLE]).shuffle(&mut order);
            *cache = Some((epoch, order));
        }
        cache.as_ref().map_or(&[], |(_, o)| o.as_slice())
    }

    /// Builds batch number `k` (0 = the first batch of `epoch_start`).
    fn build(&self, k: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Result<Batch> {
        let epoch = self.epoch_start + k / self.per_epoch;
        let first = (k % self.per_epoch) as usize * self.batch;
        let order = self.order(epoch, cache);
        let n_items = order.len();
        // When the set is smaller than a batch, the order repeats; `round` keeps the repeats'
        // augmentations distinct.
        let picks: Vec<(usize, u64)> = (first..first + self.batch)
            .map(|p| (order[p % n_items], (p / n_items) as u64))
            .collect();
        let mut images = Vec::new();
        let mut labels = Vec::new();
        let (mut h, mut w) = (0, 0);
        for (s, &(item, round)) in picks.iter().enumerate() {
            let (img, mask) = self.ds.load_item(item)?;
            let sample = match &self.aug {
                Some(cfg) => {
                    let mut rng =
                        SplitMix64::from_words(&[self.seed, epoch, item as u64, round, AUGMENT]);
                    augment(
                        &img,
                        &mask,
                        cfg,
                        self.mean.map(|m| m * 255.0),
                        &self.defects,
                        &mut rng,
                    )
                }
                None => Sample {
                    rgb: img.as_raw().iter().map(|&v| f32::from(v)).collect(),
                    labels: mask,
                    h: img.height() as usize,
                    w: img.width() as usize,
                },
            };
            if s == 0 {
                (h, w) = (sample.h, sample.w);
                images = vec![0.0; self.batch * 3 * h * w];
                labels = Vec::with_capacity(self.batch * h * w);
            } else if (sample.h, sample.w) != (h, w) {
                return Err(Error::data(
                    &self.ds.items[item].image,
                    format!(
                        "is {}x{} but other images in the batch are {w}x{h}; without augmentation all images must be one size (set augment.crop)",
                        sample.w, sample.h
                    ),
                ));
            }
            let plane = 3 * h * w;
            normalise_into(
                &sample.rgb,
                self.mean,
                self.std,
                &mut images[s * plane..(s + 1) * plane],
            );
            labels.extend_from_slice(&sample.labels);
        }
        Ok(Batch {
            images,
            labels,
            n: self.batch,
            h,
            w,
            epoch,
            items: picks.into_iter().map(|(i, _)| i).collect(),
        })
    }
}

/// Background workers and the reorder buffer that restores ticket order.
struct Workers {
    jobs: Option<Sender<u64>>,
    results: Receiver<(u64, Result<Batch>)>,
    pending: BTreeMap<u64, Result<Batch>>,
    issued: u64,
    handles: Vec<JoinHandle<()>>,
}

enum Mode {
    /// `workers == 0`: batches are built on the caller's thread (debugging, tests).
    Inline(Option<(u64, Vec<usize>)>),
    Threads(Workers),
    /// The arguments were invalid; every `next_batch` reports why.
    Broken(PathBuf, String),
}

/// Prefetching, deterministic batch loader.
pub struct Loader {
    plan: Arc<BatchPlan>,
    next: u64,
    mode: Mode,
}

fn worker(plan: Arc<BatchPlan>, jobs: Receiver<u64>, results: Sender<(u64, Result<Batch>)>) {
    let mut cache = None;
    while let Ok(k) = jobs.recv() {
        let r = catch_unwind(AssertUnwindSafe(|| plan.build(k, &mut cache))).unwrap_or_else(|_| {
            Err(Error::data(
                &plan.ds.root,
                format!("loader worker panicked while building batch {k}"),
            ))
        });
        if results.send((k, r)).is_err() {
            break;
        }
    }
}

/// How a [`Loader`] builds its batches: all but the data set and the items it draws from.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Items per batch.
    pub batch: usize,
    /// `None` loads the images as they are (evaluation).
    pub aug: Option<AugmentConfig>,
    /// Per-channel normalisation, `(x − mean) / std`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation of that normalisation (positive).
    pub std: [f32; 3],
    /// With the epoch, picks each epoch's order and each batch's augmentation.
    pub seed: u64,
    /// The epoch batch 0 belongs to.
    pub epoch_start: u64,
    /// Worker threads; 0 builds batches on the calling thread.
    pub workers: usize,
}

impl Loader {
    /// Starts the loader. Invalid arguments (empty `indices`, `batch == 0`, an index out of
    /// range, a bad augmentation config) do not panic: `next_batch` returns the error.
    pub fn new(ds: Arc<Dataset>, indices: Vec<usize>, cfg: LoaderConfig) -> Loader {
        Self::new_at(ds, indices, cfg, 0)
    }

    /// Like [`Loader::new`], but the first batch returned is batch number `first_batch` of the
    /// same deterministic sequence: a resumed run continues exactly where it stopped, without
    /// building the batches it already trained on.
    pub fn new_at(
        ds: Arc<Dataset>,
        indices: Vec<usize>,
        cfg: LoaderConfig,
        first_batch: u64,
    ) -> Loader {
        let LoaderConfig {
            batch,
            aug,
            mean,
            std,
            seed,
            epoch_start,
            workers,
        } = cfg;
        let root = ds.root.clone();
        let problem = if indices.is_empty() {
            Some("loader given no items (empty set)".to_string())
        } else if batch == 0 {
            Some("batch size is 0".to_string())
        } else if let Some(&i) = indices.iter().find(|&&i| i >= ds.items.len()) {
            Some(format!(
                "item index {i} out of range ({} items)",
                ds.items.len()
            ))
        } else if std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            Some(format!("std {std:?} must be positive"))
        } else {
            aug.as_ref()
                .and_then(|a| a.validate(&root).err())
                .map(|e| e.to_string())
        };
        let per_epoch = (indices.len() / batch.max(1)).max(1) as u64;
        let plan = Arc::new(BatchPlan {
            defects: ds.classes.defect_ids(),
            ds,
            indices,
            batch,
            aug,
            mean,
            std,
            seed,
            epoch_start,
            per_epoch,
        });
        let mode = if let Some(msg) = problem {
            Mode::Broken(root, msg)
        } else if workers == 0 {
            Mode::Inline(None)
        } else {
            let prefetch = 2 * workers as u64;
            let (job_tx, job_rx) = unbounded();
            let (res_tx, res_rx) = bounded(prefetch as usize);
            let handles = (0..workers)
                .map(|_| {
                    let (plan, jobs, results) = (plan.clone(), job_rx.clone(), res_tx.clone());
                    std::thread::spawn(move || worker(plan, jobs, results))
                })
                .collect();
            // At most `prefetch` tickets are out at once, so results never block and the
            // reorder buffer stays small.
            for k in first_batch..first_batch + prefetch {
                let _ = job_tx.send(k);
            }
            Mode::Threads(Workers {
                jobs: Some(job_tx),
                results: res_rx,
                pending: BTreeMap::new(),
                issued: first_batch + prefetch,
                handles,
            })
        };
        Loader {
            plan,
            next: first_batch,
            mode,
        }
    }

    /// Full batches per epoch (the remainder of a shuffled epoch is dropped; a set smaller than
    /// one batch repeats items to fill it).
    pub fn batches_per_epoch(&self) -> u64 {
        self.plan.per_epoch
    }

    /// Epoch of the batch that `next_batch` returns next.
    pub fn epoch(&self) -> u64 {
        self.plan.epoch_start + self.next / self.plan.per_epoch
    }

    /// The next batch, in deterministic order. A data error (unreadable image, bad mask...)
    /// is returned here; the loader then moves on to the following batch.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let k = self.next;
        let result = match &mut self.mode {
            Mode::Broken(path, msg) => return Err(Error::data(path.clone(), msg.clone())),
            Mode::Inline(cache) => self.plan.build(k, cache),
            Mode::Threads(w) => {
                let r = loop {
                    if let Some(r) = w.pending.remove(&k) {
                        break r;
                    }
                    match w.results.recv_timeout(Duration::from_millis(200)) {
                        Ok((j, r)) => {
                            w.pending.insert(j, r);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if w.handles.iter().any(|h| h.is_finished()) {
                                return Err(Error::data(
                                    &self.plan.ds.root,
                                    "a loader worker stopped unexpectedly",
                                ));
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            return Err(Error::data(
                                &self.plan.ds.root,
                                "loader workers stopped unexpectedly",
                            ));
                        }
                    }
                };
                if let Some(jobs) = &w.jobs {
                    let _ = jobs.send(w.issued);
                    w.issued += 1;
                }
                r
            }
        };
        self.next += 1;
        result
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Mode::Threads(w) = &mut self.mode {
            // Closing the job queue ends every worker after its current batch.
            w.jobs = None;
            for h in w.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
