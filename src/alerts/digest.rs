//! Report digests: a short summary of a stored analysis report (period, engine, the top
//! recommendations with their priority, where to read the whole report) sent through the same
//! channels, retries and delivery records as alerts.
//!
//! A digest is plain data filled in by `app` from a report; this module only says how it reads.
//! It carries recommendation titles and the report's link, never figures about single requests,
//! prompt text or keys (a report holds none). Alertmanager takes alerts only, so digests go to
//! e-mail, Slack, Teams and webhooks.

use std::time::SystemTime;

/// One recommendation, as a digest lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct DigestItem {
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `security`, `performance`, `usage` or `cost`.
    pub group: String,
    pub title: String,
}

/// The digest of one stored report.
#[derive(Clone, Debug, PartialEq)]
pub struct Digest {
    pub report_id: String,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// The period in RFC 3339 with local offsets, and its time zone.
    pub from: String,
    pub to: String,
    pub zone: String,
    /// `llm:<model>` or `rules`.
    pub engine: String,
    /// Recommendations in the whole report.
    pub total: usize,
    /// The first few, highest priority first.
    pub items: Vec<DigestItem>,
    /// The full report: an absolute URL when `report.digest.admin_url` is set, else the admin
    /// API path.
    pub link: String,
    /// `alerts.gateway_name`.
    pub gateway: String,
    pub created_at: SystemTime,
}

impl Digest {
    /// `gatehouse daily report: 3 recommendations`.
    pub fn title(&self) -> String {
        let n = self.total;
        let s = if n == 1 { "" } else { "s" };
        format!(
            "{} {} report: {n} recommendation{s}",
            self.gateway, self.period
        )
    }

    /// `2026-03-29T00:00:00+01:00 to 2026-03-30T00:00:00+02:00 (Europe/Paris)` (ASCII, so an
    /// e-mail body stays 7-bit).
    pub fn period_line(&self) -> String {
        format!("{} to {} ({})", self.from, self.to, self.zone)
    }

    /// `[high] security: Block user mallory`, one per listed recommendation.
    pub fn item_lines(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|i| format!("[{}] {}: {}", i.priority, i.group, i.title))
            .collect()
    }

    /// `and 4 more in the report`, when the digest lists fewer than the report holds.
    pub fn more_line(&self) -> Option<String> {
        let more = self.total.saturating_sub(self.items.len());
        (more > 0).then(|| format!("and {more} more in the report"))
    }

    /// Whether `link` is an absolute URL (channels make a button of it) or only a path.
    pub fn link_is_url(&self) -> bool {
        self.link.starts_with("https://") || self.link.starts_with("http://")
    }

    /// The plain-text form: e-mail body and the fallback text of chat messages.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}\n\nPeriod: {}\nWritten by: {}\n\n",
            self.title(),
            self.period_line(),
            self.engine
        );
        if self.items.is_empty() {
            out.push_str("Nothing to change: no recommendation this period.\n");
        }
        for l in self.item_lines() {
            out.push_str(&format!("- {l}\n"));
        }
        if let Some(m) = self.more_line() {
            out.push_str(&format!("{m}\n"));
        }
        out.push_str(&format!(
            "\nFull report: {}\nReport {}\n",
            self.link, self.report_id
        ));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    pub(crate) fn digest() -> Digest {
        Digest {
            report_id: "0190abcd-0000-7000-8000-000000000001".into(),
            period: "daily".into(),
            from: "2026-03-29T00:00:00+01:00".into(),
            to: "2026-03-30T00:00:00+02:00".into(),
            zone: "Europe/Paris".into(),
            engine: "rules".into(),
            total: 3,
            items: vec![
                DigestItem {
                    priority: "high".into(),
                    group: "security".into(),
                    title: "User <mallory> keeps probing".into(),
                },
                DigestItem {
                    priority: "medium".into(),
                    group: "cost".into(),
                    title: "Cheaper alias".into(),
                },
            ],
            link: "https://gw-admin.example.com/api/reports/0190abcd-0000-7000-8000-000000000001?format=html".into(),
            gateway: "prod-eu-1".into(),
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_774_843_200),
        }
    }

    #[test]
    fn text_has_period_zone_engine_items_and_link() {
        let t = digest().text();
        assert!(
            t.starts_with("prod-eu-1 daily report: 3 recommendations\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "Period: 2026-03-29T00:00:00+01:00 to 2026-03-30T00:00:00+02:00 (Europe/Paris)"
            ),
            "{t}"
        );
        assert!(
            t.contains("- [high] security: User <mallory> keeps probing\n"),
            "{t}"
        );
        assert!(t.contains("and 1 more in the report"), "{t}");
        assert!(
            t.contains("Full report: https://gw-admin.example.com/api/reports/"),
            "{t}"
        );
    }
}
