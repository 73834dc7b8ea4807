use super::*;
use crate::config::{BudgetPeriod, LimitsConfig};

/// 2026-01-15T12:00:00Z, at the start of a minute.
const NOW: i64 = 1_768_478_400_000;

fn key(c: LimitsConfig) -> Arc<Scope> {
    Arc::new(Scope::new(
        ScopeKind::Key,
        Limits::from_config(&c).expect("limits"),
        None,
    ))
}

fn ask(key: Option<&Arc<Scope>>) -> Ask<'_> {
    Ask {
        key,
        user: None,
        team: None,
        model: None,
        upstream_model: None,
        tokens: 1,
        now_ms: NOW,
    }
}

fn none() -> Quotas {
    Quotas::build(&Config::default(), None)
}

#[test]
fn no_limits_means_no_ticket() {
    assert!(none().admit(&ask(None)).expect("admitted").is_none());
}

#[test]
fn each_rate_trips_at_exactly_its_figure() {
    let cases: [(&str, LimitsConfig, u64, Reason); 4] = [
        (
            "requests_per_minute",
            LimitsConfig {
                requests_per_minute: Some(3),
                ..LimitsConfig::default()
            },
            3,
            Reason::Requests,
        ),
        (
            "requests_per_day",
            LimitsConfig {
                requests_per_day: Some(4),
                ..LimitsConfig::default()
            },
            4,
            Reason::Requests,
        ),
        (
            "tokens_per_minute: 10 tokens at 2 a request",
            LimitsConfig {
                tokens_per_minute: Some(10),
                ..LimitsConfig::default()
            },
            5,
            Reason::Tokens,
        ),
        (
            "tokens_per_day: 7 tokens at 2 a request",
            LimitsConfig {
                tokens_per_day: Some(7),
                ..LimitsConfig::default()
            },
            3,
            Reason::Tokens,
        ),
    ];
    let q = none();
    for (what, c, allowed, reason) in cases {
        let k = key(c);
        let a = Ask {
            tokens: 2,
            ..ask(Some(&k))
        };
        for i in 0..allowed {
            let t = q
                .admit(&a)
                .unwrap_or_else(|r| panic!("{what}: #{i} refused: {r:?}"));
            // Settled with what was estimated: the counts stay as taken.
            t.expect("a ticket").settle(Some(2), None, NOW);
        }
        let r = q.admit(&a).expect_err(what);
        assert_eq!((r.scope, r.reason), (ScopeKind::Key, reason), "{what}");
    }
}

#[test]
fn the_next_minute_starts_again() {
    let q = none();
    let k = key(LimitsConfig {
        requests_per_minute: Some(1),
        ..LimitsConfig::default()
    });
    let first = q.admit(&ask(Some(&k))).expect("first").expect("ticket");
    drop(first);
    let r = q.admit(&ask(Some(&k))).expect_err("second in the minute");
    assert_eq!(
        r.retry_after_secs, 60,
        "a whole minute to wait at its start"
    );
    let later = Ask {
        now_ms: NOW + 59_500,
        ..ask(Some(&k))
    };
    assert_eq!(
        q.admit(&later)
            .expect_err("still the minute")
            .retry_after_secs,
        1
    );
    let next = Ask {
        now_ms: NOW + 60_000,
        ..ask(Some(&k))
    };
    assert!(q.admit(&next).is_ok(), "a new minute");
}

#[test]
fn a_refusal_gives_back_what_earlier_scopes_took() {
    let mut c = Config::default();
    c.quotas.global.requests_per_minute = Some(1);
    let q = Quotas::build(&c, None);
    let k = key(LimitsConfig {
        requests_per_minute: Some(10),
        concurrent: Some(10),
        ..LimitsConfig::default()
    });
    let held = q.admit(&ask(Some(&k))).expect("first").expect("ticket");
    for _ in 0..5 {
        let r = q.admit(&ask(Some(&k))).expect_err("the gateway is full");
        assert_eq!(r.scope, ScopeKind::Global);
    }
    let h = held.headers.requests.expect("request figures");
    assert_eq!(h.limit, 1, "the global limit is the tightest");
    assert_eq!(
        k.state.in_flight.get(),
        1,
        "only the held request is in flight"
    );
    let mut figures = RateHeaders::default();
    k.figures(NOW, &mut figures);
    assert_eq!(
        figures.requests.map(|f| f.remaining),
        Some(9),
        "refused requests were given back to the key"
    );
}

/// A caller that read the clock just before a minute ended, admitted just after: its counts
/// land in the new minute, so a give-back or a correction must go there too.
#[test]
fn a_late_caller_is_given_back_in_the_window_it_counted_in() {
    let mut c = Config::default();
    c.quotas.global.requests_per_minute = Some(1);
    let q = Quotas::build(&c, None);
    let k = key(LimitsConfig {
        requests_per_minute: Some(10),
        tokens_per_minute: Some(100),
        ..LimitsConfig::default()
    });
    let (next, late) = (NOW + 60_000, NOW + 59_999);
    let on_time = Ask {
        tokens: 10,
        now_ms: next,
        ..ask(Some(&k))
    };
    let first = q.admit(&on_time).expect("room").expect("ticket");
    let behind = Ask {
        now_ms: late,
        ..on_time
    };
    let r = q
        .admit(&behind)
        .expect_err("the gateway's new minute is full");
    assert_eq!(r.scope, ScopeKind::Global);
    let used = |what: fn(&ScopeView) -> &Option<Rate>| {
        what(&k.view("k", next, &TimeZone::UTC))
            .as_ref()
            .map(|r| r.used)
    };
    assert_eq!(
        (
            used(|v| &v.requests_per_minute),
            used(|v| &v.tokens_per_minute)
        ),
        (Some(1), Some(10)),
        "the refused request's request and tokens are given back in the new minute"
    );
    drop(first);
    let mut c = Config::default();
    c.quotas.global.requests_per_minute = Some(5);
    let q = Quotas::build(&c, None);
    let t = q.admit(&behind).expect("room").expect("ticket");
    assert_eq!(used(|v| &v.tokens_per_minute), Some(20));
    t.settle(Some(4), None, next + 1);
    assert_eq!(
        used(|v| &v.tokens_per_minute),
        Some(14),
        "a smaller answer gives back in the minute it was counted in"
    );
}

#[test]
fn tokens_are_reconciled_with_usage() {
    let q = none();
    let k = key(LimitsConfig {
        tokens_per_minute: Some(100),
        ..LimitsConfig::default()
    });
    let a = Ask {
        tokens: 10,
        ..ask(Some(&k))
    };
    let t = q.admit(&a).expect("room").expect("ticket");
    assert_eq!(t.headers.tokens.map(|f| f.remaining), Some(90));
    t.settle(Some(95), None, NOW + 1);
    let r = q.admit(&a).expect_err("95 used, 10 more would pass 100");
    assert_eq!(r.reason, Reason::Tokens);
    assert!(r.retryable, "the next minute has room");
    assert_eq!(r.headers.tokens.map(|f| f.remaining), Some(5));
    let small = Ask { tokens: 5, ..a };
    let t = q.admit(&small).expect("5 fit").expect("ticket");
    t.settle(Some(1), None, NOW + 2);
    let mut f = RateHeaders::default();
    k.figures(NOW + 3, &mut f);
    assert_eq!(
        f.tokens.map(|f| f.remaining),
        Some(4),
        "a smaller answer gives back"
    );
    let huge = q
        .admit(&Ask { tokens: 101, ..a })
        .expect_err("more than the limit");
    assert!(!huge.retryable, "waiting cannot help");
    assert_eq!(
        huge.message,
        "Request too large for tokens per minute on this key: limit 100, requested 101. Make the request smaller."
    );
    let unknown = q
        .admit(&Ask { tokens: 4, ..a })
        .expect("4 fit")
        .expect("ticket");
    unknown.settle(None, None, NOW + 4);
    let mut f = RateHeaders::default();
    k.figures(NOW + 5, &mut f);
    assert_eq!(
        f.tokens.map(|f| f.remaining),
        Some(0),
        "unknown usage keeps the estimate"
    );
}

#[test]
fn concurrency_is_freed_when_the_ticket_goes() {
    let q = none();
    let k = key(LimitsConfig {
        concurrent: Some(2),
        ..LimitsConfig::default()
    });
    let a = q.admit(&ask(Some(&k))).expect("1").expect("ticket");
    let b = q.admit(&ask(Some(&k))).expect("2").expect("ticket");
    let r = q.admit(&ask(Some(&k))).expect_err("3 of 2");
    assert_eq!(r.reason, Reason::Concurrent);
    b.settle(None, None, NOW);
    let c = q
        .admit(&ask(Some(&k)))
        .expect("a slot was freed")
        .expect("ticket");
    drop((a, c));
    assert_eq!(k.state.in_flight.get(), 0);
}

#[test]
fn a_budget_refuses_once_spent_and_names_no_key() {
    let q = none();
    let k = key(LimitsConfig {
        budget_usd: Some(1.0),
        per: Some(BudgetPeriod::Day),
        ..LimitsConfig::default()
    });
    let t = q
        .admit(&ask(Some(&k)))
        .expect("nothing spent")
        .expect("ticket");
    assert!(t.wants_cost());
    t.settle(None, Some(0.75), NOW);
    let t = q.admit(&ask(Some(&k))).expect("0.75 of 1").expect("ticket");
    t.settle(None, Some(0.30), NOW);
    let r = q.admit(&ask(Some(&k))).expect_err("1.05 of 1");
    assert_eq!(r.reason, Reason::Budget);
    assert_eq!(
        r.message,
        "Budget exceeded on this key: spent $1.05 of $1.00 this day; it resets in 12h0m0s."
    );
    assert_eq!(r.retry_after_secs, 12 * 3600);
    let tomorrow = Ask {
        now_ms: NOW + 12 * 3_600_000,
        ..ask(Some(&k))
    };
    assert!(q.admit(&tomorrow).is_ok(), "a new UTC day");
}

#[test]
fn user_team_model_and_global_scopes_each_apply() {
    let mut c = Config::default();
    let one = LimitsConfig {
        requests_per_minute: Some(1),
        ..LimitsConfig::default()
    };
    c.quotas.users.default = one.clone();
    c.quotas.teams.insert("red".into(), one.clone());
    c.quotas.models.insert("upstream/model".into(), one.clone());
    let q = Quotas::build(&c, None);
    let base = ask(None);
    let rows = [
        (
            "user",
            Ask {
                user: Some("ann"),
                ..base
            },
            ScopeKind::User,
        ),
        (
            "team",
            Ask {
                team: Some("red"),
                ..base
            },
            ScopeKind::Team,
        ),
        (
            "model by its upstream id",
            Ask {
                model: Some("alias"),
                upstream_model: Some("upstream/model"),
                ..base
            },
            ScopeKind::Model,
        ),
    ];
    for (what, a, kind) in rows {
        q.admit(&a).expect(what).expect("ticket");
        assert_eq!(q.admit(&a).expect_err(what).scope, kind, "{what}");
    }
    let other = Ask {
        user: Some("bob"),
        team: Some("blue"),
        ..base
    };
    assert!(
        q.admit(&other).is_ok(),
        "another user and team have their own counts"
    );
}

#[test]
fn a_reload_keeps_counting() {
    let mut c = Config::default();
    c.quotas.global.requests_per_minute = Some(1);
    let q = Quotas::build(&c, None);
    q.admit(&ask(None)).expect("first").expect("ticket");
    c.quotas.global.requests_per_minute = Some(2);
    let q = Quotas::build(&c, Some(&q));
    q.admit(&ask(None))
        .expect("second of the new 2")
        .expect("ticket");
    assert!(q.admit(&ask(None)).is_err(), "the first still counts");
}

#[test]
fn dollars_are_written_plainly() {
    for (micros, want) in [
        (0, "0.00"),
        (1_200, "0.0012"),
        (1_000, "0.001"),
        (5_000_000, "5.00"),
        (1_050_000, "1.05"),
    ] {
        assert_eq!(dollars(micros), want, "{micros}");
    }
}

#[test]
fn durations_are_written_as_go_does() {
    for (ms, want) in [
        (0, "0ms"),
        (12, "12ms"),
        (1000, "1s"),
        (8640, "8.64s"),
        (360_000, "6m0s"),
        (3_723_500, "1h2m3.5s"),
    ] {
        assert_eq!(go_duration(ms), want, "{ms}");
    }
}

#[test]
fn the_view_lists_the_most_used_users_first_and_no_more_than_asked() {
    let mut c = Config::default();
    c.quotas.users.default.requests_per_day = Some(100);
    let q = Quotas::build(&c, None);
    for (user, n) in [("u1", 1), ("u2", 3), ("u3", 2), ("u4", 2)] {
        for _ in 0..n {
            let a = Ask {
                user: Some(user),
                ..ask(None)
            };
            drop(q.admit(&a).expect("room"));
        }
    }
    let names = |top| {
        let v = q.view(std::iter::empty(), top, NOW);
        assert_eq!(v.users_tracked, 4);
        v.users.into_iter().map(|u| u.name).collect::<Vec<_>>()
    };
    assert_eq!(names(2), ["u2", "u3"], "ties go by name");
    assert_eq!(names(10), ["u2", "u3", "u4", "u1"]);
    assert!(names(0).is_empty());
    let v = q.view(std::iter::empty(), 1, NOW);
    let rpd = v.users[0].requests_per_day.as_ref().expect("a daily limit");
    assert_eq!((rpd.used, rpd.remaining), (3, 97));
}
