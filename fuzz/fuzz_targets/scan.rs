//! Fuzz target: normalise + scan on arbitrary bytes.
//!
//! Run from the crate root with a nightly toolchain:
//! `cargo +nightly fuzz run scan -- -max_total_time=300`
//! Invariants: no panic; normalise is idempotent; every match span lies on
//! char boundaries inside its segment.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gatehouse::detect::normalise::normalise;
use gatehouse::detect::{Detector, Role, ScanInput, Segment, Settings};
use libfuzzer_sys::fuzz_target;

fn det() -> &'static Detector {
    static DET: OnceLock<Detector> = OnceLock::new();
    DET.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        Detector::from_dir(&dir, Settings::default()).expect("shipped policies load")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let once = normalise(&text).text;
    assert_eq!(normalise(&once).text, once, "normalise must be idempotent");
    let parts: Vec<&str> = text.splitn(3, '\u{1}').collect();
    let input = ScanInput {
        segments: parts
            .iter()
            .zip([Role::User, Role::Tool, Role::Document])
            .map(|(t, role)| Segment { role, text: (*t).to_owned() })
            .collect(),
    };
    let v = det().scan(&input);
    for m in &v.matches {
        let seg = &input.segments[m.segment as usize].text;
        assert!(m.span.1 <= seg.len() && seg.is_char_boundary(m.span.0) && seg.is_char_boundary(m.span.1));
    }
});
