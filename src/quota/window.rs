//! A fixed-window counter in one `AtomicU64`: the window's id in the high 24 bits and the count
//! in the low 40, so reading "which window" and "how many" is one load, and taking is one
//! compare-and-swap. No lock, no allocation.
//!
//! Trade-off: a fixed window admits up to twice its limit across a boundary (the end of one
//! minute and the start of the next), where a sliding log would not; in exchange it costs eight
//! bytes and one CAS, and its reset time is exact, which is what the `x-ratelimit-reset-*`
//! headers tell clients. The id keeps 24 bits: a counter left untouched for exactly 2^24
//! windows (32 years of minutes) would read its old count as current.

use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const ID_MASK: u64 = (1 << 24) - 1;

/// One minute and one day, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

/// The window of length `len_ms` that `now_ms` falls in, and the milliseconds until it ends.
pub fn window_at(now_ms: i64, len_ms: i64) -> (u64, i64) {
    let id = now_ms.div_euclid(len_ms);
    let reset = (id + 1) * len_ms - now_ms;
    ((id as u64) & ID_MASK, reset)
}

fn pack(id: u64, count: u64) -> u64 {
    (id << COUNT_BITS) | count.min(COUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> COUNT_BITS, v & COUNT_MASK)
}

/// True when window `a` comes after window `b` (24-bit ids, compared modulo wrap-around).
fn newer(a: u64, b: u64) -> bool {
    a != b && (a.wrapping_sub(b) & ID_MASK) < (1 << 23)
}

/// The window a change for window `id` lands in, and its count: `id`'s own, or a newer window
/// the counter already holds (a caller that read the clock just before a boundary must not
/// wipe the new window's count by writing its old id over it). An empty counter holds no
/// window (a fresh one reads as window 0).
fn target(cur: u64, id: u64) -> (u64, u64) {
    match unpack(cur) {
        (w, c) if w == id || (c > 0 && newer(w, id)) => (w, c),
        _ => (id, 0),
    }
}

#[derive(Debug, Default)]
pub struct Window(AtomicU64);

impl Window {
    /// The count in window `id` (0 when the counter still holds an older window).
    pub fn used(&self, id: u64) -> u64 {
        match unpack(self.0.load(Ordering::Acquire)) {
            (w, c) if w == id => c,
            _ => 0,
        }
    }

    /// Adds `n` to window `id` if that keeps the count, plus `others` (what the rest of the
    /// fleet counted in this window, as of the last sync; 0 on one replica), at or below `limit`
    /// and the window is not full already. Returns the window the count landed in (`id`, or the
    /// newer window the counter already holds: give back or correct there) and this counter's
    /// count after.
    ///
    /// # Errors
    /// The count already there plus `others`, when `n` more would pass the limit.
    pub fn take(&self, id: u64, n: u64, limit: u64, others: u64) -> Result<(u64, u64), u64> {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (id, own) = target(cur, id);
            let used = own.saturating_add(others);
            let after = used.saturating_add(n);
            // A full window refuses even a request estimated at nothing (an empty prompt).
            if after > limit || used >= limit {
                return Err(used);
            }
            match self.0.compare_exchange_weak(
                cur,
                pack(id, own.saturating_add(n)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((id, own.saturating_add(n))),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Sets window `id`'s count to `count`, whatever the counter held (the fleet's share,
    /// written by the sync only).
    pub fn set(&self, id: u64, count: u64) {
        self.0.store(pack(id & ID_MASK, count), Ordering::Release);
    }

    /// Adds `delta` (negative: gives back) to window `id`. A window that has since been
    /// replaced is left alone when giving back; a positive `delta` for an older window goes to
    /// `id` all the same (usage learnt late is counted when it is learnt).
    pub fn add(&self, id: u64, delta: i64) {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (w, base) = target(cur, id);
            if w != id && delta <= 0 {
                return;
            }
            let next = if delta >= 0 {
                base.saturating_add(delta.unsigned_abs())
            } else {
                base.saturating_sub(delta.unsigned_abs())
            };
            match self.0.compare_exchange_weak(
                cur,
                pack(w, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Requests in flight.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Takes a slot if fewer than `limit` are taken.
    ///
    /// # Errors
    /// The slots taken, when all `limit` are.
    pub fn enter(&self, limit: u64) -> Result<u64, u64> {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur >= limit {
                return Err(cur);
            }
            match self
                .0
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(cur + 1),
                Err(seen) => cur = seen,
            }
        }
    }

    pub fn leave(&self) {
        // Never below zero, even if a slot were given back twice.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }
}

/// The rest of the fleet's requests in flight on one scope, as of the last sync, valid until a
/// deadline: a share the sync stops renewing (the store unreachable) lapses rather than holding
/// slots forever. Two atomics, stored count first: a reader that pairs a new count with the
/// old deadline is off by one sync's change, as any reader between two syncs is.
#[derive(Debug, Default)]
pub struct Held {
    n: AtomicU64,
    until_ms: std::sync::atomic::AtomicI64,
}

impl Held {
    /// The share at `now_ms` (0 once its deadline has passed, or before any sync).
    pub fn get(&self, now_ms: i64) -> u64 {
        if now_ms < self.until_ms.load(Ordering::Acquire) {
            self.n.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Sets the share to `n` until `until_ms` (the sync only).
    pub fn set(&self, n: u64, until_ms: i64) {
        self.n.store(n, Ordering::Release);
        self.until_ms.store(until_ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_admits_up_to_the_limit_exactly() {
        let w = Window::default();
        for i in 1..=3 {
            assert_eq!(w.take(7, 1, 3, 0), Ok((7, i)));
        }
        assert_eq!(w.take(7, 1, 3, 0), Err(3), "the fourth of three");
        assert_eq!(w.take(8, 1, 3, 0), Ok((8, 1)), "a new window starts at 0");
        assert_eq!(w.used(7), 0, "the old window is gone");
    }

    #[test]
    fn a_take_that_would_pass_the_limit_takes_nothing() {
        let w = Window::default();
        assert_eq!(w.take(1, 8, 10, 0), Ok((1, 8)));
        assert_eq!(w.take(1, 3, 10, 0), Err(8));
        assert_eq!(w.used(1), 8);
        assert_eq!(w.take(1, 2, 10, 0), Ok((1, 10)));
        assert_eq!(w.take(1, 0, 10, 0), Err(10), "a full window refuses even 0");
    }

    #[test]
    fn others_fill_the_limit_but_only_this_counter_is_counted() {
        let w = Window::default();
        assert_eq!(w.take(7, 1, 5, 3), Ok((7, 1)), "1 own + 3 others of 5");
        assert_eq!(w.take(7, 1, 5, 3), Ok((7, 2)));
        assert_eq!(
            w.take(7, 1, 5, 3),
            Err(5),
            "the fleet's count, as the message shows"
        );
        assert_eq!(w.used(7), 2, "the others' share is never stored here");
        assert_eq!(w.take(7, 1, 5, 9), Err(11), "others alone past the limit");
        let fleet = Window::default();
        fleet.set(7, 3);
        assert_eq!(
            (fleet.used(7), fleet.used(8)),
            (3, 0),
            "a share is for its window"
        );
    }

    #[test]
    fn a_late_caller_never_wipes_a_newer_window() {
        let w = Window::default();
        w.take(2, 7, 100, 0).expect("room");
        // Callers that read the clock just before the boundary, acting after it.
        assert_eq!(
            w.take(1, 1, 100, 0),
            Ok((2, 8)),
            "a late take says it landed in the newer window"
        );
        w.add(1, 3);
        w.add(1, -5);
        assert_eq!(
            w.used(2),
            11,
            "the newer window keeps its count and takes the late ones"
        );
        assert_eq!(w.used(1), 0);
        // Across the 24-bit wrap, window 0 is newer than window 2^24 - 1.
        let w = Window::default();
        w.take(0, 4, 100, 0).expect("room");
        w.add((1 << 24) - 1, 1);
        assert_eq!(w.used(0), 5);
    }

    #[test]
    fn add_corrects_and_never_goes_below_zero() {
        let w = Window::default();
        w.take(1, 5, 100, 0).expect("room");
        w.add(1, 20);
        assert_eq!(w.used(1), 25);
        w.add(1, -30);
        assert_eq!(w.used(1), 0);
        w.add(2, -3);
        assert_eq!(w.used(2), 0, "a give-back never creates a window");
        w.add(2, 4);
        assert_eq!(w.used(2), 4, "late usage lands in the current window");
    }

    #[test]
    fn windows_align_to_the_clock() {
        assert_eq!(window_at(120_000, MINUTE_MS), (2, 60_000));
        assert_eq!(window_at(179_999, MINUTE_MS), (2, 1));
        assert_eq!(window_at(DAY_MS + 5, DAY_MS), (1, DAY_MS - 5));
    }

    #[test]
    fn gauge_holds_at_its_limit() {
        let g = Gauge::default();
        assert_eq!(g.enter(2), Ok(1));
        assert_eq!(g.enter(2), Ok(2));
        assert_eq!(g.enter(2), Err(2));
        g.leave();
        assert_eq!(g.enter(2), Ok(2));
        g.leave();
        g.leave();
        g.leave();
        assert_eq!(g.get(), 0);
    }
}
