//! The HTTP routes and the checks in front of them.
//!
//! | route | protection |
//! |---|---|
//! | `POST /webhook`, `POST /webhook/{secret}` | source allow-list, webhook secret, rate limit |
//! | `GET /`, `GET /metrics`, admin API, `POST /-/reload` | basic auth (web config), rate limit |
//! | `GET /-/healthy`, `GET /-/ready` | none |

mod admin;
pub mod error;
mod pages;
mod telemetry;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::app::App;
use crate::client::{Peer, client_ip};
use crate::metrics::Limit;
pub use telemetry::TEXT_FORMAT;

/// Builds every route of the exporter.
pub fn router(app: Arc<App>) -> Router {
    let settings = &app.settings;

    let mut protected = Router::new().route(
        &settings.telemetry_path,
        get(telemetry::metrics).layer(CompressionLayer::new().quality(CompressionLevel::Fastest)),
    );
    if settings.telemetry_path != "/" {
        protected = protected.route("/", get(pages::landing));
    }
    if settings.enable_admin_api {
        protected = protected
            .route("/api/v1/admin/ids", get(admin::list))
            .route("/api/v1/admin/ids/{type}/{id}", delete(admin::delete));
    }
    if settings.enable_lifecycle {
        protected = protected.route("/-/reload", post(admin::reload).put(admin::reload));
    }
    // Layers run outside in: the rate limit is checked before the password.
    let protected = protected
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            require_basic_auth,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), rate_limit));

    // A trailing slash, easily typed into Localtonet's form, reaches the webhook too.
    let path = &settings.webhook_path;
    let webhook = Router::new()
        .route(path, post(webhook::receive))
        .route(&format!("{path}/"), post(webhook::receive))
        .route(
            &format!("{path}/{{secret}}"),
            post(webhook::receive_with_secret),
        )
        .route(
            &format!("{path}/{{secret}}/"),
            post(webhook::receive_with_secret),
        );

    Router::new()
        .route("/-/healthy", get(pages::healthy))
        .route("/-/ready", get(pages::ready))
        .merge(protected)
        .merge(webhook)
        .fallback(pages::not_found)
        .with_state(app)
}

/// Refuses requests from a source that spent its `--web.rate-limit` budget with 429. The
/// webhook checks the same budget itself, to count its refusals among webhook requests.
async fn rate_limit(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(peer) = request.extensions().get::<Peer>().copied() else {
        return next.run(request).await;
    };
    let client = client_ip(
        peer.0.ip(),
        request.headers(),
        &app.settings.trusted_proxies,
    );
    if app.admit(client) {
        return next.run(request).await;
    }

    app.metrics.limit_hit(Limit::RateLimit);
    match RATE_LIMIT_LOG.pass() {
        Some(held_back) => tracing::warn!(
            source = %client,
            held_back,
            "rate limit reached; like refusals are logged at debug for a minute"
        ),
        None => tracing::debug!(source = %client, "rate limited"),
    }
    error::ApiError::RateLimited.into_response()
}

static RATE_LIMIT_LOG: LogGate = LogGate::new(60);
static BASIC_AUTH_LOG: LogGate = LogGate::new(1);

/// Lets one kind of warning through at most once per interval, so a flood of bad requests
/// cannot flood the log; what it holds back is logged at debug and counted.
pub struct LogGate {
    every_seconds: u64,
    last: AtomicU64,
    held_back: AtomicU64,
}

impl LogGate {
    /// A gate that passes one warning per `every_seconds`.
    pub const fn new(every_seconds: u64) -> LogGate {
        LogGate {
            every_seconds,
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this warning may be logged, `n` being how many were held back since
    /// the last one; `None` when it should go to debug.
    pub fn pass(&self) -> Option<u64> {
        let now = crate::app::now_seconds() as u64;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + self.every_seconds;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Guards bcrypt: at most one password check runs at a time, so clients with wrong passwords
/// cannot take every core (remembered good credentials skip it).
static BCRYPT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Asks for basic auth when the web config lists users.
async fn require_basic_auth(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let web = app.web();
    if web.users.is_empty() {
        return next.run(request).await;
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| strip_scheme(v, "Basic"))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| {
            v.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });

    let authorized = match credentials {
        Some((user, password)) if web.already_verified(&user, &password) => true,
        Some((user, password)) => match BCRYPT.acquire().await {
            Ok(_permit) => {
                tokio::task::spawn_blocking(move || web.check_password(&user, &password))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        },
        None => false,
    };
    if authorized {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip().to_string());
    let source = peer.as_deref().unwrap_or("unknown");
    match BASIC_AUTH_LOG.pass() {
        Some(held_back) => tracing::warn!(
            source,
            path = request.uri().path(),
            held_back,
            "basic auth failed"
        ),
        None => tracing::debug!(source, path = request.uri().path(), "basic auth failed"),
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"localtonet-exporter\""),
        )],
        "Unauthorized\n",
    )
        .into_response()
}

/// The credentials of an `Authorization` header value of the given scheme; the scheme name
/// matches ignoring case.
pub fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.trim_start().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}
