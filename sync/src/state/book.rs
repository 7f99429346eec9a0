//! The live-push scopes this node holds, as data.

use std::collections::HashMap;

use kith_caps::{Roster, Scope};
use kith_store::{RecordKind, Store};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::error::Result;

use super::records::decode_held;

/// The scopes this node holds: its own namespace's and its friends'.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScopeBook {
    pub(super) held: HashMap<(NamespaceId, Path), (Scope, Roster)>,
}

impl ScopeBook {
    /// Every scope held, with its roster.
    pub(crate) fn all(&self) -> impl Iterator<Item = &(Scope, Roster)> {
        self.held.values()
    }

    /// The scopes of `ns`.
    pub(crate) fn of(&self, ns: &NamespaceId) -> Vec<(Scope, Roster)> {
        self.held
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Loads the held scopes; damaged records are logged and skipped.
pub(crate) fn load_book(store: &Store) -> Result<ScopeBook> {
    let mut book = ScopeBook::default();
    for (ns, _, bytes) in store.all_records(RecordKind::Scope)? {
        match decode_held(&bytes) {
            Some((scope, roster)) if scope.namespace() == ns => {
                book.held
                    .insert((scope.namespace(), scope.prefix().clone()), (scope, roster));
            }
            _ => tracing::error!("ignoring a damaged stored scope"),
        }
    }
    Ok(book)
}

/// Device ids on the rosters of held scopes (admitted by the gate).
pub(crate) fn roster_members(book: &ScopeBook) -> Vec<DeviceId> {
    book.all()
        .flat_map(|(_, r)| r.members().iter().copied())
        .collect()
}
