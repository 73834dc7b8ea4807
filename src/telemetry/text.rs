//! OpenMetrics 1.0 text → Prometheus text format 0.0.4.
//!
//! The two differ, for what `prometheus-client` emits, only in: counter metadata (`# HELP`/
//! `# TYPE`) names the family (`foo`) in OpenMetrics but the sample (`foo_total`) in 0.0.4;
//! `# UNIT` lines, `_created` samples and the `# EOF` trailer exist only in OpenMetrics. Samples,
//! label escaping, histogram series and float syntax are the same.

use std::collections::HashSet;

/// Rewrites an OpenMetrics exposition as 0.0.4 text.
pub(crate) fn from_openmetrics(om: &str) -> String {
    let counters: HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rewritten) = rename_counter_meta(line, &counters) {
            out.push_str(&rewritten);
        } else if is_created_sample(line, &counters) {
            continue;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn rename_counter_meta(line: &str, counters: &HashSet<&str>) -> Option<String> {
    for prefix in ["# HELP ", "# TYPE "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                return Some(format!("{prefix}{name}_total {tail}"));
            }
        }
    }
    None
}

fn is_created_sample(line: &str, counters: &HashSet<&str>) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or("");
    name.strip_suffix("_created")
        .is_some_and(|family| counters.contains(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_and_trailer_dropped() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total{x=\"1\"} 2\na_created{x=\"1\"} 1.0\n\
                  # HELP g Gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        let want = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                    # HELP g Gauge.\n# TYPE g gauge\ng 1\n";
        assert_eq!(from_openmetrics(om), want);
    }
}
