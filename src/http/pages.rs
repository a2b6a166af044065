//! The landing page and the health endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;

/// `GET /`: what this is, its version, and links.
pub async fn landing(State(app): State<Arc<App>>) -> Html<String> {
    let settings = &app.settings;
    let mut links = vec![
        (settings.telemetry_path.clone(), "Metrics"),
        ("/-/healthy".to_string(), "Health"),
        ("/-/ready".to_string(), "Readiness"),
    ];
    if settings.enable_admin_api {
        links.push(("/api/v1/admin/ids".to_string(), "Tracked ids (admin API)"));
    }
    let items: String = links
        .iter()
        .map(|(href, text)| format!("<li><a href=\"{href}\">{text}</a></li>"))
        .collect();
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Localtonet Exporter</title>\
         </head><body><h1>Localtonet Exporter</h1><p>Version {version}. Receives Localtonet \
         webhooks at <code>POST {webhook}</code> and exposes the state of every token and \
         tunnel to Prometheus.</p><ul>{items}</ul></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        webhook = settings.webhook_path,
    ))
}

/// `GET /-/healthy`: the process is up and serving.
pub async fn healthy() -> &'static str {
    "localtonet-exporter is healthy.\n"
}

/// `GET /-/ready`: the state is loaded and the exporter is not shutting down.
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        "localtonet-exporter is ready.\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "localtonet-exporter is not ready.\n",
        )
            .into_response()
    }
}

/// Any path nobody serves.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "not found\n",
    )
        .into_response()
}
