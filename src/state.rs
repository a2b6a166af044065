//! The state of one token or tunnel, and the rules by which events change it.
//!
//! The rules, in the order they are checked when an event arrives for an id:
//! 1. an exact repeat (same status and ActionDate as one of the id's recent events) changes
//!    nothing: it is a [`Outcome::Duplicate`];
//! 2. an event older than the id's newest event is counted in the connect or disconnect
//!    counter, but does not move the status or the last-change time: [`Outcome::OutOfOrder`];
//! 3. any other event is applied: it is counted, it becomes the newest event, and if its status
//!    differs from the current one the status changes and the last-change time becomes its
//!    ActionDate. An event with the same ActionDate as the newest one but another status is
//!    applied: ties are broken by arrival order.
//!
//! [`Entry`] is plain data: callers apply events to one entry at a time (the ingest writer does
//! so from a single thread), so there is no locking here.

use crate::event::{Nanos, Status};

/// How many recent events per id are remembered to recognise repeats.
///
/// A repeat of an event older than the last `RECENT` events of its id is not recognised and
/// is counted as an out-of-order event. Senders retry within seconds, when at most a few
/// events have happened since.
pub const RECENT: usize = 8;

/// What is known about one token or tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Status of the newest applied event.
    pub status: Status,
    /// ActionDate of the event that put the id into its current status.
    pub since: Nanos,
    /// ActionDate of the newest applied event.
    pub newest: Nanos,
    /// Connected events counted (applied or out of order).
    pub connects: u64,
    /// Disconnected events counted (applied or out of order).
    pub disconnects: u64,
    /// Value of the webhook URL's `group` parameter with the newest applied event.
    pub group: Option<Box<str>>,
    /// The id's most recent non-repeated events, to recognise repeats.
    pub recent: Recent,
    /// The raw token shown in labels instead of the fingerprint, only while
    /// `--webhook.expose-token-ids` is set; cleared otherwise.
    pub shown_id: Option<Box<str>>,
}

/// What an event did to its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// First event for the id: the entry was created.
    Created,
    /// Applied, and the status changed from the one given.
    Changed {
        /// The status before the event.
        from: Status,
    },
    /// Applied, with the same status as before (a reconnect or disconnect that was not seen
    /// to end): counted, but the last-change time stays.
    Unchanged,
    /// Older than the id's newest event: counted only.
    OutOfOrder,
    /// An exact repeat of a recent event: nothing changed.
    Duplicate,
}

impl Outcome {
    /// The `outcome` label of `localtonet_exporter_events_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created | Outcome::Changed { .. } | Outcome::Unchanged => "applied",
            Outcome::OutOfOrder => "out_of_order",
            Outcome::Duplicate => "duplicate",
        }
    }

    /// All values of [`Outcome::label`].
    pub const LABELS: [&'static str; 3] = ["applied", "duplicate", "out_of_order"];
}

impl Entry {
    /// Creates the entry for an id's first event.
    pub fn first(status: Status, at: Nanos, group: Option<Box<str>>) -> Entry {
        let mut entry = Entry {
            status,
            since: at,
            newest: at,
            connects: 0,
            disconnects: 0,
            group,
            recent: Recent::default(),
            shown_id: None,
        };
        entry.count(status);
        entry.recent.push(at, status);
        entry
    }

    /// Applies one event by the rules in the module documentation.
    ///
    /// `group` replaces the entry's group when the event is applied.
    pub fn apply(&mut self, status: Status, at: Nanos, group: Option<Box<str>>) -> Outcome {
        if self.recent.contains(at, status) {
            return Outcome::Duplicate;
        }
        self.count(status);
        self.recent.push(at, status);
        if at < self.newest {
            return Outcome::OutOfOrder;
        }

        self.newest = at;
        self.group = group;
        if status == self.status {
            return Outcome::Unchanged;
        }
        let from = self.status;
        self.status = status;
        self.since = at;
        Outcome::Changed { from }
    }

    fn count(&mut self, status: Status) {
        let counter = match status {
            Status::Connected => &mut self.connects,
            Status::Disconnected => &mut self.disconnects,
        };
        *counter = counter.saturating_add(1);
    }
}

/// The last [`RECENT`] events of an id (ActionDate and status), oldest overwritten first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recent {
    at: [Nanos; RECENT],
    /// Bit `i` set: event `i` said Connected.
    connected: u8,
    len: u8,
    next: u8,
}

impl Recent {
    /// Remembers an event, forgetting the oldest one when full.
    pub fn push(&mut self, at: Nanos, status: Status) {
        let i = usize::from(self.next);
        self.at[i] = at;
        let bit = 1u8 << i;
        match status {
            Status::Connected => self.connected |= bit,
            Status::Disconnected => self.connected &= !bit,
        }
        self.next = ((i + 1) % RECENT) as u8;
        self.len = (usize::from(self.len) + 1).min(RECENT) as u8;
    }

    /// True when an event with this ActionDate and status is remembered.
    pub fn contains(&self, at: Nanos, status: Status) -> bool {
        self.iter().any(|(a, s)| a == at && s == status)
    }

    /// The remembered events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Nanos, Status)> + '_ {
        let len = usize::from(self.len);
        let start = (usize::from(self.next) + RECENT - len) % RECENT;
        (0..len).map(move |k| {
            let i = (start + k) % RECENT;
            let status = if self.connected & (1 << i) != 0 {
                Status::Connected
            } else {
                Status::Disconnected
            };
            (self.at[i], status)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Connected, Disconnected};

    const T17: Nanos = 1_714_394_117_000_000_000;
    const T18: Nanos = T17 + 1_000_000_000;
    const T19: Nanos = T18 + 1_000_000_000;

    #[test]
    fn first_event_creates_entry_with_both_counters_present() {
        let entry = Entry::first(Disconnected, T17, None);
        assert_eq!(
            (entry.status, entry.since, entry.newest),
            (Disconnected, T17, T17)
        );
        assert_eq!((entry.connects, entry.disconnects), (0, 1));
    }

    #[test]
    fn newer_event_with_other_status_changes_status_and_last_change() {
        let mut entry = Entry::first(Connected, T17, None);
        assert_eq!(
            entry.apply(Disconnected, T18, None),
            Outcome::Changed { from: Connected }
        );
        assert_eq!((entry.status, entry.since), (Disconnected, T18));
        assert_eq!((entry.connects, entry.disconnects), (1, 1));
    }

    #[test]
    fn out_of_order_disconnect_keeps_newer_state_but_is_counted() {
        let mut entry = Entry::first(Connected, T18, None);
        assert_eq!(entry.apply(Disconnected, T17, None), Outcome::OutOfOrder);
        assert_eq!(
            (entry.status, entry.since, entry.newest),
            (Connected, T18, T18)
        );
        assert_eq!(entry.disconnects, 1);
    }

    #[test]
    fn exact_repeat_changes_nothing() {
        let mut entry = Entry::first(Disconnected, T17, None);
        let before = entry.clone();
        for _ in 0..2 {
            assert_eq!(entry.apply(Disconnected, T17, None), Outcome::Duplicate);
        }
        assert_eq!(entry, before);
    }

    #[test]
    fn repeat_of_an_older_recent_event_is_a_duplicate_not_out_of_order() {
        let mut entry = Entry::first(Disconnected, T17, None);
        entry.apply(Connected, T18, None);
        assert_eq!(entry.apply(Disconnected, T17, None), Outcome::Duplicate);
        assert_eq!(entry.disconnects, 1);
    }

    #[test]
    fn late_event_repeated_is_counted_once() {
        let mut entry = Entry::first(Connected, T18, None);
        assert_eq!(entry.apply(Disconnected, T17, None), Outcome::OutOfOrder);
        assert_eq!(entry.apply(Disconnected, T17, None), Outcome::Duplicate);
        assert_eq!(entry.disconnects, 1);
    }

    #[test]
    fn tie_on_action_date_is_broken_by_arrival_order() {
        let mut entry = Entry::first(Connected, T17, None);
        assert_eq!(
            entry.apply(Disconnected, T17, None),
            Outcome::Changed { from: Connected }
        );
        assert_eq!(entry.status, Disconnected);
        assert_eq!(entry.apply(Connected, T17, None), Outcome::Duplicate);
    }

    #[test]
    fn same_status_again_is_counted_but_keeps_last_change() {
        let mut entry = Entry::first(Disconnected, T17, None);
        assert_eq!(entry.apply(Disconnected, T19, None), Outcome::Unchanged);
        assert_eq!(
            (entry.since, entry.newest, entry.disconnects),
            (T17, T19, 2)
        );
    }

    #[test]
    fn group_follows_the_newest_applied_event() {
        let mut entry = Entry::first(Connected, T18, Some("a".into()));
        entry.apply(Disconnected, T17, Some("late".into()));
        assert_eq!(entry.group.as_deref(), Some("a"));
        entry.apply(Disconnected, T19, Some("b".into()));
        assert_eq!(entry.group.as_deref(), Some("b"));
    }

    #[test]
    fn recent_forgets_the_oldest_event_when_full() {
        let mut recent = Recent::default();
        for i in 0..(RECENT as i64 + 2) {
            recent.push(i, if i % 2 == 0 { Connected } else { Disconnected });
        }
        let kept: Vec<_> = recent.iter().collect();
        assert_eq!(kept.len(), RECENT);
        assert_eq!(kept[0], (2, Connected));
        assert_eq!(kept[RECENT - 1], (RECENT as i64 + 1, Disconnected));
        assert!(!recent.contains(1, Disconnected));
    }

    #[test]
    fn outcomes_map_to_three_labels() {
        assert_eq!(Outcome::Created.label(), "applied");
        assert_eq!(Outcome::Unchanged.label(), "applied");
        assert_eq!(Outcome::OutOfOrder.label(), "out_of_order");
        assert_eq!(Outcome::Duplicate.label(), "duplicate");
    }
}
