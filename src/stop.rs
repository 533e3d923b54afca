//! Stopping when asked: SIGINT, SIGTERM, SIGHUP and SIGQUIT raise one flag, from the moment a
//! command starts — before it attaches, so a Ctrl-C during a long attach aborts the attach
//! instead of being lost, and before the TUI changes the terminal, so no signal leaves it in
//! the alternate screen. The loops poll the flag; the engine checks it between sites.
//!
//! A second signal while stopping (say a detach of hundreds of sites that takes long) is not
//! swallowed: it ends the process at once with the signal's default action. The kernel then
//! closes the perf events, which detaches the probes and lowers their semaphores.
//!
//! Exit status after a signal is the shell's convention, 128 + the signal's number: 130 for
//! SIGINT, 143 for SIGTERM, 129 for SIGHUP, 131 for SIGQUIT.
//!
//! `export` alone takes SIGHUP as "reload the configuration" ([`install_reload_on_hup`]), as
//! daemons do; it never stops it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Raised by the first stop signal; handed to the engine to interrupt an attach.
pub static REQUESTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Raised by SIGHUP after [`install_reload_on_hup`]; taken by [`reload_requested`].
static RELOAD: AtomicBool = AtomicBool::new(false);

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        REQUESTED.store(true, Ordering::SeqCst);
    } else {
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Installs the handlers. Call first thing in a command that attaches.
pub fn install() -> std::io::Result<()> {
    SIGNALS
        .into_iter()
        .try_for_each(|sig| handle(sig, on_signal))
}

/// As [`install`], but SIGHUP asks for a reload instead of a stop (`export`).
pub fn install_reload_on_hup() -> std::io::Result<()> {
    SIGNALS.into_iter().try_for_each(|sig| match sig {
        libc::SIGHUP => handle(sig, on_hup),
        _ => handle(sig, on_signal),
    })
}

/// Whether SIGHUP arrived since the last call (after [`install_reload_on_hup`]).
pub fn reload_requested() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

fn handle(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler that only touches atomics (and, the second
    // time, async-signal-safe calls); SA_RESTART keeps blocking calls going.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Whether a stop signal has arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// The exit status for a command that ran to its end: 0, or 128 + the signal that stopped it.
pub fn exit_status() -> u8 {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => 0,
        sig => (128 + sig) as u8,
    }
}

/// Says which signal stopped a command, if one did (the session loop's `on_stop`).
pub fn say_why_stopped() {
    if let Some(name) = signal_name() {
        eprintln!("usdtop: stopping on {name}");
    }
}

/// The signal's name, for the closing message.
pub fn signal_name() -> Option<&'static str> {
    match SIGNAL.load(Ordering::Relaxed) {
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGHUP => Some("SIGHUP"),
        libc::SIGQUIT => Some("SIGQUIT"),
        _ => None,
    }
}

/// A stop signal arrived while probes were being attached: undo what was attached (dropping
/// the engine detaches) and exit with the signal's status.
pub fn interrupted_attach(engine: usdtop::probes::tracing::engine::Engine) -> ! {
    eprintln!(
        "usdtop: {} while attaching; nothing traced",
        signal_name().unwrap_or("a signal")
    );
    drop(engine);
    std::process::exit(exit_status().into())
}
