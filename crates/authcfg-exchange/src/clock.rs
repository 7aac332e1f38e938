//! The time source of the token cache, so that tests control expiry.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A source of monotonic and wall-clock time.
///
/// Expiry and back-off are computed on [`Clock::now`]; [`Clock::wall`] only
/// dates the `expires_at` that callers see.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current monotonic time.
    fn now(&self) -> Instant;

    /// Returns the current wall-clock time in UTC.
    fn wall(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called, for tests.
///
/// It starts at the system time of its creation. Timeouts of the HTTP client
/// still run on real time.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_wall: OffsetDateTime,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// Creates a clock at the current system time.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            start_wall: OffsetDateTime::now_utc(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        *offset += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn wall(&self) -> OffsetDateTime {
        self.start_wall + self.offset()
    }
}
