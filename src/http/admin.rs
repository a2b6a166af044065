//! The admin API (only with `--web.enable-admin-api`): list tracked ids, forget one.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};

use crate::app::App;
use crate::event::{Key, Kind, Nanos};
use crate::exposition::seconds;

/// `GET /api/v1/admin/ids`: every tracked id with its state, and the named ids that never
/// reported.
pub async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let view = app.ingest.read();
    let ids: Vec<Value> = view
        .ids()
        .map(|(key, tracked)| {
            let entry = &tracked.entry;
            json!({
                "type": key.kind.as_str(),
                "id": &*key.id,
                "name": view.name(key),
                "group": entry.group.as_deref(),
                "status": entry.status.as_str(),
                "since": rfc3339(entry.since),
                "since_timestamp_seconds": seconds(entry.since),
                "newest_event": rfc3339(entry.newest),
                "connects": entry.connects,
                "disconnects": entry.disconnects,
            })
        })
        .collect();
    let unreported: Vec<Value> = view
        .unreported()
        .into_iter()
        .map(|(key, name)| json!({ "type": key.kind.as_str(), "id": &*key.id, "name": name }))
        .collect();
    Json(json!({ "ids": ids, "unreported": unreported }))
}

/// `DELETE /api/v1/admin/ids/{type}/{id}`: forgets one id, durably. For tokens, `id` is the
/// fingerprint. 404 when the id is not tracked.
pub async fn delete(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (kind, id) = match path {
        Ok(Path(parts)) => parts,
        Err(rejection) => {
            let body = json!({ "status": "refused", "error": rejection.body_text() });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let Some(kind) = Kind::from_label(&kind) else {
        let body = json!({ "status": "refused", "error": "type must be token or tunnel" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let key = Key::new(kind, id);
    match app.ingest.delete(key.clone()).await {
        Ok(true) => {
            tracing::info!(
                r#type = kind.as_str(),
                id = &*key.id,
                "id deleted through the admin API"
            );
            Json(json!({ "status": "deleted", "type": kind.as_str(), "id": &*key.id }))
                .into_response()
        }
        Ok(false) => {
            let body = json!({ "status": "not_found", "error": "no such id is tracked" });
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
        Err(e) => {
            let body = json!({ "status": "refused", "error": e.to_string() });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

fn rfc3339(nanos: Nanos) -> String {
    DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `POST /-/reload` (only with `--web.enable-lifecycle`): re-reads the configuration files.
pub async fn reload(State(app): State<Arc<App>>) -> Response {
    let result = tokio::task::spawn_blocking(move || app.reload()).await;
    match result {
        Ok(Ok(())) => "configuration reloaded\n".into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}
