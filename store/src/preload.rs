//! Loading the new documents of a batch on a second thread while the
//! applying thread writes.
//!
//! [`Store::apply_changes_batch`](crate::Store::apply_changes_batch) applies
//! documents in order under the namespace's lock. Most of the time of a
//! fresh catch-up is Automerge's load of each arriving document (which
//! parses and checks it), and a document that is new to this store loads
//! into nothing: its load depends only on its bytes. A [`Preloader`] lets a
//! helper thread load such documents ahead of the writer, at most
//! [`WINDOW`] ahead, while the writer writes the ones before them.
//!
//! The helper only saves time, it decides nothing: the writer checks each
//! document under the lock exactly as before and uses a preloaded result
//! only where its own check finds that the document loads into nothing (no
//! copy at the path, or an older one it replaces). A result the writer does
//! not use is dropped; a document the helper has not reached (or skipped)
//! is loaded by the writer itself, with the same call.

use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::{AutoCommit, AutomergeError, LoadOptions, OnPartialLoad, VerificationMode};
use parking_lot::{Condvar, Mutex};

/// How many documents the helper may load ahead of the writer: enough to
/// keep it busy, few enough that loaded documents waiting do not pile up
/// in memory.
pub(crate) const WINDOW: usize = 64;

/// The fewest documents in a batch for which a helper thread is started:
/// below it (a live push's one document, a few edits) the thread would cost
/// more than it saves.
pub(crate) const MIN_DOCS: usize = 16;

/// Loads `changes` as a document received into nothing: exactly what
/// `AutoCommit::default().load_incremental(changes)` does (changes whose
/// dependencies are missing are queued, not refused; head hashes are
/// checked), without building and dropping the empty document first.
pub(crate) fn load_new(changes: &[u8]) -> Result<AutoCommit, AutomergeError> {
    AutoCommit::load_with_options(
        changes,
        LoadOptions::new()
            .on_partial_load(OnPartialLoad::Ignore)
            .verification_mode(VerificationMode::Check),
    )
}

/// Whether a second thread is worth starting on this machine.
pub(crate) fn worth_a_helper(docs: usize) -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    docs >= MIN_DOCS
        && *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) > 1
}

/// How a document of the batch is loaded: `None` where it should not be
/// (the writer then loads it itself if it needs it).
pub(crate) type Load<'a> = dyn Fn(usize) -> Option<Result<AutoCommit, AutomergeError>> + Sync + 'a;

enum Slot {
    /// Nobody has taken it yet.
    Free,
    /// The helper is loading it.
    Loading,
    /// It was loaded ahead (boxed: a slot per document of the batch stays
    /// small).
    Loaded(Box<Result<AutoCommit, AutomergeError>>),
    /// The helper skipped it, or the writer took it.
    Taken,
}

/// The documents of one batch, shared by the writer and the helper.
pub(crate) struct Preloader {
    slots: Vec<Mutex<Slot>>,
    /// Signalled when a slot is loaded and when the helper stops.
    loaded: Condvar,
    /// The next index the helper looks at.
    next: AtomicUsize,
    /// How far the writer has come (`usize::MAX` once it has stopped), and
    /// the signal that it moved.
    writer: Mutex<usize>,
    moved: Condvar,
    /// Whether the helper has stopped (finished, or unwound).
    helper_gone: Mutex<bool>,
}

impl Preloader {
    /// A preloader for `n` documents.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| Mutex::new(Slot::Free)).collect(),
            loaded: Condvar::new(),
            next: AtomicUsize::new(0),
            writer: Mutex::new(0),
            moved: Condvar::new(),
            helper_gone: Mutex::new(false),
        }
    }

    /// The helper's loop: loads, in order, each document `load` accepts
    /// (`None`: skip it) that the writer has not taken, staying at most
    /// [`WINDOW`] ahead of the writer, until every document is taken or the
    /// writer stops.
    pub(crate) fn run(&self, load: &Load<'_>) {
        // Whatever way this returns (a panic included), the writer must not
        // wait for it any more.
        let _gone = HelperGone(self);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.slots.len() {
                return;
            }
            {
                let mut at = self.writer.lock();
                while *at != usize::MAX && i >= at.saturating_add(WINDOW) {
                    self.moved.wait(&mut at);
                }
                if *at == usize::MAX {
                    return;
                }
            }
            self.load_into(i, load);
        }
    }

    /// Loads document `i` into its slot if nobody has taken it.
    fn load_into(&self, i: usize, load: &Load<'_>) {
        {
            let mut slot = self.slots[i].lock();
            if !matches!(*slot, Slot::Free) {
                return;
            }
            *slot = Slot::Loading;
        }
        let result = load(i);
        *self.slots[i].lock() = result.map_or(Slot::Taken, |r| Slot::Loaded(Box::new(r)));
        self.loaded.notify_all();
    }

    /// The writer takes document `i` (in order): the helper's result if it
    /// loaded it, `None` if the writer must load it itself. While the
    /// helper is still loading it, the writer loads a later document that
    /// nobody has taken yet, if there is one within the window, rather than
    /// wait idle.
    pub(crate) fn take(
        &self,
        i: usize,
        load: &Load<'_>,
    ) -> Option<Result<AutoCommit, AutomergeError>> {
        {
            let mut at = self.writer.lock();
            *at = i;
        }
        self.moved.notify_one();
        loop {
            let mut slot = self.slots.get(i)?.lock();
            match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Loaded(result) => return Some(*result),
                Slot::Free | Slot::Taken => return None,
                Slot::Loading => *slot = Slot::Loading,
            }
            if *self.helper_gone.lock() {
                // It unwound while loading: load here instead.
                *slot = Slot::Taken;
                return None;
            }
            drop(slot);
            let ahead = self.next.fetch_add(1, Ordering::Relaxed);
            if ahead < self.slots.len().min(i.saturating_add(WINDOW)) {
                self.load_into(ahead, load);
                continue;
            }
            // Nothing left to load ahead (an index taken past the window is
            // loaded by the writer when it comes to it): wait.
            let mut slot = self.slots[i].lock();
            while matches!(*slot, Slot::Loading) && !*self.helper_gone.lock() {
                self.loaded.wait(&mut slot);
            }
        }
    }

    /// The writer is done (or gave up): the helper stops.
    pub(crate) fn stop(&self) {
        *self.writer.lock() = usize::MAX;
        self.moved.notify_all();
    }
}

/// Marks the helper gone when it returns or unwinds, and wakes a writer
/// waiting for it.
struct HelperGone<'a>(&'a Preloader);

impl Drop for HelperGone<'_> {
    fn drop(&mut self) {
        *self.0.helper_gone.lock() = true;
        // Take each slot's lock once, so that a writer between its check of
        // `helper_gone` and its wait is waiting by now and is woken.
        for slot in &self.0.slots {
            drop(slot.lock());
        }
        self.0.loaded.notify_all();
    }
}

/// Stops the helper when the writer leaves, by any way (an early error
/// included), so that the thread scope can end.
pub(crate) struct StopOnDrop<'a>(pub(crate) &'a Preloader);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_bytes(n: i64) -> Vec<u8> {
        let mut doc = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut doc, automerge::ROOT, "n", n).expect("put");
        doc.save()
    }

    #[test]
    fn the_writer_gets_each_document_once_whoever_loads_it() {
        let docs: Vec<Vec<u8>> = (0..500).map(doc_bytes).collect();
        let pre = Preloader::new(docs.len());
        let mut by_helper = 0;
        let mut by_writer = 0;
        let load = |i: usize| (!i.is_multiple_of(7)).then(|| load_new(&docs[i]));
        std::thread::scope(|s| {
            s.spawn(|| pre.run(&load));
            let _stop = StopOnDrop(&pre);
            for (i, bytes) in docs.iter().enumerate() {
                let mut doc = match pre.take(i, &load) {
                    Some(r) => {
                        by_helper += 1;
                        r.expect("load")
                    }
                    None => {
                        by_writer += 1;
                        load_new(bytes).expect("load")
                    }
                };
                let mut expected = AutoCommit::load(bytes).expect("load");
                assert_eq!(doc.get_heads(), expected.get_heads(), "document {i}");
            }
        });
        assert_eq!(by_helper + by_writer, docs.len());
        // Every seventh was skipped, so the writer loaded it in line.
        assert!(by_writer >= docs.len() / 7, "writer loaded {by_writer}");
    }

    #[test]
    fn a_helper_that_panics_leaves_the_writer_to_load() {
        let docs: Vec<Vec<u8>> = (0..100).map(doc_bytes).collect();
        let pre = Preloader::new(docs.len());
        let writer = std::thread::current().id();
        let load = |i: usize| {
            let on_helper = std::thread::current().id() != writer;
            assert!(
                !on_helper || i < 5,
                "the helper fails past the fifth document"
            );
            Some(load_new(&docs[i]))
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| pre.run(&load));
                let _stop = StopOnDrop(&pre);
                for (i, bytes) in docs.iter().enumerate() {
                    let mut doc = match pre.take(i, &load) {
                        Some(r) => r.expect("load"),
                        None => load_new(bytes).expect("load"),
                    };
                    let mut expected = AutoCommit::load(bytes).expect("load");
                    assert_eq!(doc.get_heads(), expected.get_heads());
                }
            });
        }));
        // The scope re-raises the helper's panic, but only after the
        // writer went through every document without hanging.
        assert!(result.is_err());
    }

    #[test]
    fn a_preloaded_document_is_what_loading_into_nothing_gives() {
        let bytes = doc_bytes(7);
        let mut into_nothing = AutoCommit::default();
        into_nothing.load_incremental(&bytes).expect("load");
        assert_eq!(
            load_new(&bytes).expect("load").get_heads(),
            into_nothing.get_heads()
        );
        // Bytes that are not Automerge are refused by both.
        assert!(load_new(b"not automerge").is_err());
        assert!(
            AutoCommit::default()
                .load_incremental(b"not automerge")
                .is_err()
        );
    }
}
