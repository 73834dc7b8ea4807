//! The sign-in limiter: after `MAX_FAILURES` wrong admin tokens from one client within
//! `WINDOW`, every token check from that client — right or wrong, `POST /api/session` or
//! `Authorization: Bearer` — answers 429 until the window ends. Without it the token could be
//! guessed at hundreds of tries a second.
//!
//! A client is its IP address; an IPv6 client is its /64, the block one host usually owns.
//! Trade-offs: clients behind one NAT or reverse proxy share a budget, so a neighbour's wrong
//! tries lock them out too (for at most `WINDOW`); the map is bounded to `MAX_CLIENTS`, and when
//! it is full of live windows the oldest is forgotten, so an attacker with more addresses than
//! that gets more tries (still `MAX_FAILURES` per address per window). A success does not reset
//! the count: a legitimate client sharing the address must not refill an attacker's budget.
//! State is in memory, per replica, gone on restart. This is a cold path, so a `Mutex` is fine.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens a client may send per window.
const MAX_FAILURES: u32 = 5;
/// How long failures count, from the first one.
const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at once (a few hundred bytes of memory in all per thousand).
const MAX_CLIENTS: usize = 4096;

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed token checks per client.
#[derive(Default)]
pub struct SignInLimit {
    clients: Mutex<HashMap<IpAddr, Window>>,
}

/// The address a limit is kept for: the IP, or the /64 of an IPv6 address. Unknown peers (a
/// router served without connection info) share one key.
pub fn client_key(peer: Option<SocketAddr>) -> IpAddr {
    match peer.map(|p| p.ip().to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

impl SignInLimit {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` when `client` has used up its wrong tries for the current window.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.lock().get(&client) {
            Some(w) if w.failures >= MAX_FAILURES && now < w.started + WINDOW => {
                Err(w.started + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts one wrong token from `client`.
    pub fn fail(&self, client: IpAddr, now: Instant) {
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, w| now < w.started + WINDOW);
            if clients.len() >= MAX_CLIENTS {
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k);
                oldest.map(|k| clients.remove(&k));
            }
        }
        let w = clients.entry(client).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + WINDOW {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        client_key(Some(SocketAddr::new(s.parse().expect("ip"), 1)))
    }

    #[test]
    fn the_window_closes_after_the_limit_and_opens_when_it_ends() {
        let limit = SignInLimit::default();
        let (a, b, t0) = (ip("192.0.2.1"), ip("192.0.2.2"), Instant::now());
        for i in 0..MAX_FAILURES {
            assert!(limit.check(a, t0).is_ok(), "try {i} is allowed");
            limit.fail(a, t0);
        }
        let wait = limit
            .check(a, t0 + Duration::from_secs(10))
            .expect_err("limited");
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limit.check(b, t0).is_ok(), "another client is not limited");
        assert!(limit.check(a, t0 + WINDOW).is_ok(), "the window ended");
        limit.fail(a, t0 + WINDOW);
        assert!(
            limit.check(a, t0 + WINDOW).is_ok(),
            "a new window counts from zero"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::2"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[test]
    fn the_map_stays_bounded() {
        let limit = SignInLimit::default();
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let a = IpAddr::from(i.to_be_bytes());
            limit.fail(a, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(limit.lock().len(), MAX_CLIENTS);
    }
}
