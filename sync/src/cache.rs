//! The cache of friends' blob content: bounded in size, least recently used
//! first out. Entries stay when their content is evicted, so an evicted blob
//! is fetched again from its owner when read.

use std::collections::VecDeque;

use kith_store::{BlobHash, Store};
use kith_types::NamespaceId;
use parking_lot::Mutex;

use crate::error::Result;

/// Friends' blob content held locally, oldest use first.
#[derive(Debug)]
pub(crate) struct BlobCache {
    limit: u64,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    order: VecDeque<(BlobHash, u64)>,
    total: u64,
}

impl Lru {
    fn touch(&mut self, hash: BlobHash, size: u64) {
        if let Some(i) = self.order.iter().position(|(h, _)| *h == hash) {
            let item = self.order.remove(i);
            self.order.extend(item);
        } else {
            self.order.push_back((hash, size));
            self.total += size;
        }
    }
}

impl BlobCache {
    /// Builds the cache from what the store holds: content referenced only by
    /// other namespaces than `own`.
    pub(crate) fn load(store: &Store, own: &NamespaceId, limit: u64) -> Result<Self> {
        let mut lru = Lru::default();
        for ns in store.namespaces()? {
            if ns == *own {
                continue;
            }
            let mut after = None;
            loop {
                let page = store.list(&ns, &kith_types::Path::root(), after.as_ref(), 1000)?;
                for (_, entry) in &page.entries {
                    if let kith_store::EntryKind::Blob { hash, size, .. } = &entry.kind
                        && store.has_blob(hash)
                        && !store.blob_namespaces(hash)?.contains(own)
                    {
                        lru.touch(*hash, *size);
                    }
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        Ok(Self {
            limit,
            inner: Mutex::new(lru),
        })
    }

    /// Bytes of friends' blob content held.
    pub(crate) fn size(&self) -> u64 {
        self.inner.lock().total
    }

    /// Records a use of a friend's blob (read or fetched), then evicts the
    /// least recently used others while over the limit. Blocks (removes
    /// files). Content this node's own namespace references is never evicted.
    pub(crate) fn used(
        &self,
        store: &Store,
        own: &NamespaceId,
        hash: BlobHash,
        size: u64,
    ) -> Result<()> {
        if store.blob_namespaces(&hash)?.contains(own) {
            return Ok(());
        }
        let mut lru = self.inner.lock();
        lru.touch(hash, size);
        while lru.total > self.limit && lru.order.len() > 1 {
            let Some((victim, victim_size)) = lru.order.pop_front() else {
                break;
            };
            lru.total -= victim_size;
            if !store.blob_namespaces(&victim)?.contains(own) {
                store.purge_blob(&victim)?;
                tracing::debug!(%victim, "evicted a friend's blob from the cache");
            }
        }
        Ok(())
    }

    /// Removes every friend's blob content held; returns the bytes freed.
    pub(crate) fn purge(&self, store: &Store, own: &NamespaceId) -> Result<u64> {
        let mut lru = self.inner.lock();
        let mut freed = 0;
        for (hash, size) in lru.order.drain(..) {
            if !store.blob_namespaces(&hash)?.contains(own) && store.purge_blob(&hash)? {
                freed += size;
            }
        }
        lru.total = 0;
        Ok(freed)
    }
}
