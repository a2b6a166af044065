//! The vocabulary of Localtonet events: what an event is about, what it says, and when.

use std::fmt;

/// Nanoseconds since the Unix epoch, UTC. Every time inside the exporter is one of these.
pub type Nanos = i64;

/// What a Localtonet event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An access token (authtoken). Its id is a credential and is shown only as a fingerprint.
    Token,
    /// A tunnel. Its id is not secret.
    Tunnel,
}

impl Kind {
    /// Both kinds, in the order they are exposed.
    pub const ALL: [Kind; 2] = [Kind::Token, Kind::Tunnel];

    /// The value of the `type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Tunnel => "tunnel",
        }
    }

    /// Reads a `type` label value (`token` or `tunnel`, any case).
    pub fn from_label(s: &str) -> Option<Kind> {
        if s.eq_ignore_ascii_case("token") {
            Some(Kind::Token)
        } else if s.eq_ignore_ascii_case("tunnel") {
            Some(Kind::Tunnel)
        } else {
            None
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event says about its token or tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// It connected.
    Connected,
    /// It disconnected.
    Disconnected,
}

impl Status {
    /// Lower-case name used in logs and JSON answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a tracked token or tunnel: its kind and its id.
///
/// The id of a tunnel is the id Localtonet sends. The id of a token is always its fingerprint
/// (see [`crate::fingerprint`]), so a token keeps one identity whether or not
/// `--webhook.expose-token-ids` shows the raw token in labels; a `Key` never holds a raw token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Token or tunnel.
    pub kind: Kind,
    /// The tunnel id, or the token's fingerprint.
    pub id: Box<str>,
}

impl Key {
    /// Makes a key from a kind and a public id; the id is taken as given, not fingerprinted.
    pub fn new(kind: Kind, id: impl Into<Box<str>>) -> Key {
        Key {
            kind,
            id: id.into(),
        }
    }
}

/// One validated event, ready to be applied to the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token or tunnel the event is about.
    pub key: Key,
    /// What the event says about it.
    pub status: Status,
    /// The event's ActionDate.
    pub at: Nanos,
    /// Position of the event in the webhook body (0 for a single-object body).
    pub index: usize,
    /// The id to show in labels instead of `key.id`: the raw token, only with
    /// `--webhook.expose-token-ids`.
    pub shown_id: Option<Box<str>>,
}
