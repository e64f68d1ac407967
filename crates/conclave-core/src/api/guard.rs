//! Who may call the API: the bearer key, browser origins, the Host header, body limits.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use super::{ApiConfig, ApiError, ApiState};

pub(crate) async fn require_key(
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    let given = req.headers().get(header::AUTHORIZATION);
    let token = given
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token {
        Some(t) if constant_time_eq(t.as_bytes(), key.as_bytes()) => next.run(req).await,
        _ => ApiError::unauthorized(given.is_some()).into_response(),
    }
}

/// Compares without returning early on the first differing byte, so response timing does
/// not reveal how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

pub(crate) async fn check_origin_and_host(
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    if state.loopback && !host_is_loopback(req.headers()) {
        return ApiError::forbidden_host().into_response();
    }
    match req.headers().get(header::ORIGIN) {
        Some(origin) if !origin_allowed(&state, origin) => {
            return ApiError::forbidden_origin().into_response();
        }
        Some(_) => {}
        // Browsers send no Origin on "no-cors" requests (`<img>`, `<script>`, a link
        // followed), which another site can make; they do mark them cross-site.
        None if is_cross_site(req.headers()) => {
            return ApiError::forbidden_cross_site().into_response();
        }
        None => {}
    }
    next.run(req).await
}

fn is_cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// POST bodies must say they are JSON. A browser page may send a "simple" cross-origin
/// POST (`text/plain`, a form) without a CORS preflight; requiring `application/json`
/// forces the preflight, which the origin rules then answer.
pub(crate) async fn require_json(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        next.run(req).await
    } else {
        ApiError::unsupported_media_type().closing()
    }
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    // HTTP/1.0 clients may send no Host; browsers always do.
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    is_loopback_host(strip_port(host))
}

fn strip_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            hostport
        }
    })
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn origin_allowed(state: &ApiState, origin: &HeaderValue) -> bool {
    origin_allowed_by(&state.config, origin)
}

fn origin_allowed_by(config: &ApiConfig, origin: &HeaderValue) -> bool {
    if config.api_key.is_some() {
        return true;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if config
        .cors_origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = strip_port(rest).trim_end_matches('.').to_ascii_lowercase();
    // Any page can be served under some `NAME.localhost` (browsers resolve them all to
    // this machine, and local tools hand them out): only the app's own web view,
    // `tauri://localhost` (macOS/Linux) or `http://tauri.localhost` (Windows), is trusted
    // without the key.
    if host.ends_with(".localhost") {
        return matches!(scheme, "http" | "https") && host == "tauri.localhost";
    }
    matches!(scheme, "http" | "https" | "tauri") && is_loopback_host(&host)
}

pub(crate) fn cors(state: &Arc<ApiState>) -> CorsLayer {
    let st = state.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin_allowed(&st, origin)
        }))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        // Browser SDKs add their own headers (openai-node's x-stainless-*); the origin is
        // what is checked, so any requested header may follow.
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(3600))
}

pub(crate) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    let mut e = ApiError::bad_request(format!("Unknown request URL: {method} {}.", uri.path()));
    e.status = StatusCode::NOT_FOUND;
    e.code = Some("unknown_url".into());
    e
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let mut e = ApiError::bad_request(format!("{method} is not supported for {}.", uri.path()));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.code = Some("method_not_supported".into());
    e
}

/// The body limit layer answers 413 in plain text; clients expect the OpenAI shape.
pub(crate) async fn shape_limit_errors(
    State(state): State<Arc<ApiState>>,
    res: Response,
) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return res;
    }
    let mut res = if is_json {
        res
    } else {
        ApiError::too_large(state.config.max_body_bytes).into_response()
    };
    // The refused body is not read to its end, so this connection cannot carry another
    // request. Saying so keeps a pooling client (reqwest, httpx) from sending its next
    // request into a socket the server is about to close.
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "::1",
            "app.localhost",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("localhost:8080"), "localhost");
        assert_eq!(strip_port("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn origins_without_a_key() {
        let open = ApiConfig::default();
        let keyed = ApiConfig {
            api_key: Some("k".repeat(32)),
            ..Default::default()
        };
        let allowed =
            |c: &ApiConfig, o: &str| origin_allowed_by(c, &HeaderValue::from_str(o).unwrap());
        for o in [
            "http://localhost:5173",
            "http://127.0.0.1:3000",
            "http://[::1]:8000",
            "tauri://localhost",
            "http://tauri.localhost",
            "https://tauri.localhost",
        ] {
            assert!(allowed(&open, o), "{o}");
        }
        for o in [
            "https://evil.example",
            "http://evil.localhost:8080",
            "http://tauri.localhost.evil.example",
            "tauri://evil.localhost",
            "null",
        ] {
            assert!(!allowed(&open, o), "{o}");
            assert!(allowed(&keyed, o), "with a key the key is the gate: {o}");
        }
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }
}
