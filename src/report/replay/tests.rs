//! Replay arithmetic on a fixture with known answers.

use super::*;

fn s(user: Option<&str>, score: f64) -> Scored {
    Scored {
        user: user.map(str::to_owned),
        score,
    }
}

/// Thresholds 3/7/12/20; u1 and u2 were blocked at critical and sent near misses; u3 was
/// flagged (medium) before; u4 only ever scored low.
fn fixture() -> Vec<Scored> {
    vec![
        s(Some("u1"), 25.0),
        s(Some("u1"), 18.0),
        s(Some("u1"), 19.5),
        s(Some("u2"), 21.0),
        s(Some("u2"), 18.5),
        s(Some("u3"), 8.0),
        s(Some("u3"), 17.0),
        s(Some("u4"), 4.0),
        s(None, 2.0),
    ]
}

#[test]
fn levels_follow_the_detector() {
    let t = ThresholdsConfig::default();
    let cases = [
        (0.0, 0),
        (2.99, 0),
        (3.0, 1),
        (7.0, 2),
        (11.9, 2),
        (12.0, 3),
        (20.0, 4),
    ];
    for (score, want) in cases {
        assert_eq!(level(&t, score), want, "score {score}");
    }
}

#[test]
fn lowering_critical_to_18_blocks_three_more_from_two_known_users() {
    let old = ThresholdsConfig::default();
    let new = ThresholdsConfig {
        critical: 18.0,
        ..old
    };
    let e = replay(&fixture(), &old, &new, &ActionsConfig::default());
    assert_eq!(e.replayed, 9);
    assert_eq!(e.levels_old, [1, 1, 1, 4, 2]);
    assert_eq!(e.levels_new, [1, 1, 1, 1, 5]);
    assert_eq!(e.newly_blocked, 3, "18.0, 19.5 (u1) and 18.5 (u2)");
    assert_eq!(e.newly_unblocked, 0);
    assert_eq!(e.newly_blocked_users, vec!["u1", "u2"]);
    assert_eq!(e.never_flagged_users, 0);
    assert_eq!(
        e.summary,
        "critical at 18 instead of 20: 3 more requests blocked, all from 2 users, \
         none from users never flagged before"
    );
}

#[test]
fn lowering_further_reaches_a_user_never_flagged_before() {
    let old = ThresholdsConfig::default();
    let new = ThresholdsConfig {
        low: 2.0,
        medium: 3.5,
        high: 3.8,
        critical: 3.9,
    };
    let e = replay(&fixture(), &old, &new, &ActionsConfig::default());
    // Everything at 4 and above is now critical: 8 requests, 5 of them newly.
    assert_eq!(e.levels_new, [0, 1, 0, 0, 8]);
    assert_eq!(e.newly_blocked, 6);
    assert_eq!(e.newly_blocked_user_count, 4);
    assert_eq!(
        e.never_flagged_users, 1,
        "u4 only ever scored low (allowed)"
    );
}

#[test]
fn raising_critical_unblocks() {
    let old = ThresholdsConfig::default();
    let new = ThresholdsConfig {
        critical: 22.0,
        ..old
    };
    let e = replay(&fixture(), &old, &new, &ActionsConfig::default());
    assert_eq!((e.newly_blocked, e.newly_unblocked), (0, 1), "u2's 21.0");
    assert_eq!(
        e.summary,
        "critical at 22 instead of 20: 1 fewer requests blocked"
    );
}

#[test]
fn near_misses_propose_a_lower_critical() {
    let p = propose(
        &fixture(),
        100,
        &ThresholdsConfig::default(),
        &ActionsConfig::default(),
        &RuleThresholds::default(),
    )
    .expect("three near misses from blocked users");
    assert_eq!(p.proposed.critical, 18.0, "floor of the lowest near miss");
    assert_eq!(p.effect.newly_blocked, 3);
    assert!(
        p.config_diff
            .contains("-    critical: 20\n+    critical: 18\n"),
        "{}",
        p.config_diff
    );
    assert!(
        p.reason.starts_with("3 requests scored 18.0–19.5"),
        "{}",
        p.reason
    );
}

#[test]
fn a_large_blocked_share_proposes_a_higher_critical() {
    // 20 scanned, 4 blocked (20 %) at 20, 21, 22, 30: raising to 23 leaves 1 (5 %).
    let scored: Vec<Scored> = [20.0, 21.0, 22.0, 30.0, 5.0]
        .iter()
        .map(|&v| s(Some("x"), v))
        .collect();
    let p = propose(
        &scored,
        20,
        &ThresholdsConfig::default(),
        &ActionsConfig::default(),
        &RuleThresholds::default(),
    )
    .expect("too tight");
    assert_eq!(p.proposed.critical, 23.0);
    assert_eq!(p.effect.newly_unblocked, 3);
}

#[test]
fn quiet_periods_propose_nothing() {
    let scored = vec![s(Some("a"), 4.0), s(Some("b"), 25.0)];
    let p = propose(
        &scored,
        100,
        &ThresholdsConfig::default(),
        &ActionsConfig::default(),
        &RuleThresholds::default(),
    );
    assert_eq!(p, None);
}

#[test]
fn checks_and_clamps() {
    let t = ThresholdsConfig::default();
    assert!(check(&t).is_ok());
    assert!(
        check(&ThresholdsConfig { high: 25.0, ..t }).is_err(),
        "not rising"
    );
    assert!(
        check(&ThresholdsConfig { low: 0.0, ..t }).is_err(),
        "below bounds"
    );
    let far = ThresholdsConfig {
        critical: 10.0,
        high: 9.0,
        ..t
    };
    let c = clamp_step(&t, &far, 0.25);
    assert_eq!((c.high, c.critical), (9.0, 15.0));
}

/// 20 scanned, 5 blocked (25 %) but every blocked score is far above any raise the proposal
/// may make (cap +50 %: 30), so raising critical would unblock nothing.
fn blocked_far_above_critical() -> Vec<Scored> {
    [40.0, 41.0, 45.0, 50.0, 60.0, 5.0]
        .iter()
        .map(|&v| s(Some("x"), v))
        .collect()
}

#[test]
fn regression_a_blocked_share_over_target_proposes_nothing_the_replay_cannot_show() {
    let t = ThresholdsConfig::default();
    let (a, r) = (ActionsConfig::default(), RuleThresholds::default());
    let scored = blocked_far_above_critical();
    assert_eq!(
        propose(&scored, 20, &t, &a, &r),
        None,
        "raising critical to 30 changes no request"
    );
    let v = review(&scored, 20, &t, &a, &r);
    assert!(
        v.note
            .starts_with("no change proposed: 25.0% of 20 scanned requests were blocked")
            && v.note
                .contains("but the replay shows no request would change"),
        "{}",
        v.note
    );
}

#[test]
fn regression_raising_critical_when_high_also_blocks_changes_nothing() {
    // high blocks too: raising critical moves 21–25 from critical to high, still blocked.
    let t = ThresholdsConfig::default();
    let a = ActionsConfig {
        high: ActionName::Block,
        ..ActionsConfig::default()
    };
    let scored: Vec<Scored> = [21.0, 22.0, 23.0, 25.0, 5.0]
        .iter()
        .map(|&v| s(Some("x"), v))
        .collect();
    assert_eq!(
        propose(&scored, 20, &t, &a, &RuleThresholds::default()),
        None
    );
}

#[test]
fn a_proposal_states_its_replay() {
    // As in `a_large_blocked_share_proposes_a_higher_critical`: 20 % blocked, 23 leaves 5 %.
    let scored: Vec<Scored> = [20.0, 21.0, 22.0, 30.0, 5.0]
        .iter()
        .map(|&v| s(Some("x"), v))
        .collect();
    let v = review(
        &scored,
        20,
        &ThresholdsConfig::default(),
        &ActionsConfig::default(),
        &RuleThresholds::default(),
    );
    let p = v.proposal.expect("the replay unblocks three requests");
    assert_eq!(
        p.reason,
        "20.0% of 20 scanned requests were blocked (critical at 20), above the 5.0% target; \
         replayed on the same 5 scored requests: critical at 23 instead of 20: 3 fewer requests \
         blocked, 5.0% of scanned requests blocked"
    );
    assert_eq!(v.note, format!("change proposed: {}", p.reason));
}

#[test]
fn a_quiet_review_says_why_nothing_is_proposed() {
    let v = review(
        &[s(Some("a"), 4.0), s(Some("b"), 25.0)],
        100,
        &ThresholdsConfig::default(),
        &ActionsConfig::default(),
        &RuleThresholds::default(),
    );
    assert_eq!(v.proposal, None);
    assert_eq!(
        v.note,
        "no change proposed: 1.0% of 100 scanned requests were blocked, within the 5.0% target \
         and no user blocked at critical sent near misses"
    );
}
