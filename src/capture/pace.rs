//! Frame pacing for sources that are not a camera: a replay or the synthetic line at a set rate
//! behaves like a camera, so drops and latencies mean the same thing as on the line.
use std::time::{Duration, Instant};

/// Sleeps until the next frame is due. Deadlines advance by whole periods from the first frame,
/// so the mean rate is exact; after a stall it does not burst to catch up.
#[derive(Debug)]
pub struct Pacer {
    period: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// `fps` ≤ 0 (or not finite) means as fast as possible.
    pub fn new(fps: f64) -> Pacer {
        let period = (fps.is_finite() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps));
        Pacer { period, next: None }
    }

    /// Blocks until the next frame is due and returns the time it was captured at.
    pub fn wait(&mut self) -> Instant {
        let Some(period) = self.period else {
            return Instant::now();
        };
        let now = Instant::now();
        let due = self.next.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // Behind by more than a period: start again from now rather than burst.
        let base = if now > due + period { now } else { due };
        self.next = Some(base + period);
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_does_not_wait() {
        let mut p = Pacer::new(0.0);
        let t = Instant::now();
        for _ in 0..1000 {
            p.wait();
        }
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn paced_spaces_frames_by_the_period() {
        let mut p = Pacer::new(100.0);
        let t0 = p.wait();
        for _ in 0..5 {
            p.wait();
        }
        // Five periods of 10 ms; sleeping never returns early.
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }
}
