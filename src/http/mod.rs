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
use crate::metrics::{Limit, RequestOutcome};
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
    let protected = protected.layer(middleware::from_fn_with_state(
        Arc::clone(&app),
        require_basic_auth,
    ));

    let webhook = Router::new()
        .route(&settings.webhook_path, post(webhook::receive))
        .route(
            &format!("{}/{{secret}}", settings.webhook_path),
            post(webhook::receive_with_secret),
        );

    let limited = protected
        .merge(webhook)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), rate_limit));

    Router::new()
        .route("/-/healthy", get(pages::healthy))
        .route("/-/ready", get(pages::ready))
        .merge(limited)
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            add_configured_headers,
        ))
        .with_state(app)
}

/// Refuses requests from a source that spent its `--web.rate-limit` budget with 429.
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
    if request.uri().path().starts_with(&app.settings.webhook_path) {
        app.metrics.request(RequestOutcome::RateLimited);
    }
    if warn_now(&RATE_LIMIT_WARNED) {
        tracing::warn!(source = %client, "rate limit reached; further refusals logged at debug \
                                           for a minute");
    } else {
        tracing::debug!(source = %client, "rate limited");
    }
    error::ApiError::RateLimited.into_response()
}

static RATE_LIMIT_WARNED: AtomicU64 = AtomicU64::new(0);

/// True at most once a minute per `last` (a Unix-seconds cell), to keep floods out of logs.
pub fn warn_now(last: &AtomicU64) -> bool {
    let now = crate::app::now_seconds() as u64;
    let previous = last.load(Ordering::Relaxed);
    now >= previous + 60
        && last
            .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

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
        .and_then(|v| v.strip_prefix("Basic "))
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
        Some((user, password)) => {
            tokio::task::spawn_blocking(move || web.check_password(&user, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if authorized {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip().to_string());
    tracing::warn!(
        source = peer.as_deref().unwrap_or("unknown"),
        path = request.uri().path(),
        "basic auth failed"
    );
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

/// Adds the `http_server_config.headers` of the web config to every response.
async fn add_configured_headers(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let web = app.web();
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}
