//! The node's background tasks: work asked by the drivers, pokes of
//! devices owed something, idle connections.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_types::{DeviceId, NamespaceId, Timestamp};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::net;
use crate::state::Work;

use super::handle::{Inner, Node, blocking};

/// First wait before poking a device again.
const POKE_RETRY_MIN: Duration = Duration::from_secs(1);
/// Largest wait before poking a device again.
const POKE_RETRY_MAX: Duration = Duration::from_secs(60);
/// Retries of a failed recovery catch-up (after 1 s, 2 s, … 32 s); the
/// periodic re-sync covers the rest.
const RECOVERY_RETRIES: u32 = 6;
/// Quiet time awaited after a change of what is owed before poking (and
/// the most it waits while changes keep coming).
const POKE_SETTLE: Duration = Duration::from_millis(50);
const POKE_SETTLE_MAX: Duration = Duration::from_secs(1);
/// Devices delivered to at once. At 250 friends on two cores, 16 or 64 at
/// a time left the last friend later than all at once (the `revoke`
/// bench), so this bounds only what a larger roster would start at once.
const DELIVER_PARALLEL: usize = 256;
/// How often what is owed to other devices is checked when nothing wakes
/// the check earlier.
const POKE_TICK: Duration = Duration::from_secs(1);

/// How often the cache of friends' data is checked against its settings
/// when nothing wakes the check earlier, if live pushes brought friends'
/// data meanwhile or an age limit is set (else the tick does nothing).
const CACHE_TICK: Duration = Duration::from_secs(60);
/// Quiet time awaited after friends' data grew before the check.
const CACHE_SETTLE: Duration = Duration::from_secs(1);

/// A catch-up running for a namespace.
#[derive(Default)]
struct Run {
    /// Whether another run was asked for meanwhile.
    again: bool,
    /// Stops it.
    abort: Option<tokio::task::AbortHandle>,
}

impl Node {
    /// Keeps friends' data within the cache's settings: after catch-ups
    /// and fetches (once they settle), and every [`CACHE_TICK`].
    pub(super) async fn keep_cache(weak: std::sync::Weak<Inner>) {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let shared = inner.shared.clone();
            drop(inner);
            let woken = tokio::time::timeout(CACHE_TICK, shared.cache_changed.notified())
                .await
                .is_ok();
            let grew = shared
                .cache_grew
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            if !woken && !grew && shared.cache.settings().max_age.is_none() {
                continue;
            }
            tokio::time::sleep(CACHE_SETTLE).await;
            if weak.strong_count() == 0 {
                return;
            }
            let run = blocking(move || {
                let own = shared.namespace();
                shared
                    .cache
                    .enforce(&shared.store, &own, Timestamp::wall_clock())
            })
            .await;
            if let Err(e) = run {
                tracing::warn!(%e, "could not keep friends' data within the cache's budget");
            }
        }
    }

    /// Closes cached connections that moved no stream data for the
    /// configured idle time ([`Builder::connection_idle`]).
    pub(super) async fn close_idle_connections(weak: std::sync::Weak<Inner>) {
        loop {
            let idle = match weak.upgrade() {
                Some(inner) => inner.settings.connection_idle,
                None => return,
            };
            tokio::time::sleep(idle / 3).await;
            let Some(inner) = weak.upgrade() else { return };
            inner.connections.close_idle(idle);
        }
    }

    /// Runs what the live layer and pokes ask for: catch-ups (one at a time
    /// per namespace; requests meanwhile are folded into one more run) and
    /// eager blob fetches.
    pub(super) async fn serve_requests(
        weak: std::sync::Weak<Inner>,
        mut rx: tokio::sync::mpsc::Receiver<Work>,
    ) {
        // Per namespace being synced: whether another run was asked for,
        // and how to stop the one running.
        let running: Arc<Mutex<HashMap<NamespaceId, Run>>> = Arc::default();
        while let Some(request) = rx.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            let node = Node { inner };
            let request = match request {
                Work::Back { device, namespace } => {
                    // The connection it said so on replaced the cached one
                    // (which led to its old process or address) already.
                    node.relink(device);
                    // A catch-up running now may wait on the old address
                    // (connecting takes up to the connect timeout): it
                    // makes way for one that starts afresh.
                    if let Some(run) = running.lock().remove(&namespace)
                        && let Some(abort) = run.abort
                    {
                        abort.abort();
                    }
                    // Then as for a poke: catch up with its namespace.
                    Work::Sync {
                        namespace,
                        recovery: false,
                    }
                }
                other => other,
            };
            match request {
                Work::Sync {
                    namespace,
                    recovery,
                } => {
                    {
                        let mut r = running.lock();
                        if let Some(run) = r.get_mut(&namespace) {
                            run.again = true;
                            continue;
                        }
                        r.insert(namespace, Run::default());
                    }
                    let running2 = running.clone();
                    let inner = node.inner.clone();
                    let abort = inner.spawn_tracked(async move {
                        let running = running2;
                        // A failed recovery is retried with backoff: nothing
                        // else would notice what it was to bring.
                        let mut failures = 0u32;
                        loop {
                            match node.sync_now(&namespace).await {
                                Ok(report) if recovery => {
                                    tracing::debug!(ns = %namespace.fmt_short(), entries = report.entries, "recovery catch-up done");
                                    if let Some(live) = &node.inner.live {
                                        live.counters.recovered.fetch_add(
                                            report.entries,
                                            std::sync::atomic::Ordering::Relaxed,
                                        );
                                    }
                                }
                                Ok(report) => {
                                    tracing::debug!(ns = %namespace.fmt_short(), entries = report.entries, "requested catch-up done");
                                }
                                Err(e) => {
                                    tracing::info!(ns = %namespace.fmt_short(), %e, failures, "requested catch-up failed");
                                    if recovery && failures < RECOVERY_RETRIES {
                                        failures += 1;
                                        tokio::time::sleep(
                                            Duration::from_millis(500) * 2u32.pow(failures),
                                        )
                                        .await;
                                        continue;
                                    }
                                }
                            }
                            let mut r = running.lock();
                            if let Some(run) = r.get_mut(&namespace)
                                && run.again
                            {
                                run.again = false;
                                continue;
                            }
                            r.remove(&namespace);
                            break;
                        }
                    });
                    if let Some(run) = running.lock().get_mut(&namespace) {
                        run.abort = abort;
                    }
                }
                Work::Back { .. } => {} // made a sync above
                Work::Poke { devices } => {
                    let weak = Arc::downgrade(&node.inner);
                    node.inner.spawn_tracked(async move {
                        Node::tell_all(weak, devices, crate::proto::wire::Message::Poke).await;
                    });
                }
                Work::Rekey { devices } => {
                    let round = devices.into_iter().map(|d| (d, false)).collect();
                    let n = node.clone();
                    node.inner.spawn_tracked(async move {
                        n.deliver_round(round, Arc::default()).await;
                    });
                }
                Work::FetchBlob { namespace, path } => {
                    let inner = node.inner.clone();
                    inner.spawn_tracked(async move {
                        if let Err(e) = node.fetch(&namespace, &path).await {
                            tracing::info!(%path, %e, "fetching an announced blob failed");
                        }
                    });
                }
            }
        }
    }

    /// Pokes, with backoff, every device owed something: the current epoch
    /// of a scope it belongs to, or a deletion it has not confirmed. A
    /// poked device syncs at once and so receives what is owed. What is
    /// owed is derived from the store, so it survives restarts.
    pub(super) async fn deliver_owed(weak: std::sync::Weak<Inner>) {
        let Some(shared) = weak.upgrade().map(|i| i.shared.clone()) else {
            return;
        };
        let mut next_try: HashMap<DeviceId, (Instant, Duration)> = HashMap::new();
        // Devices being delivered to now: not sent to twice at once.
        let in_flight: Arc<Mutex<HashSet<DeviceId>>> = Arc::default();
        let mut checked = Timestamp::wall_clock();
        loop {
            let s2 = shared.clone();
            let now = Timestamp::wall_clock();
            let expired = shared.grants_expired_between(checked, now);
            checked = now;
            let owed = blocking(move || {
                if expired {
                    // An expired grant leaves the rosters as a revocation
                    // does: a new epoch, owed to the remaining members.
                    s2.scopes_follow_grants()?;
                }
                let mut owed: Vec<(DeviceId, bool)> = s2
                    .devices_owed_scopes()?
                    .into_iter()
                    .map(|d| (d, false))
                    .collect();
                for d in s2.devices_owed_tombstones()? {
                    match owed.iter_mut().find(|(o, _)| *o == d) {
                        Some(slot) => slot.1 = true,
                        None => owed.push((d, true)),
                    }
                }
                Ok(owed)
            })
            .await;
            match owed {
                Ok(owed) => {
                    next_try.retain(|d, _| owed.iter().any(|(o, _)| o == d));
                    let now = Instant::now();
                    let mut round = Vec::new();
                    for (device, deletions) in owed {
                        let (at, wait) = next_try
                            .get(&device)
                            .copied()
                            .unwrap_or((now, POKE_RETRY_MIN));
                        if at > now || in_flight.lock().contains(&device) {
                            continue;
                        }
                        next_try.insert(device, (now + wait, (wait * 2).min(POKE_RETRY_MAX)));
                        in_flight.lock().insert(device);
                        round.push((device, deletions));
                    }
                    if !round.is_empty() {
                        let Some(inner) = weak.upgrade() else { return };
                        let node = Node {
                            inner: inner.clone(),
                        };
                        let in_flight = in_flight.clone();
                        inner.spawn_tracked(async move {
                            node.deliver_round(round, in_flight).await;
                        });
                    }
                }
                Err(e) => tracing::warn!(%e, "could not list what is owed to other devices"),
            }
            tokio::select! {
                () = shared.owed_changed.notified() => {
                    // Let a burst of changes (many grants at once) settle
                    // into one round of pokes.
                    let until = Instant::now() + POKE_SETTLE_MAX;
                    while Instant::now() < until
                        && tokio::time::timeout(POKE_SETTLE, shared.owed_changed.notified())
                            .await
                            .is_ok()
                    {}
                    next_try.clear();
                }
                () = tokio::time::sleep(POKE_TICK) => {}
            }
        }
    }

    /// Re-joins the gossip topics joined through `device`, which has just
    /// started or moved ([`crate::live`] says why).
    fn relink(&self, device: DeviceId) {
        if let Some(live) = self.inner.live.clone() {
            self.inner.spawn_tracked(async move {
                live.relink(device).await;
            });
        }
    }

    /// Tells `device` to sync with this one now.
    pub(super) async fn poke(&self, device: DeviceId) -> Result<()> {
        self.tell(device, crate::proto::wire::Message::Poke).await
    }

    /// Delivers what is owed to each device of `round`, [`DELIVER_PARALLEL`]
    /// at a time: the scopes alone ([`Node::rekey`]) to a friend's device
    /// owed only scopes, else (or if that fails) a poke, so that the device
    /// catches up.
    /// Each device leaves `in_flight` when its delivery ends, however.
    async fn deliver_round(
        &self,
        round: Vec<(DeviceId, bool)>,
        in_flight: Arc<Mutex<HashSet<DeviceId>>>,
    ) {
        /// Takes a device out of the in-flight set when dropped.
        struct Done(Arc<Mutex<HashSet<DeviceId>>>, DeviceId);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.lock().remove(&self.1);
            }
        }
        let mut running = tokio::task::JoinSet::new();
        for (device, deletions) in round {
            let done = Done(in_flight.clone(), device);
            while running.len() >= DELIVER_PARALLEL {
                if let Some(Err(e)) = running.join_next().await {
                    tracing::warn!(%e, "a delivery task failed");
                }
            }
            let node = self.clone();
            // An own device learns new friends and grants in the catch-up
            // too, so it is always poked.
            let ns = self.inner.shared.namespace();
            let own = self.inner.shared.known.read().acting_for(&device, &ns) == Some(ns);
            running.spawn(async move {
                let _done = done;
                // A deletion needs the catch-up; scopes alone do not.
                if !deletions && !own {
                    match node.rekey(device).await {
                        Ok(()) => return,
                        // Not reachable now: a poke would not be either;
                        // the next round tries again.
                        Err(
                            e @ (Error::Network(_) | Error::Timeout(_) | Error::Unreachable { .. }),
                        ) => {
                            tracing::debug!(device = %device.fmt_short(), %e, "could not reach a device to send it scopes; will retry");
                            return;
                        }
                        Err(e) => tracing::debug!(device = %device.fmt_short(), %e, "sending scopes failed; poking instead"),
                    }
                }
                if let Err(e) = node.poke(device).await {
                    tracing::debug!(device = %device.fmt_short(), %e, "poke failed; will retry");
                }
            });
        }
        while let Some(joined) = running.join_next().await {
            if let Err(e) = joined {
                tracing::warn!(%e, "a delivery task failed");
            }
        }
    }

    /// Sends `device` the scopes of this namespace it belongs to now, alone
    /// on a stream, and records them as sent once it confirmed that it
    /// stored them: a new epoch's secret and roster reach a member without
    /// a catch-up.
    ///
    /// # Errors
    /// The device is unknown or unreachable, or refused them (it lacks a
    /// grant, say): a poke and a catch-up deliver them then.
    pub(super) async fn rekey(&self, device: DeviceId) -> Result<()> {
        use crate::proto::wire::Message;
        let shared = self.inner.shared.clone();
        let scopes = blocking(move || Ok(shared.scopes_for_member(&device)))
            .await?
            .ok_or(Error::Protocol(
                "the device acts for no known namespace".into(),
            ))?;
        let versions = crate::proto::serve::scope_versions(&scopes);
        let mut recent = Vec::new();
        if let Some(live) = &self.inner.live {
            for (index, (scope, _)) in (0u16..).zip(&scopes) {
                for push in live.recent(scope.topic_id().as_bytes()) {
                    recent.push((index, push));
                }
            }
        }
        tracing::debug!(device = %device.fmt_short(), recent = recent.len(), "sending scopes alone");
        let msg = Message::Rekey {
            items: scopes
                .iter()
                .map(|(s, r)| (s.encode(), r.encode()))
                .collect(),
            recent,
        };
        match self.ask(device, msg).await? {
            Message::ScopesAck => {}
            Message::Refused { reason, .. } => {
                return Err(Error::Protocol(format!("scopes refused: {reason}")));
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected answer to scopes: {}",
                    other.name()
                )));
            }
        }
        let shared = self.inner.shared.clone();
        blocking(move || shared.record_scopes_sent(&device, &versions)).await
    }

    /// Sends `msg` alone on a stream to `device` and reads its one answer,
    /// within the connect timeout.
    async fn ask(
        &self,
        device: DeviceId,
        msg: crate::proto::wire::Message,
    ) -> Result<crate::proto::wire::Message> {
        let (_send, mut recv) = self.send_alone(device, &msg).await?;
        let answer = tokio::time::timeout(
            self.inner.settings.connect_timeout,
            net::frames::read_msg(&mut recv),
        )
        .await
        .map_err(|_| Error::Protocol("no answer in time".into()))??;
        answer
            .map(|(m, _)| m)
            .ok_or(Error::Protocol("the stream ended without an answer".into()))
    }

    /// Opens a stream to `device`, writes `msg` on it and finishes it.
    async fn send_alone(
        &self,
        device: DeviceId,
        msg: &crate::proto::wire::Message,
    ) -> Result<(iroh::endpoint::SendStream, iroh::endpoint::RecvStream)> {
        let (_, addrs) = self
            .inner
            .shared
            .device_addrs(&device)
            .ok_or(Error::Protocol("no address known for the device".into()))?;
        let conn = self.connect(device, &addrs).await?;
        let (mut send, recv) = net::frames::within("opening a stream", async {
            conn.open_bi().await.map_err(Error::network)
        })
        .await?;
        net::frames::write_msg(&mut send, msg).await?;
        send.finish().map_err(Error::network)?;
        Ok((send, recv))
    }

    /// Sends `msg` alone on a stream to `device`, and waits (bounded) until
    /// it was received.
    pub(super) async fn tell(
        &self,
        device: DeviceId,
        msg: crate::proto::wire::Message,
    ) -> Result<()> {
        let (send, _recv) = self.send_alone(device, &msg).await?;
        let _ = tokio::time::timeout(self.inner.settings.connect_timeout, send.stopped()).await;
        Ok(())
    }
}
