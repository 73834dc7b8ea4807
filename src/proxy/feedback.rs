//! Who may rate which request on the proxy port (`POST /v1/feedback`): only a request that
//! exists, only its own caller, and only once.
//!
//! "Exists" has two sources, because records reach the store asynchronously (through the
//! fan-out and the writer's batches, a few hundred milliseconds): `Recent`, the requests this
//! replica finished lately, noted by the `Recorder` before the last byte of the answer leaves,
//! so a client holding a whole answer can always rate it; and the store, for older requests,
//! after a restart, or when another replica served the request. The store consumer `app` wires
//! answers each `Rating` in turn — one at a time, so "once" holds without a unique index.
//!
//! "Its own caller" applies when gateway keys identify callers: the rater's key (its user and
//! team) must be the key recorded for the request (`Exchange::key_user`, team). An end-user id
//! the client names plays no part: it is the key that authenticates. Someone else's request
//! answers exactly like an unknown one, so the endpoint tells no one which ids exist. Request
//! ids are 74 random bits and only ever sent to the requester.
//!
//! Trade-offs: `Recent` holds `RECENT` requests (oldest out first), about 2–3 MB; the "once"
//! check is per replica in fleet mode, so two replicas answering the same id at the same
//! instant could both store a rating.

use quick_cache::sync::Cache;
use tokio::sync::oneshot;

use crate::event::{Exchange, Feedback};

/// Requests remembered: the gap to the store is seconds at most, this covers minutes of a busy
/// replica.
const RECENT: usize = 16_384;

/// Which gateway key made a request, as its record says: the key's user and team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    pub user: Option<String>,
    pub team: Option<String>,
}

/// Requests this replica finished lately, by id.
pub struct Recent {
    requests: Cache<String, Requester>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            requests: Cache::new(RECENT),
        }
    }
}

impl Recent {
    /// Notes a finished request.
    pub fn note(&self, ex: &Exchange) {
        let requester = Requester {
            user: ex.key_user.clone(),
            team: ex.team.clone(),
        };
        self.requests.insert(ex.id.clone(), requester);
    }

    /// Who made request `id`, if this replica finished it lately.
    pub fn get(&self, id: &str) -> Option<Requester> {
        self.requests.get(id)
    }
}

/// One rating on its way to the store, with what the proxy knows and where the answer goes.
pub struct Rating {
    pub feedback: Feedback,
    /// Who is rating; `None` when no gateway key identifies the caller (then anyone may rate).
    pub rater: Option<Requester>,
    /// Who made the request, when this replica finished it lately.
    pub recent: Option<Requester>,
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

    #[test]
    fn recent_requests_are_remembered_by_id() {
        let recent = Recent::default();
        let mut ex = Exchange::new("id-1".into(), "POST", "/v1/chat/completions");
        ex.user = Some("end-user-9".into());
        ex.key_user = Some("alice".into());
        recent.note(&ex);
        assert_eq!(recent.get("id-1"), Some(who("alice", None)));
        assert_eq!(recent.get("id-2"), None);
    }
}
