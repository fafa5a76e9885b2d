//! How `zflist` shows progress: the reference's JSON progress lines
//! (`ZFLIST_PROGRESS=1`), a bar on a terminal (bytes, chunks, rate, ETA), or nothing
//! (`--quiet`, JSON mode, or stderr not a terminal). Any command that takes a
//! [`Progress`] (pack, extract, docker, verify, push, downloads) gets the same display.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::response::{progress_line, to_reference_json, Progress};

/// Where progress goes.
pub enum Reporter {
    /// `{"status":"progress",...}` lines on stdout (`ZFLIST_PROGRESS=1`).
    Lines,
    /// A bar on stderr.
    Bar(Mutex<Option<(ProgressBar, bool)>>),
    /// Nothing.
    Quiet,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reporter::Lines => "Reporter::Lines",
            Reporter::Bar(_) => "Reporter::Bar",
            Reporter::Quiet => "Reporter::Quiet",
        })
    }
}

/// How the user asked for progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressChoice {
    /// `ZFLIST_PROGRESS=1`: the reference's progress lines.
    pub lines: bool,
    /// JSON output (`--json` / `ZFLIST_JSON=1`): no bar.
    pub json: bool,
    /// `--quiet`: nothing.
    pub quiet: bool,
    /// Whether stderr is a terminal.
    pub stderr_is_terminal: bool,
}

impl ProgressChoice {
    /// The choice for this process: `stderr_is_terminal` from the real stderr.
    pub fn detect(lines: bool, json: bool, quiet: bool) -> Self {
        ProgressChoice {
            lines,
            json,
            quiet,
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Reporter {
    /// Lines when asked for, a bar only on a terminal outside JSON mode and without
    /// `--quiet`, else nothing.
    pub fn new(choice: ProgressChoice) -> Reporter {
        if choice.lines && !choice.quiet {
            Reporter::Lines
        } else if !choice.json && !choice.quiet && choice.stderr_is_terminal {
            Reporter::Bar(Mutex::new(None))
        } else {
            Reporter::Quiet
        }
    }

    /// True when a bar is drawn.
    pub fn is_bar(&self) -> bool {
        matches!(self, Reporter::Bar(_))
    }

    fn bar(&self, message: &str, total: u64, bytes: bool, f: impl FnOnce(&ProgressBar)) {
        let Reporter::Bar(slot) = self else { return };
        let Ok(mut slot) = slot.lock() else { return };
        let fresh = match slot.as_ref() {
            Some((_, was_bytes)) => *was_bytes != bytes,
            None => true,
        };
        if fresh {
            if let Some((old, _)) = slot.take() {
                old.finish_and_clear();
            }
            let b = ProgressBar::with_draw_target(
                (total > 0).then_some(total),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            *slot = Some((b, bytes));
        }
        let Some((b, _)) = slot.as_ref() else { return };
        let template = match (bytes, total > 0) {
            (true, true) => "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {prefix}",
            (true, false) => "{spinner} {msg:>12} {bytes} {binary_bytes_per_sec} {prefix}",
            (false, true) => "{msg:>12} [{bar:30}] {human_pos}/{human_len} {rate} ETA {eta}",
            (false, false) => "{spinner} {msg:>12} {count}",
        };
        if b.length() != (total > 0).then_some(total) || fresh || b.message() != message {
            if let Ok(s) = ProgressStyle::with_template(template) {
                let s = s
                    .with_key("rate", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(st.per_sec()));
                    })
                    .with_key(
                        "count",
                        |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                            // A stage without a count ("publishing") shows no 0.
                            if st.pos() > 0 {
                                let _ = write!(w, "{}", indicatif::HumanCount(st.pos()));
                            }
                        },
                    );
                b.set_style(s.progress_chars("=> "));
            }
            if total > 0 {
                b.set_length(total);
            } else {
                b.unset_length();
            }
        }
        if b.message() != message {
            b.set_message(crate::display::escape(message).into_owned());
        }
        f(b);
    }
}

/// Items per second as people read it: `8,912/s`, `3.5/s` (no four decimals).
fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "0/s".into();
    }
    if per_sec < 10.0 {
        return format!("{per_sec:.1}/s");
    }
    format!("{}/s", indicatif::HumanCount(per_sec.round() as u64))
}

impl Progress for Reporter {
    fn update(&self, message: &str, current: u64, total: u64) {
        match self {
            Reporter::Lines => {
                let line = progress_line(message, current, total);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", to_reference_json(&line));
                let _ = out.flush();
            }
            Reporter::Bar(_) => self.bar(message, total, false, |b| b.set_position(current)),
            Reporter::Quiet => {}
        }
    }

    fn transfer(&self, message: &str, done: u64, total: u64, chunks: u64) {
        match self {
            Reporter::Bar(_) => self.bar(message, total, true, |b| {
                // Shown from the first draw on (also "0 chunks"): a fast transfer may end
                // before a later draw.
                b.set_prefix(format!("{chunks} chunks"));
                b.set_position(done);
            }),
            _ => self.update(message, done, total),
        }
    }

    fn finish(&self, _message: &str) {
        if let Reporter::Bar(slot) = self {
            if let Ok(mut slot) = slot.lock() {
                if let Some((b, _)) = slot.take() {
                    b.finish_and_clear();
                }
            }
        }
    }

    fn warn(&self, message: &str) {
        let line = format!("zflist: warning: {}", crate::display::escape(message));
        match self {
            Reporter::Bar(slot) => match slot.lock().ok().as_ref().and_then(|s| s.as_ref()) {
                Some((b, _)) => b.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            },
            _ => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_whole_items_per_second() {
        assert_eq!(rate(8911.8032), "8,912/s");
        assert_eq!(rate(3.46), "3.5/s");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
    }

    #[test]
    fn the_right_reporter_for_each_case() {
        let c = |lines, json, quiet, tty| {
            Reporter::new(ProgressChoice {
                lines,
                json,
                quiet,
                stderr_is_terminal: tty,
            })
        };
        assert!(c(false, false, false, true).is_bar());
        assert!(matches!(c(false, false, false, false), Reporter::Quiet));
        assert!(matches!(c(false, true, false, true), Reporter::Quiet));
        assert!(matches!(c(false, false, true, true), Reporter::Quiet));
        assert!(matches!(c(true, true, false, false), Reporter::Lines));
        assert!(matches!(c(true, false, true, false), Reporter::Quiet));
    }
}
