//! Hashes in flight per client address: no one address may hold more than
//! a few places in the bcrypt queue, so a client looping logins (its own
//! correct ones included) cannot fill the queue that everyone shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::AuthError;

/// Hashes one address may have in flight, running or waiting (about two
/// workers' worth and a short queue), so a prototype's test suite with a
/// few parallel workers on one machine is never refused.
pub const HASHES_PER_ADDRESS: usize = 6;

/// The places each address holds.
#[derive(Debug)]
pub struct HashSlots {
    per_address: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One place, given back when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a HashSlots,
    ip: IpAddr,
}

impl HashSlots {
    /// Places for `per_address` hashes per address.
    pub fn new(per_address: usize) -> HashSlots {
        HashSlots {
            per_address: per_address.max(1),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A place for a hash of `ip`'s, or 429 (retry in a second) when it
    /// holds all of its places already.
    pub fn enter(&self, ip: IpAddr) -> Result<Slot<'_>, AuthError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(ip).or_insert(0);
        if *count >= self.per_address {
            return Err(AuthError::Throttled(Duration::from_secs(1)));
        }
        *count += 1;
        Ok(Slot { slots: self, ip })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_places_and_gives_them_back() {
        let slots = HashSlots::new(HASHES_PER_ADDRESS);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<Slot> = (0..HASHES_PER_ADDRESS)
            .map(|_| slots.enter(a).unwrap())
            .collect();
        assert!(matches!(slots.enter(a), Err(AuthError::Throttled(_))));
        assert!(slots.enter(b).is_ok());
        drop(held);
        assert!(slots.enter(a).is_ok());
        assert!(slots.held.lock().unwrap().is_empty());
    }
}
