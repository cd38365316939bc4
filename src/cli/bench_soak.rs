//! `contextrast bench soak`: the whole line as `inspect` runs it (synthetic source unpaced, the
//! shipped model, decision, the reject scheduler on a log pin, events and defect images with
//! retention, the model watcher), for many frames, with a hot model swap and a SIGHUP config
//! reload every so often. Every N/100 judged frames it samples the process (resident memory,
//! open descriptors, threads) and the disk use of its folder, and reports the slopes over the
//! last 90 % of the run: a service that runs for months must come out flat.
use anyhow::{Context, Result};
use clap::Args;
use contextrast::config::LineConfig;
use contextrast::line::service::Service;
use contextrast::pipeline::inspect::{InspectSummary, Inspection};
use contextrast::retrain::plots::line_chart;
use contextrast::sys::alloc_count::resident_mib;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SoakBench {
    /// Frames to judge.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Frame size HxW (small, so that a million frames take minutes).
    #[arg(long, default_value = "64x64")]
    size: String,
    #[arg(long, default_value = "models/default.onnx")]
    model: PathBuf,
    /// Work folder (line config, the model file replaced in place, events, images); default a
    /// new folder under the temp dir, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Replace the model file (new inode, as a promotion does) every this many frames; 0 = never.
    #[arg(long, default_value_t = 100_000)]
    swap_every: u64,
    /// Rewrite the config (threshold toggled) and send SIGHUP every this many frames, half a
    /// period after each swap; 0 = never.
    #[arg(long, default_value_t = 100_000)]
    reload_every: u64,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    json: Option<PathBuf>,
    /// PNG of resident memory, descriptors and threads against frames; disk use goes to the
    /// same name with `-disk` before the extension.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One sample of the process and its folder.
#[derive(Clone, Debug, Serialize)]
struct Sample {
    frames: u64,
    elapsed_s: f64,
    rss_mib: f64,
    fds: usize,
    threads: usize,
    events_mib: f64,
    images_mib: f64,
    image_files: usize,
}

/// Growth over the last 90 % of the run.
#[derive(Debug, Serialize)]
struct Slopes {
    /// From frame `from_frames` on.
    from_frames: u64,
    /// Least-squares slope of the resident set, MiB per million frames.
    rss_mib_per_million_frames: f64,
    /// That slope over the window's length: the growth the fit says happened.
    rss_growth_fit_mib: f64,
    /// Last minus first sample of the window.
    rss_growth_mib: f64,
    /// Lowest count of the window's last tenth minus lowest of its first tenth.
    fd_growth: i64,
    thread_growth: i64,
    /// Event files grow by design (one line per defective frame, no retention): bytes/frame.
    events_bytes_per_frame: f64,
    /// Bounded by retention: last minus first sample, MiB.
    images_growth_mib: f64,
}

#[derive(Debug, Serialize)]
struct SoakReport {
    frames: u64,
    width: u32,
    height: u32,
    threads: usize,
    swap_every: u64,
    reload_every: u64,
    wall_s: f64,
    fps: f64,
    /// Model file replacements made, SIGHUP reloads sent, and the swaps the pipeline applied
    /// (each of the two should give one).
    model_swaps_made: u64,
    sighups_sent: u64,
    engine_swaps: u64,
    reloads_refused: u64,
    worst_latency_ms: f64,
    p99_latency_ms: f64,
    /// RSS growth (fit) under 1 MiB, no descriptor or thread growth, every swap applied.
    flat: bool,
    slopes: Slopes,
    summary: InspectSummary,
    samples: Vec<Sample>,
}

pub fn run(b: SoakBench) -> Result<()> {
    let (h, w) = super::export::parse_size(&b.size)?;
    if b.frames < 100 {
        anyhow::bail!("--frames must be at least 100 (the run is sampled every frames/100)");
    }
    let (dir, temporary) = match &b.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("contextrast-soak-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let model_bytes =
        std::fs::read(&b.model).with_context(|| format!("reading {}", b.model.display()))?;
    let model_path = dir.join("model.onnx");
    replace(&model_path, &model_bytes)?;
    let config_path = dir.join("line.toml");
    let config_text = |threshold: f64| {
        format!(
            r#"# Written by `contextrast bench soak`.
[source]
kind = "synthetic"
[source.synthetic]
seed = 9001
width = {w}
height = {h}
fps = 0
[model]
path = "model.onnx"
threads = {threads}
[pipeline]
queue = 4
status_every_s = 0
[decision]
threshold = {threshold}
min_area_px = 4
[reject]
output = "log"
delay_ms = 50
pulse_ms = 5
[events]
dir = "events"
images = true
max_images = 200
max_bytes = 20_000_000
"#,
            threads = b.threads
        )
    };
    replace(&config_path, config_text(0.8).as_bytes())?;
    let cfg = LineConfig::load(&config_path)?;
    let events_dir = dir.join("events");

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing the SIGHUP handler")?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let judged = Arc::new(AtomicU64::new(0));
    let inspection = Inspection::open(cfg, &stop)?.with_progress(Arc::clone(&judged));
    // A pulse or a swap is an info line: a million of them would be the benchmark's cost.
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Warn);
    eprintln!(
        "soak: {} frames at {w}x{h} in {} (swap every {}, SIGHUP every {})",
        b.frames,
        dir.display(),
        b.swap_every,
        b.reload_every
    );
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (summary, watch) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            watch(
                &b,
                &judged,
                &done,
                started,
                &Paths {
                    events: &events_dir,
                    model: &model_path,
                    config: &config_path,
                },
                &model_bytes,
                &config_text,
            )
        });
        let summary = inspection.run(&Service::disabled(), &stop, &hup, Some(b.frames));
        done.store(true, Ordering::Relaxed);
        (summary, watcher.join())
    });
    log::set_max_level(level);
    let wall_s = started.elapsed().as_secs_f64();
    let summary = summary?;
    let watch = match watch {
        Ok(w) => w?,
        Err(_) => anyhow::bail!("the soak's sampling thread panicked"),
    };
    let slopes = slopes(&watch.samples, b.frames);
    let total = summary.run.latency_ms.get("total");
    let expected_swaps = watch.swaps + watch.sighups;
    let report = SoakReport {
        frames: summary.run.frames_processed,
        width: w as u32,
        height: h as u32,
        threads: b.threads,
        swap_every: b.swap_every,
        reload_every: b.reload_every,
        wall_s,
        fps: summary.run.frames_processed as f64 / wall_s.max(1e-9),
        model_swaps_made: watch.swaps,
        sighups_sent: watch.sighups,
        engine_swaps: summary.run.engine_swaps,
        reloads_refused: summary.run.reloads_refused,
        worst_latency_ms: total.map_or(f64::NAN, |t| t.max_ms),
        p99_latency_ms: total.map_or(f64::NAN, |t| t.p99_ms),
        flat: slopes.rss_growth_fit_mib < 1.0
            && slopes.fd_growth <= 0
            && slopes.thread_growth <= 0
            && summary.run.engine_swaps == expected_swaps
            && summary.run.reloads_refused == 0,
        slopes,
        summary,
        samples: watch.samples,
    };
    if let Some(p) = &b.plot {
        plot(p, &report)?;
    }
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &b.json {
        contextrast_model::atomic::write_atomic(p, text.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let s = &report.slopes;
    println!(
        "soak: {} frames in {:.0} s ({:.0} fps); RSS {:+.3} MiB over the last 90 % ({:.3} MiB per 10^6 frames), fds {:+}, threads {:+}; {} engine swaps of {} expected, {} refused; worst latency {:.1} ms (p99 {:.2}); events {:.0} B/frame, images {:+.2} MiB: {}",
        report.frames,
        report.wall_s,
        report.fps,
        s.rss_growth_fit_mib,
        s.rss_mib_per_million_frames,
        s.fd_growth,
        s.thread_growth,
        report.engine_swaps,
        expected_swaps,
        report.reloads_refused,
        report.worst_latency_ms,
        report.p99_latency_ms,
        s.events_bytes_per_frame,
        s.images_growth_mib,
        if report.flat { "flat" } else { "NOT flat" }
    );
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

struct Paths<'a> {
    events: &'a Path,
    model: &'a Path,
    config: &'a Path,
}

struct Watched {
    samples: Vec<Sample>,
    swaps: u64,
    sighups: u64,
}

/// Samples every frames/100, replaces the model every `swap_every` and reloads the config
/// every `reload_every` (offset by half a period), until `done`.
fn watch(
    b: &SoakBench,
    judged: &AtomicU64,
    done: &AtomicBool,
    started: Instant,
    paths: &Paths,
    model: &[u8],
    config_text: &dyn Fn(f64) -> String,
) -> Result<Watched> {
    let step = b.frames / 100;
    let mut out = Watched {
        samples: vec![sample(0, started, paths)],
        swaps: 0,
        sighups: 0,
    };
    let mut next_sample = step;
    let mut next_swap = (b.swap_every > 0).then_some(b.swap_every);
    let mut next_hup = (b.reload_every > 0).then_some(b.reload_every / 2);
    loop {
        let finished = done.load(Ordering::Relaxed);
        let n = judged.load(Ordering::Relaxed);
        if n >= next_sample {
            out.samples.push(sample(n, started, paths));
            next_sample += step;
        }
        // Nothing is changed in the last 1 %: its swap could not land before the end.
        if let Some(at) = next_swap.filter(|&at| n >= at && at + step < b.frames) {
            replace(paths.model, model)?;
            out.swaps += 1;
            next_swap = Some(at + b.swap_every);
        }
        if let Some(at) = next_hup.filter(|&at| n >= at && at + step < b.frames) {
            let threshold = if out.sighups.is_multiple_of(2) {
                0.7
            } else {
                0.8
            };
            replace(paths.config, config_text(threshold).as_bytes())?;
            signal_hook::low_level::raise(signal_hook::consts::SIGHUP).context("sending SIGHUP")?;
            out.sighups += 1;
            next_hup = Some(at + b.reload_every);
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temp file and a rename: a new inode, as promotion does.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    contextrast_model::atomic::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn sample(frames: u64, started: Instant, paths: &Paths) -> Sample {
    let count = |p: &str| std::fs::read_dir(p).map_or(0, |d| d.count());
    let (events, _) = du(paths.events, false);
    let (images, image_files) = du(&paths.events.join("images"), true);
    Sample {
        frames,
        elapsed_s: started.elapsed().as_secs_f64(),
        rss_mib: resident_mib().map_or(f64::NAN, |r| r.0),
        fds: count("/proc/self/fd"),
        threads: count("/proc/self/task"),
        events_mib: events as f64 / MIB,
        images_mib: images as f64 / MIB,
        image_files,
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Bytes and files under `dir`: its files, and with `deep` those of its subfolders too.
fn du(dir: &Path, deep: bool) -> (u64, usize) {
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() {
            total.0 += m.len();
            total.1 += 1;
        } else if m.is_dir() && deep {
            let (b, n) = du(&e.path(), true);
            total.0 += b;
            total.1 += n;
        }
    }
    total
}

/// Least-squares slope of `y` against `x`.
fn fit_slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |a, p| {
        (a.0 + (p.0 - mx) * (p.1 - my), a.1 + (p.0 - mx) * (p.0 - mx))
    });
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

fn slopes(samples: &[Sample], frames: u64) -> Slopes {
    let from = frames / 10;
    let win: Vec<&Sample> = samples.iter().filter(|s| s.frames >= from).collect();
    let (Some(first), Some(last)) = (win.first(), win.last()) else {
        return Slopes {
            from_frames: from,
            rss_mib_per_million_frames: f64::NAN,
            rss_growth_fit_mib: f64::NAN,
            rss_growth_mib: f64::NAN,
            fd_growth: 0,
            thread_growth: 0,
            events_bytes_per_frame: f64::NAN,
            images_growth_mib: f64::NAN,
        };
    };
    let rss: Vec<(f64, f64)> = win.iter().map(|s| (s.frames as f64, s.rss_mib)).collect();
    let slope = fit_slope(&rss);
    let span = (last.frames - first.frames) as f64;
    // Descriptors and threads come and go (an image being written, a retiring engine): a
    // leak raises the floor, so the lowest count of the last tenth of the window is compared
    // with the lowest of its first tenth.
    let tenth = (win.len() / 10).max(1);
    let floor = |part: &[&Sample], f: fn(&Sample) -> usize| {
        part.iter().map(|s| f(s)).min().unwrap_or(0) as i64
    };
    let growth =
        |f: fn(&Sample) -> usize| floor(&win[win.len() - tenth..], f) - floor(&win[..tenth], f);
    Slopes {
        from_frames: first.frames,
        rss_mib_per_million_frames: slope * 1e6,
        rss_growth_fit_mib: slope * span,
        rss_growth_mib: last.rss_mib - first.rss_mib,
        fd_growth: growth(|s| s.fds),
        thread_growth: growth(|s| s.threads),
        events_bytes_per_frame: (last.events_mib - first.events_mib) * MIB / span.max(1.0),
        images_growth_mib: last.images_mib - first.images_mib,
    }
}

fn plot(path: &Path, r: &SoakReport) -> Result<()> {
    let series = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        r.samples.iter().map(|s| (s.frames as f64, f(s))).collect()
    };
    let (rss, fds, threads) = (
        series(|s| s.rss_mib),
        series(|s| s.fds as f64),
        series(|s| s.threads as f64),
    );
    let title = format!(
        "soak: {} frames at {}x{}; model swap every {}, SIGHUP every {}",
        r.frames, r.width, r.height, r.swap_every, r.reload_every
    );
    line_chart(
        path,
        &title,
        "frames judged",
        "MiB / count",
        &[
            ("resident set (MiB)", &rss),
            ("open descriptors", &fds),
            ("threads", &threads),
        ],
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("plotting {}", path.display()))?;
    let disk = path.with_file_name(format!(
        "{}-disk.png",
        path.file_stem()
            .map_or("soak".into(), |s| s.to_string_lossy())
    ));
    let (events, images) = (series(|s| s.events_mib), series(|s| s.images_mib));
    line_chart(
        &disk,
        &title,
        "frames judged",
        "MiB",
        &[
            ("event files (no retention)", &events),
            ("defect images (retention 20 MB / 200 files)", &images),
        ],
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("plotting {}", disk.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise_around_it() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        assert!((fit_slope(&pts) - 0.5).abs() < 1e-12);
        let flat: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        assert!(fit_slope(&flat).abs() < 0.01);
        assert_eq!(fit_slope(&pts[..1]), 0.0);
    }

    #[test]
    fn slopes_skip_the_first_tenth_and_see_growth() {
        let samples: Vec<Sample> = (0..=100)
            .map(|i| Sample {
                frames: i * 10,
                elapsed_s: i as f64,
                // A warm-up jump in the first tenth, then 0.01 MiB per sample.
                rss_mib: if i < 10 { 10.0 } else { 50.0 + 0.01 * i as f64 },
                // A transient descriptor mid-run, a leaked one from sample 90 on.
                fds: 12 + usize::from(i == 60) + usize::from(i >= 90),
                threads: 9,
                events_mib: i as f64 / MIB,
                images_mib: 2.0,
                image_files: 200,
            })
            .collect();
        let s = slopes(&samples, 1000);
        assert_eq!(s.from_frames, 100);
        assert!((s.rss_growth_fit_mib - 0.9).abs() < 1e-9, "{s:?}");
        assert!((s.rss_growth_mib - 0.9).abs() < 1e-9, "{s:?}");
        assert_eq!((s.fd_growth, s.thread_growth), (1, 0));
        assert!((s.events_bytes_per_frame - 0.1).abs() < 1e-9, "{s:?}");
    }
}
