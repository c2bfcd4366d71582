//! systemd integration: readiness, watchdog, status and stopping notifications over
//! `NOTIFY_SOCKET` (no-ops when not run by systemd), and socket activation (`LISTEN_FDS`).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// READY=1 with a status line: the listener is bound and the config loaded.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A STATUS= line (shown by `systemctl status`).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the config"),
    ]);
}

/// READY=1 again after a reload (ends RELOADING=1).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: waiting for running syncs"),
    ]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send WATCHDOG=1: half of `WatchdogSec=`, or `None` when the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The first listening socket systemd passed (`hookmirror.socket`), if any.
#[allow(unsafe_code)]
pub fn activated_listener() -> Option<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    let fd = sd_notify::listen_fds().ok()?.next()?;
    // SAFETY: systemd hands this descriptor to us alone (LISTEN_PID is checked by listen_fds),
    // it is an open listening socket, and it is taken exactly once, here.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true).ok()?;
    Some(listener)
}
