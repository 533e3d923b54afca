//! Colours, or none: `NO_COLOR` (any non-empty value, https://no-color.org) leaves only
//! bold/reverse/dim so the screen stays readable on any terminal.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    pub fn plain() -> Theme {
        Theme { color: false }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn normal(&self) -> Style {
        Style::new()
    }

    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn header(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn title(&self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Yellow)
        } else {
            self.fg(Color::DarkGray)
        }
    }

    /// The cursor row: reversed in the focused pane, underlined elsewhere.
    pub fn selected(&self, focused: bool) -> Style {
        if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::UNDERLINED)
        }
    }

    pub fn attached(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn info(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn bar(&self) -> Style {
        self.fg(Color::Blue)
    }

    pub fn latency(&self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn filter(&self) -> Style {
        self.fg(Color::Black)
            .bg(if self.color {
                Color::Yellow
            } else {
                Color::Reset
            })
            .add_modifier(if self.color {
                Modifier::empty()
            } else {
                Modifier::REVERSED
            })
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
}
