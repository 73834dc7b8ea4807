//! Who may rate which request on the proxy port (`POST /v1/feedback`): only a request that
//! exists, only its own caller, and only once.
//!
//! "Exists" has two sources, because records reach the store asynchronously (through the
//! fan-out and the writer's batches, a few hundred milliseconds): `Recent`, the requests this
//! replica finished lately, noted by the record fan-out (off the proxy's path, milliseconds
//! after the answer; the consumer waits that long for an id it does not know yet); and the
//! store, for older requests, after a restart, or when another replica served the request. The
//! consumer `app` wires answers each `Rating` in turn — one at a time, so "once" holds without
//! a unique index.
//!
//! "Its own caller" applies when gateway keys identify callers: the rater's key (its user and
//! team) must be the key recorded for the request (`Exchange::key_user`, team). An end-user id
//! the client names plays no part: it is the key that authenticates. Someone else's request
//! answers exactly like an unknown one, so the endpoint tells no one which ids exist. Request
//! ids are 74 random bits and only ever sent to the requester.
//!
//! Trade-off: the "once"
//! check is per replica in fleet mode, so two replicas answering the same id at the same
//! instant could both store a rating.

use tokio::sync::oneshot;

use crate::event::Feedback;

/// Which gateway key made a request, as its record says: the key's user and team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    pub user: Option<String>,
    pub team: Option<String>,
}

/// One rating on its way to the store, with what the proxy knows and where the answer goes.
pub struct Rating {
    pub feedback: Feedback,
    /// Who is rating; `None` when no gateway key identifies the caller (then anyone may rate).
    pub rater: Option<Requester>,
    pub reply: oneshot::Sender<Result<(), Refusal>>,
}

/// Why a rating was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such request — or not the rater's (the two are not told apart).
    Unknown,
    /// The request has been rated already.
    Rated,
    /// The store could not be asked or written.
    Unavailable,
}

/// Whether `rater` may rate a request made by `requester` (`None`: no such request), which has
/// `rated` already or not.
///
/// # Errors
/// The `Refusal` that applies, in that order.
pub fn decide(
    rater: Option<&Requester>,
    requester: Option<&Requester>,
    rated: bool,
) -> Result<(), Refusal> {
    let Some(requester) = requester else {
        return Err(Refusal::Unknown);
    };
    if rater.is_some_and(|r| r != requester) {
        return Err(Refusal::Unknown);
    }
    if rated {
        return Err(Refusal::Rated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, team: Option<&str>) -> Requester {
        Requester {
            user: Some(user.into()),
            team: team.map(Into::into),
        }
    }

    /// Name, rater, requester, rated already, decision.
    type Case<'a> = (
        &'a str,
        Option<&'a Requester>,
        Option<&'a Requester>,
        bool,
        Result<(), Refusal>,
    );

    #[test]
    fn decisions() {
        let (alice, bob) = (who("alice", Some("a")), who("bob", Some("a")));
        let alice_b = who("alice", Some("b"));
        let cases: &[Case] = &[
            ("own request", Some(&alice), Some(&alice), false, Ok(())),
            ("no keys: anyone", None, Some(&bob), false, Ok(())),
            (
                "unknown id",
                Some(&alice),
                None,
                false,
                Err(Refusal::Unknown),
            ),
            (
                "unknown id, no keys",
                None,
                None,
                false,
                Err(Refusal::Unknown),
            ),
            (
                "someone else's",
                Some(&alice),
                Some(&bob),
                false,
                Err(Refusal::Unknown),
            ),
            (
                "same user, other team",
                Some(&alice_b),
                Some(&alice),
                false,
                Err(Refusal::Unknown),
            ),
            (
                "someone else's, rated",
                Some(&alice),
                Some(&bob),
                true,
                Err(Refusal::Unknown),
            ),
            (
                "rated",
                Some(&alice),
                Some(&alice),
                true,
                Err(Refusal::Rated),
            ),
        ];
        for (name, rater, requester, rated, want) in cases {
            assert_eq!(decide(*rater, *requester, *rated), *want, "{name}");
        }
    }
}
