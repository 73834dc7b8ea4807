//! The dashboard and the API docs page: static files compiled into the binary (`assets/`),
//! served without the token — they hold no data; every figure they show comes from the
//! token- or cookie-guarded API. No CDN, no build step: plain HTML, CSS and JavaScript, the
//! charts drawn as SVG by `dashboard.js` itself.
//!
//! Every page gets a strict Content-Security-Policy (same-origin scripts, styles and
//! connections only, no inline script) and may not be framed.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// One embedded file: its path under `assets/`, served at `route`.
struct Asset {
    route: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        route: "/dashboard",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/dashboard.html"),
    },
    Asset {
        route: "/dashboard/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/dashboard.js"),
    },
    Asset {
        route: "/dashboard/gatehouse.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/gatehouse.css"),
    },
    Asset {
        route: "/docs",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/docs.html"),
    },
    Asset {
        route: "/docs/docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/docs.js"),
    },
];

fn serve(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut rsp = Response::new(body.into());
    let h = rsp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    rsp
}

/// `/openapi-proxy.json`: the proxy port's OpenAPI document, like `/openapi.json` without the
/// token (it holds no data, only the routes and the passthrough list).
pub(super) async fn proxy_openapi(
    axum::extract::State(s): axum::extract::State<super::AdminState>,
) -> Response {
    match s.proxy_openapi.as_ref().and_then(|doc| doc()) {
        Some(doc) => serve("application/json", doc.to_string()),
        None => super::routes::not_found().await.into_response(),
    }
}

/// The pages, their scripts and styles, `/` (→ `/dashboard`) and `/openapi.json`.
pub(super) fn router<S: Clone + Send + Sync + 'static>(openapi_json: String) -> Router<S> {
    let mut r = Router::new().route("/", get(|| async { Redirect::to("/dashboard") }));
    for a in ASSETS {
        let (ct, body) = (a.content_type, a.body);
        r = r.route(a.route, get(move || async move { serve(ct, body) }));
    }
    let openapi = Bytes::from(openapi_json);
    r.route(
        "/openapi.json",
        get(move || {
            let body = openapi.clone();
            async move { serve("application/json", body) }
        }),
    )
}
