//! systemd's readiness protocol (`sd_notify(3)`), without libsystemd: one datagram per
//! state change to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` in
//! the abstract namespace). Without the variable every call is a no-op, so the same binary
//! runs under systemd (`Type=notify`), in a container or by hand.
//!
//! What `anygate serve` sends, in order: `READY=1` once every listener is bound and the
//! signals are taken over; `RELOADING=1` when a `SIGHUP` reload starts and `READY=1` when it
//! ends (applied or refused: the old configuration still serves); `STOPPING=1` when the
//! drain starts. Each message carries a `STATUS=` line for `systemctl status`. A failed send
//! is ignored: the service manager's absence never stops the gateway.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where state changes go (nowhere without `$NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

/// The address `$NOTIFY_SOCKET` names, if it is one.
fn address(value: &str) -> Option<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).ok();
    }
    if value.starts_with('/') {
        return SocketAddr::from_pathname(value).ok();
    }
    None
}

impl Notifier {
    /// The notifier of this process's environment.
    pub fn from_env() -> Self {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .as_deref()
            .and_then(address)
            .and_then(|addr| Some((UnixDatagram::unbound().ok()?, addr)));
        Self { target }
    }

    /// Sends `state` (`READY=1`, …) with a `STATUS=` line.
    pub fn send(&self, state: &str, status: &str) {
        if let Some((sock, addr)) = &self.target {
            let message = format!("{state}\nSTATUS={status}\n");
            let _ = sock.send_to_addr(message.as_bytes(), addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_forms() {
        assert!(address("/run/systemd/notify").is_some());
        assert!(address("@/org/freedesktop/systemd1/notify").is_some());
        assert!(address("relative/path").is_none());
        assert!(address("").is_none());
    }
}
