//! `GET /metrics`: the per-id series, written straight from the state, then the self-metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// Content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    // Writing 100,000 ids takes tens of milliseconds: keep it off the async threads.
    let rendered = tokio::task::spawn_blocking(move || {
        let expected = app.last_scrape_bytes.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(expected + expected / 8 + 4096);
        app.ingest.read().render(&mut out);
        let encoded = app.metrics.encode(&mut out);
        app.last_scrape_bytes.store(out.len(), Ordering::Relaxed);
        encoded.map(|()| out)
    })
    .await;

    match rendered {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(err = %e, "encoding self-metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(err = %e, "rendering metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            )
                .into_response()
        }
    }
}
