//! Routing of request paths to endpoints. The inference endpoints are read (model, stream,
//! user); any other `/v1/*` path passes through to the default upstream unread.

use http::Method;

use crate::event::Endpoint;

/// What the handler does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    /// An inference call whose body names a model.
    Inference(Endpoint),
    /// `GET /v1/models`: aliases plus the upstream's list.
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    /// The seed's `POST /generate`.
    Generate,
    /// `POST /v1/feedback`: a client's rating of an earlier answer, stored by gatehouse.
    Feedback,
    /// Any other `/v1/*` path, forwarded unread.
    Passthrough,
    NotFound,
    MethodNotAllowed,
}

pub fn route(method: &Method, path: &str) -> Route {
    let post = method == Method::POST;
    let get = method == Method::GET || method == Method::HEAD;
    let inference = |e| {
        if post {
            Route::Inference(e)
        } else {
            Route::MethodNotAllowed
        }
    };
    match path {
        "/health" | "/healthz" if get => Route::Health,
        "/ready" | "/readyz" if get => Route::Ready,
        "/health" | "/healthz" | "/ready" | "/readyz" => Route::MethodNotAllowed,
        "/generate" if post => Route::Generate,
        "/generate" => Route::MethodNotAllowed,
        "/v1/chat/completions" => inference(Endpoint::ChatCompletions),
        "/v1/completions" => inference(Endpoint::Completions),
        "/v1/embeddings" => inference(Endpoint::Embeddings),
        "/v1/responses" => inference(Endpoint::Responses),
        "/v1/models" if get => Route::Models,
        "/v1/models" => Route::MethodNotAllowed,
        "/v1/feedback" if post => Route::Feedback,
        "/v1/feedback" => Route::MethodNotAllowed,
        p if p.starts_with("/v1/models/") && get => Route::Model,
        p if p.starts_with("/v1/") => Route::Passthrough,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            (
                Method::POST,
                "/v1/chat/completions",
                Route::Inference(Endpoint::ChatCompletions),
            ),
            (Method::GET, "/v1/chat/completions", Route::MethodNotAllowed),
            (
                Method::POST,
                "/v1/responses",
                Route::Inference(Endpoint::Responses),
            ),
            (Method::GET, "/v1/responses/resp_1", Route::Passthrough),
            (Method::GET, "/v1/models", Route::Models),
            (Method::GET, "/v1/models/qwendeepseek", Route::Model),
            (Method::POST, "/generate", Route::Generate),
            (Method::GET, "/health", Route::Health),
            (Method::GET, "/v2/x", Route::NotFound),
        ];
        for (m, p, want) in cases {
            assert_eq!(route(&m, p), want, "{m} {p}");
        }
    }
}
