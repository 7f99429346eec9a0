//! Per-peer limits: concurrent streams, requests per second, bytes per
//! second. Kept per device, across its connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_types::DeviceId;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// What one peer device may use of this node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerLimits {
    /// Streams (requests in flight) at once.
    pub max_streams: usize,
    /// Requests per second, sustained.
    pub requests_per_sec: f64,
    /// Requests allowed in a burst above the sustained rate.
    pub request_burst: f64,
    /// Bytes per second sent to the peer; `None` for no limit. Sending is
    /// paced, not refused.
    pub bytes_per_sec: Option<f64>,
    /// Refused requests in a burst after which the peer's connection is
    /// closed; one is forgiven every 10 seconds, so ordinary
    /// refusals spread over a long-lived connection (a document deleted
    /// between the listing and the request) never add up to a disconnect.
    pub max_refusals: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            max_streams: 16,
            requests_per_sec: 200.0,
            request_burst: 2000.0,
            bytes_per_sec: None,
            max_refusals: 64,
        }
    }
}

/// How often one refusal of a peer is forgiven.
pub(crate) const REFUSAL_FORGIVEN_EVERY: Duration = Duration::from_secs(10);

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt; returns how long to wait until the
    /// debt is paid.
    fn take_paced(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One peer's budget.
#[derive(Debug)]
pub(crate) struct PeerBudget {
    pub(crate) streams: Arc<Semaphore>,
    requests: Mutex<Bucket>,
    bytes: Option<Mutex<Bucket>>,
    /// Refusals the peer may still earn before it is disconnected.
    refusals: Mutex<Bucket>,
}

impl PeerBudget {
    fn new(limits: &PeerLimits) -> Self {
        Self {
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            requests: Mutex::new(Bucket::new(limits.requests_per_sec, limits.request_burst)),
            bytes: limits
                .bytes_per_sec
                .map(|rate| Mutex::new(Bucket::new(rate, rate.min(1_048_576.0)))),
            refusals: Mutex::new(Bucket::new(
                1.0 / REFUSAL_FORGIVEN_EVERY.as_secs_f64(),
                f64::from(limits.max_refusals),
            )),
        }
    }

    /// Whether the peer may make one more request now.
    pub(crate) fn allow_request(&self) -> bool {
        self.requests.lock().try_take(Instant::now())
    }

    /// Records a refusal; returns whether the peer has now been refused too
    /// often and should be disconnected.
    pub(crate) fn refused(&self) -> bool {
        self.refused_at(Instant::now())
    }

    fn refused_at(&self, now: Instant) -> bool {
        !self.refusals.lock().try_take(now)
    }

    /// Waits until `n` more bytes may be sent.
    pub(crate) async fn pace(&self, n: usize) {
        let Some(bucket) = &self.bytes else { return };
        let wait = bucket.lock().take_paced(n as f64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Budgets of every peer seen.
#[derive(Debug)]
pub(crate) struct PeerBudgets {
    limits: PeerLimits,
    peers: Mutex<HashMap<DeviceId, Arc<PeerBudget>>>,
}

impl PeerBudgets {
    pub(crate) fn new(limits: PeerLimits) -> Self {
        Self {
            limits,
            peers: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn of(&self, device: DeviceId) -> Arc<PeerBudget> {
        self.peers
            .lock()
            .entry(device)
            .or_insert_with(|| Arc::new(PeerBudget::new(&self.limits)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_their_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(10.0, 2.0);
        b.last = start;
        assert!(b.try_take(start));
        assert!(b.try_take(start));
        assert!(!b.try_take(start), "the burst is spent");
        assert!(
            b.try_take(start + Duration::from_millis(100)),
            "one token after 100 ms at 10/s"
        );
        let wait = b.take_paced(20.0, start + Duration::from_millis(100));
        assert_eq!(wait, Duration::from_secs(2), "20 tokens of debt at 10/s");
    }

    #[test]
    fn refusals_in_a_burst_disconnect_and_spread_ones_do_not() {
        let limits = PeerLimits {
            max_refusals: 3,
            ..PeerLimits::default()
        };
        let budget = PeerBudget::new(&limits);
        let start = Instant::now();
        budget.refusals.lock().last = start;
        for i in 0..3 {
            assert!(!budget.refused_at(start), "refusal {i} disconnected");
        }
        assert!(
            budget.refused_at(start),
            "the 4th refusal in a burst did not"
        );
        // One refusal every interval, for as long as the connection lives.
        let mut at = start;
        for i in 0..1000 {
            at += REFUSAL_FORGIVEN_EVERY;
            assert!(!budget.refused_at(at), "spread refusal {i} disconnected");
        }
    }
}
