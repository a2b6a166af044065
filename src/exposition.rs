//! The Prometheus text format for the per-id series, written straight from the state.
//!
//! With 100,000 ids there are 400,000 per-id series; building them as `prometheus` crate
//! metrics on every scrape costs more time and memory than the whole exporter otherwise uses
//! (see BENCHMARKS.md), so they are written here. The exporter's own metrics still go through
//! the `prometheus` crate. Label values are escaped as the text format requires (`\\`, `\"`,
//! `\n`), even though ids are validated to need no escaping.

use std::io::Write;
use std::sync::Arc;

use crate::event::{Key, Nanos, Status};
use crate::state::Entry;

/// The four per-id metric families, in the order they are written.
const FAMILIES: [Family; 4] = [
    Family {
        name: "localtonet_connected",
        kind: "gauge",
        help: "1 when the newest event for the token or tunnel said Connected, 0 when it \
               said Disconnected.",
        value: Value::Connected,
    },
    Family {
        name: "localtonet_connects_total",
        kind: "counter",
        help: "Connected events received for the token or tunnel, late ones included and \
               exact repeats excluded.",
        value: Value::Connects,
    },
    Family {
        name: "localtonet_disconnects_total",
        kind: "counter",
        help: "Disconnected events received for the token or tunnel, late ones included and \
               exact repeats excluded.",
        value: Value::Disconnects,
    },
    Family {
        name: "localtonet_last_change_timestamp_seconds",
        kind: "gauge",
        help: "ActionDate, in Unix seconds, of the event that put the token or tunnel into \
               its current status.",
        value: Value::Since,
    },
];

/// Name of the family of ids that are named in the names file but never sent an event.
pub const UNREPORTED: &str = "localtonet_unreported";
const UNREPORTED_HELP: &str =
    "1 for each id in the names file that has not sent an event; gone with its first event.";

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: Value,
}

#[derive(Clone, Copy)]
enum Value {
    Connected,
    Connects,
    Disconnects,
    Since,
}

/// The values of one id's series at the moment of a scrape, copied out of the state so the
/// scrape can be written without holding it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The label set without braces, as made by [`label_set`].
    pub labels: Arc<str>,
    /// Status of the newest applied event.
    pub status: Status,
    /// Connected events counted.
    pub connects: u64,
    /// Disconnected events counted.
    pub disconnects: u64,
    /// ActionDate of the event that started the current status.
    pub since: Nanos,
}

impl Sample {
    /// The sample of an entry with its label set.
    pub fn of(labels: &Arc<str>, entry: &Entry) -> Sample {
        Sample {
            labels: Arc::clone(labels),
            status: entry.status,
            connects: entry.connects,
            disconnects: entry.disconnects,
            since: entry.since,
        }
    }
}

/// Builds the label set of an id: `type="…",id="…"`, then `name` and `group` when present.
///
/// The `id` label is `shown_id` when given (a raw token with `--webhook.expose-token-ids`),
/// else the key's id.
pub fn label_set(
    key: &Key,
    shown_id: Option<&str>,
    name: Option<&str>,
    group: Option<&str>,
) -> Box<str> {
    let id = shown_id.unwrap_or(&key.id);
    let mut out = String::with_capacity(32 + id.len());
    out.push_str("type=\"");
    out.push_str(key.kind.as_str());
    out.push_str("\",id=\"");
    escape_into(id, &mut out);
    out.push('"');
    for (label, value) in [("name", name), ("group", group)] {
        if let Some(value) = value {
            out.push(',');
            out.push_str(label);
            out.push_str("=\"");
            escape_into(value, &mut out);
            out.push('"');
        }
    }
    out.into_boxed_str()
}

/// Appends `value` escaped as a label value of the text format.
pub fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes the four per-id families of a set of samples, piece by piece, so a scrape of
/// 100,000 ids never needs its whole text in memory at once. Families without series are
/// left out.
pub struct Writer {
    samples: Vec<Sample>,
    /// Family being written, as an index into `FAMILIES`.
    family: usize,
    /// Next sample to write in that family.
    next: usize,
    number: Number,
}

impl Writer {
    /// A writer for `samples`, which it writes in their order.
    pub fn new(samples: Vec<Sample>) -> Writer {
        let family = if samples.is_empty() {
            FAMILIES.len()
        } else {
            0
        };
        Writer {
            samples,
            family,
            next: 0,
            number: Number::default(),
        }
    }

    /// True when everything has been written.
    pub fn is_done(&self) -> bool {
        self.family == FAMILIES.len()
    }

    /// Appends series to `out` until it holds at least `until` bytes or everything is
    /// written. Lines are never split.
    pub fn write(&mut self, out: &mut Vec<u8>, until: usize) {
        while !self.is_done() && out.len() < until {
            let family = &FAMILIES[self.family];
            if self.next == 0 {
                write_header(out, family.name, family.kind, family.help);
            }
            let sample = &self.samples[self.next];
            out.extend_from_slice(family.name.as_bytes());
            out.push(b'{');
            out.extend_from_slice(sample.labels.as_bytes());
            out.extend_from_slice(b"} ");
            let text = match family.value {
                Value::Connected => match sample.status {
                    Status::Connected => "1",
                    Status::Disconnected => "0",
                },
                Value::Connects => self.number.integer(sample.connects),
                Value::Disconnects => self.number.integer(sample.disconnects),
                Value::Since => self.number.seconds(sample.since),
            };
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');

            self.next += 1;
            if self.next == self.samples.len() {
                self.family += 1;
                self.next = 0;
            }
        }
    }
}

/// Writes the four per-id families of `samples` at once; see [`Writer`].
pub fn write_ids(out: &mut Vec<u8>, samples: Vec<Sample>) {
    Writer::new(samples).write(out, usize::MAX);
}

/// Writes `localtonet_unreported` for the given label sets (none: nothing is written).
pub fn write_unreported<'a>(out: &mut Vec<u8>, label_sets: impl Iterator<Item = &'a str>) {
    let mut label_sets = label_sets.peekable();
    if label_sets.peek().is_none() {
        return;
    }
    write_header(out, UNREPORTED, "gauge", UNREPORTED_HELP);
    for labels in label_sets {
        let _ = writeln!(out, "{UNREPORTED}{{{labels}}} 1");
    }
}

fn write_header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Formats numbers without allocating per call.
#[derive(Default)]
struct Number {
    buffer: String,
}

impl Number {
    fn integer(&mut self, n: u64) -> &str {
        self.buffer.clear();
        let _ = std::fmt::Write::write_fmt(&mut self.buffer, format_args!("{n}"));
        &self.buffer
    }

    fn seconds(&mut self, nanos: Nanos) -> &str {
        self.buffer.clear();
        let _ = std::fmt::Write::write_fmt(&mut self.buffer, format_args!("{}", seconds(nanos)));
        &self.buffer
    }
}

/// Unix seconds as a float, with the sub-second part kept to the precision an f64 allows.
pub fn seconds(nanos: Nanos) -> f64 {
    let whole = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    whole as f64 + fraction as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Kind;

    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        let key = Key::new(Kind::Tunnel, "a\"b\\c\nd");
        assert_eq!(
            &*label_set(&key, None, Some("x\"y"), None),
            r#"type="tunnel",id="a\"b\\c\nd",name="x\"y""#
        );
    }

    #[test]
    fn a_shown_id_replaces_the_key_id_in_the_label() {
        let key = Key::new(Kind::Token, "3b8f0e6747ce707b");
        assert_eq!(
            &*label_set(&key, Some("raw"), None, None),
            r#"type="token",id="raw""#
        );
    }

    #[test]
    fn absent_name_and_group_are_left_out() {
        let key = Key::new(Kind::Token, "3b8f0e6747ce707b");
        assert_eq!(
            &*label_set(&key, None, None, None),
            r#"type="token",id="3b8f0e6747ce707b""#
        );
        assert_eq!(
            &*label_set(&key, None, Some("n"), Some("g")),
            r#"type="token",id="3b8f0e6747ce707b",name="n",group="g""#
        );
    }

    #[test]
    fn timestamps_keep_their_fraction() {
        assert_eq!(
            seconds(1_714_394_117_154_580_000).to_string(),
            "1714394117.15458"
        );
        assert_eq!(seconds(1_714_394_117_000_000_000).to_string(), "1714394117");
        assert_eq!(
            seconds(1_714_394_117_154_580_300).to_string(),
            "1714394117.1545804"
        );
    }

    #[test]
    fn writes_every_family_with_help_and_type() {
        let key = Key::new(Kind::Tunnel, "t1");
        let entry = Entry::first(Status::Disconnected, 1_714_394_117_154_580_000, None);
        let labels: Arc<str> = label_set(&key, None, Some("office"), None).into();
        let mut out = Vec::new();
        write_ids(&mut out, vec![Sample::of(&labels, &entry)]);
        let text = String::from_utf8(out).expect("utf-8");
        crate::testing::assert_matches_fixture("exposition/one_tunnel.prom", &text);
    }

    #[test]
    fn pieces_end_on_line_boundaries_and_add_up_to_the_whole() {
        let samples: Vec<Sample> = (0..1000)
            .map(|i| {
                let key = Key::new(Kind::Tunnel, format!("t{i}"));
                let labels: Arc<str> = label_set(&key, None, None, None).into();
                Sample::of(&labels, &Entry::first(Status::Connected, i, None))
            })
            .collect();
        let mut whole = Vec::new();
        write_ids(&mut whole, samples.clone());

        let mut writer = Writer::new(samples);
        let mut joined = Vec::new();
        let mut pieces = 0;
        while !writer.is_done() {
            let mut piece = Vec::new();
            writer.write(&mut piece, 4096);
            assert!(piece.ends_with(b"\n") && piece.len() < 4096 + 200);
            joined.extend_from_slice(&piece);
            pieces += 1;
        }
        assert!(pieces > 10);
        assert_eq!(joined, whole);
    }

    #[test]
    fn nothing_is_written_without_ids() {
        let mut out = Vec::new();
        write_ids(&mut out, Vec::new());
        write_unreported(&mut out, std::iter::empty());
        assert!(out.is_empty());
    }

    #[test]
    fn unreported_ids_are_one_series_each() {
        let mut out = Vec::new();
        write_unreported(
            &mut out,
            ["type=\"tunnel\",id=\"a\",name=\"A\""].into_iter(),
        );
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.ends_with("localtonet_unreported{type=\"tunnel\",id=\"a\",name=\"A\"} 1\n"));
    }
}
