use super::*;
use embedded_hal::digital::Error as _;

/// Unwraps the `Gpio` variant so a test can check what the operator would read.
fn gpio_err<T: fmt::Debug>(r: Result<T>) -> (String, String) {
    match r {
        Err(Error::Gpio { line, msg }) => (line, msg),
        other => panic!("expected Error::Gpio, got {other:?}"),
    }
}

fn no_chips_here() -> bool {
    gpiocdev::chip::chips()
        .map(|c| c.is_empty())
        .unwrap_or(true)
}

#[test]
fn spec_accepts_the_two_forms() {
    assert_eq!(LineSpec::named("PQ.05").check(), Ok(()));
    assert_eq!(LineSpec::chip_offset("/dev/gpiochip0", 105).check(), Ok(()));
}

#[test]
fn spec_rejects_neither_both_and_partial() {
    let cases = [
        (LineSpec::default(), "no line given"),
        (
            LineSpec {
                name: Some("PQ.05".into()),
                ..LineSpec::chip_offset("/dev/gpiochip0", 1)
            },
            "not both",
        ),
        (
            LineSpec {
                name: Some("PQ.05".into()),
                offset: Some(1),
                ..Default::default()
            },
            "not both",
        ),
        (
            LineSpec {
                offset: Some(3),
                ..Default::default()
            },
            "`offset` needs `chip`",
        ),
        (
            LineSpec {
                chip: Some("/dev/gpiochip0".into()),
                ..Default::default()
            },
            "`chip` needs `offset`",
        ),
        (LineSpec::named("  "), "`name` is empty"),
    ];
    for (spec, want) in cases {
        let msg = spec
            .check()
            .expect_err(&format!("{spec:?} must be rejected"));
        assert!(msg.contains(want), "{spec:?}: `{msg}` lacks `{want}`");
    }
}

#[test]
fn invalid_spec_fails_the_request_with_the_same_message() {
    let spec = LineSpec {
        offset: Some(3),
        ..Default::default()
    };
    let (line, msg) = gpio_err(request_output(&spec, "contextrast-test"));
    assert_eq!(line, "?:3");
    assert!(msg.contains("`offset` needs `chip`"), "{msg}");
}

#[test]
fn spec_deserializes_strictly() {
    let spec: LineSpec = toml::from_str("name = \"PQ.05\"\nactive_low = true").expect("valid spec");
    assert_eq!(spec.name.as_deref(), Some("PQ.05"));
    assert!(spec.active_low);
    let spec: LineSpec =
        toml::from_str("chip = \"/dev/gpiochip0\"\noffset = 105").expect("valid spec");
    assert!(!spec.active_low, "active_low defaults to false");
    assert_eq!(spec.label(), "/dev/gpiochip0:105");
    let err = toml::from_str::<LineSpec>("name = \"PQ.05\"\nactivelow = true")
        .expect_err("typo must be rejected");
    assert!(err.to_string().contains("activelow"), "{err}");
}

#[test]
fn missing_chip_is_a_gpio_error_naming_it() {
    let chip = "/dev/gpiochip-contextrast-missing";
    let (line, msg) = gpio_err(request_output(
        &LineSpec::chip_offset(chip, 3),
        "contextrast-test",
    ));
    assert_eq!(line, format!("{chip}:3"));
    assert!(msg.contains(chip), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn regular_file_is_not_a_chip() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let spec = LineSpec::chip_offset(file.path(), 0);
    let (line, msg) = gpio_err(request_output(&spec, "contextrast-test"));
    assert!(line.contains(&file.path().display().to_string()), "{line}");
    assert!(msg.contains("not a character device"), "{msg}");
}

#[test]
fn dev_null_is_not_a_gpio_chip() {
    let (line, msg) = gpio_err(request_output(
        &LineSpec::chip_offset("/dev/null", 0),
        "contextrast-test",
    ));
    assert_eq!(line, "/dev/null:0");
    assert!(msg.contains("not a GPIO character device"), "{msg}");
}

#[test]
fn unknown_line_name_is_a_gpio_error() {
    let name = "CONTEXTRAST-NO-SUCH-LINE";
    let (line, msg) = gpio_err(request_output(&LineSpec::named(name), "contextrast-test"));
    assert_eq!(line, name);
    assert!(msg.contains("no line with this name"), "{msg}");
    if no_chips_here() {
        assert!(msg.contains("no GPIO chips are visible"), "{msg}");
    }
}

#[test]
fn edge_counter_on_missing_chip_fails_without_a_thread() {
    let r = spawn_edge_counter(
        &LineSpec::chip_offset("/dev/gpiochip-contextrast-missing", 0),
        "contextrast-test",
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (_, msg) = gpio_err(r);
    assert!(msg.contains("cannot open GPIO chip"), "{msg}");
}

#[test]
fn describe_chips_is_empty_without_chips() {
    let lines = describe_chips();
    if no_chips_here() {
        assert!(lines.is_empty(), "{lines:?}");
    } else {
        assert!(lines.iter().all(|l| l.contains("gpiochip")), "{lines:?}");
    }
}

/// A reject pulse as the scheduler writes it, generic like the real one.
fn pulse<P: OutputPin>(pin: &mut P) -> std::result::Result<(), P::Error> {
    pin.set_high()?;
    pin.set_low()
}

#[test]
fn log_pin_follows_transitions() {
    let mut pin = LogPin::new("reject");
    assert!(!pin.is_active(), "starts inactive");
    pin.set_high().expect("infallible");
    assert!(pin.is_active());
    pin.set_high().expect("infallible");
    assert!(pin.is_active(), "repeated set_high keeps it active");
    pin.set_low().expect("infallible");
    assert!(!pin.is_active());
    pin.set_state(embedded_hal::digital::PinState::High)
        .expect("infallible");
    assert!(pin.is_active());
    pulse(&mut pin).expect("infallible");
    assert!(!pin.is_active(), "a pulse ends inactive");
}

#[test]
fn pin_error_names_the_line() {
    let e = PinError {
        line: "PQ.05".into(),
        msg: "cannot set Active: Device or resource busy".into(),
    };
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(
        e.to_string(),
        "gpio PQ.05: cannot set Active: Device or resource busy"
    );
    let crate_err: Error = e.into();
    assert!(matches!(crate_err, Error::Gpio { ref line, .. } if line == "PQ.05"));
}

#[test]
fn dropped_kernel_events_are_still_counted() {
    assert_eq!(edges_since(0, 1), 1, "first event");
    assert_eq!(edges_since(1, 2), 1);
    assert_eq!(edges_since(2, 7), 5, "four dropped in the kernel queue");
    assert_eq!(edges_since(u32::MAX, 0), 1, "wrap");
    assert_eq!(edges_since(5, 5), 1, "no sequence number");
    assert_eq!(edges_since(9, 3), 1, "restarted sequence");
}

/// A simulated chip from the kernel's `gpio-sim` (configfs); removed on drop.
struct SimChip {
    dir: PathBuf,
    chip: PathBuf,
    sysfs: PathBuf,
}

impl SimChip {
    const CONFIGFS: &'static str = "/sys/kernel/config/gpio-sim";

    /// None when gpio-sim is not loaded (`modprobe gpio-sim`) or configfs is not mounted.
    fn new(tag: &str, names: &[&str]) -> Option<SimChip> {
        let root = Path::new(Self::CONFIGFS);
        if !root.is_dir() {
            return None;
        }
        let dir = root.join(format!("contextrast-{tag}-{}", std::process::id()));
        let bank = dir.join("gpio-bank0");
        let setup = || -> std::io::Result<(PathBuf, PathBuf)> {
            std::fs::create_dir(&dir)?;
            std::fs::create_dir(&bank)?;
            std::fs::write(bank.join("num_lines"), names.len().to_string())?;
            for (i, name) in names.iter().enumerate() {
                let line = bank.join(format!("line{i}"));
                std::fs::create_dir(&line)?;
                std::fs::write(line.join("name"), name)?;
            }
            std::fs::write(dir.join("live"), "1")?;
            let dev = std::fs::read_to_string(dir.join("dev_name"))?;
            let chip = std::fs::read_to_string(bank.join("chip_name"))?;
            Ok((
                Path::new("/dev").join(chip.trim()),
                Path::new("/sys/devices/platform")
                    .join(dev.trim())
                    .join(chip.trim()),
            ))
        };
        match setup() {
            Ok((chip, sysfs)) => Some(SimChip { dir, chip, sysfs }),
            Err(e) => {
                eprintln!("gpio-sim setup failed: {e}");
                remove_sim(&dir, names.len());
                None
            }
        }
    }

    fn value(&self, offset: u32) -> String {
        std::fs::read_to_string(self.sysfs.join(format!("sim_gpio{offset}/value")))
            .expect("sim value")
            .trim()
            .to_string()
    }

    fn pull(&self, offset: u32, up: bool) {
        let pull = if up { "pull-up" } else { "pull-down" };
        std::fs::write(self.sysfs.join(format!("sim_gpio{offset}/pull")), pull).expect("sim pull");
    }
}

fn remove_sim(dir: &Path, lines: usize) {
    let _ = std::fs::write(dir.join("live"), "0");
    let bank = dir.join("gpio-bank0");
    for i in 0..lines {
        let _ = std::fs::remove_dir(bank.join(format!("line{i}")));
    }
    let _ = std::fs::remove_dir(&bank);
    let _ = std::fs::remove_dir(dir);
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let lines = std::fs::read_dir(self.dir.join("gpio-bank0"))
            .map(|d| d.count())
            .unwrap_or(0);
        remove_sim(&self.dir, lines);
    }
}

#[test]
fn gpio_sim_output_and_edges() {
    let tag = std::process::id();
    let reject = format!("ctx-reject-{tag}");
    let encoder = format!("ctx-encoder-{tag}");
    let Some(sim) = SimChip::new("io", &[reject.as_str(), encoder.as_str(), "ctx-spare"]) else {
        println!("SKIPPED: gpio-sim not available");
        return;
    };

    // Output by name, active high: set_high drives the line high, drop releases it low.
    let mut out = request_output(&LineSpec::named(&reject), "contextrast-test").expect("request");
    assert_eq!(sim.value(0), "0", "starts inactive");
    pulse(&mut out).expect("pulse");
    out.set_high().expect("set_high");
    assert_eq!(sim.value(0), "1");
    // The line is held: a second request names the holder.
    let (_, msg) = gpio_err(request_output(&LineSpec::named(&reject), "other"));
    assert!(msg.contains("contextrast-test"), "{msg}");
    drop(out);

    // Active low by chip + offset: active means physically low.
    let spec = LineSpec {
        active_low: true,
        ..LineSpec::chip_offset(&sim.chip, 2)
    };
    let mut out = request_output(&spec, "contextrast-test").expect("request");
    assert_eq!(sim.value(2), "1", "inactive is high when active_low");
    out.set_high().expect("set_high");
    assert_eq!(sim.value(2), "0");
    drop(out);

    // Offset past the end.
    let (_, msg) = gpio_err(request_output(
        &LineSpec::chip_offset(&sim.chip, 99),
        "contextrast-test",
    ));
    assert!(msg.contains("out of range"), "{msg}");

    // Encoder: five rising edges.
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    sim.pull(1, false);
    let handle = spawn_edge_counter(
        &LineSpec::named(&encoder),
        "contextrast-test",
        counter.clone(),
        stop.clone(),
    )
    .expect("edge counter");
    for _ in 0..5 {
        sim.pull(1, true);
        std::thread::sleep(Duration::from_millis(5));
        sim.pull(1, false);
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while counter.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("edge thread");
    assert_eq!(counter.load(Ordering::Relaxed), 5);

    assert!(
        describe_chips()
            .iter()
            .any(|l| l.contains(&sim.chip.display().to_string())),
        "{:?}",
        describe_chips()
    );
}
