use super::*;

fn model() -> ModelInfo {
    ModelInfo {
        path: "m.onnx".into(),
        class_names: ["belt", "part", "scratch", "pit", "stain"]
            .map(String::from)
            .to_vec(),
        defect: vec![false, false, true, true, true],
        colors: vec![[0; 3]; 5],
        version: "m".into(),
        engine: "native",
    }
}

fn parse(text: &str) -> Result<LineConfig> {
    LineConfig::parse(text, Path::new("/etc/line/line.toml"))
}

#[test]
fn defaults_and_relative_paths() {
    let cfg = parse("[model]\npath = \"model.onnx\"\n[source]\nkind = \"replay\"\n[source.replay]\ndir = \"/data/frames\"\nfps = 0\n").expect("valid");
    assert_eq!(cfg.model.path, Path::new("/etc/line/model.onnx"));
    assert_eq!(cfg.source.replay.dir, Path::new("/data/frames"));
    assert_eq!(cfg.source.kind, SourceKind::Replay);
    assert_eq!(cfg.overflow(), Overflow::Wait);
    assert_eq!(cfg.pipeline.queue, 4);
}

#[test]
fn decision_resolves_names_areas_and_roi() {
    let cfg = parse(
        r#"
[decision]
threshold = 0.6
thresholds = { pit = 0.3 }
min_area_mm2 = 0.5
px_per_mm = 4.0
min_area_px_by_class = { stain = 20 }
confirm_k = 2
confirm_n = 3
roi = [ { rect = [0, 0, 100, 50] }, { polygon = [[0, 0], [10, 0], [0, 10]] } ]
"#,
    )
    .expect("valid");
    let d = cfg.decision(&model()).expect("resolves");
    assert_eq!(d.threshold, vec![0.6, 0.6, 0.6, 0.3, 0.6]);
    assert_eq!(d.min_area_px, vec![8.0, 8.0, 8.0, 8.0, 20.0]);
    assert_eq!((d.confirm_k, d.confirm_n), (2, 3));
    assert_eq!(d.roi.len(), 2);
    assert_eq!(d.defect, model().defect);
}

#[test]
fn errors_name_the_file_and_the_key() {
    let cases: [(&str, &str); 13] = [
        ("[pipeline]\nqueue = 0\n", "pipeline.queue"),
        (
            "[source.synthetic]\nvariant = \"purple\"\n",
            "source.synthetic.variant",
        ),
        ("[decision]\nthreshold = 1.5\n", "decision.threshold"),
        (
            "[decision]\nthresholds = { rust = 0.4 }\n",
            "decision.thresholds.rust",
        ),
        ("[decision]\nmin_area_mm2 = 1.0\n", "decision.min_area_mm2"),
        (
            "[decision]\nconfirm_k = 3\nconfirm_n = 2\n",
            "decision.confirm_k",
        ),
        (
            "[decision]\nroi = [ { polygon = [[0, 0], [1, 1]] } ]\n",
            "decision.roi[0]",
        ),
        ("[reject]\noutput = \"gpio9\"\n", "reject.output"),
        ("[reject]\noutput = \"gpio\"\n", "reject.gpio"),
        ("[reject]\ndelay_ms = 0\n", "reject.delay_ms"),
        (
            "[reject.encoder]\nline = { name = \"PQ.06\" }\ndelay_counts = 0\n",
            "reject.encoder.delay_counts",
        ),
        (
            "[reject.encoder]\nline = { offset = 3 }\ndelay_counts = 9\n",
            "reject.encoder.line",
        ),
        ("[model]\nthreads = \"many\"\n", "threads"),
    ];
    for (text, key) in cases {
        let e = parse(text).and_then(|c| c.decision(&model()).map(|_| ()));
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/etc/line/line.toml"), "{text}: {msg}");
        assert!(msg.contains(key), "{text}: expected `{key}` in: {msg}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let e = parse("[pipeline]\nqeue = 3\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("qeue"), "{e}");
}

#[test]
fn the_engine_is_chosen_by_name() {
    let cfg = parse("[model]\nengine = \"tract\"\n").expect("valid");
    assert_eq!(cfg.model.engine, crate::infer::EngineKind::Tract);
    assert_eq!(
        parse("").expect("valid").model.engine,
        crate::infer::EngineKind::Auto
    );
    let e = parse("[model]\nengine = \"fast\"\n")
        .unwrap_err()
        .to_string();
    contextrast_model::testing::assert_mentions(&e, &["/etc/line/line.toml", "fast", "native"]);
}
