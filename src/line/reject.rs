//! Timed reject pulses: a confirmed defect becomes a GPIO pulse that fires when the part reaches
//! the ejector, `delay` after the frame was captured.
//!
//! Positions are either time (capture timestamps in µs, [`Trigger::Time`]) or encoder counts
//! ([`Trigger::Encoder`], for conveyors whose speed varies); the pulse width is always time.
//! A verdict that arrives too late to hit its own part is counted and never fired: a pulse that
//! starts late would kick the next part instead. Pulses that overlap or touch become one longer
//! pulse, so a burst of defective frames gives one clean ejector stroke.
//!
//! [`RejectScheduler`] is a plain state machine driven by [`RejectScheduler::poll`];
//! [`RejectRunner`] owns one in its own thread and takes verdicts over a bounded channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_hal::digital::{OutputPin, PinState};

/// Monotonic microseconds. A trait so tests can drive time by hand ([`FakeClock`]).
pub trait Clock: Send {
    /// Now, in µs since an arbitrary fixed origin; never decreases.
    fn now_us(&self) -> u64;
}

/// Microseconds since `origin`. `Copy`, so the pipeline keeps a copy to convert frame capture
/// [`Instant`]s to the same scale as the scheduler that owns the other copy.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// A capture `Instant` on this clock's scale; instants before the origin read as 0, which
    /// makes their verdicts late rather than wrong.
    pub fn at(&self, t: Instant) -> u64 {
        let us = t.saturating_duration_since(self.origin).as_micros();
        u64::try_from(us).unwrap_or(u64::MAX)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_us(&self) -> u64 {
        self.at(Instant::now())
    }
}

/// A clock that only moves when told to. Clones share the time, so a test keeps one and hands
/// the other to the scheduler.
#[derive(Clone, Debug, Default)]
pub struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    /// A fake clock reading `now_us` µs.
    pub fn new(now_us: u64) -> Self {
        FakeClock(Arc::new(AtomicU64::new(now_us)))
    }

    /// Sets the time to `now_us` µs, for every clone.
    pub fn set(&self, now_us: u64) {
        self.0.store(now_us, Ordering::SeqCst);
    }

    /// Moves the time on by `us` µs, for every clone.
    pub fn advance(&self, us: u64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Conveyor position in encoder counts; must never go backwards.
pub trait Position: Send {
    /// The current count.
    fn position(&self) -> u64;
}

/// Encoder count shared between the GPIO edge-event thread (which calls [`EncoderCount::add`])
/// and the scheduler and the capture path (which read it).
#[derive(Clone, Debug, Default)]
pub struct EncoderCount(Arc<AtomicU64>);

impl EncoderCount {
    /// A counter starting at `count`.
    pub fn new(count: u64) -> Self {
        EncoderCount(Arc::new(AtomicU64::new(count)))
    }

    /// Counts `n` edges.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the count outright (used by tests; a real encoder only adds).
    pub fn set(&self, count: u64) {
        self.0.store(count, Ordering::Relaxed);
    }

    /// The shared counter, for the GPIO edge-event thread that increments it.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.0)
    }
}

impl Position for EncoderCount {
    fn position(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Pulse timing. `delay_us` and `min_lead_us` apply in [`Trigger::Time`] only; the encoder
/// trigger carries its own delay and lead in counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectTiming {
    /// Camera → ejector travel time.
    pub delay_us: u64,
    /// Pulse width; 0 is treated as 1 µs so that a pulse always has an end.
    pub pulse_us: u64,
    /// Electrical level of an active pulse; `false` inverts every write.
    pub active_high: bool,
    /// A verdict must arrive at least this long before its pulse is due, else it is late
    /// (covers the runner's wake-up jitter).
    pub min_lead_us: u64,
    /// Most pending pulses (and the runner's channel depth); 0 is treated as 1. Beyond it
    /// verdicts are dropped, so memory never grows with a stalled output.
    pub capacity: usize,
}

impl Default for RejectTiming {
    fn default() -> Self {
        RejectTiming {
            delay_us: 0,
            pulse_us: 50_000,
            active_high: true,
            min_lead_us: 1_000,
            capacity: 64,
        }
    }
}

/// What a verdict's position means.
pub enum Trigger {
    /// `captured` is the capture time in µs on the scheduler's clock; the pulse starts at
    /// `captured + delay_us`.
    Time,
    /// `captured` is the encoder count sampled at capture time; the pulse starts when
    /// `source.position() ≥ captured + delay_counts`. The scheduler cannot know when the count
    /// will arrive, so while pulses wait it asks to be polled every `poll_us`.
    Encoder {
        /// Where the conveyor position is read.
        source: Box<dyn Position>,
        /// Camera → ejector travel in counts: the pulse starts at `captured + delay_counts`.
        delay_counts: u64,
        /// Like `min_lead_us`, in counts.
        min_lead_counts: u64,
        /// How often, in µs, the scheduler wants to be polled while pulses wait for their count.
        poll_us: u64,
    },
}

/// The outcome of [`RejectScheduler::schedule`]. Positions and `by` are µs in time mode and
/// counts in encoder mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// Queued as a new pulse.
    Queued {
        /// Start of the pulse (µs, or counts in encoder mode).
        fire_at: u64,
    },
    /// Joined an active or pending pulse; `fire_at` is the start of the joint pulse.
    Merged {
        /// Start of the joint pulse (µs, or counts in encoder mode).
        fire_at: u64,
    },
    /// Too late to hit its part: `by` is how much earlier it would have had to arrive
    /// (including the minimum lead). Never fired.
    Late {
        /// µs (or counts) it missed by, minimum lead included.
        by: u64,
    },
    /// The pending queue was full; never fired.
    Dropped,
}

/// Counters since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectStats {
    /// Verdicts handed in, whatever became of them.
    pub scheduled: u64,
    /// Verdicts joined to another pulse (encoder mode: counted when the count arrives).
    pub merged: u64,
    /// Pulses raised.
    pub fired: u64,
    /// Verdicts too late for their part, never fired (see [`Scheduled::Late`]).
    pub late: u64,
    /// Pulses whose whole window passed before `poll` ran.
    pub missed: u64,
    /// Verdicts refused because the queue (or the runner's channel) was full.
    pub dropped: u64,
    /// Pulses still pending at shutdown.
    pub abandoned: u64,
    /// Failed pin writes.
    pub pin_errors: u64,
}

/// A pulse in time, half-open `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    /// Overlapping or touching windows become one pulse: a gap of 0 µs is no gap for an ejector.
    fn touches(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    fn union(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Turns verdicts into pulses on one output pin. Not thread-safe by itself: call `schedule`
/// and `poll` from one thread (see [`RejectRunner`]).
pub struct RejectScheduler<P: OutputPin, C: Clock> {
    pin: P,
    clock: C,
    timing: RejectTiming,
    trigger: Trigger,
    /// The raised pulse, if any.
    active: Option<Window>,
    /// Time windows not raised yet, sorted by start, pairwise not touching.
    pending: VecDeque<Window>,
    /// Encoder mode: start counts not reached yet, sorted, unique.
    waiting: VecDeque<u64>,
    /// Encoder mode: last (time, count) seen, to estimate when a count was crossed.
    last_seen: Option<(u64, u64)>,
    stats: RejectStats,
    /// The pin was driven inactive by `shutdown` and not raised since: `Drop` need not write.
    released: bool,
}

impl<P: OutputPin, C: Clock> RejectScheduler<P, C> {
    /// Drives the pin inactive first, so a pin left active by a crash stops now.
    pub fn new(
        mut pin: P,
        clock: C,
        timing: RejectTiming,
        trigger: Trigger,
    ) -> Result<Self, P::Error> {
        let timing = RejectTiming {
            pulse_us: timing.pulse_us.max(1),
            capacity: timing.capacity.max(1),
            ..timing
        };
        pin.set_state(level(timing.active_high, false))?;
        Ok(RejectScheduler {
            pin,
            clock,
            timing,
            trigger,
            active: None,
            pending: VecDeque::with_capacity(timing.capacity),
            waiting: VecDeque::new(),
            last_seen: None,
            stats: RejectStats::default(),
            released: false,
        })
    }

    /// Plans the pulse for frame `seq`; `captured` is its position (see [`Trigger`]).
    pub fn schedule(&mut self, seq: u64, captured: u64) -> Scheduled {
        self.stats.scheduled += 1;
        let now = self.clock.now_us();
        let out = match &self.trigger {
            Trigger::Time => self.schedule_time(now, captured),
            Trigger::Encoder {
                delay_counts,
                min_lead_counts,
                ..
            } => {
                let (delay, lead) = (*delay_counts, *min_lead_counts);
                self.schedule_encoder(now, captured.saturating_add(delay), lead)
            }
        };
        match out {
            Scheduled::Merged { .. } => self.stats.merged += 1,
            Scheduled::Late { by } => {
                self.stats.late += 1;
                let unit = match self.trigger {
                    Trigger::Time => "µs",
                    Trigger::Encoder { .. } => "encoder counts",
                };
                log::warn!(
                    "reject: frame {seq}'s verdict came {by} {unit} too late for its window; not fired (the part has passed)"
                );
            }
            Scheduled::Dropped => {
                self.stats.dropped += 1;
                log::warn!(
                    "reject: {} pulses pending, frame {seq} dropped",
                    self.pending_len()
                );
            }
            Scheduled::Queued { .. } => {}
        }
        out
    }

    fn schedule_time(&mut self, now: u64, captured: u64) -> Scheduled {
        let start = captured.saturating_add(self.timing.delay_us);
        let due_by = now.saturating_add(self.timing.min_lead_us);
        if start < due_by {
            return Scheduled::Late { by: due_by - start };
        }
        let end = start.saturating_add(self.timing.pulse_us);
        self.insert(Window { start, end })
    }

    fn schedule_encoder(&mut self, now: u64, target: u64, lead: u64) -> Scheduled {
        // Crossings since the last poll first, so they are timed against the older sample.
        let pos = self.observe(now).unwrap_or(0);
        let due_by = pos.saturating_add(lead);
        if target < due_by {
            return Scheduled::Late {
                by: due_by - target,
            };
        }
        match self.waiting.binary_search(&target) {
            Ok(_) => Scheduled::Merged { fire_at: target },
            Err(_) if self.pending_len() >= self.timing.capacity => Scheduled::Dropped,
            Err(i) => {
                self.waiting.insert(i, target);
                Scheduled::Queued { fire_at: target }
            }
        }
    }

    /// Adds a time window, merging it with every active or pending window it touches.
    fn insert(&mut self, mut w: Window) -> Scheduled {
        let mut merged = false;
        let mut into_active = false;
        if let Some(a) = self.active
            && a.touches(&w)
        {
            w = a.union(&w);
            merged = true;
            into_active = true;
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].touches(&w) {
                if let Some(p) = self.pending.remove(i) {
                    w = p.union(&w);
                }
                merged = true;
            } else {
                i += 1;
            }
        }
        if into_active {
            self.active = Some(w);
        } else {
            if !merged && self.pending_len() >= self.timing.capacity {
                return Scheduled::Dropped;
            }
            let at = self.pending.partition_point(|p| p.start <= w.start);
            self.pending.insert(at, w);
        }
        if merged {
            Scheduled::Merged { fire_at: w.start }
        } else {
            Scheduled::Queued { fire_at: w.start }
        }
    }

    /// Encoder mode: turns counts reached since the last look into time windows, starting at
    /// the estimated crossing time. Returns the count (None in time mode).
    fn observe(&mut self, now: u64) -> Option<u64> {
        let pos = match &self.trigger {
            Trigger::Encoder { source, .. } => source.position(),
            Trigger::Time => return None,
        };
        while let Some(&target) = self.waiting.front()
            && target <= pos
        {
            self.waiting.pop_front();
            let start = crossing_time(self.last_seen, target, now, pos);
            let end = start.saturating_add(self.timing.pulse_us);
            // One entry leaves `waiting` for at most one in `pending`: never over capacity.
            if let Scheduled::Merged { .. } = self.insert(Window { start, end }) {
                self.stats.merged += 1;
            }
        }
        self.last_seen = Some((now, pos));
        Some(pos)
    }

    /// Drives the pin for the current time. Returns µs until it wants to be polled again
    /// (None: nothing pending). Safe to call at any time, early or late: a pulse is raised
    /// only inside its window, and a window that passed unseen is counted `missed`. On a pin
    /// error the state is kept, so the next call retries the same write.
    pub fn poll(&mut self) -> Result<Option<u64>, P::Error> {
        let now = self.clock.now_us();
        self.observe(now);
        let edge = loop {
            if let Some(a) = self.active {
                if now < a.end {
                    break Some(a.end - now);
                }
                self.drive(false)?;
                self.active = None;
                continue;
            }
            let Some(&p) = self.pending.front() else {
                break None;
            };
            if now >= p.end {
                self.pending.pop_front();
                self.stats.missed += 1;
                log::warn!(
                    "reject: pulse {}..{} µs missed, polled at {now} µs",
                    p.start,
                    p.end
                );
                continue;
            }
            if now < p.start {
                break Some(p.start - now);
            }
            self.drive(true)?;
            self.pending.pop_front();
            self.active = Some(p);
            self.stats.fired += 1;
        };
        Ok(match (&self.trigger, self.waiting.is_empty()) {
            (Trigger::Encoder { poll_us, .. }, false) => {
                Some(edge.map_or(*poll_us, |e| e.min(*poll_us)))
            }
            _ => edge,
        })
    }

    /// Abandons pending pulses (counted) and drives the pin inactive, cutting short an active
    /// pulse; the runner lets an active pulse end first.
    pub fn shutdown(&mut self) -> Result<(), P::Error> {
        let left = (self.pending.len() + self.waiting.len()) as u64;
        if left > 0 {
            log::warn!("reject: shutdown with {left} pulses pending, not fired");
            self.stats.abandoned += left;
        }
        self.pending.clear();
        self.waiting.clear();
        self.active = None;
        self.drive(false)?;
        self.released = true;
        Ok(())
    }

    /// Counters since construction.
    pub fn stats(&self) -> RejectStats {
        self.stats
    }

    /// The timing in use (pulse width and capacity at least 1).
    pub fn timing(&self) -> RejectTiming {
        self.timing
    }

    /// Whether a pulse is raised now.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Pulses waiting to be raised.
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.waiting.len()
    }

    fn drive(&mut self, active: bool) -> Result<(), P::Error> {
        match self.pin.set_state(level(self.timing.active_high, active)) {
            Ok(()) => {
                if active {
                    self.released = false;
                }
                Ok(())
            }
            Err(e) => {
                self.stats.pin_errors += 1;
                Err(e)
            }
        }
    }
}

impl<P: OutputPin, C: Clock> Drop for RejectScheduler<P, C> {
    /// An ejector held active would push every following part off the line.
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = self.pin.set_state(level(self.timing.active_high, false))
        {
            log::error!("reject: could not drive the output inactive on drop: {e:?}");
        }
    }
}

fn level(active_high: bool, active: bool) -> PinState {
    PinState::from(active == active_high)
}

/// When the count reached `target`, interpolating between the last sample and `(now, pos)`.
fn crossing_time(last: Option<(u64, u64)>, target: u64, now: u64, pos: u64) -> u64 {
    match last {
        Some((t0, p0)) if target <= p0 => t0.min(now),
        Some((t0, p0)) if pos > p0 && now > t0 => {
            let dt = u128::from(now - t0) * u128::from(target - p0) / u128::from(pos - p0);
            t0 + u64::try_from(dt).unwrap_or(now - t0)
        }
        _ => now,
    }
}

/// Called from the runner thread with `(seq, by)` for each late verdict; `by` as in
/// [`Scheduled::Late`].
pub type OnLate = Box<dyn FnMut(u64, u64) + Send>;

/// How long the runner waits before retrying a failed pin write.
const PIN_RETRY_US: u64 = 1_000;
/// Retries of a failed write while shutting down before giving up on finishing the pulse.
const SHUTDOWN_RETRIES: u32 = 10;
/// How long past the camera-to-ejector travel a shutdown waits for pending pulses.
const DRAIN_MARGIN: Duration = Duration::from_millis(100);
/// The least a shutdown waits for them (encoder mode has no travel time to go by).
const DRAIN_MIN: Duration = Duration::from_millis(500);

struct Shared {
    stats: Mutex<RejectStats>,
    /// Verdicts the channel refused (full, or the thread is gone).
    refused: AtomicU64,
}

impl Shared {
    fn publish(&self, s: RejectStats) {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }
}

/// A [`RejectScheduler`] in its own thread. `reject` never blocks the pipeline.
pub struct RejectRunner {
    tx: Option<SyncSender<(u64, u64)>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RejectRunner {
    /// Starts the thread that owns `scheduler`; late verdicts are only logged.
    pub fn spawn<P, C>(scheduler: RejectScheduler<P, C>) -> std::io::Result<RejectRunner>
    where
        P: OutputPin + Send + 'static,
        C: Clock + 'static,
    {
        Self::spawn_with(scheduler, None)
    }

    /// Like `spawn`, calling `on_late(seq, by)` for each late verdict (e.g. to raise an event).
    pub fn spawn_with<P, C>(
        scheduler: RejectScheduler<P, C>,
        on_late: Option<OnLate>,
    ) -> std::io::Result<RejectRunner>
    where
        P: OutputPin + Send + 'static,
        C: Clock + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(scheduler.timing().capacity);
        let shared = Arc::new(Shared {
            stats: Mutex::new(scheduler.stats()),
            refused: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("reject".into())
            .spawn(move || run(scheduler, rx, &thread_shared, on_late))?;
        Ok(RejectRunner {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Hands over a reject verdict; `captured` as for [`RejectScheduler::schedule`]. Never
    /// blocks: a full channel drops the verdict (counted in `dropped`).
    pub fn reject(&self, seq: u64, captured: u64) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((seq, captured)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                log::warn!("reject: channel full, frame {seq} dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                log::error!("reject: output thread has stopped, frame {seq} dropped");
            }
        }
    }

    /// Counters as of the thread's last step, plus verdicts the channel refused.
    pub fn stats(&self) -> RejectStats {
        let mut s = *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let refused = self.shared.refused.load(Ordering::Relaxed);
        s.scheduled += refused;
        s.dropped += refused;
        s
    }

    /// Schedules verdicts already sent, lets a raised pulse (or one due now) run to its end,
    /// abandons later ones, drives the pin inactive and joins the thread.
    pub fn shutdown(mut self) -> RejectStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        // Closing the channel is the stop signal: the thread drains what was sent first.
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("reject: output thread panicked");
        }
    }
}

impl Drop for RejectRunner {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<P: OutputPin, C: Clock>(
    mut s: RejectScheduler<P, C>,
    rx: mpsc::Receiver<(u64, u64)>,
    shared: &Shared,
    mut on_late: Option<OnLate>,
) {
    loop {
        let wait = match s.poll() {
            Ok(w) => w,
            Err(e) => {
                log_pin_error(&e, s.stats().pin_errors);
                Some(PIN_RETRY_US)
            }
        };
        shared.publish(s.stats());
        let msg = match wait {
            Some(us) => rx.recv_timeout(Duration::from_micros(us)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok((seq, captured)) => {
                let out = s.schedule(seq, captured);
                shared.publish(s.stats());
                if let (Scheduled::Late { by }, Some(f)) = (out, on_late.as_mut()) {
                    f(seq, by);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Parts already past the camera are still on their way to the ejector: their pulses fire
    // (a service restart must not let them through), within the travel time; later ones, and
    // any that wait on a stopped encoder, are abandoned and counted.
    let t = s.timing();
    let horizon = Duration::from_micros(t.delay_us.saturating_add(t.pulse_us)) + DRAIN_MARGIN;
    let deadline = Instant::now() + horizon.max(DRAIN_MIN);
    let mut retries = 0;
    loop {
        match s.poll() {
            Ok(Some(us)) if s.is_active() => std::thread::sleep(Duration::from_micros(us)),
            Ok(Some(us)) if s.pending_len() > 0 && Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(Duration::from_micros(us).min(left));
            }
            Ok(_) => break,
            Err(e) => {
                log_pin_error(&e, s.stats().pin_errors);
                retries += 1;
                if retries > SHUTDOWN_RETRIES {
                    break;
                }
                std::thread::sleep(Duration::from_micros(PIN_RETRY_US));
            }
        }
    }
    if let Err(e) = s.shutdown() {
        log::error!("reject: could not drive the output inactive at shutdown: {e:?}");
    }
    shared.publish(s.stats());
}

/// A dead output retries every millisecond: log the first few failures, then every power of two.
fn log_pin_error<E: core::fmt::Debug>(e: &E, count: u64) {
    if count <= 3 || count.is_power_of_two() {
        log::error!("reject: output write failed ({count} so far): {e:?}");
    }
}

#[cfg(test)]
#[path = "reject_tests.rs"]
mod tests;
