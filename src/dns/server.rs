//! The [`Handler`] that transports call: loads the current snapshot once per
//! query and runs the answer engine.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::answer::{self, Client, Outcome};
use super::transport::{Handler, Transport};
use crate::select::Rng;
use crate::snapshot::Snapshot;

/// The current snapshot, swapped atomically on reload.
pub struct Shared {
    /// The snapshot every query reads.
    pub current: ArcSwap<Snapshot>,
}

impl Shared {
    /// Start with `snap`.
    pub fn new(snap: Snapshot) -> Arc<Self> {
        Arc::new(Shared {
            current: ArcSwap::from_pointee(snap),
        })
    }
}

thread_local! {
    static RNG: RefCell<Option<Rng>> = const { RefCell::new(None) };
}

fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5EED);
    h.finish()
}

impl Handler for Shared {
    fn handle(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        let snap = self.current.load();
        RNG.with(|cell| {
            let mut slot = cell.borrow_mut();
            let rng = slot.get_or_insert_with(|| {
                Rng::seeded(snap.settings.random_seed.unwrap_or_else(random_seed))
            });
            let client = Client {
                addr: client,
                transport,
            };
            !matches!(
                answer::answer(&snap, query, client, rng, out),
                Outcome::Dropped
            )
        })
    }
}
