//! Friendly names for tokens and tunnels, read from `--names.file`.
//!
//! The file is TOML with up to three tables, each mapping an id to a name:
//!
//! ```toml
//! [tunnels]
//! "tun-7f3a" = "office-ssh"
//!
//! [tokens]            # raw authtokens, as shown in the Localtonet dashboard
//! "9xknivVmUWwu1dqBOHRybM78" = "home-lab"
//!
//! [token_fingerprints] # or their fingerprints, to keep tokens out of this file
//! "3b8f0e6747ce707b" = "home-lab"
//! ```
//!
//! Raw tokens are turned into fingerprints as the file is read and are not kept. Every id
//! listed here is also known to the exporter before it sends its first event: it is shown as
//! `localtonet_unreported` until then.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::config_file;
use crate::event::{Key, Kind};
use crate::fingerprint;
use crate::payload;

/// Longest accepted name, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// Names by key, as loaded from the names file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    by_key: HashMap<Key, Box<str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tunnels: BTreeMap<String, String>,
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    #[serde(default)]
    token_fingerprints: BTreeMap<String, String>,
}

/// Why a names file was refused. Messages name the file and the entry, never a raw token.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    /// The file could not be read.
    #[error("names file {path}: {reason}")]
    Read {
        /// The file, as given.
        path: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The file is not valid TOML or has unknown tables.
    #[error("names file {path}: {message}")]
    Syntax {
        /// The file, as given; empty when the text did not come from a file.
        path: String,
        /// The parser's complaint with its line when known, quoted text redacted.
        message: String,
    },
    /// An entry is invalid.
    #[error("names file {path}: [{table}] entry {entry}: {reason}")]
    Entry {
        /// The file, as given; empty when the text did not come from a file.
        path: String,
        /// The table holding the entry: `tunnels`, `tokens` or `token_fingerprints`.
        table: &'static str,
        /// The entry's quoted key, or `with fingerprint …` for a raw token.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Names {
    /// Reads and validates a names file. Tokens are keyed by fingerprint, as events are.
    pub fn load(path: &Path) -> Result<Names, NamesError> {
        let shown = path.display().to_string();
        let text = config_file::read_text(path).map_err(|reason| NamesError::Read {
            path: shown.clone(),
            reason,
        })?;
        Names::parse(&text).map_err(|e| e.with_path(&shown))
    }

    /// Parses the text of a names file; see [`Names::load`].
    pub fn parse(text: &str) -> Result<Names, NamesError> {
        let file: File = toml::from_str(text).map_err(|e| NamesError::Syntax {
            path: String::new(),
            message: describe_toml_error(&e, text),
        })?;

        let mut names = Names::default();
        for (id, name) in file.tunnels {
            let entry = format!("{id:?}");
            payload::check_label_id(&id).map_err(|r| entry_error("tunnels", &entry, r))?;
            names.insert(Key::new(Kind::Tunnel, id), &name, "tunnels", entry)?;
        }
        for (token, name) in file.tokens {
            let fp = fingerprint::of(&token);
            let entry = format!("with fingerprint {fp}");
            names.insert(Key::new(Kind::Token, fp), &name, "tokens", entry)?;
        }
        for (fp, name) in file.token_fingerprints {
            let entry = format!("{fp:?}");
            if !fingerprint::looks_like(&fp) {
                let reason = "is not a fingerprint (16 lower-case hex digits)";
                return Err(entry_error("token_fingerprints", &entry, reason));
            }
            names.insert(
                Key::new(Kind::Token, fp),
                &name,
                "token_fingerprints",
                entry,
            )?;
        }
        Ok(names)
    }

    fn insert(
        &mut self,
        key: Key,
        name: &str,
        table: &'static str,
        entry: String,
    ) -> Result<(), NamesError> {
        if let Some(reason) = name_problem(name) {
            return Err(entry_error(table, &entry, reason));
        }
        if self.by_key.insert(key, name.into()).is_some() {
            return Err(entry_error(
                table,
                &entry,
                "names an id that is already named",
            ));
        }
        Ok(())
    }

    /// The name of `key`, if it has one.
    pub fn get(&self, key: &Key) -> Option<&str> {
        self.by_key.get(key).map(|n| &**n)
    }

    /// Every named key with its name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &str)> {
        self.by_key.iter().map(|(k, n)| (k, &**n))
    }

    /// Number of named ids.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when no id is named.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl NamesError {
    fn with_path(self, path: &str) -> NamesError {
        let path = path.to_string();
        match self {
            NamesError::Read { reason, .. } => NamesError::Read { path, reason },
            NamesError::Syntax { message, .. } => NamesError::Syntax { path, message },
            NamesError::Entry {
                table,
                entry,
                reason,
                ..
            } => NamesError::Entry {
                path,
                table,
                entry,
                reason,
            },
        }
    }
}

fn entry_error(table: &'static str, entry: &str, reason: impl ToString) -> NamesError {
    NamesError::Entry {
        path: String::new(),
        table,
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("name is empty".into())
    } else if name.chars().count() > MAX_NAME_LEN {
        Some(format!("name is longer than {MAX_NAME_LEN} characters"))
    } else if name.chars().any(char::is_control) {
        Some("name contains control characters".into())
    } else {
        None
    }
}

/// Describes a TOML error by position and kind only: the file may hold raw tokens, and the
/// parser's own message can quote a key, so quoted parts are left out.
fn describe_toml_error(error: &toml::de::Error, text: &str) -> String {
    let message = redact_quoted(error.message().trim());
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// Replaces every part of `message` between backticks or double quotes with `…`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                out.push('…');
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "9xknivVmUWwu1dqBOHRybM78";

    #[test]
    fn tunnels_and_tokens_get_their_names_and_tokens_are_keyed_by_fingerprint() {
        let names = Names::parse(&format!(
            "[tunnels]\n\"t-1\" = \"office\"\n[tokens]\n\"{TOKEN}\" = \"home\"\n"
        ))
        .expect("valid");
        assert_eq!(names.get(&Key::new(Kind::Tunnel, "t-1")), Some("office"));
        let fp = fingerprint::of(TOKEN);
        assert_eq!(names.get(&Key::new(Kind::Token, fp)), Some("home"));
        assert_eq!(names.get(&Key::new(Kind::Token, TOKEN)), None);
        assert!(!format!("{names:?}").contains(TOKEN));
    }

    #[test]
    fn token_fingerprints_table_names_tokens_without_the_token() {
        let names =
            Names::parse("[token_fingerprints]\n\"3b8f0e6747ce707b\" = \"home\"\n").expect("valid");
        assert_eq!(
            names.get(&Key::new(Kind::Token, fingerprint::of(TOKEN))),
            Some("home")
        );
    }

    #[test]
    fn errors_name_the_entry_but_never_the_raw_token() {
        let err = Names::parse(&format!("[tokens]\n\"{TOKEN}\" = \"\"\n")).expect_err("empty name");
        let message = err.to_string();
        assert!(
            message.contains("fingerprint 3b8f0e6747ce707b"),
            "{message}"
        );
        assert!(message.contains("name is empty"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }

    #[test]
    fn toml_errors_say_where_without_quoting_keys() {
        let text = format!("[tokens]\n\"{TOKEN}\" = \"a\"\n\"{TOKEN}\" = \"b\"\n");
        let message = Names::parse(&text).expect_err("duplicate").to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
        let message = Names::parse("[tokens]\nx = 1\n")
            .expect_err("int")
            .to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn unknown_tables_and_bad_ids_are_refused() {
        assert!(Names::parse("[tunnel]\na = \"b\"\n").is_err());
        assert!(Names::parse("[tunnels]\n\"a b\" = \"b\"\n").is_err());
        assert!(Names::parse("[token_fingerprints]\nabc = \"b\"\n").is_err());
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert!(Names::parse(&format!("[tunnels]\na = \"{long}\"\n")).is_err());
        assert!(Names::parse("[tunnels]\na = \"x\\ny\"\n").is_err());
    }

    #[test]
    fn the_same_token_named_twice_is_refused() {
        let text = format!(
            "[tokens]\n\"{TOKEN}\" = \"a\"\n[token_fingerprints]\n\"3b8f0e6747ce707b\" = \"b\"\n"
        );
        let message = Names::parse(&text).expect_err("twice").to_string();
        assert!(message.contains("already named"), "{message}");
    }

    #[test]
    fn names_may_hold_quotes_and_unicode() {
        let names = Names::parse("[tunnels]\na = 'Büro \"SSH\" \\\\'\n").expect("valid");
        assert_eq!(
            names.get(&Key::new(Kind::Tunnel, "a")),
            Some("Büro \"SSH\" \\\\")
        );
    }

    #[test]
    fn redaction_removes_quoted_parts() {
        assert_eq!(
            redact_quoted("duplicate key `abc` in \"x\""),
            "duplicate key `…` in \"…\""
        );
    }
}
