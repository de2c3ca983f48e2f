//! Login sessions: each login gets a random 256-bit id (the cookie's value), kept in
//! the collector's memory until it expires (`MONITOR_SESSION_TTL`,
//! [`DEFAULT_SESSION_TTL`]) or is revoked by logging out.
//!
//! The map holds the SHA-256 of each id, never the id itself, so looking one up takes
//! no time that depends on how much of a guess matches a live id. It holds at most
//! [`MAX_SESSIONS`]; a login past that first drops expired sessions, then the oldest.
//! Sessions live in this process only: a restart ends every session, which is also
//! how a new `MONITOR_TOKEN` revokes them all; with several collectors behind one
//! load balancer a session is known only to the collector that created it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// How long a login lasts by default. Knob: `MONITOR_SESSION_TTL` (`12h`, `30m`, ...).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest `MONITOR_SESSION_TTL` accepted.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Sessions held at once (~100 bytes each); past it a login replaces the oldest.
pub const MAX_SESSIONS: usize = 10_000;
/// Random bytes in a session id (hex in the cookie: 64 characters).
const ID_BYTES: usize = 32;

/// The live sessions of this process.
pub struct Sessions {
    ttl: Duration,
    /// SHA-256 of the id → when it expires.
    live: Mutex<HashMap<[u8; 32], Instant>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// How long a new session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session; its id (64 hex characters) goes into the cookie.
    pub fn create(&self) -> String {
        let mut bytes = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, expires| *expires > now);
        }
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(key(&id), now + self.ttl);
        id
    }

    /// Whether `id` is a live session (an expired one is dropped on the way).
    pub fn is_live(&self, id: &str) -> bool {
        if id.len() != ID_BYTES * 2 {
            return false;
        }
        let key = key(id);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(&key) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                live.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Ends `id` (logging out); unknown ids are ignored.
    pub fn revoke(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }

    /// Sessions held (live or expired but not yet dropped).
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_live_until_revoked_or_expired() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (a, b) = (sessions.create(), sessions.create());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(sessions.is_live(&a) && sessions.is_live(&b));
        assert!(!sessions.is_live(&"0".repeat(64)) && !sessions.is_live("x"));
        sessions.revoke(&a);
        assert!(!sessions.is_live(&a) && sessions.is_live(&b));

        let short = Sessions::new(Duration::from_millis(20));
        let id = short.create();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!short.is_live(&id));
        assert!(short.is_empty(), "an expired session is dropped when seen");
    }

    #[test]
    fn the_map_is_bounded_and_drops_the_oldest() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.create();
        let ids: Vec<String> = (0..MAX_SESSIONS).map(|_| sessions.create()).collect();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(!sessions.is_live(&first), "the oldest made room");
        assert!(ids.iter().all(|id| sessions.is_live(id)));
    }
}
