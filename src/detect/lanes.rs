//! Phrase search: the `aho-corasick` crate's DFA, stepped in interleaved lanes.
//!
//! Owns finding every occurrence of every pattern (overlapping, the
//! `MatchKind::Standard` semantics) in a byte string. The automaton is the
//! crate's own (`aho_corasick::dfa::DFA`); only the search loop is ours, and
//! it uses nothing but the crate's public `Automaton` trait (`next_state`,
//! `is_special`, `is_match`, `match_len`, `match_pattern`, `pattern_len`).
//! A table DFA is bound by load latency: each byte's lookup needs the
//! previous state, and with ~750 patterns the hot rows live in L2, so one
//! chain costs a few ns/byte. Splitting the haystack into [`LANES`] chunks
//! and stepping them in lockstep gives the CPU independent chains to overlap.
//! Each lane after the first starts `max_pattern_len - 1` bytes early and
//! reports only matches that end inside its own chunk, so no match is missed
//! or reported twice.
//!
//! Patterns with a non-ASCII byte go into a second crate DFA, which only runs
//! when the text has a non-ASCII byte; that keeps the ASCII automaton's byte
//! classes (and so its rows) few. Trade-off: the crate's state ids are `u32`,
//! so its table is twice the size a `u16` table would be.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, BuildError, MatchKind, StartKind};

/// Chains stepped in lockstep on long inputs.
const LANES: usize = 4;
/// Below this many bytes per lane, one chain is cheaper than the lane overlap.
const MIN_LANE: usize = 256;

/// All patterns, split by alphabet into two crate automata.
pub struct Phrases {
    ascii: Part,
    other: Part,
}

/// One crate DFA and the global id of each of its patterns.
struct Part {
    dfa: DFA,
    start: StateID,
    ids: Vec<u32>,
}

impl Phrases {
    /// Builds from patterns; a pattern's index is its id.
    ///
    /// # Errors
    /// Fails when the crate cannot build an automaton (state id overflow).
    pub fn build(pats: &[&str]) -> Result<Phrases, BuildError> {
        let (mut a, mut o) = (Vec::new(), Vec::new());
        let (mut a_ids, mut o_ids) = (Vec::new(), Vec::new());
        for (i, p) in pats.iter().enumerate() {
            let id = u32::try_from(i).expect("fewer than 4 billion patterns");
            if p.is_ascii() {
                a.push(*p);
                a_ids.push(id);
            } else {
                o.push(*p);
                o_ids.push(id);
            }
        }
        Ok(Phrases {
            ascii: Part::build(&a, a_ids)?,
            other: Part::build(&o, o_ids)?,
        })
    }

    /// Heap bytes held by the ASCII and the other automaton.
    #[cfg(test)]
    pub fn part_sizes(&self) -> (usize, usize) {
        (self.ascii.dfa.memory_usage(), self.other.dfa.memory_usage())
    }

    /// Heap bytes held by the automata.
    #[cfg(test)]
    pub fn memory_usage(&self) -> usize {
        let (ascii, other) = self.part_sizes();
        ascii + other
    }

    /// Calls `f(pattern, start, end)` for every match, in no particular order;
    /// stops after `cap` matches.
    pub fn find(&self, hay: &[u8], cap: usize, f: &mut impl FnMut(u32, usize, usize)) {
        let mut n = 0usize;
        let mut emit = |id: u32, start: usize, end: usize| {
            if n < cap {
                n += 1;
                f(id, start, end);
            }
        };
        self.ascii.find(hay, &mut emit);
        if !self.other.ids.is_empty() && !hay.is_ascii() {
            self.other.find(hay, &mut emit);
        }
    }
}

impl Part {
    fn build(pats: &[&str], ids: Vec<u32>) -> Result<Part, BuildError> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // No prefilter: then only dead and match states are special, so
            // `is_special` is the one per-byte check.
            .prefilter(false)
            .byte_classes(true)
            .build(pats)?;
        let start = dfa
            .start_state(Anchored::No)
            .expect("built with an unanchored start state");
        Ok(Part { dfa, start, ids })
    }

    #[inline(always)]
    fn step(&self, s: StateID, b: u8) -> StateID {
        self.dfa.next_state(Anchored::No, s, b)
    }

    /// Reports the matches of special state `s` (a match state, or dead,
    /// which a `Standard` search never enters) ending at `end`.
    #[cold]
    fn emit(&self, s: StateID, end: usize, f: &mut impl FnMut(u32, usize, usize)) {
        if !self.dfa.is_match(s) {
            return;
        }
        for i in 0..self.dfa.match_len(s) {
            let pid = self.dfa.match_pattern(s, i);
            f(
                self.ids[pid.as_usize()],
                end - self.dfa.pattern_len(pid),
                end,
            );
        }
    }

    /// Calls `f(pattern, start, end)` for every match.
    fn find(&self, hay: &[u8], f: &mut impl FnMut(u32, usize, usize)) {
        if self.ids.is_empty() {
            return;
        }
        let max_len = self.dfa.max_pattern_len().max(1);
        let chunk = hay.len().div_ceil(LANES);
        if chunk < MIN_LANE.max(max_len) {
            self.run(hay, f);
            return;
        }
        // Lane k owns ends in (k*chunk, (k+1)*chunk]; it starts max_len-1 early.
        let back = max_len - 1;
        let starts: [usize; LANES] = std::array::from_fn(|k| (k * chunk).saturating_sub(back));
        let ends: [usize; LANES] = std::array::from_fn(|k| ((k + 1) * chunk).min(hay.len()));
        let owned: [usize; LANES] = std::array::from_fn(|k| k * chunk);
        let steps = (0..LANES).map(|k| ends[k] - starts[k]).min().unwrap_or(0);
        let lane: [&[u8]; LANES] = std::array::from_fn(|k| &hay[starts[k]..starts[k] + steps]);
        let mut s = [self.start; LANES];
        let lockstep = lane[0].iter().zip(lane[1]).zip(lane[2]).zip(lane[3]);
        for (j, (((&b0, &b1), &b2), &b3)) in lockstep.enumerate() {
            for (k, b) in [b0, b1, b2, b3].into_iter().enumerate() {
                s[k] = self.step(s[k], b);
                if self.dfa.is_special(s[k]) && starts[k] + j >= owned[k] {
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
                if self.dfa.is_special(st) && at >= owned[k] {
                    self.emit(st, at + 1, f);
                }
            }
        }
    }

    /// One chain over all of `hay`.
    fn run(&self, hay: &[u8], f: &mut impl FnMut(u32, usize, usize)) {
        let mut s = self.start;
        for (at, &b) in hay.iter().enumerate() {
            s = self.step(s, b);
            if self.dfa.is_special(s) {
                self.emit(s, at + 1, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Phrases, LANES, MIN_LANE};
    use aho_corasick::{AhoCorasick, MatchKind};

    /// The lane search must report exactly the crate's own overlapping matches.
    fn both(pats: &[&str], hay: &[u8]) {
        let ph = Phrases::build(pats).expect("builds");
        let mut got = Vec::new();
        ph.find(hay, usize::MAX, &mut |p, s, e| got.push((p, s, e)));
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
            both(&pats, hay.as_bytes());
        }
    }

    /// Random patterns over a tiny alphabet (so matches are dense and cross
    /// every lane boundary) against random texts of lengths around the lane
    /// thresholds.
    #[test]
    fn matches_aho_corasick_random() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            usize::try_from(x % m).expect("small")
        };
        let alpha: &[&str] = &["a", "b", " ", "é", "\u{4e2d}"];
        let lane = MIN_LANE * LANES;
        for round in 0..40 {
            let npats = 1 + next(60);
            let pats: Vec<String> = (0..npats)
                .map(|_| (0..1 + next(12)).map(|_| alpha[next(5)]).collect())
                .collect();
            let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
            let len = [0, 3, lane - 1, lane, lane + 1, 3 * lane + 7, 9000][round % 7] + next(40);
            let hay: String = (0..len)
                .map(|_| alpha[next(if round % 2 == 0 { 3 } else { 5 })])
                .collect();
            both(&refs, hay.as_bytes());
        }
    }

    #[test]
    fn empty_pattern_set_finds_nothing() {
        both(&[], b"anything at all");
    }
}
