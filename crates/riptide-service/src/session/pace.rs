//! The pace of checkpoints on one stream: on average at most one per interval (the official
//! service sleeps ~10 ms between checkpoints), with a little slack so a checkpoint that was late
//! does not hold back the ones after it.
//!
//! A plain "wait until the last checkpoint + interval" makes any delay permanent while commits
//! arrive about one interval apart: every later checkpoint waits for the late one's slot. This
//! is the generic cell rate algorithm instead: a checkpoint is due at its theoretical time
//! minus a tolerance of [`BURST`] intervals, and the theoretical time restarts from the actual
//! one after a pause.

use std::time::{Duration, Instant};

/// Checkpoints that may go back to back after a pause (tolerance, in intervals).
pub const BURST: u32 = 2;

#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    /// When the next checkpoint would be due at exactly one per interval.
    theoretical: Option<Instant>,
}

impl Pace {
    pub fn new(interval: Duration) -> Pace {
        Pace {
            interval,
            theoretical: None,
        }
    }

    /// The earliest time the next checkpoint may be sent (`None`: now).
    pub fn due(&self) -> Option<Instant> {
        let t = self.theoretical?;
        t.checked_sub(self.interval * BURST)
    }

    /// A checkpoint was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        let t = self.theoretical.map_or(now, |t| t.max(now));
        self.theoretical = Some(t + self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Sends checkpoints for commits at `arrivals` (ms); returns when each went out (ms).
    fn simulate(arrivals: &[u64]) -> Vec<u64> {
        let start = Instant::now();
        let mut pace = Pace::new(10 * MS);
        let mut now = start;
        arrivals
            .iter()
            .map(|a| {
                now = now.max(start + *a as u32 * MS);
                if let Some(due) = pace.due() {
                    now = now.max(due);
                }
                pace.sent(now);
                (now - start).as_millis() as u64
            })
            .collect()
    }

    #[test]
    fn a_late_checkpoint_does_not_delay_the_next_ones() {
        // One commit every 10 ms; the one at 20 ms is processed 8 ms late.
        let sent = simulate(&[0, 10, 28, 30, 40, 50]);
        assert_eq!(sent, vec![0, 10, 28, 30, 40, 50]);
    }

    #[test]
    fn a_burst_is_limited_to_one_per_interval_on_average() {
        let sent = simulate(&[0; 10]);
        // Three at once (the tolerance), then one per interval.
        assert_eq!(sent, vec![0, 0, 0, 10, 20, 30, 40, 50, 60, 70]);
    }

    #[test]
    fn a_pause_restarts_the_schedule() {
        let sent = simulate(&[0, 0, 0, 0, 500, 500, 500, 500]);
        assert_eq!(sent, vec![0, 0, 0, 10, 500, 500, 500, 510]);
    }
}
