//! Decisions: who may read a path, which device may write, which scopes and
//! grantees a change concerns, whether a tombstone counts.
//!
//! Every function here is pure: the current time is passed in, nothing is
//! read from a clock, a disk or the network. Inputs are objects that have
//! already passed their `verify()` when they arrived (the store keeps only
//! verified objects); these functions do not check signatures again, so
//! that a decision takes nanoseconds, not the ~50 µs of a signature check.
//!
//! For many read decisions over the same caps, build a [`Grants`] index
//! once; [`may_read`] is the same rule as a linear scan, for one-off checks.

use std::collections::{BTreeSet, HashMap, HashSet};

use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::cert::{DeviceCert, DeviceRevocation, Rights};
use crate::error::{Error, Result};
use crate::readcap::{CapId, ReadCap, Revocation};
use crate::scope::Scope;
use crate::tombstone::Tombstone;

/// Why a read is refused.
///
/// When several caps name the requester and none allows the read, the
/// reason reported is the one closest to allowing it, in this order:
/// [`NotYetValid`](Self::NotYetValid) (will become valid) before
/// [`Expired`](Self::Expired) before [`Revoked`](Self::Revoked) before
/// [`PrefixDoesNotCover`](Self::PrefixDoesNotCover) before
/// [`NoCap`](Self::NoCap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No cap of this namespace names the requester.
    NoCap,
    /// The requester has caps, but none of their prefixes covers the path.
    PrefixDoesNotCover,
    /// Every covering cap has been revoked.
    Revoked,
    /// Every covering cap that is not revoked has expired.
    Expired,
    /// A covering cap exists but is dated in the future.
    NotYetValid,
}

impl DenyReason {
    /// Higher is closer to allowing.
    fn rank(self) -> u8 {
        match self {
            Self::NoCap => 0,
            Self::PrefixDoesNotCover => 1,
            Self::Revoked => 2,
            Self::Expired => 3,
            Self::NotYetValid => 4,
        }
    }
}

/// The answer to "may this friend read this path now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Allowed by this cap (of the valid covering caps, the one with the
    /// longest prefix).
    Allow(&'a ReadCap),
    /// Refused, with the reason.
    Deny(DenyReason),
}

impl<'a> Decision<'a> {
    /// Whether the read is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The allowing cap, if allowed.
    pub fn cap(&self) -> Option<&'a ReadCap> {
        match self {
            Self::Allow(cap) => Some(cap),
            Self::Deny(_) => None,
        }
    }
}

/// Judges one cap, already known to name the requester in the namespace.
fn judge_cap(cap: &ReadCap, revoked: bool, path: &Path, now: Timestamp) -> Option<DenyReason> {
    if !cap.covers(path) {
        return Some(DenyReason::PrefixDoesNotCover);
    }
    judge_covering(cap, revoked, now)
}

/// Judges a cap whose prefix covers the path.
fn judge_covering(cap: &ReadCap, revoked: bool, now: Timestamp) -> Option<DenyReason> {
    if revoked {
        return Some(DenyReason::Revoked);
    }
    match cap.check_time(now) {
        Ok(()) => None,
        Err(Error::NotYetValid { .. }) => Some(DenyReason::NotYetValid),
        Err(_) => Some(DenyReason::Expired),
    }
}

/// Folds one cap's verdict into the running decision.
#[derive(Debug)]
struct Verdict<'a> {
    allow: Option<&'a ReadCap>,
    deny: DenyReason,
}

impl<'a> Verdict<'a> {
    fn new() -> Self {
        Self {
            allow: None,
            deny: DenyReason::NoCap,
        }
    }

    fn add(&mut self, cap: &'a ReadCap, verdict: Option<DenyReason>) {
        match verdict {
            None => {
                let longer = self
                    .allow
                    .is_none_or(|best| cap.prefix().len() > best.prefix().len());
                if longer {
                    self.allow = Some(cap);
                }
            }
            Some(reason) => {
                if reason.rank() > self.deny.rank() {
                    self.deny = reason;
                }
            }
        }
    }

    fn decision(self) -> Decision<'a> {
        match self.allow {
            Some(cap) => Decision::Allow(cap),
            None => Decision::Deny(self.deny),
        }
    }
}

/// May `requester` read `path` in `namespace` at `now`, given the
/// namespace's `caps` and `revocations`? A linear scan; see [`Grants`] for
/// the indexed form (same rule, same answers).
///
/// A cap allows the read when it is of `namespace`, names `requester` as
/// grantee, its prefix covers `path` component-wise, it is not revoked by a
/// revocation of the same namespace, and `issued_at <= now < expires_at`.
/// Caps and revocations of other namespaces are ignored.
pub fn may_read<'a>(
    namespace: &NamespaceId,
    path: &Path,
    requester: &NamespaceId,
    caps: &'a [ReadCap],
    revocations: &[Revocation],
    now: Timestamp,
) -> Decision<'a> {
    let mut verdict = Verdict::new();
    for cap in caps {
        if cap.namespace() != *namespace || cap.grantee() != *requester {
            continue;
        }
        let revoked = revocations.iter().any(|r| r.revokes(cap));
        verdict.add(cap, judge_cap(cap, revoked, path, now));
    }
    verdict.decision()
}

/// The caps of one grantee, indexed by prefix.
#[derive(Debug, Default, Clone)]
struct GranteeCaps {
    /// Distinct prefixes (encoded) and the indexes of their caps in
    /// `Grants::caps`.
    prefixes: Vec<(Box<[u8]>, Vec<usize>)>,
    /// Encoded prefix → position in `prefixes`.
    by_prefix: HashMap<Box<[u8]>, usize>,
}

impl GranteeCaps {
    fn insert(&mut self, prefix: &Path, index: usize) {
        let key: Box<[u8]> = prefix.encoded().into();
        match self.by_prefix.get(&key) {
            Some(&pos) => {
                if let Some((_, caps)) = self.prefixes.get_mut(pos) {
                    caps.push(index);
                }
            }
            None => {
                self.by_prefix.insert(key.clone(), self.prefixes.len());
                self.prefixes.push((key, vec![index]));
            }
        }
    }
}

/// An index of one namespace's read caps and revocations, for fast
/// [`may_read`](Self::may_read) decisions: caps are grouped by grantee, then
/// by prefix, so a decision looks at the requester's caps on the path's
/// ancestors only (a hash lookup per ancestor, or a scan of the requester's
/// few prefixes, whichever is shorter), never at every cap.
///
/// Measured by the bench scenario `caps` (250 grantees, 1,000 caps).
#[derive(Debug, Clone)]
pub struct Grants {
    namespace: NamespaceId,
    caps: Vec<ReadCap>,
    revoked_caps: Vec<bool>,
    revoked_ids: HashSet<CapId>,
    by_grantee: HashMap<NamespaceId, GranteeCaps>,
}

impl Grants {
    /// Indexes the caps and revocations of `namespace`; those of other
    /// namespaces are left out. All must have passed `verify()`.
    pub fn new(
        namespace: NamespaceId,
        caps: impl IntoIterator<Item = ReadCap>,
        revocations: impl IntoIterator<Item = Revocation>,
    ) -> Self {
        let mut grants = Self {
            namespace,
            caps: Vec::new(),
            revoked_caps: Vec::new(),
            revoked_ids: HashSet::new(),
            by_grantee: HashMap::new(),
        };
        for rev in revocations {
            grants.revoke(&rev);
        }
        for cap in caps {
            grants.insert(cap);
        }
        grants
    }

    /// Adds a verified cap (ignored if it is of another namespace or
    /// already present).
    pub fn insert(&mut self, cap: ReadCap) {
        if cap.namespace() != self.namespace {
            return;
        }
        let index = self.caps.len();
        let entry = self.by_grantee.entry(cap.grantee()).or_default();
        if let Some(&pos) = entry.by_prefix.get(cap.prefix().encoded()) {
            let duplicate = entry.prefixes.get(pos).is_some_and(|(_, ids)| {
                ids.iter()
                    .any(|&i| self.caps.get(i).is_some_and(|c| *c == cap))
            });
            if duplicate {
                return;
            }
        }
        entry.insert(cap.prefix(), index);
        self.revoked_caps.push(self.revoked_ids.contains(&cap.id()));
        self.caps.push(cap);
    }

    /// Applies a verified revocation (ignored if it is of another
    /// namespace). Takes effect at once.
    pub fn revoke(&mut self, revocation: &Revocation) {
        if revocation.namespace() != self.namespace {
            return;
        }
        let id = revocation.cap_id();
        self.revoked_ids.insert(id);
        for (cap, revoked) in self.caps.iter().zip(self.revoked_caps.iter_mut()) {
            if cap.id() == id {
                *revoked = true;
            }
        }
    }

    /// The namespace these grants are of.
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// Number of caps held (revoked ones included).
    pub fn len(&self) -> usize {
        self.caps.len()
    }

    /// Whether no cap is held.
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    /// Every cap held, revoked ones included.
    pub fn caps(&self) -> &[ReadCap] {
        &self.caps
    }

    /// Whether the cap with this id has been revoked.
    pub fn is_revoked(&self, id: &CapId) -> bool {
        self.revoked_ids.contains(id)
    }

    fn judge_indexes<'a>(&'a self, indexes: &[usize], now: Timestamp, verdict: &mut Verdict<'a>) {
        for &i in indexes {
            if let (Some(cap), Some(&revoked)) = (self.caps.get(i), self.revoked_caps.get(i)) {
                verdict.add(cap, judge_covering(cap, revoked, now));
            }
        }
    }

    /// May `requester` read `path` at `now`? The same rule and answers as
    /// [`may_read`](crate::may_read).
    pub fn may_read(&self, path: &Path, requester: &NamespaceId, now: Timestamp) -> Decision<'_> {
        let Some(grantee) = self.by_grantee.get(requester) else {
            return Decision::Deny(DenyReason::NoCap);
        };
        let mut verdict = Verdict::new();
        // The requester has caps: a path none of them covers is refused for
        // that reason.
        verdict.deny = DenyReason::PrefixDoesNotCover;
        // A path of depth d has d + 1 ancestors (itself and the root
        // included): scan the requester's prefixes when they are fewer,
        // otherwise look the ancestors up.
        if grantee.prefixes.len() <= path.len() + 1 {
            for (prefix, indexes) in &grantee.prefixes {
                if path.encoded().starts_with(prefix) {
                    self.judge_indexes(indexes, now, &mut verdict);
                }
            }
        } else {
            for ancestor in path.ancestors_encoded() {
                if let Some(&pos) = grantee.by_prefix.get(ancestor)
                    && let Some((_, indexes)) = grantee.prefixes.get(pos)
                {
                    self.judge_indexes(indexes, now, &mut verdict);
                }
            }
        }
        verdict.decision()
    }

    /// The grantees that belong to the scope of `prefix` at `now`: those
    /// holding a valid, unrevoked cap on exactly this prefix (there is one
    /// scope per granted prefix; a grantee of `/` is a member of the `/`
    /// scope, which also carries changes under `/photos`).
    pub fn grantees_of_scope(&self, prefix: &Path, now: Timestamp) -> BTreeSet<NamespaceId> {
        self.by_grantee
            .iter()
            .filter(|(_, g)| {
                g.by_prefix
                    .get(prefix.encoded())
                    .and_then(|&pos| g.prefixes.get(pos))
                    .is_some_and(|(_, indexes)| {
                        indexes.iter().any(|&i| {
                            matches!(
                                (self.caps.get(i), self.revoked_caps.get(i)),
                                (Some(cap), Some(&revoked)) if judge_covering(cap, revoked, now).is_none()
                            )
                        })
                    })
            })
            .map(|(grantee, _)| *grantee)
            .collect()
    }

    /// The prefixes that have at least one valid, unrevoked cap at `now`:
    /// the scopes the owner must keep.
    pub fn granted_prefixes(&self, now: Timestamp) -> BTreeSet<Path> {
        self.caps
            .iter()
            .zip(&self.revoked_caps)
            .filter(|(cap, revoked)| judge_covering(cap, **revoked, now).is_none())
            .map(|(cap, _)| cap.prefix().clone())
            .collect()
    }
}

/// The grantees that belong to the scope of (`namespace`, `prefix`) at
/// `now`; the linear form of [`Grants::grantees_of_scope`].
pub fn grantees_of_scope(
    namespace: &NamespaceId,
    prefix: &Path,
    caps: &[ReadCap],
    revocations: &[Revocation],
    now: Timestamp,
) -> BTreeSet<NamespaceId> {
    caps.iter()
        .filter(|cap| cap.namespace() == *namespace && cap.prefix() == prefix)
        .filter(|cap| {
            let revoked = revocations.iter().any(|r| r.revokes(cap));
            judge_covering(cap, revoked, now).is_none()
        })
        .map(ReadCap::grantee)
        .collect()
}

/// The scopes whose prefix covers `path` in `namespace`: a change at `path`
/// is published into each of them.
pub fn scopes_covering<'a>(
    namespace: &NamespaceId,
    path: &Path,
    scopes: impl IntoIterator<Item = &'a Scope>,
) -> Vec<&'a Scope> {
    scopes
        .into_iter()
        .filter(|s| s.covers(namespace, path))
        .collect()
}

/// Why a device may not act for a namespace.
///
/// When several certs name the device, the reason reported is the one
/// closest to allowing: [`MissingRight`](Self::MissingRight) before
/// [`NotYetValid`](Self::NotYetValid) before [`Expired`](Self::Expired)
/// before [`Revoked`](Self::Revoked) before [`NoCert`](Self::NoCert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceDenyReason {
    /// No cert of this namespace names the device.
    NoCert,
    /// Every cert of the device is revoked.
    Revoked,
    /// Every unrevoked cert has expired.
    Expired,
    /// An unrevoked cert exists but is dated in the future.
    NotYetValid,
    /// A valid cert exists but lacks the right.
    MissingRight,
}

impl DeviceDenyReason {
    fn rank(self) -> u8 {
        match self {
            Self::NoCert => 0,
            Self::Revoked => 1,
            Self::Expired => 2,
            Self::NotYetValid => 3,
            Self::MissingRight => 4,
        }
    }
}

/// The answer to "may this device act for this namespace now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision<'a> {
    /// Allowed by this cert.
    Allow(&'a DeviceCert),
    /// Refused, with the reason.
    Deny(DeviceDenyReason),
}

impl<'a> DeviceDecision<'a> {
    /// Whether the device is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The allowing cert, if allowed.
    pub fn cert(&self) -> Option<&'a DeviceCert> {
        match self {
            Self::Allow(cert) => Some(cert),
            Self::Deny(_) => None,
        }
    }
}

/// May `device` use `rights` for `namespace` at `now`, given the
/// namespace's device `certs` and `device_revocations`? A cert allows it
/// when it is of `namespace`, names `device`, is not revoked (see
/// [`DeviceRevocation`]), `issued_at <= now < expires_at`, and it holds
/// every right in `rights`.
pub fn may_act<'a>(
    namespace: &NamespaceId,
    device: &DeviceId,
    rights: Rights,
    certs: &'a [DeviceCert],
    device_revocations: &[DeviceRevocation],
    now: Timestamp,
) -> DeviceDecision<'a> {
    let mut deny = DeviceDenyReason::NoCert;
    for cert in certs {
        if cert.namespace() != *namespace || cert.device() != *device {
            continue;
        }
        let reason = match cert.check_authority(rights, device_revocations, now) {
            Ok(()) => return DeviceDecision::Allow(cert),
            Err(Error::Revoked { .. }) => DeviceDenyReason::Revoked,
            Err(Error::NotYetValid { .. }) => DeviceDenyReason::NotYetValid,
            Err(Error::Expired { .. }) => DeviceDenyReason::Expired,
            Err(_) => DeviceDenyReason::MissingRight,
        };
        if reason.rank() > deny.rank() {
            deny = reason;
        }
    }
    DeviceDecision::Deny(deny)
}

/// May `device` write into `namespace` at `now`? [`may_act`] with
/// [`Rights::WRITE`]. A node never accepts a write from a device that is
/// not allowed here.
pub fn may_write<'a>(
    namespace: &NamespaceId,
    device: &DeviceId,
    certs: &'a [DeviceCert],
    device_revocations: &[DeviceRevocation],
    now: Timestamp,
) -> DeviceDecision<'a> {
    may_act(
        namespace,
        device,
        Rights::WRITE,
        certs,
        device_revocations,
        now,
    )
}

/// Whether a tombstone from a peer may be applied at `now`: its signatures
/// and signer ([`Tombstone::verify`]), then time and device revocations
/// ([`Tombstone::check_authority`]).
///
/// # Errors
/// The first check that fails: [`Error::BadSignature`],
/// [`Error::InvalidKey`], [`Error::Unauthorized`], [`Error::NotYetValid`],
/// [`Error::Expired`] or [`Error::Revoked`].
pub fn tombstone_validity(
    tombstone: &Tombstone,
    device_revocations: &[DeviceRevocation],
    now: Timestamp,
) -> Result<()> {
    tombstone.verify()?;
    tombstone.check_authority(device_revocations, now)
}

/// The first of `tombstones` that deletes the document at `path` in
/// `namespace` created at `created_at` (see [`Tombstone::covers`]), if any.
pub fn deleted_by<'a>(
    namespace: &NamespaceId,
    path: &Path,
    created_at: Timestamp,
    tombstones: impl IntoIterator<Item = &'a Tombstone>,
) -> Option<&'a Tombstone> {
    tombstones
        .into_iter()
        .find(|t| t.covers(namespace, path, created_at))
}
