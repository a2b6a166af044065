//! `POST /webhook`: Localtonet's events in.
//!
//! Checks, in order: source address (403), secret (401, or 404 for a wrong path secret),
//! `group` parameter (400), body size and time (413, 408), payload (400), then the state
//! (507 when the series cap is reached, 503 when the store fails). A 200 answer means every
//! event is durable; its body says what each event did.

use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;

use super::LogGate;
use super::error::ApiError;
use crate::app::App;
use crate::client::{Peer, client_ip, is_in};
use crate::event::Event;
use crate::metrics::{Limit, RequestOutcome};
use crate::payload;
use crate::state::Outcome;

/// Longest accepted `group` value.
pub const MAX_GROUP_LEN: usize = 64;

/// The webhook without a secret in the path.
pub async fn receive(State(app): State<Arc<App>>, request: Request) -> Response {
    respond(&app, None, request).await
}

/// The webhook with the secret as the last path segment.
pub async fn receive_with_secret(
    State(app): State<Arc<App>>,
    Path(secret): Path<String>,
    request: Request,
) -> Response {
    respond(&app, Some(secret), request).await
}

async fn respond(app: &App, path_secret: Option<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    let client = client_ip(peer, &parts.headers, &app.settings.trusted_proxies);
    let query = parts.uri.query().unwrap_or("");
    match handle(app, client, path_secret, query, &parts.headers, body).await {
        Ok(response) => {
            app.metrics.request(RequestOutcome::Accepted);
            response
        }
        Err(error) => {
            if error.outcome() == RequestOutcome::RateLimited {
                app.metrics.limit_hit(Limit::RateLimit);
            }
            app.metrics.request(error.outcome());
            log_refusal(&error, client);
            error.into_response()
        }
    }
}

/// Logs a refused request at warn, at most once a second per outcome (once a minute for
/// series-limit refusals: a full exporter refuses every new id); the rest go to debug.
fn log_refusal(error: &ApiError, client: IpAddr) {
    static GATES: [LogGate; 10] = [const { LogGate::new(1) }; 10];
    static SERIES_LIMIT: LogGate = LogGate::new(60);
    let outcome = error.outcome();
    let gate = match outcome {
        RequestOutcome::SeriesLimit => &SERIES_LIMIT,
        other => &GATES[other as usize % GATES.len()],
    };
    match gate.pass() {
        Some(held_back) => tracing::warn!(
            source = %client,
            status = error.status().as_u16(),
            outcome = outcome.as_str(),
            reason = %error,
            held_back,
            "webhook refused"
        ),
        None => tracing::debug!(
            source = %client,
            outcome = outcome.as_str(),
            reason = %error,
            "webhook refused"
        ),
    }
}

async fn handle(
    app: &App,
    client: IpAddr,
    path_secret: Option<String>,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let settings = &app.settings;
    if !settings.allowed_cidrs.is_empty() && !is_in(client, &settings.allowed_cidrs) {
        return Err(ApiError::Forbidden);
    }
    if !app.admit(client) {
        return Err(ApiError::RateLimited);
    }
    let query = Query::parse(query);
    authorize(app, path_secret.as_deref(), &query.secrets, headers)?;
    let group = query
        .group
        .map(|g| check_group(&g).map(|()| g.into_boxed_str()))
        .transpose()?;

    let body = read_body(app, headers, body).await?;
    let received = chrono::Utc::now();
    let events = payload::parse(&body, &settings.payload, received)?;
    let outcomes = app.ingest.apply(events.clone(), group).await?;

    let received_ns = received.timestamp_nanos_opt().unwrap_or(i64::MAX);
    for (event, outcome) in events.iter().zip(&outcomes) {
        app.metrics.event(event.key.kind, *outcome);
        app.metrics
            .event_delay((received_ns.saturating_sub(event.at)) as f64 / 1e9);
        tracing::debug!(
            r#type = event.key.kind.as_str(),
            id = &*event.key.id,
            status = event.status.as_str(),
            outcome = outcome.label(),
            "event"
        );
    }
    Ok(Json(accepted_body(&events, &outcomes)).into_response())
}

/// The answer to an accepted body: each event's outcome, in the order of the body.
#[derive(Serialize)]
struct Answer<'a> {
    events: Vec<AnsweredEvent<'a>>,
    status: &'static str,
}

/// What one event of an accepted body did.
#[derive(Serialize)]
struct AnsweredEvent<'a> {
    id: &'a str,
    index: usize,
    outcome: &'static str,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn accepted_body<'a>(events: &'a [Event], outcomes: &[Outcome]) -> Answer<'a> {
    let mut answered: Vec<AnsweredEvent<'a>> = events
        .iter()
        .zip(outcomes)
        .map(|(event, outcome)| AnsweredEvent {
            id: event.shown_id.as_deref().unwrap_or(&event.key.id),
            index: event.index,
            outcome: outcome.label(),
            status: event.status.as_str(),
            kind: event.key.kind.as_str(),
        })
        .collect();
    answered.sort_by_key(|event| event.index);
    Answer {
        events: answered,
        status: "accepted",
    }
}

/// The query parameters the webhook reads; others are ignored.
#[derive(Default)]
struct Query {
    /// The first `group` parameter.
    group: Option<String>,
    /// Every `secret` parameter: the request is authorised if one matches.
    secrets: Vec<String>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut parsed = Query::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "group" => {
                    parsed.group.get_or_insert_with(|| value.into_owned());
                }
                "secret" => parsed.secrets.push(value.into_owned()),
                _ => {}
            }
        }
        parsed
    }
}

fn authorize(
    app: &App,
    path_secret: Option<&str>,
    query_secrets: &[String],
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(secret) = app.secret() else {
        return Ok(());
    };
    if let Some(candidate) = path_secret {
        return if secret.matches(candidate) {
            Ok(())
        } else {
            Err(ApiError::WrongPathSecret)
        };
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::strip_scheme(v, "Bearer"));
    let candidates = query_secrets.iter().map(String::as_str).chain(bearer);
    // Every candidate is compared, so the time taken does not say which one matched.
    if candidates.fold(false, |found, c| secret.matches(c) | found) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// A group is 1 to 64 characters from `A-Z a-z 0-9 _ . -`.
fn check_group(group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::BadGroup("is empty"));
    }
    if group.len() > MAX_GROUP_LEN {
        return Err(ApiError::BadGroup("is longer than 64 characters"));
    }
    if !group
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(ApiError::BadGroup("may only contain A-Z a-z 0-9 _ . -"));
    }
    Ok(())
}

async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let limit = app.settings.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        app.metrics.limit_hit(Limit::BodySize);
        return Err(ApiError::TooLarge { limit });
    }

    let timeout: Duration = app.settings.body_timeout;
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => {
            app.metrics.limit_hit(Limit::BodyTimeout);
            Err(ApiError::BodyTimeout {
                seconds: timeout.as_secs(),
            })
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            app.metrics.limit_hit(Limit::BodySize);
            Err(ApiError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::BodyRead(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_short_and_plain() {
        assert!(check_group("office-1.eu_west").is_ok());
        for bad in ["", "a b", "ü", "a\"b", &"g".repeat(65)] {
            assert!(check_group(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_takes_the_first_group_and_secret_and_ignores_the_rest() {
        let q = Query::parse("group=a&x=1&group=b&secret=s%2Dt&secret=u");
        assert_eq!(q.group.as_deref(), Some("a"));
        assert_eq!(q.secrets, ["s-t", "u"]);
    }
}
