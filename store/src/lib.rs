//! kith's store.
