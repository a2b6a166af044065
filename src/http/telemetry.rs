//! `GET /metrics`: the per-id series, written from a snapshot of the state, then the
//! self-metrics.
//!
//! The snapshot is taken under one read lock, so a scrape is consistent (no id is seen in two
//! states); the text is then written piece by piece as the body is sent, so a scrape of
//! 100,000 ids (27 MB of text) holds a few hundred kilobytes of it at a time.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::app::App;
use crate::exposition::{self, Writer};

/// Content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Size of the pieces the body is written in.
const PIECE_BYTES: usize = 256 * 1024;

/// Answers a scrape.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (samples, unreported) = {
        let view = app.ingest.read();
        (view.samples(), view.unreported_labels())
    };
    let mut tail = Vec::new();
    exposition::write_unreported(&mut tail, unreported.iter().map(|l| &**l));
    if let Err(e) = app.metrics.encode(&mut tail) {
        tracing::error!(err = %e, "encoding self-metrics failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response();
    }

    let mut writer = Writer::new(samples);
    let mut tail = Some(tail);
    let pieces = std::iter::from_fn(move || {
        if writer.is_done() {
            return tail.take().map(Bytes::from);
        }
        let mut piece = Vec::with_capacity(PIECE_BYTES + 1024);
        writer.write(&mut piece, PIECE_BYTES);
        Some(Bytes::from(piece))
    });
    let body = Body::from_stream(futures_util::stream::iter(pieces.map(Ok::<_, Infallible>)));
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}
