//! Checkpoints: parameters (and optionally the optimiser's velocity) as safetensors, with a JSON
//! file beside them that holds the step, the config, the classes and the metrics. The JSON is
//! written last, so a checkpoint whose JSON exists is complete.
use crate::config::TrainConfig;
use crate::data::classes::ClassInfo;
use crate::nn::params::HostParams;
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the JSON half of a checkpoint holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT`]; set by [`save`], checked by [`load`].
    pub format: String,
    /// Optimiser steps done when it was saved.
    pub step: u64,
    /// The run's training configuration.
    pub config: TrainConfig,
    /// The dataset's classes, in id order.
    pub classes: Vec<ClassInfo>,
    /// Validation metrics at this step (miou, boundary_iou, ...), if it was validated.
    pub metrics: BTreeMap<String, f64>,
    /// Where the data came from, the tool version, the date...
    pub provenance: BTreeMap<String, String>,
    /// File name of the parameters, beside the JSON.
    pub params_file: String,
    /// File name of the optimiser state, if saved.
    pub optimizer_file: Option<String>,
}

/// The format tag every checkpoint's JSON carries; [`load`] refuses any other.
pub const FORMAT: &str = "contextrast-checkpoint-1";

/// A loaded checkpoint.
pub struct Checkpoint {
    /// The JSON half.
    pub meta: CheckpointMeta,
    /// The parameters and batch-norm state, by name.
    pub params: HostParams,
    /// The SGD velocity, by name, when the checkpoint has an optimiser file.
    pub velocity: Option<HostParams>,
}

fn encode(tensors: &HostParams, step: u64) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, usize)> = tensors
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                v.len(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, b, n)| {
            TensorView::new(Dtype::F32, vec![*n], b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Shape(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let info = HashMap::from([("step".to_string(), step.to_string())]);
    safetensors::serialize(views, Some(info))
        .map_err(|e| Error::Shape(format!("cannot serialise checkpoint: {e}")))
}

/// The tensors of `path` and the step its metadata records (`None` in files without one).
fn decode_stepped(path: &Path) -> Result<(HostParams, Option<u64>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let step = SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref()?.get("step")?.parse().ok());
    let mut out = HostParams::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let v = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, v);
    }
    Ok((out, step))
}

/// Where a tensor file waits between being written and its JSON being committed.
fn pending(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// The tensors a checkpoint JSON of `step` names: the committed file, or the one still waiting
/// under `.new` when a kill came between the JSON's commit and the rename. A file of another
/// step is refused: params and optimizer state of different steps would resume silently wrong.
fn decode_for_step(path: &Path, step: u64) -> Result<HostParams> {
    let next = pending(path);
    if next.exists()
        && let Ok((t, Some(s))) = decode_stepped(&next)
        && s == step
    {
        return Ok(t);
    }
    let (t, s) = decode_stepped(path)?;
    match s {
        Some(s) if s != step => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("holds step {s}, its JSON step {step} (a torn checkpoint)"),
        }),
        _ => Ok(t),
    }
}

/// Saves `{dir}/{stem}.safetensors` (+ `{stem}.optim.safetensors`) and `{dir}/{stem}.json`.
pub fn save(
    dir: &Path,
    stem: &str,
    meta: &mut CheckpointMeta,
    params: &HostParams,
    velocity: Option<&HostParams>,
) -> Result<PathBuf> {
    meta.format = FORMAT.into();
    meta.params_file = format!("{stem}.safetensors");
    meta.optimizer_file = velocity.map(|_| format!("{stem}.optim.safetensors"));
    // The JSON is the commit: tensors are written under `.new` first, the JSON next, then they
    // are renamed into place. A kill at any point leaves a JSON whose step its files (committed
    // or pending) hold, which `load` finds; never params of one step with another's JSON.
    let params_path = dir.join(&meta.params_file);
    write_atomic(&pending(&params_path), &encode(params, meta.step)?)?;
    let optim_path = meta.optimizer_file.as_ref().map(|f| dir.join(f));
    if let (Some(v), Some(p)) = (velocity, &optim_path) {
        write_atomic(&pending(p), &encode(v, meta.step)?)?;
    }
    let json = dir.join(format!("{stem}.json"));
    let text = serde_json::to_vec_pretty(meta).map_err(|e| Error::Checkpoint {
        path: json.clone(),
        msg: e.to_string(),
    })?;
    write_atomic(&json, &text)?;
    for p in std::iter::once(&params_path).chain(optim_path.as_ref()) {
        std::fs::rename(pending(p), p).map_err(|e| Error::io(p, e))?;
    }
    Ok(json)
}

/// Loads a checkpoint from its JSON file or its `.safetensors` file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let json = if path.extension().is_some_and(|e| e == "safetensors") {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!("{stem}.json"))
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read(&json).map_err(|e| Error::io(&json, e))?;
    let meta: CheckpointMeta = serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
        path: json.clone(),
        msg: format!("bad JSON: {e}"),
    })?;
    if meta.format != FORMAT {
        return Err(Error::Checkpoint {
            path: json,
            msg: format!("format {:?}, expected {FORMAT:?}", meta.format),
        });
    }
    let dir = json.parent().unwrap_or(Path::new("."));
    // The JSON names its tensor files: an error there names the JSON too, since that is what the
    // user passed (and what to fix when it names the wrong file).
    let named = |e: Error| Error::Checkpoint {
        path: json.clone(),
        msg: format!("its tensors: {e}"),
    };
    let params = decode_for_step(&dir.join(&meta.params_file), meta.step).map_err(named)?;
    let velocity = match &meta.optimizer_file {
        Some(f) => Some(decode_for_step(&dir.join(f), meta.step).map_err(named)?),
        None => None,
    };
    Ok(Checkpoint {
        meta,
        params,
        velocity,
    })
}
