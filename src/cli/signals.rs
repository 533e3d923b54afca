//! Signals that end a run. Each is caught, so the run can stop cleanly (restore the terminal,
//! detach, print what it has), and the exit status is then 128 + the signal's number, what a
//! shell reports for a process the signal killed: 130 after SIGINT, 131 SIGQUIT, 143 SIGTERM,
//! 129 SIGHUP.

use std::io;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct StopSignals {
    int: Signal,
    quit: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Catches SIGINT, SIGQUIT, SIGTERM and SIGHUP from now on (inside a tokio runtime).
    pub fn catch() -> io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for one of them; returns the exit status to end with.
    pub async fn recv(&mut self) -> u8 {
        let signo = tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.quit.recv() => libc::SIGQUIT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        };
        exit_status(signo)
    }
}

/// The exit status after stopping on signal `signo`.
pub fn exit_status(signo: i32) -> u8 {
    (128 + signo) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_after_a_signal_is_128_plus_its_number() {
        assert_eq!(exit_status(libc::SIGINT), 130);
        assert_eq!(exit_status(libc::SIGQUIT), 131);
        assert_eq!(exit_status(libc::SIGTERM), 143);
        assert_eq!(exit_status(libc::SIGHUP), 129);
    }
}
