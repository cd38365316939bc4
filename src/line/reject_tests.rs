use std::io::ErrorKind;
use std::sync::mpsc;

use embedded_hal::digital::ErrorType;
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

use super::*;

const HI: State = State::High;
const LO: State = State::Low;

/// delay 10 ms, pulse 5 ms, lead 1 ms, active-high.
fn timing() -> RejectTiming {
    RejectTiming {
        delay_us: 10_000,
        pulse_us: 5_000,
        active_high: true,
        min_lead_us: 1_000,
        capacity: 64,
    }
}

fn sets(states: &[State]) -> Vec<T> {
    states.iter().map(|&s| T::set(s)).collect()
}

/// A scheduler at t = 0 on a mock pin expecting exactly `states`; the returned pin checks them.
fn setup(t: RejectTiming, states: &[State]) -> (RejectScheduler<Mock, FakeClock>, FakeClock, Mock) {
    let pin = Mock::new(&sets(states));
    let clock = FakeClock::new(0);
    let s = RejectScheduler::new(pin.clone(), clock.clone(), t, Trigger::Time).unwrap();
    (s, clock, pin)
}

/// Drops the scheduler (its final inactive write is part of the expectations) and checks the pin.
fn finish(s: RejectScheduler<Mock, FakeClock>, mut pin: Mock) -> RejectStats {
    let stats = s.stats();
    drop(s);
    pin.done();
    stats
}

#[test]
fn single_pulse_at_capture_plus_delay() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    assert_eq!(s.schedule(1, 0), Scheduled::Queued { fire_at: 10_000 });
    assert_eq!(s.poll().unwrap(), Some(10_000));
    clock.set(9_999);
    assert_eq!(s.poll().unwrap(), Some(1));
    assert!(!s.is_active());
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(5_000));
    assert!(s.is_active());
    clock.set(14_999);
    assert_eq!(s.poll().unwrap(), Some(1));
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), None);
    assert!(!s.is_active());
    let stats = finish(s, pin);
    assert_eq!(
        stats,
        RejectStats {
            scheduled: 1,
            fired: 1,
            ..Default::default()
        }
    );
}

#[test]
fn active_low_inverts_levels() {
    let t = RejectTiming {
        active_high: false,
        ..timing()
    };
    let (mut s, clock, pin) = setup(t, &[HI, LO, HI, HI]);
    s.schedule(1, 0);
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(5_000));
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), None);
    assert_eq!(finish(s, pin).fired, 1);
}

#[test]
fn overlapping_pulses_merge() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    assert_eq!(s.schedule(1, 0), Scheduled::Queued { fire_at: 10_000 });
    assert_eq!(s.schedule(2, 3_000), Scheduled::Merged { fire_at: 10_000 });
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(8_000));
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), Some(3_000));
    clock.set(18_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!((stats.scheduled, stats.merged, stats.fired), (2, 1, 1));
}

#[test]
fn verdict_merges_into_the_raised_pulse() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    s.schedule(1, 0);
    clock.set(10_000);
    s.poll().unwrap();
    clock.set(11_000);
    // [14 000, 19 000) overlaps the raised [10 000, 15 000): the pin just stays up.
    assert_eq!(s.schedule(2, 4_000), Scheduled::Merged { fire_at: 10_000 });
    assert_eq!(s.poll().unwrap(), Some(8_000));
    clock.set(19_000);
    assert_eq!(s.poll().unwrap(), None);
    assert_eq!(finish(s, pin).fired, 1);
}

#[test]
fn touching_pulses_merge() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    s.schedule(1, 0);
    assert_eq!(s.schedule(2, 5_000), Scheduled::Merged { fire_at: 10_000 });
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(10_000));
    clock.set(20_000);
    assert_eq!(s.poll().unwrap(), None);
    assert_eq!(finish(s, pin).merged, 1);
}

#[test]
fn separate_pulses_fire_separately() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, HI, LO, LO]);
    s.schedule(1, 0);
    assert_eq!(s.schedule(2, 6_000), Scheduled::Queued { fire_at: 16_000 });
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(5_000));
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), Some(1_000));
    clock.set(16_000);
    assert_eq!(s.poll().unwrap(), Some(5_000));
    clock.set(21_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!((stats.fired, stats.merged), (2, 0));
}

#[test]
fn burst_of_frames_becomes_one_long_pulse() {
    let t = RejectTiming {
        delay_us: 50_000,
        ..timing()
    };
    let (mut s, clock, pin) = setup(t, &[LO, HI, LO, LO]);
    for i in 0..10u64 {
        clock.set(i * 1_000);
        let out = s.schedule(i, i * 1_000);
        if i == 0 {
            assert_eq!(out, Scheduled::Queued { fire_at: 50_000 });
        } else {
            assert_eq!(out, Scheduled::Merged { fire_at: 50_000 });
        }
    }
    assert_eq!(s.pending_len(), 1);
    clock.set(50_000);
    assert_eq!(s.poll().unwrap(), Some(14_000));
    clock.set(64_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!((stats.scheduled, stats.merged, stats.fired), (10, 9, 1));
}

#[test]
fn jittered_captures_merge_and_sort() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, HI, LO, LO]);
    // Second group first: the queue must still fire in time order.
    assert_eq!(
        s.schedule(10, 30_000),
        Scheduled::Queued { fire_at: 40_000 }
    );
    assert_eq!(s.schedule(1, 1_000), Scheduled::Queued { fire_at: 11_000 });
    assert_eq!(s.schedule(2, 995), Scheduled::Merged { fire_at: 10_995 });
    assert_eq!(s.schedule(3, 1_003), Scheduled::Merged { fire_at: 10_995 });
    assert_eq!(s.schedule(4, 998), Scheduled::Merged { fire_at: 10_995 });
    assert_eq!(s.pending_len(), 2);
    assert_eq!(s.poll().unwrap(), Some(10_995));
    clock.set(10_995);
    assert_eq!(s.poll().unwrap(), Some(5_008));
    clock.set(16_003);
    assert_eq!(s.poll().unwrap(), Some(23_997));
    clock.set(40_000);
    s.poll().unwrap();
    clock.set(45_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!((stats.fired, stats.merged), (2, 3));
}

#[test]
fn verdict_bridging_two_pending_pulses_joins_them() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    s.schedule(1, 0); // [10 000, 15 000)
    s.schedule(2, 8_000); // [18 000, 23 000)
    assert_eq!(s.pending_len(), 2);
    assert_eq!(s.schedule(3, 4_000), Scheduled::Merged { fire_at: 10_000 });
    assert_eq!(s.pending_len(), 1);
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), Some(13_000));
    clock.set(23_000);
    assert_eq!(s.poll().unwrap(), None);
    assert_eq!(finish(s, pin).fired, 1);
}

#[test]
fn late_verdict_is_counted_and_never_fires() {
    let (mut s, clock, pin) = setup(timing(), &[LO, LO]);
    clock.set(12_000);
    // Due at 10 000, 1 000 lead: 3 000 too late.
    assert_eq!(s.schedule(7, 0), Scheduled::Late { by: 3_000 });
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!(
        stats,
        RejectStats {
            scheduled: 1,
            late: 1,
            ..Default::default()
        }
    );
}

#[test]
fn verdict_inside_min_lead_is_late() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    clock.set(9_500);
    assert_eq!(s.schedule(1, 0), Scheduled::Late { by: 500 });
    // Exactly the lead is still in time.
    clock.set(9_000);
    assert_eq!(s.schedule(2, 0), Scheduled::Queued { fire_at: 10_000 });
    clock.set(10_000);
    s.poll().unwrap();
    clock.set(15_000);
    s.poll().unwrap();
    let stats = finish(s, pin);
    assert_eq!((stats.late, stats.fired), (1, 1));
}

#[test]
fn late_poll_inside_window_raises_until_end() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    s.schedule(1, 0);
    clock.set(12_000);
    assert_eq!(s.poll().unwrap(), Some(3_000));
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = finish(s, pin);
    assert_eq!((stats.fired, stats.missed), (1, 0));
}

#[test]
fn poll_after_whole_window_counts_missed() {
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO, LO]);
    s.schedule(1, 0); // [10 000, 15 000)
    s.schedule(2, 20_000); // [30 000, 35 000)
    clock.set(15_000);
    assert_eq!(s.poll().unwrap(), Some(15_000));
    // The next one is unaffected.
    clock.set(30_000);
    s.poll().unwrap();
    clock.set(35_000);
    s.poll().unwrap();
    let stats = finish(s, pin);
    assert_eq!((stats.missed, stats.fired), (1, 1));
}

#[test]
fn queue_overflow_is_dropped() {
    let t = RejectTiming {
        capacity: 2,
        ..timing()
    };
    let (mut s, clock, pin) = setup(t, &[LO, HI, LO, HI, LO, LO]);
    s.schedule(1, 0);
    s.schedule(2, 10_000);
    assert_eq!(s.schedule(3, 20_000), Scheduled::Dropped);
    // A merge needs no room.
    assert_eq!(s.schedule(4, 1_000), Scheduled::Merged { fire_at: 10_000 });
    assert_eq!(s.pending_len(), 2);
    for t in [10_000, 16_000, 20_000, 25_000, 30_000, 35_000] {
        clock.set(t);
        s.poll().unwrap();
    }
    let stats = finish(s, pin);
    assert_eq!((stats.dropped, stats.fired, stats.merged), (1, 2, 1));
}

#[test]
fn pin_error_is_returned_counted_and_retried() {
    let mut expect = sets(&[LO]);
    expect.push(T::set(HI).with_error(MockError::Io(ErrorKind::Other)));
    expect.extend(sets(&[HI, LO, LO]));
    let mut pin = Mock::new(&expect);
    let clock = FakeClock::new(0);
    let mut s = RejectScheduler::new(pin.clone(), clock.clone(), timing(), Trigger::Time).unwrap();
    s.schedule(1, 0);
    clock.set(10_000);
    assert!(s.poll().is_err());
    assert!(!s.is_active());
    clock.set(10_100);
    assert_eq!(s.poll().unwrap(), Some(4_900));
    clock.set(15_000);
    s.poll().unwrap();
    let stats = s.stats();
    drop(s);
    pin.done();
    assert_eq!((stats.pin_errors, stats.fired), (1, 1));
}

#[test]
fn shutdown_abandons_pending_and_releases_once() {
    // Init, raise, shutdown's write; Drop writes nothing more.
    let (mut s, clock, pin) = setup(timing(), &[LO, HI, LO]);
    s.schedule(1, 0);
    s.schedule(2, 20_000);
    clock.set(11_000);
    s.poll().unwrap();
    s.shutdown().unwrap();
    assert!(!s.is_active());
    assert_eq!(s.pending_len(), 0);
    let stats = finish(s, pin);
    assert_eq!((stats.fired, stats.abandoned), (1, 1));
}

fn encoder(delay_counts: u64, source: &EncoderCount) -> Trigger {
    Trigger::Encoder {
        source: Box::new(source.clone()),
        delay_counts,
        min_lead_counts: 5,
        poll_us: 500,
    }
}

#[test]
fn encoder_same_count_merges_and_late_is_in_counts() {
    let mut pin = Mock::new(&sets(&[LO, LO]));
    let clock = FakeClock::new(0);
    let count = EncoderCount::new(60);
    let mut s =
        RejectScheduler::new(pin.clone(), clock.clone(), timing(), encoder(100, &count)).unwrap();
    // Sampled at capture: 50; fires at 150.
    assert_eq!(s.schedule(1, 50), Scheduled::Queued { fire_at: 150 });
    assert_eq!(s.schedule(2, 50), Scheduled::Merged { fire_at: 150 });
    assert_eq!(s.pending_len(), 1);
    count.set(150);
    clock.set(500);
    // Target 140 with the belt at 150 and a lead of 5 counts.
    assert_eq!(s.schedule(3, 40), Scheduled::Late { by: 15 });
    let stats = s.stats();
    drop(s);
    pin.done();
    assert_eq!((stats.scheduled, stats.merged, stats.late), (3, 1, 1));
}

#[test]
fn encoder_fires_at_count_with_width_in_time() {
    let t = RejectTiming {
        pulse_us: 2_000,
        ..timing()
    };
    let mut pin = Mock::new(&sets(&[LO, HI, LO, LO]));
    let clock = FakeClock::new(0);
    let count = EncoderCount::new(60);
    let mut s = RejectScheduler::new(pin.clone(), clock.clone(), t, encoder(100, &count)).unwrap();
    assert_eq!(s.schedule(1, 50), Scheduled::Queued { fire_at: 150 });
    // Waiting on the belt: poll at the encoder interval.
    assert_eq!(s.poll().unwrap(), Some(500));
    count.set(149);
    clock.set(1_000);
    assert_eq!(s.poll().unwrap(), Some(500));
    assert!(!s.is_active());
    // Time alone never fires it.
    clock.set(100_000);
    assert_eq!(s.poll().unwrap(), Some(500));
    count.set(150);
    clock.set(100_100);
    assert_eq!(s.poll().unwrap(), Some(2_000));
    assert!(s.is_active());
    // Width is time even though the belt keeps moving.
    count.set(400);
    clock.set(102_000);
    assert_eq!(s.poll().unwrap(), Some(100));
    clock.set(102_100);
    assert_eq!(s.poll().unwrap(), None);
    let stats = s.stats();
    drop(s);
    pin.done();
    assert_eq!((stats.fired, stats.late), (1, 0));
}

#[test]
fn encoder_lead_and_late_poll() {
    let t = RejectTiming {
        pulse_us: 2_000,
        ..timing()
    };
    let mut pin = Mock::new(&sets(&[LO, HI, LO, LO]));
    let clock = FakeClock::new(0);
    let count = EncoderCount::new(0);
    let mut s = RejectScheduler::new(pin.clone(), clock.clone(), t, encoder(100, &count)).unwrap();
    count.set(96);
    // Target 100, 4 counts left < 5 lead.
    assert_eq!(s.schedule(1, 0), Scheduled::Late { by: 1 });
    count.set(0);
    s.poll().unwrap();
    assert_eq!(s.schedule(2, 0), Scheduled::Queued { fire_at: 100 });
    assert_eq!(s.schedule(3, 10), Scheduled::Queued { fire_at: 110 });
    // Polled late: the belt went 0 → 200 in 2 ms, so 100 was crossed at 1 000 µs and 110 at
    // 1 100 µs: one merged pulse [1 000, 3 100), raised now until its end.
    count.set(200);
    clock.set(2_000);
    assert_eq!(s.poll().unwrap(), Some(1_100));
    clock.set(3_100);
    assert_eq!(s.poll().unwrap(), None);
    let stats = s.stats();
    drop(s);
    pin.done();
    assert_eq!((stats.late, stats.fired, stats.merged), (1, 1, 1));
}

#[test]
fn encoder_count_passed_long_ago_is_missed() {
    let mut pin = Mock::new(&sets(&[LO, LO]));
    let clock = FakeClock::new(0);
    let count = EncoderCount::new(0);
    let mut s =
        RejectScheduler::new(pin.clone(), clock.clone(), timing(), encoder(100, &count)).unwrap();
    s.schedule(1, 0);
    // Crossed at ~1 000 µs, pulse 5 ms; the runner stalled until 10 ms.
    count.set(1_000);
    clock.set(10_000);
    assert_eq!(s.poll().unwrap(), None);
    let stats = s.stats();
    drop(s);
    pin.done();
    assert_eq!((stats.missed, stats.fired), (1, 0));
}

#[test]
fn clocks() {
    let c = MonotonicClock::new();
    let origin = c.origin;
    assert_eq!(c.at(origin + Duration::from_millis(5)), 5_000);
    assert_eq!(
        c.at(origin
            .checked_sub(Duration::from_millis(1))
            .unwrap_or(origin)),
        0
    );
    assert!(c.now_us() < 60_000_000);
    let f = FakeClock::new(10);
    let g = f.clone();
    f.advance(5);
    assert_eq!(g.now_us(), 15);
    g.set(3);
    assert_eq!(f.now_us(), 3);
    let e = EncoderCount::default();
    e.clone().add(3);
    assert_eq!(e.position(), 3);
}

/// Records every write with the time it happened.
#[derive(Clone)]
struct RecordingPin {
    clock: MonotonicClock,
    log: Arc<Mutex<Vec<(bool, u64)>>>,
}

impl ErrorType for RecordingPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for RecordingPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.log.lock().unwrap().push((false, self.clock.now_us()));
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.log.lock().unwrap().push((true, self.clock.now_us()));
        Ok(())
    }
}

#[test]
fn runner_fires_on_real_clock() {
    let clock = MonotonicClock::new();
    let pin = RecordingPin {
        clock,
        log: Arc::default(),
    };
    let t = RejectTiming {
        delay_us: 30_000,
        pulse_us: 50_000,
        min_lead_us: 1_000,
        ..timing()
    };
    let s = RejectScheduler::new(pin.clone(), clock, t, Trigger::Time).unwrap();
    let runner = RejectRunner::spawn(s).unwrap();
    let captured = clock.at(Instant::now());
    runner.reject(1, captured);
    // Wait for the pulse to end (bounded), then check what the thread published meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pin.log.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", pin.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(5));
    let live = runner.stats();
    let stats = runner.shutdown();
    assert_eq!((live.fired, live.scheduled), (1, 1));
    assert_eq!(
        stats,
        RejectStats {
            scheduled: 1,
            fired: 1,
            ..Default::default()
        }
    );
    let log = pin.log.lock().unwrap().clone();
    let levels: Vec<bool> = log.iter().map(|&(l, _)| l).collect();
    assert_eq!(levels, [false, true, false, false], "{log:?}");
    let due = captured + 30_000;
    let (up, down) = (log[1].1, log[2].1);
    // Never early; late only by scheduling noise (generous: a loaded CI box).
    assert!(up >= due && up - due < 25_000, "due {due}, up {up}");
    assert!(
        down >= due + 50_000 && down - due < 75_000,
        "due {due}, down {down}"
    );
}

#[test]
fn runner_reports_late_and_finishes_raised_pulse_on_shutdown() {
    // Init, raise, end of pulse, shutdown's release.
    let pin = Mock::new(&sets(&[LO, HI, LO, LO]));
    let clock = FakeClock::new(100_000);
    let s = RejectScheduler::new(pin.clone(), clock.clone(), timing(), Trigger::Time).unwrap();
    let (tx, rx) = mpsc::channel();
    let on_late: OnLate = Box::new(move |seq, by| {
        let _ = tx.send((seq, by));
    });
    let runner = RejectRunner::spawn_with(s, Some(on_late)).unwrap();
    runner.reject(7, 0);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (7, 91_000)
    );
    assert_eq!(runner.stats().late, 1);
    // In time: due at 110 000. Raise it, then shut down mid-pulse.
    runner.reject(8, 100_000);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Time moves only once the thread has taken the verdict, else it would be late.
    while runner.stats().scheduled < 2 {
        assert!(Instant::now() < deadline, "verdict never taken");
        std::thread::sleep(Duration::from_millis(1));
    }
    clock.set(111_000);
    while runner.stats().fired == 0 {
        assert!(Instant::now() < deadline, "pulse never raised");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The runner waits for the pulse's end (115 000) before releasing.
    let ender = clock.clone();
    let bump = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        ender.set(115_000);
    });
    let stats = runner.shutdown();
    bump.join().unwrap();
    let mut pin = pin;
    pin.done();
    assert_eq!(
        stats,
        RejectStats {
            scheduled: 2,
            late: 1,
            fired: 1,
            ..Default::default()
        }
    );
}

#[test]
fn runner_shutdown_fires_pulses_of_parts_still_on_their_way() {
    // A verdict whose pulse is due 30 ms after capture, then an immediate shutdown (a service
    // restart): the part is already past the camera, so its pulse must still fire.
    let clock = MonotonicClock::new();
    let pin = RecordingPin {
        clock,
        log: Arc::default(),
    };
    let t = RejectTiming {
        delay_us: 30_000,
        pulse_us: 10_000,
        min_lead_us: 1_000,
        ..timing()
    };
    let s = RejectScheduler::new(pin.clone(), clock, t, Trigger::Time).unwrap();
    let runner = RejectRunner::spawn(s).unwrap();
    runner.reject(1, clock.at(Instant::now()));
    let stats = runner.shutdown();
    assert_eq!((stats.fired, stats.abandoned), (1, 0), "{stats:?}");
    let levels: Vec<bool> = pin.log.lock().unwrap().iter().map(|&(l, _)| l).collect();
    assert_eq!(levels, [false, true, false, false]);
}
