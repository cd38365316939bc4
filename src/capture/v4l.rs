//! A V4L2 camera (USB UVC or CSI bridge) as a [`FrameSource`], streaming through mmap buffers.
//!
//! Everything that can be wrong with a line config (path, format, size, controls) is checked in
//! [`V4lSource::open`], so a bad config fails at start-up with a message naming the fix rather than
//! as dropped frames later. Per frame, a bad buffer is a skipped frame; only a stream error (camera
//! unplugged, stalled) is an `Err`.
use crate::capture::convert;
use crate::capture::{Frame, FrameSource, Next};
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l::buffer::{Flags as BufFlags, Metadata, Type as BufType};
use v4l::capability::Flags as CapFlags;
use v4l::control::{Control, Type as CtrlType, Value};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::parameters::Capabilities as ParamCaps;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, Format, FourCC};

/// Linux's character-device major for every V4L2 node (`VIDEO_MAJOR` in `linux/major.h`).
/// Checked before opening so a mistyped path never opens (and so triggers) some other device.
const VIDEO_MAJOR: u64 = 81;

/// Camera settings from the line config (`[camera]` table).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct V4lConfig {
    /// Device node; prefer a stable `/dev/v4l/by-id/...` link over `/dev/videoN`.
    pub device: PathBuf,
    /// Frame width in pixels to request; if the driver gives another size, it is used (warned).
    pub width: u32,
    /// Frame height in pixels to request (see `width`).
    pub height: u32,
    /// Frames per second to request; 0 keeps the camera's default.
    pub fps: u32,
    /// Pixel format to request (`auto`, `yuyv`, `mjpeg`, `grey`).
    pub format: PixelFormat,
    /// Control values by name as `v4l2-ctl --list-ctrls` prints them (`exposure_time_absolute`);
    /// case, spaces, hyphens and commas are ignored when matching.
    pub controls: BTreeMap<String, i64>,
    /// Kernel buffers to stream through: more absorbs pipeline hiccups, fewer keeps latency low.
    pub buffers: u32,
    /// How long `next_frame` waits for a frame before failing the source as stalled (reopen it
    /// to go on); 0 waits forever, for externally triggered cameras that idle between parts.
    pub timeout_ms: u32,
}

impl Default for V4lConfig {
    fn default() -> Self {
        V4lConfig {
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 0,
            format: PixelFormat::Auto,
            controls: BTreeMap::new(),
            buffers: 4,
            timeout_ms: 5000,
        }
    }
}

/// Pixel format to request from the camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// The first of YUYV, MJPEG, GREY the camera offers: uncompressed first, since JPEG
    /// artefacts can look like defects.
    #[default]
    Auto,
    /// Packed YUV 4:2:2 (`YUYV`), uncompressed.
    Yuyv,
    /// Motion JPEG (`MJPG`), compressed.
    Mjpeg,
    /// 8-bit greyscale (`GREY`).
    Grey,
}

impl PixelFormat {
    fn fourcc(self) -> Option<FourCC> {
        match self {
            PixelFormat::Auto => None,
            PixelFormat::Yuyv => Some(FourCC::new(b"YUYV")),
            PixelFormat::Mjpeg => Some(FourCC::new(b"MJPG")),
            PixelFormat::Grey => Some(FourCC::new(b"GREY")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            PixelFormat::Auto => "auto",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Grey => "GREY",
        }
    }
}

/// A streaming V4L2 capture device.
pub struct V4lSource {
    /// Owns the mmap buffers and (through a shared handle) the device's file descriptor.
    stream: Stream<'static>,
    /// The configured path, for error messages.
    device: String,
    /// Node name (`video0`) for frame names.
    node: String,
    format: PixelFormat,
    width: u32,
    height: u32,
    /// Bytes per row as the driver lays them out (may include padding).
    stride: usize,
    describe: String,
    seq: u64,
    /// Last kernel sequence number, to count frames the driver dropped because we were late.
    last_kernel_seq: Option<u32>,
    dropped: u64,
    /// Set once the stream has failed: the mmap stream cannot be resumed, so later calls repeat it.
    failed: Option<String>,
}

impl V4lSource {
    /// Opens and configures the camera; streaming starts on the first [`FrameSource::next_frame`].
    pub fn open(cfg: &V4lConfig) -> Result<V4lSource> {
        let device = cfg.device.display().to_string();
        let cam = |msg: String| Error::camera(device.clone(), msg);
        if cfg.width == 0 || cfg.height == 0 {
            return Err(cam(format!("size {}x{} is empty", cfg.width, cfg.height)));
        }
        if !(1..=32).contains(&cfg.buffers) {
            return Err(cam(format!("buffers = {}: use 1 to 32", cfg.buffers)));
        }
        check_node(&cfg.device).map_err(cam)?;

        let dev = Device::with_path(&cfg.device)
            .map_err(|e| cam(format!("cannot open: {e}{}", hint(&e))))?;
        let caps = dev.query_caps().map_err(|e| {
            cam(format!(
                "is not a V4L2 video device (VIDIOC_QUERYCAP failed: {e})"
            ))
        })?;
        check_caps(caps.capabilities).map_err(cam)?;

        let offered: Vec<FourCC> = dev
            .enum_formats()
            .map_err(|e| cam(format!("cannot list formats: {e}")))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let format = choose_format(cfg.format, &offered).map_err(cam)?;
        let fourcc = format.fourcc().unwrap_or(FourCC::new(b"YUYV"));
        let want = Format::new(cfg.width, cfg.height, fourcc);
        let got = dev.set_format(&want).map_err(|e| {
            cam(format!(
                "cannot set {} {}x{}: {e}",
                format.name(),
                cfg.width,
                cfg.height
            ))
        })?;
        if got.fourcc != fourcc {
            return Err(cam(format!(
                "asked for {} but the driver chose {}",
                format.name(),
                got.fourcc
            )));
        }
        if (got.width, got.height) != (cfg.width, cfg.height) {
            log::warn!(
                "camera {device}: asked for {}x{}, the driver gives {}x{}; using that",
                cfg.width,
                cfg.height,
                got.width,
                got.height
            );
        }
        let (width, height) = (got.width, got.height);
        let min_stride = match format {
            PixelFormat::Yuyv => width as usize * 2,
            PixelFormat::Grey => width as usize,
            _ => 0,
        };
        // Compressed formats report no stride; packed ones must cover a row.
        let stride = (got.stride as usize).max(min_stride);

        let fps = set_fps(&dev, cfg.fps, &device);
        set_controls(&dev, &cfg.controls).map_err(cam)?;

        let mut stream =
            Stream::with_buffers(&dev, BufType::VideoCapture, cfg.buffers).map_err(|e| {
                cam(format!(
                    "cannot allocate {} stream buffers: {e}{}",
                    cfg.buffers,
                    hint(&e)
                ))
            })?;
        if cfg.timeout_ms > 0 {
            // `v4l` panics on a timeout beyond i32 milliseconds.
            let ms = cfg.timeout_ms.min(i32::MAX as u32);
            stream.set_timeout(Duration::from_millis(u64::from(ms)));
        }

        let node = cfg
            .device
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "camera".into());
        let fps_text = fps.map_or("default fps".into(), |f| format!("{f:.1} fps"));
        let describe = format!(
            "V4L2 {device} ({} \"{}\" at {}): {} {width}x{height}, {fps_text}, {} buffers",
            caps.driver,
            caps.card,
            caps.bus,
            format.name(),
            cfg.buffers
        );
        Ok(V4lSource {
            stream,
            device,
            node,
            format,
            width,
            height,
            stride,
            describe,
            seq: 0,
            last_kernel_seq: None,
            dropped: 0,
            failed: None,
        })
    }

    /// Frames the driver reports it dropped because buffers were not returned in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The size frames come at (what the driver granted, not necessarily what was asked).
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl FrameSource for V4lSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some(self.size())
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next> {
        if let Some(msg) = &self.failed {
            return Err(Error::camera(&self.device, msg.clone()));
        }
        let (buf, meta) = match self.stream.next() {
            Ok(x) => x,
            Err(e) => {
                let msg = stream_error(&e);
                self.failed = Some(msg.clone());
                return Err(Error::camera(&self.device, msg));
            }
        };
        let captured = capture_time(meta);

        if let Some(last) = self.last_kernel_seq {
            let gap = meta.sequence.wrapping_sub(last);
            if gap > 1 {
                self.dropped += u64::from(gap - 1);
                log::debug!(
                    "camera {}: driver dropped {} frame(s)",
                    self.device,
                    gap - 1
                );
            }
        }
        self.last_kernel_seq = Some(meta.sequence);

        frame.reset(self.width, self.height);
        frame.seq = self.seq;
        frame.captured = captured;
        let _ = write!(frame.name, "{}#{}", self.node, self.seq);
        self.seq += 1;

        if meta.flags.contains(BufFlags::ERROR) {
            return Ok(Next::Skipped("driver marked the buffer corrupt".into()));
        }
        let Some(data) = buf.get(..meta.bytesused as usize) else {
            return Ok(Next::Skipped(format!(
                "driver reports {} bytes in a {}-byte buffer",
                meta.bytesused,
                buf.len()
            )));
        };
        let (w, h) = (self.width, self.height);
        let converted = match self.format {
            PixelFormat::Yuyv => {
                convert::yuyv_to_rgb_strided(data, w, h, self.stride, &mut frame.rgb)
            }
            PixelFormat::Grey => {
                convert::grey_to_rgb_strided(data, w, h, self.stride, &mut frame.rgb)
            }
            // `open` resolved Auto to a concrete format.
            PixelFormat::Mjpeg | PixelFormat::Auto => {
                convert::mjpeg_to_rgb(data, w, h, &mut frame.rgb)
            }
        };
        Ok(match converted {
            Ok(()) => Next::Frame,
            Err(reason) => Next::Skipped(reason),
        })
    }
}

/// Rejects paths that are not V4L2 character devices before anything opens them.
fn check_node(path: &Path) -> std::result::Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(
                "does not exist (camera unplugged? `v4l2-ctl --list-devices` shows the \
                        nodes; /dev/v4l/by-id/ has stable names)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("cannot inspect: {e}")),
    };
    if !meta.file_type().is_char_device() {
        return Err("is not a V4L2 video device (not a character device)".into());
    }
    let major = dev_major(meta.rdev());
    if major != VIDEO_MAJOR {
        return Err(format!(
            "is not a V4L2 video device (character device major {major}, V4L2 uses {VIDEO_MAJOR})"
        ));
    }
    Ok(())
}

/// The major number of a Linux `dev_t` (glibc's `gnu_dev_major` encoding).
fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

/// The usual fix for an OS error from opening or streaming, for the operator.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => " (add the service user to the `video` group)",
        Some(libc::EBUSY) => " (another program is using the camera)",
        Some(libc::ENODEV) => " (camera disconnected or reset)",
        Some(libc::ENOSPC) => {
            " (USB bandwidth exhausted: lower the size or fps, use MJPEG, or move the camera to \
             another USB controller)"
        }
        _ => "",
    }
}

/// The node must capture single-planar video by streaming; UVC cameras also expose a metadata
/// node next to the video one, which is the usual wrong pick.
fn check_caps(caps: CapFlags) -> std::result::Result<(), String> {
    if !caps.contains(CapFlags::VIDEO_CAPTURE) {
        let why = if caps.contains(CapFlags::META_CAPTURE) {
            "it is a metadata node; use the camera's other /dev/videoN"
        } else if caps.contains(CapFlags::VIDEO_CAPTURE_MPLANE) {
            "multi-planar capture is not supported"
        } else {
            "it cannot capture video"
        };
        return Err(format!("is not a V4L2 video capture device: {why}"));
    }
    if !caps.contains(CapFlags::STREAMING) {
        return Err("does not support streaming I/O".into());
    }
    Ok(())
}

/// Resolves `Auto` and checks an explicit format is offered, naming what the camera has.
fn choose_format(
    want: PixelFormat,
    offered: &[FourCC],
) -> std::result::Result<PixelFormat, String> {
    let list = || {
        offered
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let candidates: &[PixelFormat] = match want {
        PixelFormat::Auto => &[PixelFormat::Yuyv, PixelFormat::Mjpeg, PixelFormat::Grey],
        PixelFormat::Yuyv => &[PixelFormat::Yuyv],
        PixelFormat::Mjpeg => &[PixelFormat::Mjpeg],
        PixelFormat::Grey => &[PixelFormat::Grey],
    };
    // Some drivers enumerate nothing; then try the request and let S_FMT decide.
    if offered.is_empty() {
        return Ok(candidates[0]);
    }
    candidates
        .iter()
        .copied()
        .find(|f| f.fourcc().is_some_and(|c| offered.contains(&c)))
        .ok_or_else(|| match want {
            PixelFormat::Auto => format!(
                "offers none of YUYV, MJPEG, GREY (it has: {}; Bayer/raw sensors need their ISP)",
                list()
            ),
            _ => format!("does not offer {} (it has: {})", want.name(), list()),
        })
}

/// Requests `fps` (0: leave the default) and returns the rate in effect, if the driver says.
/// A camera that cannot change rate is a warning, not a failure: the line is paced by the
/// camera either way, and reject timing uses capture timestamps, not the nominal rate.
fn set_fps(dev: &Device, fps: u32, device: &str) -> Option<f64> {
    let rate = |p: &Parameters| {
        let i = p.interval;
        (i.numerator > 0).then(|| f64::from(i.denominator) / f64::from(i.numerator))
    };
    let current = dev.params().ok();
    if fps == 0 {
        return current.as_ref().and_then(rate);
    }
    if !current.is_some_and(|p| p.capabilities.contains(ParamCaps::TIME_PER_FRAME)) {
        log::warn!("camera {device}: the driver cannot set the frame rate; fps = {fps} ignored");
        return current.as_ref().and_then(rate);
    }
    match dev.set_params(&Parameters::with_fps(fps)) {
        Ok(p) => {
            let got = rate(&p);
            if got.is_some_and(|g| (g - f64::from(fps)).abs() > 0.5) {
                log::warn!(
                    "camera {device}: asked for {fps} fps, the driver gives {:.1}",
                    got.unwrap_or_default()
                );
            }
            got
        }
        Err(e) => {
            log::warn!("camera {device}: cannot set {fps} fps: {e}");
            current.as_ref().and_then(rate)
        }
    }
}

/// Control names as the operator types them: lower case, every run of spaces, underscores,
/// hyphens, commas or other punctuation as one `_` (the names `v4l2-ctl --list-ctrls` prints).
pub fn normalize_control_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// What this module needs to know about one device control.
#[derive(Debug, Clone)]
struct ControlInfo {
    id: u32,
    /// `None` for types the `v4l` crate does not know (newer compound types): never settable here.
    typ: Option<CtrlType>,
    name: String,
    min: i64,
    max: i64,
    step: u64,
    flags: u32,
}

/// Lists the device's non-compound controls.
///
/// Done here rather than with `Device::query_controls`, which panics on control types it does not
/// know (e.g. the UVC region-of-interest rectangle on recent kernels) and on non-UTF-8 names.
fn query_controls(dev: &Device) -> io::Result<Vec<ControlInfo>> {
    use v4l::v4l_sys::{V4L2_CTRL_FLAG_NEXT_CTRL, v4l2_query_ext_ctrl};
    let fd = dev.handle().fd();
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        // SAFETY: v4l2_query_ext_ctrl is a plain C struct for which all-zero bytes are valid.
        let mut q: v4l2_query_ext_ctrl = unsafe { std::mem::zeroed() };
        q.id = id | V4L2_CTRL_FLAG_NEXT_CTRL;
        // SAFETY: `fd` is open for the life of `dev`, and VIDIOC_QUERY_EXT_CTRL reads and writes
        // exactly one v4l2_query_ext_ctrl, which `q` is.
        let r = unsafe {
            v4l::v4l2::ioctl(
                fd,
                v4l::v4l2::vidioc::VIDIOC_QUERY_EXT_CTRL,
                &mut q as *mut v4l2_query_ext_ctrl as *mut std::os::raw::c_void,
            )
        };
        match r {
            Ok(()) => {}
            // EINVAL ends the list; ENOTTY: the driver has no control framework, so no controls.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => break,
            Err(e) => return Err(e),
        }
        // Guard against a driver that does not advance.
        if q.id <= id && id != 0 {
            break;
        }
        id = q.id;
        let name: Vec<u8> = q
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        out.push(ControlInfo {
            id: q.id,
            typ: CtrlType::try_from(q.type_).ok(),
            name: String::from_utf8_lossy(&name).into_owned(),
            min: q.minimum,
            max: q.maximum,
            step: q.step,
            flags: q.flags,
        });
    }
    Ok(out)
}

/// Sets the configured controls by name. Mode switches (booleans, menus such as `auto_exposure`)
/// go first, because drivers ignore or refuse a manual value while its automatic mode is on.
fn set_controls(dev: &Device, wanted: &BTreeMap<String, i64>) -> std::result::Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    let controls = query_controls(dev).map_err(|e| format!("cannot list controls: {e}"))?;
    let mut plan = Vec::with_capacity(wanted.len());
    for (key, &value) in wanted {
        let ctrl = find_control(&controls, key)?;
        check_value(ctrl, value)?;
        plan.push((ctrl, value));
    }
    let is_mode = |c: &ControlInfo| {
        matches!(
            c.typ,
            Some(CtrlType::Boolean | CtrlType::Menu | CtrlType::IntegerMenu)
        )
    };
    plan.sort_by_key(|(c, _)| !is_mode(c));

    for (ctrl, value) in plan {
        let key = normalize_control_name(&ctrl.name);
        let v = match ctrl.typ {
            Some(CtrlType::Boolean) => Value::Boolean(value != 0),
            _ => Value::Integer(value),
        };
        dev.set_control(Control {
            id: ctrl.id,
            value: v,
        })
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EACCES) {
                " (inactive while its automatic mode is on: set that mode to manual too)"
            } else {
                ""
            };
            format!("cannot set control {key} = {value}: {e}{hint}")
        })?;
        // Drivers may round to what the hardware supports; say so rather than run silently off.
        // (`Device::control` panics on a non-UTF-8 name, hence the check.)
        if matches!(ctrl.typ, Some(CtrlType::Integer | CtrlType::Integer64))
            && !ctrl.name.contains(char::REPLACEMENT_CHARACTER)
            && let Ok(Control {
                value: Value::Integer(now),
                ..
            }) = dev.control(ctrl.id)
            && now != value
        {
            log::warn!("control {key}: set {value}, the driver holds {now}");
        }
        log::debug!("control {key} = {value}");
    }
    Ok(())
}

/// Finds a control by normalised name, or says which names exist.
fn find_control<'c>(
    controls: &'c [ControlInfo],
    key: &str,
) -> std::result::Result<&'c ControlInfo, String> {
    let want = normalize_control_name(key);
    let settable = |c: &&ControlInfo| c.typ.is_some_and(|t| t != CtrlType::CtrlClass);
    controls
        .iter()
        .filter(settable)
        .find(|c| normalize_control_name(&c.name) == want)
        .ok_or_else(|| {
            let names: Vec<String> = controls
                .iter()
                .filter(settable)
                .map(|c| normalize_control_name(&c.name))
                .collect();
            if names.is_empty() {
                format!("unknown control `{key}`: this camera has no controls")
            } else {
                format!(
                    "unknown control `{key}`; this camera has: {}",
                    names.join(", ")
                )
            }
        })
}

/// Rejects values the driver would refuse or silently clamp.
fn check_value(ctrl: &ControlInfo, value: i64) -> std::result::Result<(), String> {
    let key = normalize_control_name(&ctrl.name);
    const DISABLED: u32 = 0x0001;
    const READ_ONLY: u32 = 0x0004;
    if ctrl.flags & (DISABLED | READ_ONLY) != 0 {
        return Err(format!("control {key} is read-only"));
    }
    match ctrl.typ {
        Some(
            CtrlType::Integer
            | CtrlType::Integer64
            | CtrlType::Boolean
            | CtrlType::Menu
            | CtrlType::IntegerMenu,
        ) => {}
        other => {
            let t = other.map_or("unknown".to_string(), |t| t.to_string());
            return Err(format!(
                "control {key} has type {t}, which cannot be set from a number"
            ));
        }
    }
    if value < ctrl.min || value > ctrl.max {
        return Err(format!(
            "control {key} = {value} is outside its range {}..={}",
            ctrl.min, ctrl.max
        ));
    }
    if ctrl.step > 1 && !value.abs_diff(ctrl.min).is_multiple_of(ctrl.step) {
        return Err(format!(
            "control {key} = {value} is not on its step: {} + k·{}",
            ctrl.min, ctrl.step
        ));
    }
    Ok(())
}

/// Describes a stream failure; ENODEV (USB camera unplugged or reset) is the usual one.
fn stream_error(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        return "no frame within timeout_ms (camera stalled, or not triggered)".into();
    }
    format!("stream failed: {e}{}", hint(e))
}

/// The capture time of a buffer as an `Instant`.
///
/// With a monotonic kernel timestamp (UVC and most drivers; UVC stamps the start of exposure)
/// the age of the buffer is subtracted from now, so a frame that sat queued while the pipeline
/// was busy still carries the time it was taken. Otherwise (no or non-monotonic timestamp, or an
/// implausible age) it is the dequeue time, which is late by at most the queue depth.
fn capture_time(meta: &Metadata) -> Instant {
    let now = Instant::now();
    let mono = (meta.flags.bits() & BufFlags::TIMESTAMP_MASK.bits())
        == BufFlags::TIMESTAMP_MONOTONIC.bits();
    if !mono {
        return now;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return now;
    }
    let now_us = i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1000;
    let cap_us = i128::from(meta.timestamp.sec) * 1_000_000 + i128::from(meta.timestamp.usec);
    match u64::try_from(now_us - cap_us) {
        Ok(age_us) if age_us < 2_000_000 => now
            .checked_sub(Duration::from_micros(age_us))
            .unwrap_or(now),
        _ => now,
    }
}

#[cfg(test)]
#[path = "v4l_tests.rs"]
mod tests;
