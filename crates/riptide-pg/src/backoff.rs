//! Retrying with exponential backoff that a [`CancellationToken`] interrupts: a [`Backoff`] for
//! loops that run until cancelled (reset after each success, so one failure after an hour of
//! work waits the initial delay again), and [`retry`] for one operation with a bounded number
//! of attempts. Modelled on neon's `utils::backoff`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays that double from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

/// The wait ended because the token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl Backoff {
    /// Doubling delays from `initial` (at least 1 ms) to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            failures: 0,
        }
    }

    /// The same delay every time (waiting for something another session releases).
    pub const fn fixed(delay: Duration) -> Backoff {
        Backoff {
            initial: delay,
            max: delay,
            next: delay,
            failures: 0,
        }
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.failures = self.failures.saturating_add(1);
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// After a success: the next failure waits the initial delay again.
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.failures = 0;
    }

    /// Records a failure and waits its delay, or until `cancel` fires.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        let delay = self.next_delay();
        tokio::select! {
            () = cancel.cancelled() => Err(Cancelled),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// How [`retry`] ended without a success.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    #[error("cancelled")]
    Cancelled,
    /// The last error: not retryable, or the attempts ran out.
    #[error(transparent)]
    Failed(E),
}

/// Runs `operation` until it succeeds, fails with an error `retryable` refuses, fails
/// `max_attempts` times, or `cancel` fires (also while an attempt runs).
pub async fn retry<T, E, F, Fut>(
    mut backoff: Backoff,
    max_attempts: u32,
    cancel: &CancellationToken,
    mut operation: F,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
            result = operation() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(e) if retryable(&e) && backoff.failures() + 1 < max_attempts => {
                if backoff.wait(cancel).await.is_err() {
                    return Err(RetryError::Cancelled);
                }
            }
            Err(e) => return Err(RetryError::Failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        assert_eq!(b.failures(), 4);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn retry_stops_at_the_attempt_limit_and_on_a_final_error() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let result: Result<(), _> = retry(
            Backoff::fixed(Duration::from_millis(1)),
            3,
            &cancel,
            || {
                calls += 1;
                async { Err::<(), _>("busy") }
            },
            |e| *e == "busy",
        )
        .await;
        assert!(matches!(result, Err(RetryError::Failed("busy"))));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let result: Result<(), _> = retry(
            Backoff::fixed(Duration::from_millis(1)),
            3,
            &cancel,
            || {
                calls += 1;
                async { Err::<(), _>("broken") }
            },
            |e| *e == "busy",
        )
        .await;
        assert!(matches!(result, Err(RetryError::Failed("broken"))));
        assert_eq!(calls, 1, "a non-retryable error is not retried");
    }

    #[tokio::test]
    async fn retry_succeeds_after_failures_and_cancellation_interrupts_a_wait() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let value = retry(
            Backoff::fixed(Duration::from_millis(1)),
            5,
            &cancel,
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("busy") } else { Ok(n) } }
            },
            |_| true,
        )
        .await
        .unwrap();
        assert_eq!(value, 3);

        let mut b = Backoff::fixed(Duration::from_secs(3600));
        let cancel = CancellationToken::new();
        let waiting = b.wait(&cancel);
        cancel.cancel();
        assert_eq!(waiting.await, Err(Cancelled));
    }
}
