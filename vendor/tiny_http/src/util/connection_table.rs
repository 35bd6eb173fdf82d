//! Counts open connections, in all and per client address (fork addition).
//!
//! Upstream accepts every connection and gives each a thread, so idle
//! connections alone exhaust file descriptors or threads. Each admitted
//! connection holds a [`Slot`] until it closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The open connections and their caps.
#[derive(Clone)]
pub(crate) struct ConnectionTable {
    counts: Arc<Mutex<Counts>>,
    max: usize,
    max_per_ip: usize,
}

/// One admitted connection; its count is given back on drop.
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: Option<IpAddr>,
}

impl ConnectionTable {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> ConnectionTable {
        ConnectionTable {
            counts: Arc::default(),
            max,
            max_per_ip,
        }
    }

    /// A slot for a new connection from `ip` (none for a Unix socket), or
    /// `None` when a cap is reached.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max {
            return None;
        }
        if let Some(ip) = ip {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return None;
            }
            *n += 1;
        }
        counts.total += 1;
        Some(Slot {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_give_back() {
        let table = ConnectionTable::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = table.admit(Some(a)).unwrap();
        let _a2 = table.admit(Some(a)).unwrap();
        assert!(table.admit(Some(a)).is_none(), "per-address cap");
        let _b1 = table.admit(Some(b)).unwrap();
        assert!(table.admit(Some(b)).is_none(), "total cap");
        assert!(table.admit(None).is_none(), "total cap for Unix sockets");
        assert_eq!(table.open(), 3);
        drop(a1);
        assert_eq!(table.open(), 2);
        assert!(table.admit(Some(a)).is_some());
        // Addresses with no connection left are forgotten.
        let table = ConnectionTable::new(10, 10);
        drop(table.admit(Some(b)));
        assert!(table.counts.lock().unwrap().per_ip.is_empty());
    }
}
