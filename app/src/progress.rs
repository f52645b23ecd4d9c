//! Training progress on stderr: an indicatif bar when stderr is a terminal, else a plain line
//! every tenth of an epoch, at most one per 2 s (epoch, batch, running loss, the last
//! test accuracy, images/s, ETA), so that logs of runs in the background stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Formats a duration as `1h02m`, `3m05s` or `12s`.
pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Progress of a training run of `epochs` epochs.
pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    epoch: usize,
    batches: usize,
    /// Batches of the run done before this epoch (for the ETA).
    done_before: usize,
    run_start: Instant,
    run_images: usize,
    epoch_images: usize,
    epoch_start: Instant,
    /// When the last plain line was printed.
    last_line: Option<Instant>,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(epochs: usize) -> Progress {
        Progress::with_bar(epochs, std::io::stderr().is_terminal())
    }

    /// `bar`: draw a bar (on stderr) instead of printing lines.
    pub fn with_bar(epochs: usize, bar: bool) -> Progress {
        let bar = bar.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            epochs,
            epoch: 0,
            batches: 0,
            done_before: 0,
            run_start: now,
            run_images: 0,
            epoch_images: 0,
            epoch_start: now,
            last_line: None,
        }
    }

    /// Starts epoch `epoch` (1-based) of `batches` batches.
    pub fn start_epoch(&mut self, epoch: usize, batches: usize) {
        self.start_epoch_since(epoch, batches, Duration::ZERO);
    }

    /// [`Progress::start_epoch`] for an epoch that began `ago` (a caller that hears of an
    /// epoch only after its first step).
    pub fn start_epoch_since(&mut self, epoch: usize, batches: usize, ago: Duration) {
        self.done_before += if self.epoch > 0 { self.batches } else { 0 };
        self.epoch = epoch;
        self.batches = batches;
        self.epoch_start = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        self.epoch_images = 0;
        if let Some(b) = &self.bar {
            b.reset();
            b.set_length(batches as u64);
            b.set_position(0);
            b.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        }
    }

    /// Batch `k` (1-based) of the epoch is done: `images` of this batch; `loss` is the
    /// epoch's running mean, `acc` the last test accuracy (percent), if any.
    pub fn batch(&mut self, k: usize, images: usize, loss: f64, acc: Option<f64>) {
        let acc = acc.map_or("-".to_string(), |a| format!("{a:.1}%"));
        self.run_images += images;
        self.epoch_images += images;
        let elapsed = self.run_start.elapsed();
        let rate = self.images_per_second();
        if let Some(b) = &self.bar {
            b.set_position(k as u64);
            b.set_message(format!("loss {loss:.4} test acc {acc} {rate:.0} img/s"));
            return;
        }
        // Every tenth of an epoch, at most one line per 2 s (short runs print a few lines).
        let every = (self.batches / 10).max(1);
        let quiet = self.last_line.is_some_and(|t| t.elapsed() < Duration::from_secs(2));
        if (k % every == 0 || k == self.batches) && !quiet {
            self.last_line = Some(Instant::now());
            let done = self.done_before + k;
            let total = self.batches * self.epochs;
            let eta = elapsed.mul_f64((total - done.min(total)) as f64 / done.max(1) as f64);
            eprintln!(
                "epoch {}/{} batch {k}/{} loss {loss:.4} test acc {acc} {rate:.0} img/s ETA {}",
                self.epoch,
                self.epochs,
                self.batches,
                hms(eta)
            );
        }
    }

    /// Ends the epoch's bar (plain mode prints nothing more).
    pub fn finish_epoch(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Seconds since the epoch started.
    pub fn epoch_seconds(&self) -> f64 {
        self.epoch_start.elapsed().as_secs_f64()
    }

    /// Training images per second in the current epoch (evaluation excluded).
    pub fn images_per_second(&self) -> f64 {
        self.epoch_images as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(hms(Duration::from_secs(12)), "12s");
        assert_eq!(hms(Duration::from_secs(185)), "3m05s");
        assert_eq!(hms(Duration::from_secs(3720)), "1h02m");
    }
}
