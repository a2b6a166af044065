//! Reading webhook bodies into validated [`Event`]s.
//!
//! The body decides, not the Content-Type header: it must be one JSON event object or a JSON
//! array of them. Keys and the values of `Type` and `Status` match ignoring case; unknown keys
//! are ignored. A body is accepted whole or refused whole: one bad event refuses the body, so a
//! sender's retry is always safe.
//!
//! What an acceptable id looks like:
//! - a tunnel id is 1 to 128 characters from `A-Z a-z 0-9` and `- _ . : ~ + = / @`;
//! - a token is 1 to 256 characters without whitespace or control characters. It is a
//!   credential: it is replaced by its fingerprint here, and error messages never quote it.
//!   With `--webhook.expose-token-ids` the token becomes the label value, so the tunnel rule
//!   applies to it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::action_date::{self, Zone};
use crate::event::{Event, Key, Kind, Status};
use crate::fingerprint;

/// Longest accepted tunnel id, in bytes.
pub const MAX_TUNNEL_ID_LEN: usize = 128;
/// Longest accepted token, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;
/// Characters allowed in a tunnel id besides ASCII letters and digits.
pub const TUNNEL_ID_PUNCTUATION: &str = "-_.:~+=/@";
/// Events dated before this (2000-01-01T00:00:00Z, in Unix seconds) are refused.
pub const EARLIEST_ACTION_DATE: i64 = 946_684_800;

/// How bodies are read; built once from the flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// Zone for ActionDates without an offset (`--webhook.timezone`).
    pub zone: Zone,
    /// How far ahead of the clock an ActionDate may be (`--webhook.max-future-skew`).
    pub max_future_skew: Duration,
    /// Show raw tokens instead of fingerprints (`--webhook.expose-token-ids`).
    pub expose_token_ids: bool,
}

impl Default for Options {
    /// The flags' defaults: UTC, five minutes of skew, tokens shown by fingerprint.
    fn default() -> Options {
        Options {
            zone: Zone::utc(),
            max_future_skew: Duration::from_secs(300),
            expose_token_ids: false,
        }
    }
}

/// A field of a Localtonet event, named as Localtonet documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The tunnel id or the authtoken.
    Id,
    /// When the event happened.
    ActionDate,
    /// `Token` or `Tunnel`, in any case.
    Type,
    /// `Connected` or `Disconnected`, in any case.
    Status,
}

impl Field {
    const ALL: [Field; 4] = [Field::Id, Field::ActionDate, Field::Type, Field::Status];

    /// The field's name as Localtonet writes it, e.g. `ActionDate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "Id",
            Field::ActionDate => "ActionDate",
            Field::Type => "Type",
            Field::Status => "Status",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The field is not in the object.
    Missing,
    /// Two keys name the field (for example `Id` and `id`).
    Repeated,
    /// The value is not a JSON string; holds the JSON type found.
    NotAString(&'static str),
    /// The string is empty.
    Empty,
    /// The string is longer than the limit, in bytes.
    TooLong(usize),
    /// The string has characters that are not allowed; says which are.
    BadCharacters(&'static str),
    /// `Type` or `Status` has a value that is not one of the allowed ones.
    Unknown {
        /// The value sent; a longer one is cut to 40 characters and `…`.
        value: String,
        /// The allowed values, comma-separated.
        allowed: &'static str,
    },
    /// ActionDate is not a date-time of an accepted form.
    NotADate,
    /// ActionDate is before 2000; holds how long before, in seconds.
    TooEarly {
        /// How long before 2000-01-01T00:00:00Z the date is, in seconds.
        before_seconds: f64,
        /// The `--webhook.timezone` in force, as written in messages.
        zone: String,
    },
    /// ActionDate is further ahead of the clock than allowed.
    TooFarAhead {
        /// How far ahead of this machine's clock the date is, in seconds.
        ahead_seconds: f64,
        /// The `--webhook.max-future-skew` in force, in seconds.
        max_seconds: f64,
        /// The `--webhook.timezone` in force, as written in messages.
        zone: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("is missing"),
            Reason::Repeated => f.write_str("is given more than once (keys match ignoring case)"),
            Reason::NotAString(found) => write!(f, "must be a string, got {found}"),
            Reason::Empty => f.write_str("is empty"),
            Reason::TooLong(max) => write!(f, "is longer than {max} bytes"),
            Reason::BadCharacters(allowed) => write!(f, "may only contain {allowed}"),
            Reason::Unknown { value, allowed } => {
                write!(f, "has unknown value {value:?}; allowed: {allowed}")
            }
            Reason::NotADate => f.write_str(action_date::EXPECTED_FORMAT),
            Reason::TooEarly {
                before_seconds,
                zone,
            } => write!(
                f,
                "is {} before 2000-01-01T00:00:00Z, the earliest accepted date; check the \
                 sender's clock and --webhook.timezone (now {zone})",
                action_date::human_duration(*before_seconds)
            ),
            Reason::TooFarAhead {
                ahead_seconds,
                max_seconds,
                zone,
            } => write!(
                f,
                "is {} ahead of this exporter's clock (at most {} allowed by \
                 --webhook.max-future-skew); if the sender writes local time without an \
                 offset, set --webhook.timezone to its zone (now {zone})",
                action_date::human_duration(*ahead_seconds),
                action_date::human_duration(*max_seconds)
            ),
        }
    }
}

/// Why a body was refused. The text names the event, the field and the reason, and never
/// quotes an `Id` (it may be a token).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The body is empty or only whitespace.
    #[error("body is empty: expected a JSON event object or an array of them")]
    Empty,
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    /// The body or an array element is JSON but not an object.
    #[error("{}expected a JSON object with Id, ActionDate, Type and Status, got {found}",
        Position(*index))]
    NotAnObject {
        /// Position in the array, or `None` when the body itself is not an object.
        index: Option<usize>,
        /// The JSON type found instead, e.g. `a string`.
        found: &'static str,
    },
    /// One field of one event is wrong.
    #[error("{}field {field} {reason}", Position(*index))]
    Field {
        /// Position in the array, or `None` for a single-object body.
        index: Option<usize>,
        /// The field at fault.
        field: Field,
        /// What is wrong with it.
        reason: Reason,
    },
}

impl PayloadError {
    /// The field at fault, if the error is about one.
    pub fn field(&self) -> Option<Field> {
        match self {
            PayloadError::Field { field, .. } => Some(*field),
            _ => None,
        }
    }

    /// The array index of the event at fault, if the body is an array.
    pub fn index(&self) -> Option<usize> {
        match self {
            PayloadError::Field { index, .. } | PayloadError::NotAnObject { index, .. } => *index,
            _ => None,
        }
    }

    /// True when the body was refused only because an ActionDate is out of the accepted range
    /// (usually a wrong clock or `--webhook.timezone`).
    pub fn is_date_out_of_range(&self) -> bool {
        matches!(
            self,
            PayloadError::Field {
                reason: Reason::TooEarly { .. } | Reason::TooFarAhead { .. },
                ..
            }
        )
    }
}

/// Prefix that says which array element an error is about.
struct Position(Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "event [{i}]: "),
            None => Ok(()),
        }
    }
}

/// Reads a webhook body received at `now`.
///
/// Returns the events sorted by ActionDate; events with equal dates keep their order in the
/// body, which is their arrival order. `[]` gives no events.
pub fn parse(
    body: &[u8],
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, PayloadError> {
    // Some .NET writers start UTF-8 text with a byte order mark; JSON parsers refuse it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let node: Node =
        serde_json::from_slice(body).map_err(|e| PayloadError::Syntax(e.to_string()))?;

    let mut events = match node {
        Node::Object(pairs) => vec![parse_event(&pairs, None, options, now)?],
        Node::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Node::Object(pairs) => parse_event(pairs, Some(i), options, now),
                Node::Array(_) => Err(not_an_object(Some(i), "an array")),
                Node::Other(found) => Err(not_an_object(Some(i), found)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Node::Other(found) => return Err(not_an_object(None, found)),
    };
    events.sort_by_key(|e| e.at);
    Ok(events)
}

fn not_an_object(index: Option<usize>, found: &'static str) -> PayloadError {
    PayloadError::NotAnObject { index, found }
}

/// A body or array element as read, objects kept as their key-value pairs in order: a JSON
/// map would keep only the last of two equal keys, and a repeated key must be refused.
enum Node {
    Object(Vec<(String, Value)>),
    Array(Vec<Node>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry::<String, Value>()? {
            pairs.push(pair);
        }
        Ok(Node::Object(pairs))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Other("null"))
    }
}

fn parse_event(
    pairs: &[(String, Value)],
    index: Option<usize>,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Event, PayloadError> {
    let fail = |field, reason| PayloadError::Field {
        index,
        field,
        reason,
    };
    let [id, date, kind, status] = find_fields(pairs).map_err(|(f, r)| fail(f, r))?;

    let kind = match kind {
        s if s.eq_ignore_ascii_case("token") => Kind::Token,
        s if s.eq_ignore_ascii_case("tunnel") => Kind::Tunnel,
        s => return Err(fail(Field::Type, unknown(s, "Token, Tunnel"))),
    };
    let status = match status {
        s if s.eq_ignore_ascii_case("connected") => Status::Connected,
        s if s.eq_ignore_ascii_case("disconnected") => Status::Disconnected,
        s => return Err(fail(Field::Status, unknown(s, "Connected, Disconnected"))),
    };
    let at = parse_date(date, options, now).map_err(|r| fail(Field::ActionDate, r))?;
    let (id, shown_id) =
        public_id(kind, id, options.expose_token_ids).map_err(|r| fail(Field::Id, r))?;

    Ok(Event {
        key: Key::new(kind, id),
        status,
        at,
        index: index.unwrap_or(0),
        shown_id,
    })
}

/// Finds Id, ActionDate, Type and Status (in that order), ignoring key case.
fn find_fields(pairs: &[(String, Value)]) -> Result<[&str; 4], (Field, Reason)> {
    let mut found: [Option<&str>; 4] = [None; 4];
    for (key, value) in pairs {
        let Some(slot) = Field::ALL
            .iter()
            .position(|f| key.eq_ignore_ascii_case(f.as_str()))
        else {
            continue;
        };
        let field = Field::ALL[slot];
        if found[slot].is_some() {
            return Err((field, Reason::Repeated));
        }
        match value {
            Value::String(s) => found[slot] = Some(s),
            other => return Err((field, Reason::NotAString(json_type(other)))),
        }
    }

    let mut fields = [""; 4];
    for (slot, field) in Field::ALL.iter().enumerate() {
        fields[slot] = found[slot].ok_or((*field, Reason::Missing))?;
    }
    Ok(fields)
}

fn unknown(value: &str, allowed: &'static str) -> Reason {
    const SHOWN: usize = 40;
    let mut shown: String = value.chars().take(SHOWN).collect();
    if value.chars().nth(SHOWN).is_some() {
        shown.push('…');
    }
    Reason::Unknown {
        value: shown,
        allowed,
    }
}

fn parse_date(text: &str, options: &Options, now: DateTime<Utc>) -> Result<i64, Reason> {
    let at = action_date::parse(text, &options.zone).ok_or(Reason::NotADate)?;
    let zone = options.zone.to_string();

    let earliest = DateTime::from_timestamp(EARLIEST_ACTION_DATE, 0).unwrap_or_default();
    let before = (earliest - at).as_seconds_f64();
    if before > 0.0 {
        return Err(Reason::TooEarly {
            before_seconds: before,
            zone,
        });
    }
    let ahead = (at - now).as_seconds_f64();
    let max = options.max_future_skew.as_secs_f64();
    if ahead > max {
        return Err(Reason::TooFarAhead {
            ahead_seconds: ahead,
            max_seconds: max,
            zone,
        });
    }
    action_date::to_nanos(&at).ok_or(Reason::NotADate)
}

/// Validates an `Id` and returns the key's id with, for a token shown raw, the raw token.
///
/// A tunnel id is its own key. A token's key is its fingerprint; with `expose` the raw token
/// comes back too, to be shown in labels, and must then pass the label id rules.
fn public_id(kind: Kind, id: &str, expose: bool) -> Result<(String, Option<Box<str>>), Reason> {
    if kind == Kind::Tunnel {
        check_label_id(id)?;
        return Ok((id.to_string(), None));
    }
    if id.is_empty() {
        return Err(Reason::Empty);
    }
    if expose {
        check_label_id(id)?;
        return Ok((fingerprint::of(id), Some(id.into())));
    }
    if id.len() > MAX_TOKEN_LEN {
        return Err(Reason::TooLong(MAX_TOKEN_LEN));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Reason::BadCharacters(
            "characters other than whitespace and controls",
        ));
    }
    Ok((fingerprint::of(id), None))
}

/// Checks an id that is shown as a label value as it is.
pub fn check_label_id(id: &str) -> Result<(), Reason> {
    if id.is_empty() {
        return Err(Reason::Empty);
    }
    if id.len() > MAX_TUNNEL_ID_LEN {
        return Err(Reason::TooLong(MAX_TUNNEL_ID_LEN));
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || TUNNEL_ID_PUNCTUATION.as_bytes().contains(&b);
    if !id.bytes().all(allowed) {
        return Err(Reason::BadCharacters("A-Z a-z 0-9 and - _ . : ~ + = / @"));
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options::default()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-04-29T13:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn parse_str(body: &str) -> Result<Vec<Event>, PayloadError> {
        parse(body.as_bytes(), &options(), now())
    }

    const SAMPLE: &str = r#"{"Id": "9xknivVmUWwu1dqBOHRybM78",
        "ActionDate": "2024-04-29T12:35:17.154580", "Type": "Token", "Status": "Disconnected"}"#;

    #[test]
    fn documented_sample_becomes_a_fingerprinted_token_event() {
        let events = parse_str(SAMPLE).expect("sample is valid");
        assert_eq!(
            events,
            vec![Event {
                key: Key::new(Kind::Token, fingerprint::of("9xknivVmUWwu1dqBOHRybM78")),
                status: Status::Disconnected,
                at: 1_714_394_117_154_580_000,
                index: 0,
                shown_id: None,
            }]
        );
    }

    #[test]
    fn keys_and_enum_values_match_ignoring_case() {
        let body = r#"{"id":"t1","actionDate":"2024-04-29T12:35:17Z","TYPE":"tUnNeL",
            "status":"CONNECTED"}"#;
        let events = parse_str(body).expect("valid");
        assert_eq!(events[0].key, Key::new(Kind::Tunnel, "t1"));
        assert_eq!(events[0].status, Status::Connected);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let body = r#"{"Id":"t1","ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel",
            "Status":"Connected","TokenName":"x","Meta":{"deep":[1,2,{"a":null}]}}"#;
        assert_eq!(parse_str(body).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn expose_token_ids_keeps_the_fingerprint_as_identity_and_the_raw_token_to_show() {
        let opts = Options {
            expose_token_ids: true,
            ..options()
        };
        let events = parse(SAMPLE.as_bytes(), &opts, now()).expect("valid");
        assert_eq!(
            &*events[0].key.id,
            fingerprint::of("9xknivVmUWwu1dqBOHRybM78")
        );
        assert_eq!(
            events[0].shown_id.as_deref(),
            Some("9xknivVmUWwu1dqBOHRybM78")
        );
        let shown = parse(SAMPLE.as_bytes(), &options(), now()).expect("valid");
        assert_eq!(shown[0].shown_id, None);
    }

    #[test]
    fn events_remember_their_position_in_the_body() {
        let body = format!(
            "[{}, {}]",
            SAMPLE,
            SAMPLE.replace("12:35:17.154580", "12:35:16")
        );
        let events = parse_str(&body).expect("valid");
        let positions: Vec<usize> = events.iter().map(|e| e.index).collect();
        assert_eq!(positions, [1, 0], "sorted by date, positions kept");
    }

    #[test]
    fn array_is_sorted_by_action_date_keeping_arrival_order_on_ties() {
        let body = r#"[
            {"Id":"b","ActionDate":"2024-04-29T12:35:18Z","Type":"Tunnel","Status":"Connected"},
            {"Id":"a","ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel","Status":"Disconnected"},
            {"Id":"c","ActionDate":"2024-04-29T12:35:18Z","Type":"Tunnel","Status":"Connected"}
        ]"#;
        let ids: Vec<String> = parse_str(body)
            .expect("valid")
            .iter()
            .map(|e| e.key.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn a_utf8_byte_order_mark_is_skipped() {
        let body = [b"\xEF\xBB\xBF".as_slice(), SAMPLE.as_bytes()].concat();
        assert!(parse(&body, &options(), now()).is_ok());
    }

    #[test]
    fn empty_array_is_no_events() {
        assert_eq!(parse_str("[]"), Ok(vec![]));
        assert_eq!(parse_str(" [ ]\n"), Ok(vec![]));
    }

    #[test]
    fn empty_body_and_empty_object_are_refused_with_a_reason() {
        assert_eq!(parse_str(""), Err(PayloadError::Empty));
        assert_eq!(parse_str(" \n"), Err(PayloadError::Empty));
        let err = parse_str("{}").expect_err("no fields");
        assert_eq!(err.field(), Some(Field::Id));
        assert_eq!(err.to_string(), "field Id is missing");
    }

    #[test]
    fn unknown_type_and_status_name_the_field_and_allowed_values() {
        let body = SAMPLE.replace("\"Token\"", "\"Foo\"");
        assert_eq!(
            parse_str(&body).expect_err("bad type").to_string(),
            "field Type has unknown value \"Foo\"; allowed: Token, Tunnel"
        );
        let body = SAMPLE.replace("\"Disconnected\"", "\"Paused\"");
        assert_eq!(
            parse_str(&body).expect_err("bad status").to_string(),
            "field Status has unknown value \"Paused\"; allowed: Connected, Disconnected"
        );
    }

    #[test]
    fn numbers_and_nulls_where_strings_belong_are_refused() {
        let body = r#"{"Id":12345,"ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel",
            "Status":"Connected"}"#;
        assert_eq!(
            parse_str(body).expect_err("number").to_string(),
            "field Id must be a string, got a number"
        );
        let body = SAMPLE.replace("\"Disconnected\"", "null");
        assert_eq!(
            parse_str(&body).expect_err("null").to_string(),
            "field Status must be a string, got null"
        );
    }

    #[test]
    fn one_bad_event_refuses_the_whole_array_and_says_which() {
        let body = format!("[{SAMPLE}, 7]");
        assert_eq!(
            parse_str(&body).expect_err("not an object").to_string(),
            "event [1]: expected a JSON object with Id, ActionDate, Type and Status, got a number"
        );
        let bad = SAMPLE.replace("\"Token\"", "\"Foo\"");
        let err = parse_str(&format!("[{SAMPLE},{bad}]")).expect_err("bad second");
        assert_eq!((err.index(), err.field()), (Some(1), Some(Field::Type)));
    }

    #[test]
    fn keys_given_twice_in_the_same_case_are_refused() {
        let body = r#"{"Id":"a","Id":"b","ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel",
            "Status":"Connected"}"#;
        let err = parse_str(body).expect_err("ambiguous");
        assert_eq!(err.field(), Some(Field::Id));
        let array = format!("[{SAMPLE}, {body}]");
        assert_eq!(parse_str(&array).expect_err("ambiguous").index(), Some(1));
    }

    #[test]
    fn keys_given_twice_in_different_case_are_refused() {
        let body = r#"{"Id":"a","id":"b","ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel",
            "Status":"Connected"}"#;
        let err = parse_str(body).expect_err("ambiguous");
        assert_eq!(
            err.to_string(),
            "field Id is given more than once (keys match ignoring case)"
        );
    }

    #[test]
    fn invalid_json_and_non_objects_are_refused() {
        assert!(matches!(
            parse_str("{\"Id\":"),
            Err(PayloadError::Syntax(_))
        ));
        assert!(matches!(
            parse_str("\"x\""),
            Err(PayloadError::NotAnObject { .. })
        ));
        assert!(matches!(
            parse_str("null"),
            Err(PayloadError::NotAnObject { .. })
        ));
        assert!(matches!(
            parse_str(&"[".repeat(200)),
            Err(PayloadError::Syntax(_))
        ));
    }

    #[test]
    fn tunnel_ids_with_quotes_backslashes_or_newlines_are_refused() {
        for id in ["a\\\"b", "a\\\\b", "a\\nb", "a b", "ü", ""] {
            let body = format!(
                r#"{{"Id":"{id}","ActionDate":"2024-04-29T12:35:17Z","Type":"Tunnel",
                "Status":"Connected"}}"#
            );
            let err = parse_str(&body).expect_err(id);
            assert_eq!(err.field(), Some(Field::Id), "{id}");
        }
        let long = "a".repeat(MAX_TUNNEL_ID_LEN + 1);
        let body = SAMPLE
            .replace("9xknivVmUWwu1dqBOHRybM78", &long)
            .replace("Token", "Tunnel");
        assert!(
            parse_str(&body)
                .expect_err("long")
                .to_string()
                .contains("longer than 128")
        );
    }

    #[test]
    fn errors_about_a_token_never_quote_it() {
        let token = "secret-token-with a space";
        let body = SAMPLE.replace("9xknivVmUWwu1dqBOHRybM78", token);
        let message = parse_str(&body).expect_err("space").to_string();
        assert!(!message.contains("secret"), "{message}");
        assert_eq!(
            message,
            "field Id may only contain characters other than whitespace and controls"
        );
    }

    #[test]
    fn dates_far_in_the_future_say_how_far_and_point_at_the_timezone_flag() {
        let body = SAMPLE.replace("2024-04-29T12:35:17.154580", "2024-04-29T16:00:12");
        let err = parse_str(&body).expect_err("3h ahead");
        assert!(err.is_date_out_of_range());
        let message = err.to_string();
        assert!(message.contains("3h0m12s ahead"), "{message}");
        assert!(message.contains("--webhook.timezone"), "{message}");
    }

    #[test]
    fn dates_within_the_allowed_skew_are_accepted() {
        let body = SAMPLE.replace("2024-04-29T12:35:17.154580", "2024-04-29T13:04:59");
        assert!(parse_str(&body).is_ok());
    }

    #[test]
    fn dates_before_2000_are_refused() {
        let body = SAMPLE.replace("2024-04-29T12:35:17.154580", "1999-12-31T23:59:59");
        let err = parse_str(&body).expect_err("too early");
        assert!(err.is_date_out_of_range());
        assert!(err.to_string().contains("1s before 2000-01-01"), "{err}");
        let body = SAMPLE.replace("2024-04-29T12:35:17.154580", "0001-01-01T00:00:00");
        assert!(parse_str(&body).expect_err("year 1").is_date_out_of_range());
    }

    #[test]
    fn unparseable_dates_name_the_expected_form() {
        let body = SAMPLE.replace("2024-04-29T12:35:17.154580", "yesterday");
        let err = parse_str(&body).expect_err("not a date");
        assert_eq!(err.field(), Some(Field::ActionDate));
        assert!(err.to_string().contains("2024-04-29T12:35:17.154580"));
        assert!(!err.is_date_out_of_range());
    }

    #[test]
    fn long_unknown_values_are_shortened_in_the_message() {
        let body = SAMPLE.replace("\"Token\"", &format!("\"{}\"", "x".repeat(1000)));
        assert!(parse_str(&body).expect_err("long").to_string().len() < 200);
    }
}
