//! Keys → actions, from one table that also writes the help overlay and the footer hints, so a
//! key cannot be bound without being shown or shown without being bound. The map depends on
//! the mode: filter editing and the help overlay take keys that are commands otherwise.

use crate::app::{Action, App, Pane};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

/// A key as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Code(KeyCode),
    /// The letter with Control held.
    Ctrl(char),
    /// Any printable character, typed into the filter (the table's `FilterInput` gets it).
    Text,
}

/// When a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In every mode, before the others are looked at.
    Always,
    /// Browsing the panes.
    Normal,
    /// Typing the `/` filter.
    Filter,
    /// The help overlay is open.
    Help,
}

/// A footer hint: shown while `pane` has the focus (`None`: always), naming the binding's
/// first `keys` keys.
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    pub pane: Option<Pane>,
    pub keys: usize,
    pub word: &'static str,
}

/// One line of help: keys, each with its action, and what they do.
#[derive(Debug)]
pub struct KeyBinding {
    pub mode: Mode,
    pub keys: &'static [(Key, Action)],
    pub does: &'static str,
    pub hints: &'static [Hint],
}

const fn key(c: char) -> Key {
    Key::Code(KeyCode::Char(c))
}

const fn hint(pane: Pane, word: &'static str) -> Hint {
    Hint {
        pane: Some(pane),
        keys: 1,
        word,
    }
}

const fn everywhere(word: &'static str) -> Hint {
    Hint {
        pane: None,
        keys: 1,
        word,
    }
}

const NO_HINT: &[Hint] = &[];

/// Every key usdtop knows, in the order help lists them.
pub const KEYS: &[KeyBinding] = &[
    KeyBinding {
        mode: Mode::Always,
        keys: &[(Key::Ctrl('c'), Action::Quit)],
        does: "quit (also while filtering)",
        hints: NO_HINT,
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (Key::Code(KeyCode::Tab), Action::FocusNext),
            (Key::Code(KeyCode::BackTab), Action::FocusPrev),
            (Key::Code(KeyCode::Right), Action::FocusNext),
            (Key::Code(KeyCode::Left), Action::FocusPrev),
        ],
        does: "next / previous pane",
        hints: &[everywhere("pane")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (key('1'), Action::Focus(Pane::ORDER[0])),
            (key('2'), Action::Focus(Pane::ORDER[1])),
            (key('3'), Action::Focus(Pane::ORDER[2])),
            (key('4'), Action::Focus(Pane::ORDER[3])),
            (key('5'), Action::Focus(Pane::ORDER[4])),
            (key('6'), Action::Focus(Pane::ORDER[5])),
        ],
        does: "jump to a pane",
        hints: NO_HINT,
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (Key::Code(KeyCode::Up), Action::Up),
            (Key::Code(KeyCode::Down), Action::Down),
            (key('k'), Action::Up),
            (key('j'), Action::Down),
            (Key::Code(KeyCode::PageUp), Action::PageUp),
            (Key::Code(KeyCode::PageDown), Action::PageDown),
        ],
        does: "move / scroll",
        hints: &[Hint {
            pane: Some(Pane::Log),
            keys: 2,
            word: "scroll",
        }],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (Key::Code(KeyCode::Home), Action::Home),
            (Key::Code(KeyCode::End), Action::End),
            (key('g'), Action::Home),
            (key('G'), Action::End),
        ],
        does: "first / last",
        hints: NO_HINT,
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(Key::Code(KeyCode::Enter), Action::Enter)],
        does: "open; drill into top row or bucket",
        hints: &[
            hint(Pane::Processes, "objects"),
            hint(Pane::Objects, "probes"),
            hint(Pane::Histogram, "drill bucket"),
            hint(Pane::Top, "drill key"),
        ],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (Key::Code(KeyCode::Esc), Action::Back),
            (Key::Code(KeyCode::Backspace), Action::Back),
        ],
        does: "step back (filter, drill-down, pane)",
        hints: &[
            hint(Pane::Objects, "back"),
            hint(Pane::Probes, "back"),
            hint(Pane::Histogram, "back"),
        ],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key(' '), Action::Toggle)],
        does: "attach / detach the selected probe",
        hints: &[hint(Pane::Probes, "attach/detach")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('/'), Action::StartFilter)],
        does: "filter the pane (text or * ? [ glob)",
        hints: &[
            hint(Pane::Processes, "filter"),
            hint(Pane::Objects, "filter"),
            hint(Pane::Probes, "filter"),
        ],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('s'), Action::CycleSort)],
        does: "sort (processes or top table)",
        hints: &[hint(Pane::Processes, "sort"), hint(Pane::Top, "sort")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('w'), Action::CycleWindow)],
        does: "window 10s → 1m → all",
        hints: &[hint(Pane::Histogram, "window"), hint(Pane::Top, "window")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('P'), Action::CyclePair)],
        does: "follow the next start/done pair",
        hints: &[hint(Pane::Histogram, "pair")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('p'), Action::TogglePause)],
        does: "pause / resume the request log",
        hints: &[hint(Pane::Log, "pause")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('O'), Action::CycleBudget)],
        does: "overhead budget: off / 1 % / 5 %",
        hints: &[],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('c'), Action::Clear)],
        does: "clear log and aggregations",
        hints: &[hint(Pane::Log, "clear")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[
            (key('?'), Action::ToggleHelp),
            (Key::Code(KeyCode::F(1)), Action::ToggleHelp),
        ],
        does: "this help",
        hints: &[everywhere("help")],
    },
    KeyBinding {
        mode: Mode::Normal,
        keys: &[(key('q'), Action::Quit)],
        does: "quit",
        hints: &[everywhere("quit")],
    },
    KeyBinding {
        mode: Mode::Filter,
        keys: &[
            (Key::Text, Action::FilterInput(' ')),
            (Key::Code(KeyCode::Backspace), Action::FilterBackspace),
        ],
        does: "filter: type or delete",
        hints: &[everywhere("filter")],
    },
    KeyBinding {
        mode: Mode::Filter,
        keys: &[(Key::Code(KeyCode::Enter), Action::FilterDone)],
        does: "filter: keep it",
        hints: &[everywhere("keep")],
    },
    KeyBinding {
        mode: Mode::Filter,
        keys: &[(Key::Code(KeyCode::Esc), Action::Back)],
        does: "filter: clear it",
        hints: &[everywhere("clear")],
    },
    KeyBinding {
        mode: Mode::Filter,
        keys: &[
            (Key::Code(KeyCode::Up), Action::Up),
            (Key::Code(KeyCode::Down), Action::Down),
        ],
        does: "filter: move in the filtered list",
        hints: NO_HINT,
    },
    KeyBinding {
        mode: Mode::Help,
        keys: &[
            (key('?'), Action::ToggleHelp),
            (Key::Code(KeyCode::Esc), Action::ToggleHelp),
            (key('q'), Action::ToggleHelp),
            (Key::Code(KeyCode::Enter), Action::ToggleHelp),
        ],
        does: "close this help",
        hints: NO_HINT,
    },
];

/// How help and the footer write a key.
pub fn key_name(key: Key) -> String {
    match key {
        Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
        Key::Text => "type".into(),
        Key::Code(code) => match code {
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Char(' ') => "Space".into(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other}"),
        },
    }
}

/// The keys of a binding as one help column: `↑ ↓ k j PgUp PgDn`.
pub fn keys_text(binding: &KeyBinding) -> String {
    binding
        .keys
        .iter()
        .map(|(k, _)| key_name(*k))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mode `app` is in, for the map and the footer.
pub fn mode_of(app: &App) -> Mode {
    if app.show_help {
        Mode::Help
    } else if app.editing_filter() {
        Mode::Filter
    } else {
        Mode::Normal
    }
}

/// The footer's hints in `app`'s mode and focus: the focused pane's first, then the global
/// ones, each in table order, as (keys, word).
pub fn hints(app: &App) -> Vec<(String, &'static str)> {
    let mode = match mode_of(app) {
        // The overlay covers the panes; the footer keeps saying what they take.
        Mode::Help => {
            if app.editing_filter() {
                Mode::Filter
            } else {
                Mode::Normal
            }
        }
        m => m,
    };
    let of_mode = || KEYS.iter().filter(move |b| b.mode == mode);
    let hint_text = |b: &KeyBinding, h: &Hint| {
        let keys: Vec<String> = b
            .keys
            .iter()
            .take(h.keys)
            .map(|(k, _)| key_name(*k))
            .collect();
        (keys.concat(), h.word)
    };
    let pane: Vec<_> = of_mode()
        .flat_map(|b| b.hints.iter().map(move |h| (b, h)))
        .filter(|(_, h)| h.pane == Some(app.focus))
        .map(|(b, h)| hint_text(b, h))
        .collect();
    let global = of_mode()
        .flat_map(|b| b.hints.iter().map(move |h| (b, h)))
        .filter(|(_, h)| h.pane.is_none())
        .map(|(b, h)| hint_text(b, h));
    pane.into_iter().chain(global).collect()
}

fn matches(key: Key, event: &KeyEvent) -> bool {
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    match key {
        Key::Ctrl(c) => ctrl && event.code == KeyCode::Char(c),
        Key::Text => matches!(event.code, KeyCode::Char(c) if !c.is_control()),
        Key::Code(code) => event.code == code,
    }
}

fn lookup(mode: Mode, event: &KeyEvent) -> Option<Action> {
    KEYS.iter()
        .filter(|b| b.mode == mode)
        .flat_map(|b| b.keys.iter())
        .find(|(k, _)| matches(*k, event))
        .map(|(k, action)| match (k, event.code) {
            (Key::Text, KeyCode::Char(c)) => Action::FilterInput(c),
            _ => action.clone(),
        })
}

pub fn map_key(key: KeyEvent, app: &App) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    lookup(Mode::Always, &key).or_else(|| lookup(mode_of(app), &key))
}

/// The wheel scrolls the focused pane.
pub fn map_mouse(m: MouseEvent) -> Option<Action> {
    match m.kind {
        MouseEventKind::ScrollUp => Some(Action::Up),
        MouseEventKind::ScrollDown => Some(Action::Down),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures::step;
    use crate::probes::discovery::catalog::Catalog;
    use std::sync::Arc;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn app() -> App {
        App::new(Arc::new(Catalog::builtin()))
    }

    /// An app in `mode`.
    fn app_in(mode: Mode) -> App {
        let mut app = app();
        match mode {
            Mode::Always | Mode::Normal => {}
            Mode::Filter => step(&mut app, Action::StartFilter),
            Mode::Help => step(&mut app, Action::ToggleHelp),
        }
        app
    }

    /// The event that presses `key` (a letter for `Text`).
    fn event_of(key: Key) -> KeyEvent {
        match key {
            Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
            Key::Text => press(KeyCode::Char('x')),
            Key::Code(code) => {
                let shift = matches!(code, KeyCode::BackTab)
                    || matches!(code, KeyCode::Char(c) if c.is_ascii_uppercase());
                let m = if shift {
                    KeyModifiers::SHIFT
                } else {
                    KeyModifiers::NONE
                };
                KeyEvent::new(code, m)
            }
        }
    }

    #[test]
    fn every_key_in_the_table_does_what_the_table_says_in_its_mode() {
        for b in KEYS {
            for (k, action) in b.keys {
                let modes = match b.mode {
                    Mode::Always => vec![Mode::Normal, Mode::Filter, Mode::Help],
                    m => vec![m],
                };
                for mode in modes {
                    let got = map_key(event_of(*k), &app_in(mode));
                    let want = match k {
                        Key::Text => Action::FilterInput('x'),
                        _ => action.clone(),
                    };
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{:?}", Some(want)),
                        "{} in {mode:?}",
                        key_name(*k)
                    );
                }
            }
        }
    }

    #[test]
    fn no_key_is_bound_twice_in_one_mode() {
        for mode in [Mode::Always, Mode::Normal, Mode::Filter, Mode::Help] {
            let keys: Vec<Key> = KEYS
                .iter()
                .filter(|b| b.mode == mode)
                .flat_map(|b| b.keys.iter().map(|(k, _)| *k))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(k), "{k:?} twice in {mode:?}");
            }
        }
    }

    #[test]
    fn letters_are_commands_normally_and_text_while_filtering() {
        let mut app = app();
        assert!(matches!(
            map_key(press(KeyCode::Char('q')), &app),
            Some(Action::Quit)
        ));
        step(&mut app, Action::StartFilter);
        assert!(matches!(
            map_key(press(KeyCode::Char('q')), &app),
            Some(Action::FilterInput('q'))
        ));
        assert!(matches!(
            map_key(press(KeyCode::Esc), &app),
            Some(Action::Back)
        ));
    }

    #[test]
    fn ctrl_c_always_quits() {
        let mut app = app();
        step(&mut app, Action::ToggleHelp);
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(matches!(map_key(k, &app), Some(Action::Quit)));
    }

    #[test]
    fn key_releases_do_nothing() {
        let mut k = press(KeyCode::Char('q'));
        k.kind = KeyEventKind::Release;
        assert!(map_key(k, &app()).is_none());
    }
}
