//! Request ids: UUIDv7 text (48 bits of Unix milliseconds, then 74 random bits), as
//! `uuid::Uuid::now_v7` makes them, but without a system call per request: `now_v7` asks the
//! kernel for fresh random bytes on every call (one `getrandom` each, a few microseconds on the
//! hot path), while here each thread draws `POOL` bytes from the kernel at a time and uses 10
//! per id. The bytes are the kernel's CSPRNG output either way, so ids stay unguessable
//! (feedback is accepted by request id).
//!
//! Trade-off: `now_v7` also orders ids made within the same millisecond; these are ordered by
//! millisecond only. Nothing sorts by id (records are ordered by time).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Random bytes drawn from the kernel at a time, per thread: 409 ids.
const POOL: usize = 4096;
/// Random bytes in one id.
const ID_RANDOM: usize = 10;

struct Pool {
    bytes: Box<[u8; POOL]>,
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<Pool> = RefCell::new(Pool { bytes: Box::new([0; POOL]), used: POOL });
}

impl Pool {
    fn take(&mut self) -> [u8; ID_RANDOM] {
        if self.used + ID_RANDOM > POOL {
            if getrandom::fill(&mut self.bytes[..]).is_err() {
                return fallback_random();
            }
            self.used = 0;
        }
        let mut out = [0; ID_RANDOM];
        out.copy_from_slice(&self.bytes[self.used..self.used + ID_RANDOM]);
        // Used bytes are wiped so a later read of the pool cannot recover an earlier id's bits.
        self.bytes[self.used..self.used + ID_RANDOM].fill(0);
        self.used += ID_RANDOM;
        out
    }
}

/// Random bits when the kernel gives none (never seen on Linux): std's per-process random
/// hash keys over the time and a counter. Distinct, if less unguessable; no panic, no reuse.
fn fallback_random() -> [u8; ID_RANDOM] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = [0; ID_RANDOM];
    for (i, part) in out.chunks_mut(8).enumerate() {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        part.copy_from_slice(&h.finish().to_le_bytes()[..part.len()]);
    }
    out
}

/// A new request id: lower-case hyphenated UUIDv7.
pub fn request_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random = RANDOM.with_borrow_mut(Pool::take);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn ids_are_distinct_v7_uuids() {
        let ids: Vec<String> = (0..2000).map(|_| request_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "ids must not repeat");
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).expect("a uuid");
            assert_eq!(u.get_version_num(), 7, "{id}");
            assert_eq!(id, &u.hyphenated().to_string(), "lower-case hyphenated");
        }
    }
}
