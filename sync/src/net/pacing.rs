//! Congestion control chosen per network path by its round-trip time.
//!
//! CUBIC backs off on every lost packet: on a short path (a LAN, loopback)
//! that costs nothing and it fills the link at once, but on a long, lossy
//! one (mobile data, another continent, a relay) a bulk transfer crawls at
//! a rate that falls with the loss rate and the round trip. BBR paces by
//! the measured bandwidth and round trip instead, so random loss costs it
//! little, while on loopback it runs about a fifth slower than CUBIC (the
//! `blobs` bench). [`ByPath`] feeds both from a path's first packet and,
//! once the path's first round trips are measured, keeps BBR if the
//! shortest of them is at least [`LONG_PATH`] and CUBIC otherwise.
//!
//! Each QUIC path has its own controller, so a connection that starts
//! through a relay and then punches a direct hole picks for each path on
//! its own.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use noq_proto::RttEstimator;
use noq_proto::congestion::{
    Bbr3Config, Controller, ControllerFactory, ControllerMetrics, CubicConfig,
};

/// The shortest round trip from which a path is paced by BBR.
pub(crate) const LONG_PATH: Duration = Duration::from_millis(20);

/// How many acknowledged packets a path's round trip is judged from: on a
/// busy machine a short path's round trips vary with scheduling, and the
/// shortest of many is its own; a long path never has one under its
/// length. About two round trips of slow start.
const PROBE_ACKS: u32 = 16;

/// Builds a [`ByPath`] controller for each new path.
#[derive(Debug, Default)]
pub(crate) struct ByPathConfig {
    cubic: Arc<CubicConfig>,
    bbr: Arc<Bbr3Config>,
}

impl ControllerFactory for ByPathConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(ByPath::new(
            self.cubic.clone().build(now, current_mtu),
            self.bbr.clone().build(now, current_mtu),
        ))
    }
}

/// Which controller paces a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Not yet decided: both are fed, CUBIC's window is used.
    Probing,
    /// A short path: CUBIC.
    Cubic,
    /// A long path: BBR.
    Bbr,
}

/// CUBIC or BBR for one path, chosen by its round trip (see the module).
#[derive(Debug)]
pub(crate) struct ByPath {
    cubic: Option<Box<dyn Controller>>,
    bbr: Option<Box<dyn Controller>>,
    acks: u32,
}

impl ByPath {
    fn new(cubic: Box<dyn Controller>, bbr: Box<dyn Controller>) -> Self {
        Self {
            cubic: Some(cubic),
            bbr: Some(bbr),
            acks: 0,
        }
    }

    /// Which controller paces the path now.
    pub(crate) fn choice(&self) -> Choice {
        match (&self.cubic, &self.bbr) {
            (Some(_), Some(_)) => Choice::Probing,
            (Some(_), None) => Choice::Cubic,
            _ => Choice::Bbr,
        }
    }

    /// Counts one acknowledged packet; once enough are, keeps the
    /// controller that suits `min_rtt` and drops the other.
    fn acked(&mut self, min_rtt: Duration) {
        if self.choice() != Choice::Probing {
            return;
        }
        self.acks += 1;
        if self.acks < PROBE_ACKS {
            return;
        }
        if min_rtt >= LONG_PATH {
            self.cubic = None;
        } else {
            self.bbr = None;
        }
        tracing::trace!(?min_rtt, choice = ?self.choice(), "paced a path");
    }

    /// The controller whose window and pacing the path follows.
    fn leader(&self) -> &dyn Controller {
        match (&self.cubic, &self.bbr) {
            (Some(c), _) => c.as_ref(),
            (None, Some(b)) => b.as_ref(),
            (None, None) => unreachable!("a path keeps one controller"),
        }
    }

    /// Every controller still fed.
    fn each(&mut self, mut f: impl FnMut(&mut dyn Controller)) {
        for c in [&mut self.cubic, &mut self.bbr].into_iter().flatten() {
            f(c.as_mut());
        }
    }
}

impl Controller for ByPath {
    fn on_sent(&mut self, now: Instant, bytes: u64, largest_pn: u64) {
        self.each(|c| c.on_sent(now, bytes, largest_pn));
    }

    fn on_packet_sent(&mut self, now: Instant, bytes: u16, pn: u64) {
        self.each(|c| c.on_packet_sent(now, bytes, pn));
    }

    fn on_cwnd_limited(&mut self) {
        self.each(|c| c.on_cwnd_limited());
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        pn: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.each(|c| c.on_ack(now, sent, bytes, pn, app_limited, rtt));
        self.acked(rtt.min());
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.each(|c| c.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked));
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        is_ecn: bool,
        lost_bytes: u64,
        largest_lost_pn: u64,
    ) {
        self.each(|c| {
            c.on_congestion_event(
                now,
                sent,
                is_persistent_congestion,
                is_ecn,
                lost_bytes,
                largest_lost_pn,
            );
        });
    }

    fn on_packet_lost(&mut self, lost_bytes: u16, pn: u64, now: Instant) {
        self.each(|c| c.on_packet_lost(lost_bytes, pn, now));
    }

    fn on_spurious_congestion_event(&mut self) {
        self.each(|c| c.on_spurious_congestion_event());
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.each(|c| c.on_mtu_update(new_mtu));
    }

    fn on_ack_frequency_update(
        &mut self,
        ack_eliciting_threshold: u64,
        requested_max_ack_delay: Duration,
    ) {
        self.each(|c| c.on_ack_frequency_update(ack_eliciting_threshold, requested_max_ack_delay));
    }

    fn window(&self) -> u64 {
        self.leader().window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.leader().metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            cubic: self.cubic.as_ref().map(|c| c.clone_box()),
            bbr: self.bbr.as_ref().map(|c| c.clone_box()),
            acks: self.acks,
        })
    }

    fn initial_window(&self) -> u64 {
        self.leader().initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> ByPath {
        let now = Instant::now();
        let controller = Arc::new(ByPathConfig::default()).build(now, 1200);
        *controller
            .into_any()
            .downcast::<ByPath>()
            .expect("the factory builds a ByPath")
    }

    fn ack_n(path: &mut ByPath, n: u32, rtt: Duration) {
        for _ in 0..n {
            path.acked(rtt);
        }
    }

    #[test]
    fn a_short_path_keeps_cubic() {
        let mut path = fresh();
        ack_n(&mut path, PROBE_ACKS - 1, Duration::from_micros(300));
        assert_eq!(path.choice(), Choice::Probing, "decided before enough acks");
        path.acked(Duration::from_micros(300));
        assert_eq!(path.choice(), Choice::Cubic);
        assert!(
            path.metrics().pacing_rate.is_none(),
            "CUBIC reports no pacing rate"
        );
    }

    #[test]
    fn a_long_path_keeps_bbr() {
        let mut path = fresh();
        ack_n(&mut path, PROBE_ACKS, LONG_PATH);
        assert_eq!(path.choice(), Choice::Bbr);
        assert!(path.metrics().pacing_rate.is_some(), "BBR paces");
    }

    #[test]
    fn the_choice_is_kept() {
        let mut path = fresh();
        ack_n(&mut path, PROBE_ACKS, Duration::from_millis(100));
        ack_n(&mut path, 100, Duration::from_micros(10));
        assert_eq!(
            path.choice(),
            Choice::Bbr,
            "a later short sample switched back"
        );
        let copy = path.clone_box().into_any().downcast::<ByPath>().unwrap();
        assert_eq!(copy.choice(), Choice::Bbr, "a copy keeps the choice");
    }

    #[test]
    fn probing_paces_by_cubic() {
        let mut path = fresh();
        let now = Instant::now();
        let cubic = path.cubic.as_ref().unwrap().window();
        assert_eq!(path.window(), cubic);
        assert_eq!(
            path.initial_window(),
            path.cubic.as_ref().unwrap().initial_window()
        );
        path.on_sent(now, 12_000, 9);
        path.on_congestion_event(now, now, false, false, 1200, 9);
        assert!(
            path.window() < cubic,
            "a loss while probing did not shrink CUBIC's window"
        );
    }
}
