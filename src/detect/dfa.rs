//! Phrase DFA: an Aho-Corasick automaton searched in interleaved lanes.
//!
//! Owns finding every occurrence of every pattern (overlapping, the
//! `MatchKind::Standard` semantics of the `aho-corasick` crate) in a byte
//! string. A table DFA is bound by load latency: each byte's lookup needs the
//! previous state, and with ~700 patterns the hot rows live in L2, so one
//! chain costs ~3.5 ns/byte on our hardware. Splitting the haystack into
//! [`LANES`] chunks and stepping them in lockstep gives the CPU independent
//! chains to overlap. Each lane after the first starts `max_len - 1` bytes
//! early and reports only matches that end inside its own chunk, so no match
//! is missed or reported twice.
//!
//! Patterns with a non-ASCII byte go into a second automaton, which only
//! runs when the text has a non-ASCII byte; that keeps the ASCII table's
//! byte classes (and rows) small. Trade-off: a dense table costs
//! states × stride × 4 bytes (about 2.9 MB for the shipped policies); the
//! `aho-corasick` crate's contiguous NFA is 12× smaller but no faster.

/// Chains stepped in lockstep on long inputs.
const LANES: usize = 4;
/// Below this many bytes per lane, one chain is cheaper than the lane overlap.
const MIN_LANE: usize = 256;
/// Marks a state with at least one match in its output set.
const MATCH: u32 = 1 << 31;
const NONE: u32 = u32::MAX;

/// Error building a DFA.
#[derive(Debug, thiserror::Error)]
pub enum DfaError {
    #[error("more than 2^31 automaton states")]
    TooManyStates,
}

/// A transition entry: a state id with the match flag in its top bit.
/// `u16` halves the table (and its cache footprint) for up to 32767 states.
trait Entry: Copy {
    const FLAG: u32;
    fn from_u32(v: u32) -> Self;
    fn id(self) -> usize;
    fn is_match(self) -> bool;
}

impl Entry for u16 {
    const FLAG: u32 = 1 << 15;
    fn from_u32(v: u32) -> Self {
        let id = u16::try_from(v & !MATCH).expect("checked: fewer than 2^15 states");
        id | if v & MATCH != 0 { 1 << 15 } else { 0 }
    }
    #[inline(always)]
    fn id(self) -> usize {
        usize::from(self & 0x7fff)
    }
    #[inline(always)]
    fn is_match(self) -> bool {
        self & 0x8000 != 0
    }
}

impl Entry for u32 {
    const FLAG: u32 = MATCH;
    fn from_u32(v: u32) -> Self {
        v
    }
    #[inline(always)]
    fn id(self) -> usize {
        (self & !MATCH) as usize
    }
    #[inline(always)]
    fn is_match(self) -> bool {
        self & MATCH != 0
    }
}

/// One automaton over a fixed byte alphabet.
enum Table {
    Small(Dense<u16>),
    Large(Dense<u32>),
}

impl Table {
    fn build(pats: &[&[u8]]) -> Result<Table, DfaError> {
        let d = Dense::<u32>::build(pats)?;
        if d.outs.len() - 1 < u16::FLAG as usize {
            return Ok(Table::Small(d.narrow()));
        }
        Ok(Table::Large(d))
    }

    fn memory_usage(&self) -> usize {
        match self {
            Table::Small(d) => d.memory_usage(),
            Table::Large(d) => d.memory_usage(),
        }
    }

    fn find(&self, hay: &[u8], f: &mut impl FnMut(u32, usize)) {
        match self {
            Table::Small(d) => d.find(hay, f),
            Table::Large(d) => d.find(hay, f),
        }
    }
}

struct Dense<T> {
    classes: [u8; 256],
    shift: u32,
    trans: Vec<T>,
    /// `outs[s]..outs[s + 1]` indexes `out` for state `s`.
    outs: Vec<u32>,
    out: Vec<u32>,
    max_len: usize,
}

/// All patterns, split by alphabet.
pub struct PhraseDfa {
    ascii: Table,
    other: Table,
    /// Global pattern id for each table's local ids.
    ascii_ids: Vec<u32>,
    other_ids: Vec<u32>,
    lens: Vec<u32>,
}

impl PhraseDfa {
    /// Builds from patterns; a pattern's index is its id.
    ///
    /// # Errors
    /// Fails only when the patterns need more than 2^31 states.
    pub fn build(pats: &[&str]) -> Result<PhraseDfa, DfaError> {
        let (mut a, mut o) = (Vec::new(), Vec::new());
        let (mut a_ids, mut o_ids) = (Vec::new(), Vec::new());
        for (i, p) in pats.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| DfaError::TooManyStates)?;
            if p.is_ascii() {
                a.push(p.as_bytes());
                a_ids.push(id);
            } else {
                o.push(p.as_bytes());
                o_ids.push(id);
            }
        }
        Ok(PhraseDfa {
            ascii: Table::build(&a)?,
            other: Table::build(&o)?,
            ascii_ids: a_ids,
            other_ids: o_ids,
            lens: pats
                .iter()
                .map(|p| u32::try_from(p.len()).unwrap_or(u32::MAX))
                .collect(),
        })
    }

    /// Heap bytes held by the tables.
    pub fn memory_usage(&self) -> usize {
        self.ascii.memory_usage() + self.other.memory_usage()
    }

    /// Calls `f(pattern, start, end)` for every match, in no particular order;
    /// stops after `cap` matches.
    pub fn find(&self, hay: &[u8], cap: usize, f: &mut impl FnMut(u32, usize, usize)) {
        let mut n = 0usize;
        let mut emit = |ids: &[u32], local: u32, end: usize| {
            if n < cap {
                n += 1;
                let id = ids[local as usize];
                f(id, end - self.lens[id as usize] as usize, end);
            }
        };
        self.ascii
            .find(hay, &mut |p, e| emit(&self.ascii_ids, p, e));
        if !self.other_ids.is_empty() && !hay.is_ascii() {
            self.other
                .find(hay, &mut |p, e| emit(&self.other_ids, p, e));
        }
    }
}

impl Dense<u32> {
    fn narrow<T: Entry>(self) -> Dense<T> {
        Dense {
            classes: self.classes,
            shift: self.shift,
            trans: self.trans.iter().map(|&t| T::from_u32(t)).collect(),
            outs: self.outs,
            out: self.out,
            max_len: self.max_len,
        }
    }

    fn build(pats: &[&[u8]]) -> Result<Dense<u32>, DfaError> {
        let mut classes = [0u8; 256];
        let mut used = [false; 256];
        for p in pats {
            for &b in *p {
                used[usize::from(b)] = true;
            }
        }
        // Class 0 is every byte no pattern uses; when all 256 are used it is byte 0's.
        let mut n = usize::from(used.iter().any(|u| !u));
        for (b, u) in used.iter().enumerate() {
            if *u {
                classes[b] = u8::try_from(n).expect("at most 256 classes");
                n += 1;
            }
        }
        let stride = n.next_power_of_two();
        let shift = stride.trailing_zeros();
        // Trie over classes; NONE marks a missing edge.
        let mut trans = vec![NONE; stride];
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        for (i, p) in pats.iter().enumerate() {
            let mut s = 0usize;
            for &b in *p {
                let at = (s << shift) | usize::from(classes[usize::from(b)]);
                if trans[at] == NONE {
                    let next = own.len();
                    if next >= MATCH as usize {
                        return Err(DfaError::TooManyStates);
                    }
                    trans[at] = u32::try_from(next).map_err(|_| DfaError::TooManyStates)?;
                    trans.extend(std::iter::repeat_n(NONE, stride));
                    own.push(Vec::new());
                }
                s = trans[at] as usize;
            }
            own[s].push(u32::try_from(i).map_err(|_| DfaError::TooManyStates)?);
        }
        let states = own.len();
        let mut fail = vec![0u32; states];
        let mut outs_of: Vec<Vec<u32>> = own;
        let mut queue = std::collections::VecDeque::new();
        for t in &mut trans[..stride] {
            match *t {
                NONE => *t = 0,
                child => queue.push_back(child),
            }
        }
        while let Some(s) = queue.pop_front() {
            let su = s as usize;
            let f = fail[su] as usize;
            if !outs_of[f].is_empty() {
                let inherited = outs_of[f].clone();
                outs_of[su].extend(inherited);
            }
            for c in 0..stride {
                let at = (su << shift) | c;
                let via_fail = trans[(f << shift) | c] & !MATCH;
                match trans[at] {
                    NONE => trans[at] = via_fail,
                    child => {
                        fail[child as usize] = via_fail;
                        queue.push_back(child);
                    }
                }
            }
        }
        for t in &mut trans {
            if !outs_of[*t as usize].is_empty() {
                *t |= MATCH;
            }
        }
        let mut outs = Vec::with_capacity(states + 1);
        let mut out = Vec::new();
        for o in &outs_of {
            outs.push(u32::try_from(out.len()).map_err(|_| DfaError::TooManyStates)?);
            out.extend_from_slice(o);
        }
        outs.push(u32::try_from(out.len()).map_err(|_| DfaError::TooManyStates)?);
        Ok(Dense {
            classes,
            shift,
            trans,
            outs,
            out,
            max_len: pats.iter().map(|p| p.len()).max().unwrap_or(0),
        })
    }
}

impl<T: Entry> Dense<T> {
    fn memory_usage(&self) -> usize {
        self.trans.len() * std::mem::size_of::<T>() + (self.outs.len() + self.out.len()) * 4
    }

    #[inline(always)]
    fn step(&self, s: T, b: u8) -> T {
        self.trans[s.id() << self.shift | usize::from(self.classes[usize::from(b)])]
    }

    fn emit(&self, s: T, end: usize, f: &mut impl FnMut(u32, usize)) {
        let s = s.id();
        for &p in &self.out[self.outs[s] as usize..self.outs[s + 1] as usize] {
            f(p, end);
        }
    }

    /// Calls `f(local pattern, end)` for every match.
    fn find(&self, hay: &[u8], f: &mut impl FnMut(u32, usize)) {
        if self.max_len == 0 {
            return;
        }
        let chunk = hay.len().div_ceil(LANES);
        if chunk < MIN_LANE.max(self.max_len) {
            self.run(hay, f);
            return;
        }
        // Lane k owns ends in (k*chunk, (k+1)*chunk]; it starts max_len-1 early.
        let back = self.max_len - 1;
        let starts: [usize; LANES] = std::array::from_fn(|k| (k * chunk).saturating_sub(back));
        let ends: [usize; LANES] = std::array::from_fn(|k| ((k + 1) * chunk).min(hay.len()));
        let owned: [usize; LANES] = std::array::from_fn(|k| k * chunk);
        let steps = (0..LANES).map(|k| ends[k] - starts[k]).min().unwrap_or(0);
        let lane: [&[u8]; LANES] = std::array::from_fn(|k| &hay[starts[k]..starts[k] + steps]);
        let mut s = [T::from_u32(0); LANES];
        let lockstep = lane[0].iter().zip(lane[1]).zip(lane[2]).zip(lane[3]);
        for (j, (((&b0, &b1), &b2), &b3)) in lockstep.enumerate() {
            for (k, b) in [b0, b1, b2, b3].into_iter().enumerate() {
                s[k] = self.step(s[k], b);
                if s[k].is_match() && starts[k] + j >= owned[k] {
                    self.emit(s[k], starts[k] + j + 1, f);
                }
            }
        }
        for k in 0..LANES {
            let mut st = s[k];
            let from = starts[k] + steps;
            for (at, &b) in hay[from..ends[k]]
                .iter()
                .enumerate()
                .map(|(j, b)| (from + j, b))
            {
                st = self.step(st, b);
                if st.is_match() && at >= owned[k] {
                    self.emit(st, at + 1, f);
                }
            }
        }
    }

    /// One chain over all of `hay`.
    fn run(&self, hay: &[u8], f: &mut impl FnMut(u32, usize)) {
        let mut s = T::from_u32(0);
        for (at, &b) in hay.iter().enumerate() {
            s = self.step(s, b);
            if s.is_match() {
                self.emit(s, at + 1, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PhraseDfa;
    use aho_corasick::{AhoCorasick, MatchKind};

    fn both(pats: &[&str], hay: &str) {
        let dfa = PhraseDfa::build(pats).expect("builds");
        let mut got = Vec::new();
        dfa.find(hay.as_bytes(), usize::MAX, &mut |p, s, e| {
            got.push((p, s, e))
        });
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(pats)
            .expect("builds");
        let mut want: Vec<(u32, usize, usize)> = ac
            .find_overlapping_iter(hay)
            .map(|m| (m.pattern().as_u32(), m.start(), m.end()))
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(
            got,
            want,
            "same matches as aho-corasick on {} bytes",
            hay.len()
        );
    }

    #[test]
    fn matches_aho_corasick_short_and_laned() {
        let pats = [
            "he",
            "a",
            "she",
            "his",
            "hers",
            "ignore all",
            "all previous",
            "ö",
            "über",
            "x",
        ];
        let unit = "ushers say: ignore all previous über-rules; his hershe x ö ";
        for n in [0, 1, 7, 60, 1100, 4096, 5000] {
            let hay: String = unit.chars().cycle().take(n).collect();
            both(&pats, &hay);
        }
    }

    #[test]
    fn empty_pattern_set_finds_nothing() {
        both(&[], "anything at all");
    }
}
