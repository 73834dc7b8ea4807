//! Rule evaluation, record windows, cooldown and resolve — with paused time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::alerts::engine::{Change, State};
use crate::config::{AlertsConfig, RuleKind};
use crate::detect::{Action, Category, RiskLevel, Verdict};
use crate::event::{Exchange, Outcome};

fn rule(kind: RuleKind) -> Rule {
    Rule::build(&AlertsConfig::default())
        .into_iter()
        .find(|r| r.kind == kind)
        .expect("a default rule of each kind")
}

fn window(f: impl FnOnce(&mut WindowStats)) -> Snapshot<'static> {
    let mut w = WindowStats {
        requests: 100,
        ..WindowStats::default()
    };
    f(&mut w);
    Snapshot {
        windows: [(Duration::from_secs(300), w)].into(),
        ..Snapshot::default()
    }
}

#[test]
fn windowed_rules_use_the_seed_thresholds() {
    struct Case {
        name: &'static str,
        kind: RuleKind,
        set: fn(&mut WindowStats),
        fires: bool,
    }
    let cases = [
        Case {
            name: "4 threats < 5",
            kind: RuleKind::Threats,
            set: |w| {
                w.threats_by_level.insert("high", 4);
            },
            fires: false,
        },
        Case {
            name: "5 threats = 5",
            kind: RuleKind::Threats,
            set: |w| {
                w.threats_by_level.insert("high", 3);
                w.threats_by_level.insert("medium", 2);
            },
            fires: true,
        },
        Case {
            name: "low-risk scans are not threats",
            kind: RuleKind::Threats,
            set: |w| {
                w.threats_by_level.insert("low", 50);
            },
            fires: false,
        },
        Case {
            name: "p95 5.0 s is not above 5.0",
            kind: RuleKind::LatencyP95,
            set: |w| w.p95_latency = 5.0,
            fires: false,
        },
        Case {
            name: "p95 5.2 s",
            kind: RuleKind::LatencyP95,
            set: |w| w.p95_latency = 5.2,
            fires: true,
        },
        Case {
            name: "error rate 5% is not above 5%",
            kind: RuleKind::ErrorRate,
            set: |w| w.error_rate = 0.05,
            fires: false,
        },
        Case {
            name: "error rate 7.5%",
            kind: RuleKind::ErrorRate,
            set: |w| {
                w.error_rate = 0.075;
                w.errors = 7;
            },
            fires: true,
        },
        Case {
            name: "no traffic, no latency alert",
            kind: RuleKind::LatencyP95,
            set: |w| {
                w.requests = 0;
                w.p95_latency = 9.0;
            },
            fires: false,
        },
    ];
    let now = Instant::now();
    for c in cases {
        let got = evaluate(&rule(c.kind), &window(c.set), now);
        assert_eq!(!got.is_empty(), c.fires, "{}: {got:?}", c.name);
    }
    let got = evaluate(
        &rule(RuleKind::ErrorRate),
        &window(|w| {
            w.error_rate = 0.075;
            w.errors = 7;
        }),
        now,
    );
    assert_eq!(
        got[0].summary,
        "error rate 7.5% > 5.0% over 5m (7 of 100 requests)"
    );
    assert_eq!(got[0].figures[0].value, 0.075);
}

fn exchange(user: &str, level: RiskLevel, escalated: bool) -> Exchange {
    let mut ex = Exchange::new("r".into(), "POST", "/v1/chat/completions");
    ex.user = Some(user.into());
    ex.outcome = Outcome::Blocked;
    ex.verdict = Some(Arc::new(Verdict {
        level,
        score: 25.0,
        action: Action::Block,
        blocked: true,
        shadow: false,
        escalated,
        categories: vec![Category::PromptInjection],
        matches: Vec::new(),
        scan_us: 1,
        learned_score: None,
    }));
    ex
}

fn upstream(name: &str, outcome: Outcome) -> Exchange {
    let mut ex = Exchange::new("r".into(), "POST", "/v1/chat/completions");
    ex.upstream = Some(name.into());
    ex.outcome = outcome;
    ex
}

fn snap(recent: &Recent) -> Snapshot<'_> {
    Snapshot {
        recent: Some(recent),
        ..Snapshot::default()
    }
}

#[tokio::test(start_paused = true)]
async fn critical_threats_and_escalations_come_from_records_and_age_out() {
    let mut recent = Recent::new(Duration::from_secs(900));
    let critical = rule(RuleKind::CriticalThreat);
    assert!(!recent.observe(&exchange("mallory", RiskLevel::High, false), Instant::now()));
    assert!(evaluate(&critical, &snap(&recent), Instant::now()).is_empty());
    assert!(
        recent.observe(
            &exchange("mallory", RiskLevel::Critical, false),
            Instant::now()
        ),
        "urgent"
    );
    let got = evaluate(&critical, &snap(&recent), Instant::now());
    assert_eq!(got.len(), 1);
    assert!(got[0].summary.contains("mallory"), "{}", got[0].summary);
    tokio::time::advance(critical.window + Duration::from_secs(1)).await;
    assert!(
        evaluate(&critical, &snap(&recent), Instant::now()).is_empty(),
        "out of the window"
    );

    let escalated = rule(RuleKind::UserEscalated);
    assert!(recent.observe(&exchange("eve", RiskLevel::Medium, true), Instant::now()));
    let got = evaluate(&escalated, &snap(&recent), Instant::now());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, "eve", "one alert per user");
}

#[tokio::test(start_paused = true)]
async fn an_upstream_fails_when_most_of_its_requests_fail() {
    let mut recent = Recent::new(Duration::from_secs(120));
    let r = rule(RuleKind::UpstreamFailing);
    for _ in 0..2 {
        recent.observe(&upstream("flaky", Outcome::Failed), Instant::now());
    }
    recent.observe(&upstream("fine", Outcome::Ok), Instant::now());
    assert!(
        evaluate(&r, &snap(&recent), Instant::now()).is_empty(),
        "2 requests are too few to judge"
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    recent.observe(&upstream("flaky", Outcome::Failed), Instant::now());
    recent.observe(&upstream("flaky", Outcome::Ok), Instant::now());
    // Refusals by the gateway say nothing about the upstream.
    recent.observe(&upstream("fine", Outcome::Rejected), Instant::now());
    let got = evaluate(&r, &snap(&recent), Instant::now());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].subject, "flaky");
    assert!(got[0].summary.contains("3 of 4"), "{}", got[0].summary);
    tokio::time::advance(Duration::from_secs(121)).await;
    recent.observe(&upstream("flaky", Outcome::Ok), Instant::now());
    assert!(
        evaluate(&r, &snap(&recent), Instant::now()).is_empty(),
        "old failures age out"
    );
}

fn cond(subject: &str) -> Condition {
    Condition {
        subject: subject.into(),
        summary: format!("{subject} is bad"),
        figures: Vec::new(),
        level: None,
    }
}

fn kinds(changes: &[Change]) -> Vec<&'static str> {
    changes
        .iter()
        .map(|c| match c {
            Change::Fired { .. } => "fired",
            Change::Resolved { .. } => "resolved",
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn firing_dedups_resolves_and_respects_the_cooldown() {
    let mut state = State::default();
    let cooldown = Duration::from_secs(600);
    let wall = SystemTime::now();
    let mut step = |conds: Vec<Condition>| state.apply(0, cooldown, conds, Instant::now(), wall);

    assert_eq!(kinds(&step(vec![cond("a")])), ["fired"]);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(
        step(vec![cond("a")]).is_empty(),
        "still firing: no second notice"
    );
    assert_eq!(
        kinds(&step(vec![cond("a"), cond("b")])),
        ["fired"],
        "another subject fires on its own"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(kinds(&step(vec![cond("b")])), ["resolved"], "a cleared");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(
        step(vec![cond("a"), cond("b")]).is_empty(),
        "a is cooling down, b still firing"
    );
    tokio::time::advance(cooldown).await;
    assert_eq!(
        kinds(&step(vec![cond("a"), cond("b")])),
        ["fired"],
        "a again after its cooldown"
    );
    assert_eq!(kinds(&step(vec![])), ["resolved", "resolved"]);
}

/// A resolved notice states what the rule measures now, under its threshold, not the breach.
#[test]
fn a_resolved_whole_window_rule_reports_its_current_value() {
    let latency = rule(RuleKind::LatencyP95);
    let (summary, figures) = current(&latency, &window(|w| w.p95_latency = 1.2)).expect("measured");
    assert_eq!(summary, "now p95 latency 1.20 s ≤ 5.00 s over 5m");
    assert_eq!(
        (figures[0].name.as_str(), figures[0].value),
        ("p95_latency_seconds", 1.2)
    );
    let errors = rule(RuleKind::ErrorRate);
    let (summary, _) = current(&errors, &window(|w| w.error_rate = 0.01)).expect("measured");
    assert_eq!(summary, "now error rate 1.0% ≤ 5.0% over 5m");
    assert!(current(&rule(RuleKind::UpstreamFailing), &window(|_| {})).is_none());
}

/// A replica that loses the claim (another replica, or this process before a restart, holds
/// it) must not start a cool-down of its own: it asks again at the next evaluation.
#[tokio::test(start_paused = true)]
async fn a_lost_claim_starts_no_local_cool_down() {
    let mut state = State::default();
    let cooldown = Duration::from_secs(600);
    let wall = SystemTime::now();
    assert_eq!(
        kinds(&state.apply(0, cooldown, vec![cond("a")], Instant::now(), wall)),
        ["fired"]
    );
    state.forget(0, "a");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        kinds(&state.apply(0, cooldown, vec![cond("a")], Instant::now(), wall)),
        ["fired"],
        "tries to claim again at once"
    );
}

#[test]
fn rules_show_their_thresholds_and_windows() {
    let r = rule(RuleKind::LatencyP95);
    let v = serde_json::to_value(&r).expect("json");
    assert_eq!(v["threshold"], 5.0);
    assert_eq!(v["window_secs"], 300);
    assert_eq!(v["kind"], "latency_p95");
    assert_eq!(span(Duration::from_secs(7200)), "2h");
    assert_eq!(span(Duration::from_secs(90)), "90s");
}

fn team_budget(spent_micros: u64) -> crate::quota::BudgetUse {
    crate::quota::BudgetUse {
        scope: crate::quota::ScopeKind::Team,
        name: "red".into(),
        labelled: true,
        spent_micros,
        budget_micros: 10_000_000,
        period: crate::config::BudgetPeriod::Day,
        // 2026-12-07T00:00:00Z
        period_end_ms: 1_796_601_600_000,
    }
}

/// A $10 team budget through one period: 79 % is silent, 80 % warns, 100 % fires critical
/// while the warning stays firing (not sent again), a new period resolves both.
#[tokio::test(start_paused = true)]
async fn a_budget_warns_at_80_fires_critical_at_100_and_resolves_with_the_period() {
    let r = rule(RuleKind::Budget);
    assert_eq!((r.threshold, r.level), (0.8, AlertLevel::Warning));
    let mut state = State::default();
    let wall = SystemTime::now();
    let mut step = |spent: u64| {
        let budgets = [team_budget(spent)];
        let snap = Snapshot {
            budgets: &budgets,
            ..Snapshot::default()
        };
        let conds = evaluate(&r, &snap, Instant::now());
        let changes = state.apply(0, r.cooldown, conds, Instant::now(), wall);
        changes
            .into_iter()
            .map(|c| match c {
                Change::Fired { condition, .. } => ("fired", condition),
                Change::Resolved { condition, .. } => ("resolved", condition),
            })
            .collect::<Vec<_>>()
    };

    assert!(step(7_900_000).is_empty(), "79% is silent");
    let warned = step(8_000_000);
    assert_eq!(warned.len(), 1, "80% fires once: {warned:?}");
    let (kind, c) = &warned[0];
    assert_eq!(
        (*kind, c.subject.as_str(), c.level),
        ("fired", "team red at 80%", None)
    );
    assert_eq!(
        c.summary,
        "team red spent $8.00 of its $10.00 budget per day (80%, threshold 80%); the period ends 2026-12-07T00:00:00Z"
    );
    assert!(
        step(9_500_000).is_empty(),
        "95%: the warning is firing already"
    );
    let spent = step(10_000_000);
    assert_eq!(
        spent.len(),
        1,
        "100% fires the critical one only: {spent:?}"
    );
    let (kind, c) = &spent[0];
    assert_eq!(
        (*kind, c.subject.as_str(), c.level),
        ("fired", "team red at 100%", Some(AlertLevel::Critical))
    );
    let figures = figures_json(&c.figures);
    assert_eq!(figures["spent_usd"], 10.0);
    assert_eq!(figures["budget_usd"], 10.0);
    assert_eq!(figures["used_ratio"], 1.0);
    assert!(step(12_000_000).is_empty(), "over budget: both keep firing");
    let reset = step(0);
    let mut resolved: Vec<_> = reset
        .iter()
        .map(|(k, c)| (*k, c.subject.as_str()))
        .collect();
    resolved.sort();
    assert_eq!(
        resolved,
        [
            ("resolved", "team red at 100%"),
            ("resolved", "team red at 80%")
        ],
        "a new period resolves both"
    );
}

#[test]
fn a_budget_rule_threshold_moves_the_warning_only() {
    let mut r = rule(RuleKind::Budget);
    r.threshold = 0.5;
    let budgets = [team_budget(5_000_000)];
    let snap = Snapshot {
        budgets: &budgets,
        ..Snapshot::default()
    };
    let got = evaluate(&r, &snap, Instant::now());
    let subjects: Vec<&str> = got.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["team red at 50%"]);
}
