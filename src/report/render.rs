//! Rendering a report as Markdown and as a self-contained HTML page. Both show the period
//! (RFC 3339 with local offsets, and the zone), the engine that wrote it, the recommendations
//! by group, the threshold proposal and the key figures. Every text that came from the store
//! or a model is escaped in HTML.

use std::fmt::Write;

use super::figures::Figures;
use super::replay::level_names;
use super::rules::usd;
use super::{Group, Report};

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let f = &r.figures;
    let mut s = String::new();
    let _ = writeln!(s, "# gatehouse {} report\n", r.period.as_str());
    let _ = writeln!(
        s,
        "Period {} – {} ({}). Generated {}.",
        r.from, r.to, r.zone, r.created
    );
    let _ = writeln!(
        s,
        "Written by: **{}**{}\n",
        r.engine.label(),
        engine_note(r)
    );
    let _ = writeln!(s, "## Recommendations\n");
    if r.recommendations.is_empty() {
        let _ = writeln!(
            s,
            "Nothing to change: no rule fired on this period's figures.\n"
        );
    }
    for g in Group::ALL {
        let recs: Vec<_> = r.recommendations.iter().filter(|x| x.group == g).collect();
        if recs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {}\n", capital(g.as_str()));
        for x in recs {
            let _ = writeln!(s, "- **[{}] {}**", x.priority.as_str(), x.title);
            for e in &x.evidence {
                let _ = writeln!(s, "  - evidence: {e}");
            }
            let _ = writeln!(s, "  - action: {}", x.action.replace('\n', "\n    "));
        }
        s.push('\n');
    }
    if let Some(p) = &f.threshold_proposal {
        let _ = writeln!(
            s,
            "## Threshold proposal\n\n{}\n\n{}\n",
            p.reason, p.effect.summary
        );
        let _ = writeln!(s, "```diff\n{}```\n", p.config_diff);
    } else {
        let _ = writeln!(s, "## Thresholds\n\n{}\n", f.threshold_note);
    }
    let _ = writeln!(s, "## Figures\n");
    for (k, v) in key_figures(f) {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

/// The report as one HTML page (no external assets).
pub fn html(r: &Report) -> String {
    let f = &r.figures;
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gatehouse report</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto}\
         .high{color:#b00}.medium{color:#a60}.low{color:#555}pre{background:#f4f4f4;padding:1em}\
         </style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>gatehouse {} report</h1><p>Period {} – {} ({}). Generated {}.</p>\
         <p>Written by: <strong>{}</strong>{}</p><h2>Recommendations</h2>",
        r.period.as_str(),
        esc(&r.from),
        esc(&r.to),
        esc(&r.zone),
        esc(&r.created),
        esc(&r.engine.label()),
        esc(&engine_note(r))
    );
    for g in Group::ALL {
        let recs: Vec<_> = r.recommendations.iter().filter(|x| x.group == g).collect();
        if recs.is_empty() {
            continue;
        }
        let _ = write!(s, "<h3>{}</h3><ul>", capital(g.as_str()));
        for x in recs {
            let p = x.priority.as_str();
            let _ = write!(
                s,
                "<li><strong class=\"{p}\">[{p}] {}</strong><ul>",
                esc(&x.title)
            );
            for e in &x.evidence {
                let _ = write!(s, "<li>evidence: {}</li>", esc(e));
            }
            let _ = write!(
                s,
                "<li>action: <pre>{}</pre></li></ul></li>",
                esc(&x.action)
            );
        }
        s.push_str("</ul>");
    }
    if let Some(p) = &f.threshold_proposal {
        let _ = write!(
            s,
            "<h2>Threshold proposal</h2><p>{}</p><p>{}</p><pre>{}</pre>",
            esc(&p.reason),
            esc(&p.effect.summary),
            esc(&p.config_diff)
        );
    } else {
        let _ = write!(s, "<h2>Thresholds</h2><p>{}</p>", esc(&f.threshold_note));
    }
    s.push_str("<h2>Figures</h2><table>");
    for (k, v) in key_figures(f) {
        let _ = write!(
            s,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(&v)
        );
    }
    s.push_str("</table></body></html>");
    s
}

fn engine_note(r: &Report) -> String {
    match &r.engine {
        super::Engine::Rules { reason } => format!(" ({reason})"),
        super::Engine::Llm { .. } => String::new(),
    }
}

fn key_figures(f: &Figures) -> Vec<(&'static str, String)> {
    let levels = level_names();
    let by_level = levels[1..]
        .iter()
        .map(|l| format!("{l} {}", f.security.by_level.get(l).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut v = vec![
        ("requests", f.requests.to_string()),
        ("error rate", format!("{:.2}%", f.error_rate * 100.0)),
        (
            "latency p50 / p95 / p99",
            format!(
                "{:.2} / {:.2} / {:.2} s",
                f.p50_latency, f.p95_latency, f.p99_latency
            ),
        ),
        (
            "cost",
            format!("${:.2}{}", f.total_cost, unpriced(f.unpriced_requests)),
        ),
        ("tokens", f.total_tokens.to_string()),
        ("users", f.unique_users.to_string()),
        ("threats", format!("{} ({by_level})", f.security.threats)),
        ("blocked", f.security.blocked.to_string()),
    ];
    if let Some(p) = f.previous_p95_latency {
        v.push(("p95 previous period", format!("{p:.2} s")));
    }
    if let Some(fc) = &f.forecast {
        v.push((
            "forecast next 24 h",
            format!(
                "{:.0} requests, peak {:.0} at {}",
                fc.next_24h_requests, fc.peak_requests, fc.peak_hour
            ),
        ));
    }
    for b in &f.budgets {
        v.push((
            "budget now",
            format!(
                "{} {}: ${} of ${} per {} ({:.1}%){}, period ends {}",
                b.scope.as_str(),
                b.name,
                usd(b.spent_usd),
                usd(b.budget_usd),
                b.per,
                b.used_ratio * 100.0,
                b.projected_usd
                    .map_or(String::new(), |p| format!(", ${} at this rate", usd(p))),
                b.period_end
            ),
        ));
    }
    for m in &f.models {
        v.push((
            "model",
            format!(
                "{}: {} requests, p95 {:.2} s{}, ${:.4}/request{}",
                m.model,
                m.requests,
                m.p95_latency,
                m.p95_ttft.map_or(String::new(), |t| format!(
                    ", time to first token p95 {t:.2} s over {} streamed",
                    m.streamed_requests
                )),
                m.cost_per_request,
                unpriced(m.unpriced_requests)
            ),
        ));
    }
    v
}

/// `" (cost unknown for N requests)"` when some requests had no price, so a cost figure is
/// never read as complete when it is not.
fn unpriced(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " (cost unknown for 1 request)".into(),
        n => format!(" (cost unknown for {n} requests)"),
    }
}

/// `s` with its first letter in upper case.
pub(super) fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_model_text() {
        assert_eq!(
            esc("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
    }
}
