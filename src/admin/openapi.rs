//! The OpenAPI document's frame: title, auth schemes and tags. The paths and schemas come from
//! the handlers' `#[utoipa::path]` attributes as `api_routes` registers them.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gatehouse admin API",
        description = "Usage analytics, security events, the request log, exports and the live feed of a gatehouse LLM gateway. Every route but `/health` and `/api/session` needs `Authorization: Bearer <admin token>` or the `gatehouse_admin` session cookie from `POST /api/session`, unless no admin token is configured (loopback only). Times are RFC 3339 or unix seconds; latencies are seconds, costs USD, rates 0..=1. Errors are `{\"error\": {\"message\", \"type\"}}`."
    ),
    modifiers(&Schemes),
    security(("bearer" = []), ("session_cookie" = [])),
    tags(
        (name = "usage", description = "Usage analytics, live windows, forecast"),
        (name = "security", description = "Threat events, summary, on-demand analysis"),
        (name = "requests", description = "The request log and exports"),
        (name = "live", description = "Server-sent events for dashboards"),
        (name = "feedback", description = "Quality feedback on answers"),
        (name = "keys", description = "Virtual gateway keys: create, list, change, rotate, revoke"),
        (name = "quotas", description = "Limits and budgets, and where they stand now"),
        (name = "session", description = "Browser sign-in"),
        (name = "meta", description = "Health and Prometheus metrics"),
    )
)]
struct Frame;

struct Schemes;

impl Modify for Schemes {
    fn modify(&self, doc: &mut Document) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::session::COOKIE))),
        );
    }
}

/// The frame the router fills in.
pub(super) fn base() -> Document {
    Frame::openapi()
}
