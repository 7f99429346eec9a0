//! Timestamps and the hybrid logical clock that issues them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, as issued by a [`HybridClock`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The earliest timestamp.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest timestamp.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Wraps a count of microseconds since the Unix epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The wall-clock time now, without the hybrid clock's guarantees.
    pub fn wall_clock() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self(micros)
    }

    /// Big-endian bytes: byte order equals time order.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads big-endian bytes.
    pub const fn from_be_bytes(bytes: [u8; 8]) -> Self {
        Self(u64::from_be_bytes(bytes))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

/// A hybrid logical clock: wall-clock microseconds that never go backwards
/// and are strictly increasing across calls, even if the system clock steps
/// back, and that move past every timestamp [observed](Self::observe) from
/// elsewhere (so a local write made after applying a remote deletion at time
/// `T` is always later than `T`).
///
/// Thread-safe and lock-free.
#[derive(Debug, Default)]
pub struct HybridClock {
    last: AtomicU64,
}

impl HybridClock {
    /// A clock that has observed nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next timestamp: the later of the wall clock and one microsecond
    /// after the last timestamp issued or observed.
    pub fn now(&self) -> Timestamp {
        let wall = Timestamp::wall_clock().0;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Timestamp(next),
                Err(actual) => last = actual,
            }
        }
    }

    /// Records a timestamp seen from elsewhere so that later [`now`](Self::now)
    /// calls are after it.
    pub fn observe(&self, ts: Timestamp) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> Timestamp {
        Timestamp(self.last.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_past_observed() {
        let clock = HybridClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        let future = Timestamp::from_micros(b.as_micros() + 10_000_000_000);
        clock.observe(future);
        assert!(clock.now() > future);
        clock.observe(Timestamp::ZERO);
        assert!(clock.now() > future);
    }

    #[test]
    fn byte_order_is_time_order() {
        let a = Timestamp::from_micros(255);
        let b = Timestamp::from_micros(256);
        assert!(a.to_be_bytes() < b.to_be_bytes());
        assert_eq!(Timestamp::from_be_bytes(b.to_be_bytes()), b);
    }
}
