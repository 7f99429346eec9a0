//! Runnable kith programs, one per journey, under `src/bin/`.
