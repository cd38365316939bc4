//! The line config (TOML): where frames come from, which model, how defects are decided, what
//! a reject does. Every error names the file and the key. Relative paths are relative to the
//! config file, so a config and its model can move together.
use crate::capture::replay::ReplayConfig;
use crate::capture::synthetic::SyntheticConfig;
use crate::capture::v4l::V4lConfig;
use crate::decide::{DecisionConfig, Roi};
use crate::infer::{ModelConfig, ModelInfo};
use crate::pipeline::Overflow;
use crate::{Error, Result};
use contextrast_train::data::synth::Variant;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole line config file: one TOML table per field below (`[source]`, `[model]`, ...).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineConfig {
    /// `[source]`: where frames come from.
    pub source: SourceConfig,
    /// `[model]`: which model file, and how to run it.
    pub model: ModelConfig,
    /// `[pipeline]`: queue between capture and inference, status lines.
    pub pipeline: PipelineConfig,
    /// `[decision]`: when a frame counts as defective and when it is rejected.
    pub decision: DecisionToml,
    /// `[reject]`: what a confirmed defect does (pulse output and timing).
    pub reject: RejectConfig,
    /// `[faults]`: outputs that tell the line something is wrong.
    pub faults: FaultsConfig,
    /// `[events]`: JSONL events and defect images; absent = none written.
    pub events: Option<crate::record::events::EventsConfig>,
    /// The file this was read from (for error messages); not a TOML key.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `source.kind`: which sub-table of `[source]` is used.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The procedural line of the training crate, `[source.synthetic]`.
    #[default]
    Synthetic,
    /// A folder of images played back, `[source.replay]`.
    Replay,
    /// A V4L2 camera, `[source.v4l2]`.
    V4l2,
}

/// `[source]`: `kind` picks one of the sub-tables; the others may stay in the file, so switching
/// a line between camera and replay is one word.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Which of the sub-tables below is used (`synthetic`, `replay` or `v4l2`).
    pub kind: SourceKind,
    /// `[source.synthetic]`: the rendered line.
    pub synthetic: SyntheticConfig,
    /// `[source.replay]`: a folder of images.
    pub replay: ReplayConfig,
    /// `[source.v4l2]`: a camera.
    pub v4l2: V4lConfig,
}

/// `[pipeline]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Frames queued between capture and inference.
    pub queue: usize,
    /// `auto`, `drop-oldest` or `wait` (see `pipeline::Overflow`).
    pub overflow: Overflow,
    /// Seconds between status lines; 0 = none.
    pub status_every_s: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue: 4,
            overflow: Overflow::Auto,
            status_every_s: 1.0,
        }
    }
}

/// One region of interest: exactly one of `rect = [x, y, w, h]` or `polygon = [[x, y], ...]`,
/// in frame pixels.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiToml {
    /// `[x, y, w, h]`, frame pixels; `w` and `h` must be positive.
    pub rect: Option<[f32; 4]>,
    /// `[[x, y], ...]`, frame pixels, at least 3 points.
    pub polygon: Option<Vec<[f32; 2]>>,
}

/// `[decision]`, with class names; resolved against the model's classes at start-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionToml {
    /// Probability a defect class needs, unless `thresholds` names it.
    pub threshold: f32,
    /// Per-class thresholds by class name, in (0, 1]; overrides `threshold` for those classes.
    pub thresholds: BTreeMap<String, f32>,
    /// Smallest defect that counts, in frame pixels (or mm² through `px_per_mm`).
    pub min_area_px: f64,
    /// Smallest defect that counts, in mm² on the belt; needs `px_per_mm`, and replaces
    /// `min_area_px`.
    pub min_area_mm2: Option<f64>,
    /// Camera calibration: pixels per millimetre on the belt plane.
    pub px_per_mm: Option<f64>,
    /// Per-class minimum area in frame pixels, overriding the above.
    pub min_area_px_by_class: BTreeMap<String, f64>,
    /// Reject only when `k` of the last `n` frames were defective.
    pub confirm_k: usize,
    /// History length `n` of the k-of-n confirmation (see `confirm_k`).
    pub confirm_n: usize,
    /// Regions of interest; empty = the whole frame, otherwise the union of the regions.
    pub roi: Vec<RoiToml>,
}

impl Default for DecisionToml {
    fn default() -> Self {
        DecisionToml {
            threshold: 0.5,
            thresholds: BTreeMap::new(),
            min_area_px: 4.0,
            min_area_mm2: None,
            px_per_mm: None,
            min_area_px_by_class: BTreeMap::new(),
            confirm_k: 1,
            confirm_n: 1,
            roi: Vec::new(),
        }
    }
}

/// `[reject]`: what a confirmed defect does. The pulse starts at the frame's capture time +
/// `delay_ms` (the part's travel from camera to ejector), so the delay must exceed the
/// pipeline's worst latency + `min_lead_ms`; a verdict later than that is counted late and
/// raises an event instead of kicking the wrong part.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectConfig {
    /// `log`: pulses written to the log (demo, machines without GPIO); `gpio`: the line `gpio`.
    pub output: String,
    /// The output line when `output = "gpio"` (required then).
    pub gpio: Option<crate::line::gpio::LineSpec>,
    /// Camera → ejector travel, ms: the pulse starts this long after capture (> `min_lead_ms`).
    pub delay_ms: f64,
    /// Pulse width in ms; must be > 0.
    pub pulse_ms: f64,
    /// A verdict must arrive this many ms before its pulse is due, else it is late (not fired).
    pub min_lead_ms: f64,
    /// Time pulses by belt travel instead: encoder edges on a GPIO input line.
    pub encoder: Option<EncoderConfig>,
}

/// `[reject.encoder]`: the pulse starts when the belt has moved `delay_counts` encoder edges
/// since the frame (the pulse width stays `pulse_ms`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// GPIO input line whose edges are counted.
    pub line: crate::line::gpio::LineSpec,
    /// Camera → ejector travel in encoder edges; must exceed `min_lead_counts`.
    pub delay_counts: u64,
    /// A verdict must arrive this many edges before its pulse is due, else it is late; default 0.
    #[serde(default)]
    pub min_lead_counts: u64,
}

impl Default for RejectConfig {
    fn default() -> Self {
        RejectConfig {
            output: "log".into(),
            gpio: None,
            delay_ms: 250.0,
            pulse_ms: 50.0,
            min_lead_ms: 1.0,
            encoder: None,
        }
    }
}

/// What the line does while the inspection is blind (camera down).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BlindPolicy {
    /// Only the fault line (if any) and an event.
    None,
    /// Also hold the stop-line output: the conveyor stops until frames flow again.
    #[default]
    StopLine,
}

/// `[faults]`: a fault line (active while the camera is down or a reload was refused, until the
/// next good frame), a heartbeat line (toggled each second while frames are judged), and the
/// stop-line output of the blind policy. Each is a GPIO line, or the log when absent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Active while the camera is down or a reload was refused, until the next good frame.
    /// Absent = the log.
    pub fault_line: Option<crate::line::gpio::LineSpec>,
    /// Toggled each second while frames are judged; absent = no heartbeat.
    pub heartbeat_line: Option<crate::line::gpio::LineSpec>,
    /// Held active while blind under `on_blind = "stop-line"`; absent = the log.
    pub stop_line: Option<crate::line::gpio::LineSpec>,
    /// `none` or `stop-line` (default): what the line does while the inspection is blind.
    pub on_blind: BlindPolicy,
}

impl RejectConfig {
    /// The scheduler's timing, in microseconds.
    pub fn timing(&self) -> crate::line::reject::RejectTiming {
        let us = |ms: f64| (ms * 1e3).round() as u64;
        crate::line::reject::RejectTiming {
            delay_us: us(self.delay_ms),
            pulse_us: us(self.pulse_ms),
            min_lead_us: us(self.min_lead_ms),
            ..crate::line::reject::RejectTiming::default()
        }
    }
}

/// Parses `text` (read from `path`) as TOML into `T`; a parse error names the file, line and
/// column. Shared by every config file the runtime reads.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Makes a relative path in a config file relative to that file's directory, not to wherever
/// the service was started: a config and the files it names move together.
pub(crate) fn resolve_beside(config: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = config.parent().unwrap_or(Path::new(".")).join(&*p);
    }
}

impl LineConfig {
    /// Reads, resolves relative paths and checks everything that does not need the model.
    pub fn load(path: &Path) -> Result<LineConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<LineConfig> {
        let mut cfg: LineConfig = parse_toml(text, path)?;
        cfg.path = path.to_path_buf();
        let rel = |p: &mut PathBuf| resolve_beside(path, p);
        rel(&mut cfg.model.path);
        rel(&mut cfg.source.replay.dir);
        if let Some(ev) = cfg.events.as_mut() {
            rel(&mut ev.dir);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::config(&self.path, key, msg));
        let s = &self.source.synthetic;
        if Variant::parse(&s.variant).is_none() {
            return bad(
                "source.synthetic.variant",
                format!("`{}` is not standard or shifted", s.variant),
            );
        }
        if s.width == 0 || s.height == 0 {
            return bad(
                "source.synthetic.width",
                "frame size must be positive".into(),
            );
        }
        for (key, fps) in [
            ("source.synthetic.fps", s.fps),
            ("source.replay.fps", self.source.replay.fps),
        ] {
            if !fps.is_finite() || fps < 0.0 {
                return bad(key, format!("{fps} is not a rate ≥ 0"));
            }
        }
        if let Some(ev) = &self.events {
            ev.validate(&self.path)?;
        }
        for (key, spec) in [
            ("faults.fault_line", &self.faults.fault_line),
            ("faults.heartbeat_line", &self.faults.heartbeat_line),
            ("faults.stop_line", &self.faults.stop_line),
        ] {
            if let Some(Err(m)) = spec.as_ref().map(crate::line::gpio::LineSpec::check) {
                return bad(key, m);
            }
        }
        if self.pipeline.queue == 0 {
            return bad("pipeline.queue", "must be at least 1".into());
        }
        if !self.pipeline.status_every_s.is_finite() || self.pipeline.status_every_s < 0.0 {
            return bad("pipeline.status_every_s", "must be ≥ 0".into());
        }
        if let Some([h, w]) = self.model.input_size
            && (h == 0 || w == 0)
        {
            return bad("model.input_size", format!("[{h}, {w}] is empty"));
        }
        match (self.reject.output.as_str(), &self.reject.gpio) {
            ("log", _) => {}
            ("gpio", Some(spec)) => {
                if let Err(m) = spec.check() {
                    return bad("reject.gpio", m);
                }
            }
            ("gpio", None) => {
                return bad(
                    "reject.gpio",
                    "output = \"gpio\" needs the line: gpio = { name = \"PQ.05\" } or { chip, offset }"
                        .into(),
                );
            }
            (other, _) => {
                return bad(
                    "reject.output",
                    format!("`{other}` is not a known output (log, gpio)"),
                );
            }
        }
        for (key, v) in [
            ("reject.delay_ms", self.reject.delay_ms),
            ("reject.pulse_ms", self.reject.pulse_ms),
            ("reject.min_lead_ms", self.reject.min_lead_ms),
        ] {
            if !(0.0..=600_000.0).contains(&v) {
                return bad(key, format!("{v} is not a time in 0..600000 ms"));
            }
        }
        if let Some(e) = &self.reject.encoder {
            if let Err(m) = e.line.check() {
                return bad("reject.encoder.line", m);
            }
            if e.delay_counts <= e.min_lead_counts {
                return bad(
                    "reject.encoder.delay_counts",
                    format!(
                        "{} must exceed min_lead_counts = {}",
                        e.delay_counts, e.min_lead_counts
                    ),
                );
            }
        }
        if self.reject.pulse_ms <= 0.0 {
            return bad("reject.pulse_ms", "a pulse needs a width > 0".into());
        }
        if self.reject.delay_ms <= self.reject.min_lead_ms {
            return bad(
                "reject.delay_ms",
                format!(
                    "{} ms leaves no time to judge a frame (must exceed min_lead_ms = {})",
                    self.reject.delay_ms, self.reject.min_lead_ms
                ),
            );
        }
        Ok(())
    }

    /// Whether the source is real-time (a camera, or paced by `fps`): then a full queue drops
    /// the oldest frame; otherwise capture waits and nothing is lost.
    pub fn overflow(&self) -> Overflow {
        match self.pipeline.overflow {
            Overflow::Auto => {
                let paced = match self.source.kind {
                    SourceKind::V4l2 => true,
                    SourceKind::Replay => self.source.replay.fps > 0.0,
                    SourceKind::Synthetic => self.source.synthetic.fps > 0.0,
                };
                if paced {
                    Overflow::DropOldest
                } else {
                    Overflow::Wait
                }
            }
            o => o,
        }
    }

    /// `[decision]` with class names resolved against the loaded model.
    pub fn decision(&self, model: &ModelInfo) -> Result<DecisionConfig> {
        let d = &self.decision;
        let bad = |key: String, msg: String| Error::config(&self.path, key, msg);
        let class = |key: &str, name: &str| {
            model
                .class_names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| {
                    bad(
                        format!("{key}.{name}"),
                        format!("no class `{name}` in the model ({:?})", model.class_names),
                    )
                })
        };
        let in_unit = |v: f32| v > 0.0 && v <= 1.0;
        if !in_unit(d.threshold) {
            return Err(bad(
                "decision.threshold".into(),
                format!("{} is not in (0, 1]", d.threshold),
            ));
        }
        let c = model.num_classes();
        let mut threshold = vec![d.threshold; c];
        for (name, &t) in &d.thresholds {
            let i = class("decision.thresholds", name)?;
            if !in_unit(t) {
                return Err(bad(
                    format!("decision.thresholds.{name}"),
                    format!("{t} is not in (0, 1]"),
                ));
            }
            threshold[i] = t;
        }
        let base = match (d.min_area_mm2, d.px_per_mm) {
            (Some(mm2), Some(ppm)) if mm2 >= 0.0 && ppm > 0.0 && (mm2 * ppm).is_finite() => {
                mm2 * ppm * ppm
            }
            (Some(_), None) => {
                return Err(bad(
                    "decision.min_area_mm2".into(),
                    "needs `px_per_mm` (the camera's calibration)".into(),
                ));
            }
            (Some(mm2), Some(ppm)) => {
                return Err(bad(
                    "decision.min_area_mm2".into(),
                    format!("{mm2} mm² at {ppm} px/mm is not a valid area"),
                ));
            }
            (None, _) => d.min_area_px,
        };
        if !base.is_finite() || base < 0.0 {
            return Err(bad(
                "decision.min_area_px".into(),
                format!("{base} is not an area ≥ 0"),
            ));
        }
        let mut min_area_px = vec![base; c];
        for (name, &a) in &d.min_area_px_by_class {
            let i = class("decision.min_area_px_by_class", name)?;
            if !a.is_finite() || a < 0.0 {
                return Err(bad(
                    format!("decision.min_area_px_by_class.{name}"),
                    format!("{a} is not an area ≥ 0"),
                ));
            }
            min_area_px[i] = a;
        }
        if d.confirm_k == 0 || d.confirm_k > d.confirm_n {
            return Err(bad(
                "decision.confirm_k".into(),
                format!(
                    "needs 1 ≤ confirm_k ≤ confirm_n, got {} of {}",
                    d.confirm_k, d.confirm_n
                ),
            ));
        }
        let mut roi = Vec::with_capacity(d.roi.len());
        for (i, r) in d.roi.iter().enumerate() {
            let key = format!("decision.roi[{i}]");
            roi.push(match (&r.rect, &r.polygon) {
                (Some([x, y, w, h]), None) if *w > 0.0 && *h > 0.0 => Roi::Rect {
                    x: *x,
                    y: *y,
                    w: *w,
                    h: *h,
                },
                (Some(_), None) => {
                    return Err(bad(key, "rect needs a positive width and height".into()));
                }
                (None, Some(p)) if p.len() >= 3 => Roi::Polygon(p.clone()),
                (None, Some(_)) => {
                    return Err(bad(key, "a polygon needs at least 3 points".into()));
                }
                _ => return Err(bad(key, "give exactly one of `rect` or `polygon`".into())),
            });
        }
        Ok(DecisionConfig {
            roi,
            defect: model.defect.clone(),
            threshold,
            min_area_px,
            confirm_k: d.confirm_k,
            confirm_n: d.confirm_n,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
