//! Keys → actions. The map depends on the mode: filter editing and the help overlay take keys
//! that are commands otherwise.

use crate::app::{Action, App, Pane};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

pub fn map_key(key: KeyEvent, app: &App) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if app.show_help {
        return match key.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter => {
                Some(Action::ToggleHelp)
            }
            _ => None,
        };
    }
    if app.editing_filter() {
        return match key.code {
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Up => Some(Action::Up),
            KeyCode::Down => Some(Action::Down),
            KeyCode::Char(c) if !c.is_control() => Some(Action::FilterInput(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab | KeyCode::Right => Action::FocusNext,
        KeyCode::BackTab | KeyCode::Left => Action::FocusPrev,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Char(' ') => Action::Toggle,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('w') => Action::CycleWindow,
        KeyCode::Char('P') => Action::CyclePair,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('c') => Action::Clear,
        KeyCode::Char('?') | KeyCode::F(1) => Action::ToggleHelp,
        KeyCode::Char(c @ '1'..='6') => Action::Focus(Pane::ORDER[(c as u8 - b'1') as usize]),
        _ => return None,
    })
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

    #[test]
    fn letters_are_commands_normally_and_text_while_filtering() {
        let mut app = App::new(Arc::new(Catalog::builtin()));
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
        let mut app = App::new(Arc::new(Catalog::builtin()));
        step(&mut app, Action::ToggleHelp);
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(matches!(map_key(k, &app), Some(Action::Quit)));
    }
}
