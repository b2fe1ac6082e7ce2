//! One updating status line on stderr for long command-line work
//! (`cairn fsck`, `cairn audit fsck`, `cairn gc`, `cairn verify lock`).
//!
//! Contract: nothing at all is written unless stderr is a terminal, so
//! output that is piped or redirected (a log file, CI) never holds a
//! carriage return or a half-drawn line. On a terminal the line is redrawn
//! at most every [`INTERVAL`] (the first update is drawn at once), and it
//! is erased when the work ends or the [`Progress`] is dropped (an error
//! on the way out), so whatever is printed next starts on a clean line.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// The shortest time between two redraws.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// A status line on stderr, shown only on a terminal.
#[derive(Debug)]
pub struct Progress {
    shown: bool,
    drawn: Option<Instant>,
    width: usize,
}

impl Progress {
    /// A line shown when stderr is a terminal.
    pub fn stderr() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    /// A line that is never shown (for callers that report nothing).
    pub fn hidden() -> Self {
        Self::new(false)
    }

    fn new(shown: bool) -> Self {
        Self {
            shown,
            drawn: None,
            width: 0,
        }
    }

    /// Whether anything is written.
    pub fn is_shown(&self) -> bool {
        self.shown
    }

    /// Redraws the line with `line()` unless it was drawn less than
    /// [`INTERVAL`] ago (`line` is then not called).
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.shown || self.drawn.is_some_and(|at| at.elapsed() < INTERVAL) {
            return;
        }
        self.draw(&line());
    }

    /// Redraws the line now, whatever the interval (for a phase that
    /// starts a long wait).
    pub fn set(&mut self, line: &str) {
        if self.shown {
            self.draw(line);
        }
    }

    fn draw(&mut self, line: &str) {
        let width = line.chars().count();
        let pad = self.width.saturating_sub(width);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}{:pad$}", "");
        let _ = stderr.flush();
        self.width = width;
        self.drawn = Some(Instant::now());
    }

    /// Erases the line; the next update draws a new one.
    pub fn clear(&mut self) {
        if self.shown && self.drawn.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{:width$}\r", "", width = self.width);
            let _ = stderr.flush();
        }
        self.drawn = None;
        self.width = 0;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `n` with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(12_345), "12,345");
        assert_eq!(count(1_000_000), "1,000,000");
    }

    #[test]
    fn a_hidden_line_never_builds_its_text() {
        let mut progress = Progress::hidden();
        let mut built = false;
        progress.update(|| {
            built = true;
            String::new()
        });
        progress.clear();
        assert!(!built);
        assert!(!progress.is_shown());
    }
}
