//! Terminal set-up and, whatever happens, restoration: on drop, on panic (hook) and on the
//! signals that end a run (SIGINT, SIGQUIT, SIGTERM, SIGHUP: the loop exits and drops the guard).

use crossterm::cursor::Show;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, Stdout, Write};
use std::panic::PanicHookInfo;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

pub struct TerminalGuard {
    pub terminal: Term,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook(restore);
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e);
        }
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        terminal.clear()?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode, the alternate screen and mouse reporting, and shows the cursor; safe to
/// call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = write_restore(&mut io::stdout());
}

/// The escape sequences that give the screen back (everything but raw mode, a termios setting).
fn write_restore(out: &mut impl Write) -> io::Result<()> {
    execute!(out, DisableMouseCapture, LeaveAlternateScreen, Show)
}

/// Chains a hook that runs `restore` before the previous hook prints the panic message, so the
/// message lands on the normal screen instead of vanishing with the alternate one.
fn install_panic_hook(restore: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        restore();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn restoring_turns_mouse_reporting_off_leaves_the_alternate_screen_and_shows_the_cursor() {
        let mut out = Vec::new();
        write_restore(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // What EnableMouseCapture turned on: normal, button and any-motion tracking, SGR.
        for off in ["\x1b[?1000l", "\x1b[?1002l", "\x1b[?1003l", "\x1b[?1006l"] {
            assert!(text.contains(off), "{off:?} missing from {text:?}");
        }
        assert!(text.contains("\x1b[?1049l"), "alternate screen: {text:?}");
        assert!(text.contains("\x1b[?25h"), "cursor: {text:?}");
    }

    static ORDER: Mutex<Vec<&str>> = Mutex::new(Vec::new());

    #[test]
    fn a_panic_restores_the_terminal_before_the_message_is_printed() {
        let original = std::panic::take_hook();
        // Stands for the default hook, which prints the message.
        std::panic::set_hook(Box::new(|_| ORDER.lock().unwrap().push("message")));
        install_panic_hook(|| ORDER.lock().unwrap().push("restore"));
        let result = std::panic::catch_unwind(|| panic!("boom"));
        std::panic::set_hook(original);
        assert!(result.is_err());
        assert_eq!(*ORDER.lock().unwrap(), ["restore", "message"]);
    }
}
