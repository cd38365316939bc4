//! The running model as the retrain service has it, shared by `tests/retrain.rs` and the unit
//! tests of `src/retrain/run.rs` (which include this file by path).

use std::path::{Path, PathBuf};

/// The running model as the service has it: model.onnx with its checkpoint beside it.
pub fn install_model(live: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(live).expect("mkdir");
    let model = live.join("model.onnx");
    std::fs::copy(root.join("models/default.onnx"), &model).expect("copy model");
    std::fs::copy(
        root.join("models/default.safetensors"),
        live.join("model.safetensors"),
    )
    .expect("copy params");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("models/default.json")).expect("read"))
            .expect("json");
    meta["params_file"] = "model.safetensors".into();
    std::fs::write(
        live.join("model.json"),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("write");
    model
}
