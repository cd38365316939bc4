//! The line's outputs: the reject scheduler and its clock, GPIO character-device pins, and the
//! systemd notifier that tells the service manager the line is alive.
pub mod gpio;
pub mod reject;
pub mod service;
