//! Progress bars: one per blob, under one overall line, drawn on stderr (hidden when stderr is
//! not a terminal, so logs stay clean).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one copy.
#[derive(Debug, Clone)]
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars on stderr.
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    /// A bar for `size` bytes labelled `label`.
    pub fn blob(&self, label: &str, size: u64) -> Meter {
        let bar = self.multi.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template(
            "{prefix:>20} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        Meter { bar }
    }
}

/// One blob's bar.
#[derive(Debug, Clone)]
pub struct Meter {
    pub(crate) bar: ProgressBar,
}

impl Meter {
    /// `n` more bytes done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Back to zero (a retry).
    pub fn reset(&self) {
        self.bar.set_position(0);
    }

    /// Done, with a word on how.
    pub fn finish(&self, how: &str) {
        self.bar.finish_with_message(how.to_owned());
    }
}
