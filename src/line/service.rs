//! Running under systemd: readiness, a STATUS= line, and the watchdog. The watchdog is fed only
//! while frames are judged (or while a known source fault is being handled by reconnecting), so
//! a stalled pipeline stops feeding it and systemd restarts the service. Outside systemd every
//! call is a no-op.
use crate::pipeline::Tick;
use sd_notify::NotifyState;
use std::time::Duration;

/// The systemd notifier (readiness, status, watchdog); every call is a no-op outside systemd.
pub struct Service {
    enabled: bool,
    watchdog: Option<Duration>,
}

/// Whether a tick shows a live pipeline: frames were judged, or the source is down and being
/// reopened (restarting the service would not bring a camera back faster).
pub fn alive(tick: &Tick) -> bool {
    tick.judged > 0 || tick.source_down
}

impl Service {
    /// Enabled when systemd gave a notify socket (`NOTIFY_SOCKET`); reads the watchdog interval.
    pub fn from_env() -> Service {
        Service {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// A notifier that sends nothing (tests, tools that run the line outside systemd).
    pub fn disabled() -> Service {
        Service {
            enabled: false,
            watchdog: None,
        }
    }

    /// Whether systemd's watchdog is on, and its interval.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            log::warn!("sd_notify: {e}");
        }
    }

    /// READY=1 with a first STATUS= line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// STOPPING=1: the service is shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// STATUS= every tick; WATCHDOG=1 only while [`alive`].
    pub fn tick(&self, tick: &Tick) {
        if alive(tick) {
            self.send(&[NotifyState::Status(tick.status), NotifyState::Watchdog]);
        } else {
            self.send(&[NotifyState::Status(tick.status)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn the_watchdog_is_fed_only_while_frames_flow_or_a_fault_is_handled() {
        let t = |judged, source_down| Tick {
            judged,
            source_down,
            status: "",
        };
        assert!(alive(&t(3, false)));
        assert!(alive(&t(0, true)));
        assert!(
            !alive(&t(0, false)),
            "a stalled pipeline must starve the watchdog"
        );
    }

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        // Only this test sets NOTIFY_SOCKET; sd_notify reads it on every call.
        // SAFETY: no other test reads or writes the environment concurrently.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        let s = Service::from_env();
        s.ready("starting");
        s.tick(&Tick {
            judged: 0,
            source_down: false,
            status: "stalled",
        });
        s.tick(&Tick {
            judged: 5,
            source_down: false,
            status: "ok",
        });
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = sock.recv(&mut buf).expect("datagram");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got[0], "READY=1\nSTATUS=starting\n");
        assert_eq!(got[1], "STATUS=stalled\n", "no WATCHDOG=1 without frames");
        assert_eq!(got[2], "STATUS=ok\nWATCHDOG=1\n");
    }
}
