//! A cancellation flag shared between a signal handler (the binary's Ctrl-C handler) and the
//! pump, which checks it while copying and then stops both children and cleans up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cheap, cloneable cancellation flag. Once cancelled it stays cancelled.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every pump holding this flag to stop. Safe to call from a signal-handler thread.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
