//! Progress callbacks: the pump reports bytes and time; the binary decides how to draw them.

use std::time::Duration;

/// A snapshot of a running transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Bytes copied from the source so far.
    pub bytes: u64,
    /// Time since the pump started its children.
    pub elapsed: Duration,
    /// The size the caller expects (e.g. the sum of the listed image sizes), if known.
    pub expected: Option<u64>,
}

impl Progress {
    /// Mean throughput so far, in bytes per second (0 before any time has passed).
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the mean rate so far, when the expected size is known and some bytes moved.
    /// `Some(ZERO)` once the expected size is reached (the estimate was low).
    pub fn eta(&self) -> Option<Duration> {
        let expected = self.expected?;
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let left = expected.saturating_sub(self.bytes) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// Receives progress from a [`crate::Pump`]. Called on the thread that runs the pump, about ten
/// times a second while bytes flow; every method has an empty default.
pub trait Reporter {
    /// The children are running; `expected` is the caller's estimate of the stream size.
    fn started(&mut self, expected: Option<u64>) {
        let _ = expected;
    }
    /// Bytes moved since the last call.
    fn progress(&mut self, progress: &Progress) {
        let _ = progress;
    }
    /// The stream ended and every side succeeded.
    fn finished(&mut self, progress: &Progress) {
        let _ = progress;
    }
    /// The transfer failed or was cancelled; `progress` is where it stopped.
    fn failed(&mut self, progress: &Progress) {
        let _ = progress;
    }
}

/// A reporter that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Reporter for NoProgress {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta() {
        let p = Progress {
            bytes: 100,
            elapsed: Duration::from_secs(2),
            expected: Some(300),
        };
        assert!((p.rate() - 50.0).abs() < f64::EPSILON);
        assert_eq!(p.eta(), Some(Duration::from_secs(4)));
        let over = Progress { bytes: 400, ..p };
        assert_eq!(over.eta(), Some(Duration::ZERO));
        let unknown = Progress {
            expected: None,
            ..p
        };
        assert_eq!(unknown.eta(), None);
        let at_start = Progress {
            bytes: 0,
            elapsed: Duration::ZERO,
            expected: Some(1),
        };
        assert_eq!(at_start.eta(), None);
    }
}
