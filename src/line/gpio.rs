//! Digital I/O for the reject line and the belt encoder, through the Linux GPIO character
//! device (uAPI v2, `gpiocdev`). The deprecated sysfs interface is not used: it is gone from
//! current kernels and leaves lines exported when the process dies.
//!
//! Outputs implement `embedded_hal::digital::OutputPin`, so the reject scheduler is written
//! once against the trait and runs with [`GpioOutput`] on a line machine, [`LogPin`] in the
//! demo and a mock in tests.
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};
use gpiocdev::line::{EdgeDetection, Value};
use serde::Deserialize;

use crate::{Error, Result};

#[cfg(test)]
#[path = "gpio_tests.rs"]
mod tests;

/// How long the edge counter waits for an event before it looks at `stop` again.
const EDGE_POLL: Duration = Duration::from_millis(100);
/// Consecutive read failures after which the edge counter gives up (a removed chip would
/// otherwise spin); single failures such as an EINTR from a reload signal are retried.
const EDGE_MAX_FAILURES: u32 = 50;
/// Kernel-side event queue for the encoder line; 256 edges of slack for a descheduled thread.
/// Overflows are still counted, from the per-line sequence numbers.
const EDGE_KERNEL_BUFFER: u32 = 256;

/// One GPIO line in the config: either `chip` + `offset`, or a line `name` as `gpioinfo` prints
/// it (stable across boots, unlike chip numbering on some boards).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    /// Chip device, e.g. `/dev/gpiochip0`.
    pub chip: Option<PathBuf>,
    /// Line offset on `chip`.
    pub offset: Option<u32>,
    /// Line name, searched on every chip; must be unique.
    pub name: Option<String>,
    /// The line is active when low; the kernel inverts, so `set_high` still means "active".
    #[serde(default)]
    pub active_low: bool,
}

impl LineSpec {
    /// A line given by chip and offset.
    pub fn chip_offset(chip: impl Into<PathBuf>, offset: u32) -> Self {
        LineSpec {
            chip: Some(chip.into()),
            offset: Some(offset),
            ..Default::default()
        }
    }

    /// A line given by name.
    pub fn named(name: impl Into<String>) -> Self {
        LineSpec {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// How the line is named in errors and logs: `PQ.05` or `/dev/gpiochip0:105`.
    pub fn label(&self) -> String {
        match (&self.name, &self.chip, self.offset) {
            (Some(n), _, _) => n.clone(),
            (None, Some(c), Some(o)) => format!("{}:{o}", c.display()),
            (None, Some(c), None) => format!("{}:?", c.display()),
            (None, None, Some(o)) => format!("?:{o}"),
            (None, None, None) => "(no line)".to_string(),
        }
    }

    /// Checks that exactly one of the two forms is given. The message suits
    /// `Error::config(path, key, msg)` when the config is loaded, so a bad spec fails at
    /// startup rather than at the first reject.
    pub fn check(&self) -> std::result::Result<(), String> {
        match (&self.name, &self.chip, self.offset) {
            (Some(n), None, None) if n.trim().is_empty() => {
                Err("`name` is empty; give the line name `gpioinfo` shows".into())
            }
            (Some(_), None, None) | (None, Some(_), Some(_)) => Ok(()),
            (Some(_), _, _) => Err(
                "give either `name` or `chip` + `offset`, not both (the name is searched on all chips)"
                    .into(),
            ),
            (None, None, Some(_)) => {
                Err("`offset` needs `chip` (e.g. chip = \"/dev/gpiochip0\")".into())
            }
            (None, Some(_), None) => Err("`chip` needs `offset` (the line number on the chip)".into()),
            (None, None, None) => Err(
                "no line given: set `name` (as `gpioinfo` prints it) or `chip` + `offset`".into(),
            ),
        }
    }

    /// Finds the chip and offset, opening the chip so that a wrong path, a missing permission
    /// or an offset past the chip's end is reported here, with the line named.
    fn resolve(&self) -> Result<(PathBuf, u32)> {
        let label = self.label();
        self.check().map_err(|msg| Error::gpio(&label, msg))?;
        let (chip, offset) = match (&self.name, &self.chip, self.offset) {
            (Some(name), _, _) => find_by_name(name)?,
            (_, Some(chip), Some(offset)) => (chip.clone(), offset),
            // check() lets only the two complete forms through.
            _ => return Err(Error::gpio(&label, "incomplete line spec")),
        };
        let handle = open_chip(&label, &chip)?;
        let info = handle.info().map_err(|e| {
            Error::gpio(
                &label,
                format!("cannot read chip info of {}: {e}", chip.display()),
            )
        })?;
        if offset >= info.num_lines {
            return Err(Error::gpio(
                &label,
                format!(
                    "offset {offset} is out of range: {} ({}) has {} lines (0..{})",
                    chip.display(),
                    info.label,
                    info.num_lines,
                    info.num_lines
                ),
            ));
        }
        Ok((chip, offset))
    }
}

/// Opens a chip for its info, with an operator-readable reason when it is not one.
fn open_chip(label: &str, chip: &Path) -> Result<gpiocdev::Chip> {
    gpiocdev::Chip::from_path(chip).map_err(|e| {
        let hint = match std::fs::File::open(chip) {
            Err(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                " (permission denied: is the service user in group `gpio`? see 99-contextrast.rules)"
            }
            Err(io) if io.kind() == std::io::ErrorKind::NotFound => {
                " (does not exist: `ls /dev/gpiochip*` or `gpiodetect` lists the chips)"
            }
            _ => "",
        };
        Error::gpio(
            label,
            format!("cannot open GPIO chip {}: {e}{hint}", chip.display()),
        )
    })
}

/// Searches every chip for `name`; duplicates are an error because a wrong line would fire
/// the ejector somewhere else.
fn find_by_name(name: &str) -> Result<(PathBuf, u32)> {
    match gpiocdev::find_named_lines(&[name], true) {
        Ok(found) => match found.get(name) {
            Some(line) => Ok((line.chip.clone(), line.info.offset)),
            None => Err(Error::gpio(
                name,
                format!(
                    "no line with this name on {}; `gpioinfo` lists the line names",
                    chip_list()
                ),
            )),
        },
        Err(gpiocdev::Error::NonuniqueLineName(_)) => Err(Error::gpio(
            name,
            "line name is not unique; use `chip` + `offset` instead",
        )),
        Err(gpiocdev::Error::NoGpioChips()) => Err(Error::gpio(
            name,
            "no line with this name: no GPIO chips are visible (none in /dev, or no permission; \
             is the service user in group `gpio`?)",
        )),
        Err(e) => Err(Error::gpio(
            name,
            format!("cannot search the GPIO chips: {e}"),
        )),
    }
}

/// The chips' paths for messages, e.g. "/dev/gpiochip0, /dev/gpiochip1".
fn chip_list() -> String {
    match gpiocdev::chip::chips() {
        Ok(chips) if !chips.is_empty() => chips
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => "no chips (none visible in /dev)".to_string(),
    }
}

/// Explains a failed line request; a busy line names who holds it (often a stale process or a
/// device-tree hog), which is the usual cause on a commissioning day.
fn request_error(label: &str, chip: &Path, offset: u32, e: gpiocdev::Error) -> Error {
    let holder = gpiocdev::Chip::from_path(chip)
        .and_then(|c| c.line_info(offset))
        .ok()
        .filter(|info| info.used)
        .map(|info| {
            if info.consumer.is_empty() {
                " (the line is in use)".to_string()
            } else {
                format!(" (the line is in use by \"{}\")", info.consumer)
            }
        })
        .unwrap_or_default();
    Error::gpio(
        label,
        format!(
            "cannot request line {offset} on {}: {e}{holder}",
            chip.display()
        ),
    )
}

/// The embedded-hal error of a GPIO pin: which line, and what the kernel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinError {
    /// The line's label: its name, or `chip:offset`.
    pub line: String,
    /// What the kernel said.
    pub msg: String,
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpio {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for PinError {}

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl From<PinError> for Error {
    fn from(e: PinError) -> Self {
        Error::gpio(e.line, e.msg)
    }
}

/// A requested output line. The kernel holds the request until this is dropped, so no other
/// process can drive the ejector meanwhile.
pub struct GpioOutput {
    request: gpiocdev::Request,
    label: String,
}

impl fmt::Debug for GpioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpioOutput")
            .field("line", &self.label)
            .finish_non_exhaustive()
    }
}

impl GpioOutput {
    /// The line's label for logs.
    pub fn line(&self) -> &str {
        &self.label
    }

    fn set(&mut self, value: Value) -> std::result::Result<(), PinError> {
        self.request.set_lone_value(value).map_err(|e| PinError {
            line: self.label.clone(),
            msg: format!("cannot set {value:?}: {e}"),
        })
    }
}

impl Drop for GpioOutput {
    /// Releasing a line leaves its last value on most controllers: de-assert first so a
    /// shutdown in the middle of a pulse does not leave the ejector energised.
    fn drop(&mut self) {
        if let Err(e) = self.request.set_lone_value(Value::Inactive) {
            log::warn!("gpio {}: cannot de-assert on release: {e}", self.label);
        }
    }
}

impl ErrorType for GpioOutput {
    type Error = PinError;
}

impl OutputPin for GpioOutput {
    /// Inactive (physically high when `active_low`).
    fn set_low(&mut self) -> std::result::Result<(), PinError> {
        self.set(Value::Inactive)
    }
    /// Active (physically low when `active_low`).
    fn set_high(&mut self) -> std::result::Result<(), PinError> {
        self.set(Value::Active)
    }
}

/// Requests `spec` as an output, initially inactive. `consumer` is what `gpioinfo` shows as
/// the holder, e.g. "contextrast-reject".
pub fn request_output(spec: &LineSpec, consumer: &str) -> Result<GpioOutput> {
    let label = spec.label();
    let (chip, offset) = spec.resolve()?;
    let mut builder = gpiocdev::Request::builder();
    builder
        .on_chip(&chip)
        .with_consumer(consumer)
        .with_line(offset)
        .as_output(Value::Inactive);
    if spec.active_low {
        builder.as_active_low();
    }
    let request = builder
        .request()
        .map_err(|e| request_error(&label, &chip, offset, e))?;
    log::info!(
        "gpio {label}: output on {}:{offset}{} as \"{consumer}\"",
        chip.display(),
        if spec.active_low { " (active low)" } else { "" }
    );
    Ok(GpioOutput { request, label })
}

/// An output that only logs: the reject output of the demo and of machines without GPIO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPin {
    name: String,
    state: bool,
}

impl LogPin {
    /// Starts inactive, like a requested line.
    pub fn new(name: impl Into<String>) -> Self {
        LogPin {
            name: name.into(),
            state: false,
        }
    }
    /// True while active.
    pub fn is_active(&self) -> bool {
        self.state
    }
    fn set(&mut self, state: bool) {
        if state != self.state {
            log::info!(
                "{}: {}",
                self.name,
                if state { "active" } else { "inactive" }
            );
            self.state = state;
        }
    }
}

impl ErrorType for LogPin {
    type Error = std::convert::Infallible;
}

impl OutputPin for LogPin {
    fn set_low(&mut self) -> std::result::Result<(), Self::Error> {
        self.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> std::result::Result<(), Self::Error> {
        self.set(true);
        Ok(())
    }
}

/// An output chosen by the line config: a GPIO line, or the log where there is none (the demo,
/// a bench machine). One type, so the reject scheduler is built once for either.
#[derive(Debug)]
pub enum OutPin {
    /// A requested GPIO output line.
    Gpio(GpioOutput),
    /// No line configured: each change of level is logged instead.
    Log(LogPin),
}

impl OutPin {
    /// The line `spec` when given, else a log pin called `name`.
    pub fn open(spec: Option<&LineSpec>, name: &str, consumer: &str) -> Result<OutPin> {
        match spec {
            Some(s) => Ok(OutPin::Gpio(request_output(s, consumer)?)),
            None => Ok(OutPin::Log(LogPin::new(name))),
        }
    }
}

impl ErrorType for OutPin {
    type Error = PinError;
}

impl OutputPin for OutPin {
    fn set_low(&mut self) -> std::result::Result<(), PinError> {
        match self {
            OutPin::Gpio(p) => p.set_low(),
            OutPin::Log(p) => {
                let Ok(()) = p.set_low();
                Ok(())
            }
        }
    }
    fn set_high(&mut self) -> std::result::Result<(), PinError> {
        match self {
            OutPin::Gpio(p) => p.set_high(),
            OutPin::Log(p) => {
                let Ok(()) = p.set_high();
                Ok(())
            }
        }
    }
}

/// Edges to add for an event with per-line sequence number `seqno` after `prev`: more than one
/// when the kernel queue overflowed and dropped events, so belt travel is not undercounted.
fn edges_since(prev: u32, seqno: u32) -> u64 {
    match seqno.wrapping_sub(prev) {
        // No sequence number (or a repeat): count the event itself.
        0 => 1,
        // Absurd gaps mean a restarted sequence, not 2^31 lost edges.
        d if d > u32::MAX / 2 => 1,
        d => u64::from(d),
    }
}

/// Counts rising edges of an input line (the belt encoder) into `counter` on a thread, until
/// `stop` is set. The thread exits early, with an error log, only if the line keeps failing;
/// `JoinHandle::is_finished` tells the caller.
pub fn spawn_edge_counter(
    spec: &LineSpec,
    consumer: &str,
    counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let label = spec.label();
    let (chip, offset) = spec.resolve()?;
    let mut builder = gpiocdev::Request::builder();
    builder
        .on_chip(&chip)
        .with_consumer(consumer)
        .with_line(offset)
        .as_input()
        .with_edge_detection(EdgeDetection::RisingEdge)
        .with_kernel_event_buffer_size(EDGE_KERNEL_BUFFER);
    if spec.active_low {
        builder.as_active_low();
    }
    let request = builder
        .request()
        .map_err(|e| request_error(&label, &chip, offset, e))?;
    let thread_label = label.clone();
    std::thread::Builder::new()
        .name("gpio-edges".into())
        .spawn(move || count_edges(&request, &thread_label, &counter, &stop))
        .map_err(|e| Error::gpio(label, format!("cannot start the edge thread: {e}")))
}

fn count_edges(request: &gpiocdev::Request, label: &str, counter: &AtomicU64, stop: &AtomicBool) {
    let mut events = request.new_edge_event_buffer(64);
    let mut last_seqno = 0u32;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let step = request.wait_edge_event(EDGE_POLL).and_then(|ready| {
            if !ready {
                return Ok(());
            }
            // One read drains up to the buffer's capacity; count them all before polling again.
            loop {
                let ev = events.read_event()?;
                counter.fetch_add(edges_since(last_seqno, ev.line_seqno), Ordering::Relaxed);
                last_seqno = ev.line_seqno;
                if events.is_empty() {
                    return Ok(());
                }
            }
        });
        match step {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    log::warn!("gpio {label}: reading edges: {e}; retrying");
                }
                if failures >= EDGE_MAX_FAILURES {
                    log::error!("gpio {label}: edge counting stopped after repeated errors: {e}");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// One line per chip for `contextrast doctor`, e.g. "gpiochip0 [tegra234-gpio]: 164 lines".
/// Empty when the machine has no visible chips.
pub fn describe_chips() -> Vec<String> {
    let Ok(chips) = gpiocdev::chip::chips() else {
        return Vec::new();
    };
    chips
        .iter()
        .map(
            |path| match gpiocdev::Chip::from_path(path).and_then(|c| c.info().map(|i| (c, i))) {
                Ok((c, info)) => format!(
                    "{} [{}]: {} lines ({})",
                    c.name(),
                    info.label,
                    info.num_lines,
                    path.display()
                ),
                Err(e) => format!("{}: cannot read: {e}", path.display()),
            },
        )
        .collect()
}
