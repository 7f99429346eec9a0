//! Live-push scopes: which this node holds, and how the namespace owner
//! keeps its own in step with its grants.
//!
//! The device holding the namespace key keeps one scope per granted prefix.
//! Its roster lists the owner's devices and the devices of every friend that
//! may read the prefix now. A roster that only grows keeps its epoch (a new
//! member gets the current secret); a roster that loses a member moves the
//! scope to a new epoch with a fresh secret, so the removed device can
//! neither find the new topic nor read its messages. Other devices hold the
//! scopes they were sent over the authenticated catch-up channel.
//!
//! Scopes are records (`RecordKind::Scope`, keyed by namespace and prefix);
//! which epochs each member device was sent is kept as sync state, so that
//! what is owed survives restarts.

use std::collections::{HashMap, HashSet};

use kith_caps::{Roster, Scope};
use kith_store::{RecordKind, RecordOp};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::error::Result;
use crate::proto::serve::{member_scopes, roster_version};

use super::records::{decode_cursors, encode_cursors, encode_held, sent_id};
use super::shared::Shared;

impl Shared {
    pub(super) fn put_scopes(
        &self,
        ns: &NamespaceId,
        scopes: Vec<(Scope, Roster)>,
        replace: bool,
    ) -> Result<bool> {
        let mut ops = Vec::new();
        let mut book = self.scopes.write();
        let before: HashSet<(Path, u64, usize)> = book
            .of(ns)
            .iter()
            .map(|(s, r)| (s.prefix().clone(), s.epoch(), r.members().len()))
            .collect();
        if replace {
            let keep: HashSet<&Path> = scopes.iter().map(|(s, _)| s.prefix()).collect();
            let gone: Vec<Path> = book
                .held
                .keys()
                .filter(|(n, p)| n == ns && !keep.contains(p))
                .map(|(_, p)| p.clone())
                .collect();
            for p in gone {
                book.held.remove(&(*ns, p.clone()));
                ops.push(RecordOp::remove(RecordKind::Scope, *ns, p.encoded()));
            }
        }
        for (scope, roster) in scopes {
            let key = (*ns, scope.prefix().clone());
            let newer = match book.held.get(&key) {
                None => true,
                Some((s, r)) => {
                    scope.epoch() > s.epoch()
                        || (scope.epoch() == s.epoch() && roster.members() != r.members())
                }
            };
            if newer {
                ops.push(RecordOp::put(
                    RecordKind::Scope,
                    *ns,
                    scope.prefix().encoded(),
                    &encode_held(&scope, &roster),
                ));
                book.held.insert(key, (scope, roster));
            }
        }
        let after: HashSet<(Path, u64, usize)> = book
            .of(ns)
            .iter()
            .map(|(s, r)| (s.prefix().clone(), s.epoch(), r.members().len()))
            .collect();
        drop(book);
        if !ops.is_empty() {
            self.store.write_records(&ops)?;
        }
        let changed = before != after;
        if changed {
            self.scopes_changed();
        }
        Ok(changed)
    }

    /// Tells the gate and the live-push task that the held scopes changed.
    pub(crate) fn scopes_changed(&self) {
        self.refresh_gate();
        self.scope_version.send_modify(|v| *v += 1);
    }

    /// Stores the scopes `owner` sent in a catch-up. For a friend's
    /// namespace they are the complete set this node belongs to (any other
    /// held scope of theirs is dropped); own devices get every scope.
    pub(crate) fn store_scopes(
        &self,
        owner: &NamespaceId,
        scopes: &[(Scope, Roster)],
    ) -> Result<()> {
        let me = self.identity.device();
        let mine: Vec<(Scope, Roster)> = scopes
            .iter()
            .filter(|(_, r)| r.contains(&me))
            .cloned()
            .collect();
        if *owner == self.namespace() && self.identity.namespace_key.is_some() {
            // The key holder is the source of its own scopes.
            return Ok(());
        }
        self.put_scopes(owner, mine, true)?;
        Ok(())
    }

    /// The owner's scopes for catch-up answers.
    pub(crate) fn own_scopes(&self) -> Vec<(Scope, Roster)> {
        self.scopes.read().of(&self.namespace())
    }

    /// Brings this namespace's scopes in step with its grants, friends and
    /// devices (only on the device holding the namespace key). Returns
    /// whether anything changed.
    pub(crate) fn reconcile_own_scopes(&self) -> Result<bool> {
        let Some(key) = self.identity.namespace_key.as_ref() else {
            return Ok(false);
        };
        let ns = self.namespace();
        let now = Timestamp::wall_clock();
        let wanted: Vec<(Path, Vec<DeviceId>)> = {
            let known = self.known.read();
            let own: Vec<DeviceId> = known
                .devices_of(&ns, &ns)
                .into_iter()
                .map(|(d, _)| d)
                .chain(std::iter::once(self.identity.device()))
                .collect();
            let mut prefixes: Vec<Path> = known
                .grants
                .caps()
                .iter()
                .filter(|c| {
                    known
                        .grants
                        .may_read(c.prefix(), &c.grantee(), now)
                        .is_allowed()
                })
                .map(|c| c.prefix().clone())
                .collect();
            prefixes.sort();
            prefixes.dedup();
            prefixes
                .into_iter()
                .map(|p| {
                    let mut members = own.clone();
                    for friend_ns in known.friends.keys() {
                        if known.grants.may_read(&p, friend_ns, now).is_allowed() {
                            members.extend(
                                known.devices_of(friend_ns, &ns).into_iter().map(|(d, _)| d),
                            );
                        }
                    }
                    members.sort();
                    members.dedup();
                    (p, members)
                })
                .collect()
        };
        let held: HashMap<Path, (Scope, Roster)> = self
            .scopes
            .read()
            .of(&ns)
            .into_iter()
            .map(|(s, r)| (s.prefix().clone(), (s, r)))
            .collect();
        let mut next = Vec::new();
        let mut rng = rand::rng();
        for (prefix, members) in wanted {
            let scope = match held.get(&prefix) {
                None => Scope::generate(ns, prefix.clone(), &mut rng),
                Some((s, r)) => {
                    if r.members().iter().any(|m| !members.contains(m)) {
                        // Someone left: a new epoch they cannot follow.
                        s.next_epoch(&mut rng)?
                    } else if r.members() == members.as_slice() {
                        next.push((s.clone(), r.clone()));
                        continue;
                    } else {
                        s.clone()
                    }
                }
            };
            let roster = Roster::issue(key, prefix, scope.epoch(), members)?;
            next.push((scope, roster));
        }
        self.put_scopes(&ns, next, true)
    }

    /// The scopes of this namespace `device` is given the secrets of now
    /// (as a catch-up would send them), or `None` for a device acting for
    /// no namespace this node knows.
    pub(crate) fn scopes_for_member(&self, device: &DeviceId) -> Option<Vec<(Scope, Roster)>> {
        let ns = self.namespace();
        let (namespace, grants) = {
            let known = self.known.read();
            (known.acting_for(device, &ns)?, known.grants.clone())
        };
        Some(member_scopes(
            self.own_scopes(),
            &grants,
            device,
            &namespace,
            namespace == ns,
            Timestamp::wall_clock(),
        ))
    }

    /// Records the scope versions ([`roster_version`]) sent to `device`.
    pub(crate) fn record_scopes_sent(
        &self,
        device: &DeviceId,
        versions: &[(Path, u64)],
    ) -> Result<()> {
        let ns = self.namespace();
        let id = sent_id(device);
        let mut sent = self
            .store
            .record(RecordKind::SyncState, &ns, &id)?
            .and_then(|b| decode_cursors(&b))
            .unwrap_or_default();
        let before = sent.clone();
        for (p, e) in versions {
            match sent.iter_mut().find(|(q, _)| q == p) {
                Some(slot) => slot.1 = slot.1.max(*e),
                None => sent.push((p.clone(), *e)),
            }
        }
        if sent != before {
            self.store
                .put_record(RecordKind::SyncState, &ns, &id, &encode_cursors(&sent))?;
        }
        Ok(())
    }

    /// Whether a grant of this namespace expired after `after` and up to
    /// `up_to`: scope membership must then be derived again (it is, on
    /// events, and on time through this).
    pub(crate) fn grants_expired_between(&self, after: Timestamp, up_to: Timestamp) -> bool {
        self.known
            .read()
            .grants
            .caps()
            .iter()
            .filter_map(kith_caps::ReadCap::expires_at)
            .any(|t| t > after && t <= up_to)
    }

    /// Forgets what `device` was sent of this namespace's scopes; whether
    /// it had been sent any.
    pub(crate) fn forget_scopes_sent(&self, device: &DeviceId) -> Result<bool> {
        let ns = self.namespace();
        let id = sent_id(device);
        let sent = self
            .store
            .record(RecordKind::SyncState, &ns, &id)?
            .and_then(|b| decode_cursors(&b))
            .unwrap_or_default();
        if sent.is_empty() {
            return Ok(false);
        }
        self.store
            .write_records(&[RecordOp::remove(RecordKind::SyncState, ns, &id)])?;
        Ok(true)
    }

    /// Devices on this namespace's rosters that have not been sent the
    /// current epoch and roster of every scope they belong to.
    pub(crate) fn devices_owed_scopes(&self) -> Result<Vec<DeviceId>> {
        let ns = self.namespace();
        let me = self.identity.device();
        let scopes = self.own_scopes();
        let mut owed: HashSet<DeviceId> = HashSet::new();
        let mut cache: HashMap<DeviceId, Vec<(Path, u64)>> = HashMap::new();
        for (scope, roster) in &scopes {
            for m in roster.members().iter().filter(|m| **m != me) {
                if owed.contains(m) {
                    continue;
                }
                let sent = match cache.get(m) {
                    Some(s) => s,
                    None => {
                        let s = self
                            .store
                            .record(RecordKind::SyncState, &ns, &sent_id(m))?
                            .and_then(|b| decode_cursors(&b))
                            .unwrap_or_default();
                        cache.entry(*m).or_insert(s)
                    }
                };
                let version = roster_version(scope, roster);
                let has = sent
                    .iter()
                    .any(|(p, v)| p == scope.prefix() && *v >= version);
                if !has {
                    owed.insert(*m);
                }
            }
        }
        Ok(owed.into_iter().collect())
    }

    /// Brings this namespace's scopes in step with its grants and friends;
    /// wakes the delivery of what that makes owed (a new epoch's secret).
    pub(crate) fn scopes_follow_grants(&self) -> Result<()> {
        if self.reconcile_own_scopes()? {
            self.owed_changed.notify_one();
        }
        Ok(())
    }
}
