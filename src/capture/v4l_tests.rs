use super::*;

fn open_err(path: &Path) -> String {
    let cfg = V4lConfig {
        device: path.to_path_buf(),
        ..V4lConfig::default()
    };
    match V4lSource::open(&cfg) {
        Ok(_) => panic!("{} opened as a camera", path.display()),
        Err(e @ Error::Camera { .. }) => e.to_string(),
        Err(e) => panic!("expected a camera error, got {e}"),
    }
}

#[test]
fn missing_path_is_a_clear_camera_error() {
    let dir = tempfile::tempdir().unwrap();
    let msg = open_err(&dir.path().join("video9"));
    contextrast_model::testing::assert_mentions(&msg, &["video9", "does not exist"]);
}

#[test]
fn regular_file_and_directory_are_not_devices() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let msg = open_err(file.path());
    assert!(msg.contains("is not a V4L2 video device"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("is not a V4L2 video device"), "{msg}");
}

#[test]
fn dev_null_is_not_a_video_device() {
    let msg = open_err(Path::new("/dev/null"));
    contextrast_model::testing::assert_mentions(&msg, &["/dev/null", "is not a V4L2 video device"]);
    assert!(msg.contains("major 1,"), "{msg}");
}

#[test]
fn bad_sizes_and_buffer_counts_are_rejected_before_opening() {
    let cfg = V4lConfig {
        width: 0,
        ..V4lConfig::default()
    };
    assert!(matches!(V4lSource::open(&cfg), Err(Error::Camera { .. })));
    let cfg = V4lConfig {
        buffers: 0,
        ..V4lConfig::default()
    };
    assert!(matches!(V4lSource::open(&cfg), Err(Error::Camera { .. })));
}

#[test]
fn dev_major_decodes_linux_dev_t() {
    assert_eq!(dev_major(0x5100), 81); // makedev(81, 0)
    assert_eq!(dev_major(0x0103), 1); // /dev/null: makedev(1, 3)
    assert_eq!(dev_major((0x1000 << 32) | (0x5 << 8)), 0x1005);
}

#[test]
fn control_names_normalise() {
    let n = normalize_control_name;
    assert_eq!(n("Exposure Time, Absolute"), "exposure_time_absolute");
    assert_eq!(n("exposure_time_absolute"), "exposure_time_absolute");
    assert_eq!(n("Exposure-Time  absolute"), "exposure_time_absolute");
    assert_eq!(
        n("White Balance Temperature, Auto"),
        "white_balance_temperature_auto"
    );
    assert_eq!(n("  Gain "), "gain");
    assert_eq!(n("Pan (Absolute)"), "pan_absolute");
    assert_eq!(n("Power Line Frequency"), "power_line_frequency");
}

fn ctrl(name: &str, typ: CtrlType, min: i64, max: i64, step: u64) -> ControlInfo {
    ControlInfo {
        id: 1,
        typ: Some(typ),
        name: name.into(),
        min,
        max,
        step,
        flags: 0,
    }
}

#[test]
fn controls_match_by_name_and_check_ranges() {
    let controls = vec![
        ctrl("User Controls", CtrlType::CtrlClass, 0, 0, 0),
        ctrl("Brightness", CtrlType::Integer, -64, 64, 1),
        ctrl("Exposure Time, Absolute", CtrlType::Integer, 3, 2047, 1),
        ctrl("Zoom, Absolute", CtrlType::Integer, 100, 500, 10),
    ];
    let c = find_control(&controls, "EXPOSURE-time_absolute").unwrap();
    assert_eq!(c.name, "Exposure Time, Absolute");

    let e = find_control(&controls, "exposure").unwrap_err();
    assert!(e.contains("`exposure`"), "{e}");
    assert!(
        e.contains("brightness, exposure_time_absolute, zoom_absolute"),
        "{e}"
    );
    assert!(!e.contains("user_controls"), "{e}");

    assert!(check_value(c, 3).is_ok());
    assert!(check_value(c, 2047).is_ok());
    let e = check_value(c, 5000).unwrap_err();
    assert!(e.contains("3..=2047"), "{e}");
    assert!(check_value(&controls[1], -65).is_err());

    let zoom = &controls[3];
    assert!(check_value(zoom, 255).unwrap_err().contains("step"));
    assert!(check_value(zoom, 260).is_ok());

    let mut ro = ctrl("Pixel Rate", CtrlType::Integer64, 0, 1 << 40, 1);
    ro.flags = 0x0004;
    assert!(check_value(&ro, 5).unwrap_err().contains("read-only"));
    let button = ctrl("Reset", CtrlType::Button, 0, 0, 0);
    assert!(check_value(&button, 0).is_err());
}

#[test]
fn auto_picks_the_first_preferred_format_offered() {
    let f = |s: &[u8; 4]| FourCC::new(s);
    let offered = [f(b"MJPG"), f(b"GREY"), f(b"YUYV")];
    assert_eq!(
        choose_format(PixelFormat::Auto, &offered),
        Ok(PixelFormat::Yuyv)
    );
    let offered = [f(b"GREY"), f(b"MJPG")];
    assert_eq!(
        choose_format(PixelFormat::Auto, &offered),
        Ok(PixelFormat::Mjpeg)
    );
    assert_eq!(
        choose_format(PixelFormat::Grey, &offered),
        Ok(PixelFormat::Grey)
    );
    let e = choose_format(PixelFormat::Yuyv, &offered).unwrap_err();
    assert!(e.contains("YUYV") && e.contains("GREY, MJPG"), "{e}");
    let e = choose_format(PixelFormat::Auto, &[f(b"RG10")]).unwrap_err();
    assert!(e.contains("RG10"), "{e}");
}

#[test]
fn config_defaults_and_strictness() {
    let cfg: V4lConfig = toml::from_str("").unwrap();
    assert_eq!(cfg.device, PathBuf::from("/dev/video0"));
    assert_eq!(
        (cfg.width, cfg.height, cfg.fps, cfg.buffers),
        (640, 480, 0, 4)
    );
    assert_eq!(cfg.format, PixelFormat::Auto);

    let cfg: V4lConfig = toml::from_str(
        "device = \"/dev/v4l/by-id/cam\"\nformat = \"mjpeg\"\nfps = 30\n\
         [controls]\nexposure_time_absolute = 250\nauto_exposure = 1\n",
    )
    .unwrap();
    assert_eq!(cfg.format, PixelFormat::Mjpeg);
    assert_eq!(cfg.controls["exposure_time_absolute"], 250);

    assert!(toml::from_str::<V4lConfig>("widht = 1").is_err());
    assert!(toml::from_str::<V4lConfig>("format = \"YUYV\"").is_err());
    for s in ["auto", "yuyv", "mjpeg", "grey"] {
        assert!(toml::from_str::<V4lConfig>(&format!("format = \"{s}\"")).is_ok());
    }
}

#[test]
fn source_is_send() {
    fn send<T: Send>() {}
    send::<V4lSource>();
}
