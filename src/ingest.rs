//! The write path: events in, durable state out, published for scrapes.
//!
//! One writer thread owns the [`Store`] and is the only code that changes the state. Webhook
//! handlers send it jobs and wait for the answer. The writer takes every job that is waiting
//! (group commit), applies them in arrival order against the published state, commits all
//! their changes to the store in one transaction, and only then publishes them and answers.
//!
//! So:
//! - events for one id are applied one at a time, in the order their requests reached the
//!   writer, whatever the number of concurrent requests;
//! - an `Ok` answer means the events are durable (with the SQLite store);
//! - a scrape never shows a change that is not durable yet, so counters never go back after
//!   a crash and restart;
//! - a job is applied whole or not at all (series cap, store failure).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};

use crate::event::{Event, Key, Kind, Nanos, Status};
use crate::exposition::{self, Sample, label_set};
use crate::metrics::Metrics;
use crate::names::Names;
use crate::state::{Entry, Outcome};
use crate::store::{Change, Store, StoreError};

/// Jobs taken into one commit at most.
const MAX_BATCH: usize = 1024;
/// Jobs that may wait for the writer; senders wait when it is full.
const QUEUE: usize = 4096;

/// Why a job was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The job would make the number of tracked ids exceed `--series.max`.
    #[error(
        "series limit reached: {tracked} ids tracked, this request adds {adding}, \
         --series.max is {max}"
    )]
    SeriesLimit {
        /// Ids tracked when the job was checked, counting earlier jobs of the same commit.
        tracked: usize,
        /// New ids the job would have added.
        adding: usize,
        /// The limit, `--series.max`.
        max: usize,
    },
    /// The store failed to commit; nothing was applied and the sender may retry.
    #[error("the store failed to commit; nothing was applied, retry later")]
    Unavailable,
    /// The exporter is shutting down.
    #[error("the exporter is shutting down")]
    ShuttingDown,
}

/// One tracked id as published: its entry and its rendered label set.
#[derive(Debug)]
pub struct Tracked {
    /// The id's state as last committed.
    pub entry: Entry,
    labels: Arc<str>,
}

/// The published state: durable, and what scrapes and the admin API read.
#[derive(Debug, Default)]
pub struct View {
    ids: BTreeMap<Key, Tracked>,
    names: Arc<Names>,
    /// Tracked ids by kind, in the order of [`Kind::ALL`]; kept up to date on every change.
    counts: [usize; 2],
}

impl View {
    /// Tracked ids in key order.
    pub fn ids(&self) -> impl Iterator<Item = (&Key, &Tracked)> + Clone {
        self.ids.iter()
    }

    /// The entry of one id.
    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.ids.get(key).map(|t| &t.entry)
    }

    /// The name of one id, from the names file.
    pub fn name(&self, key: &Key) -> Option<&str> {
        self.names.get(key)
    }

    /// Number of tracked ids of a kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.counts[kind_index(kind)]
    }

    /// Number of tracked ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id is tracked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids in the names file that never sent an event, with their names, in key order.
    pub fn unreported(&self) -> Vec<(&Key, &str)> {
        let mut unreported: Vec<_> = self
            .names
            .iter()
            .filter(|(key, _)| !self.ids.contains_key(key))
            .collect();
        unreported.sort_unstable_by(|a, b| a.0.cmp(b.0));
        unreported
    }

    /// Appends the per-id series and `localtonet_unreported` in the text format.
    pub fn render(&self, out: &mut Vec<u8>) {
        exposition::write_ids(out, self.samples());
        exposition::write_unreported(out, self.unreported_labels().iter().map(|l| &**l));
    }

    /// The values of every tracked id's series, in key order.
    pub fn samples(&self) -> Vec<Sample> {
        self.ids
            .values()
            .map(|t| Sample::of(&t.labels, &t.entry))
            .collect()
    }

    /// Label sets of the ids in the names file that never sent an event, in key order.
    pub fn unreported_labels(&self) -> Vec<Box<str>> {
        self.unreported()
            .into_iter()
            .map(|(key, name)| label_set(key, None, Some(name), None))
            .collect()
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        match self.ids.get_mut(&key) {
            Some(tracked)
                if tracked.entry.group == entry.group
                    && tracked.entry.shown_id == entry.shown_id =>
            {
                tracked.entry = entry;
            }
            _ => {
                let labels = self.labels_for(&key, &entry).into();
                let kind = key.kind;
                if self.ids.insert(key, Tracked { entry, labels }).is_none() {
                    self.counts[kind_index(kind)] += 1;
                }
            }
        }
    }

    fn labels_for(&self, key: &Key, entry: &Entry) -> Box<str> {
        let name = self.names.get(key);
        label_set(key, entry.shown_id.as_deref(), name, entry.group.as_deref())
    }

    fn remove(&mut self, key: &Key) {
        if self.ids.remove(key).is_some() {
            self.counts[kind_index(key.kind)] -= 1;
        }
    }

    fn set_names(&mut self, names: Arc<Names>) {
        self.names = names;
        let View { ids, names, .. } = self;
        for (key, tracked) in ids.iter_mut() {
            let entry = &tracked.entry;
            let shown = entry.shown_id.as_deref();
            tracked.labels = label_set(key, shown, names.get(key), entry.group.as_deref()).into();
        }
    }
}

/// How the writer treats the state, from the flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most ids tracked at once (`--series.max`); only new ids are refused beyond it.
    pub series_max: usize,
    /// Whether raw tokens may be kept to show in labels (`--webhook.expose-token-ids`).
    /// When not, raw tokens left in the store by an earlier run are removed at start.
    pub expose_token_ids: bool,
}

enum Job {
    Apply {
        events: Vec<Event>,
        group: Option<Box<str>>,
        reply: oneshot::Sender<Result<Vec<Outcome>, IngestError>>,
    },
    Delete {
        key: Key,
        reply: oneshot::Sender<Result<bool, IngestError>>,
    },
    Expire {
        before: Nanos,
    },
    Stop,
}

/// The handle through which the rest of the program reads and changes the state.
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
    view: Arc<RwLock<View>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Ingest {
    /// Loads the state from `store` and starts the writer thread.
    ///
    /// Blocks while loading; when it returns, the published state is what the store held
    /// (without raw tokens, unless `config.expose_token_ids`).
    pub fn start(
        mut store: Box<dyn Store>,
        names: Names,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Result<Ingest, StoreError> {
        let mut entries = store.load()?;
        if !config.expose_token_ids {
            scrub_raw_tokens(store.as_mut(), &mut entries)?;
        }
        if entries.len() > config.series_max {
            tracing::warn!(
                ids = entries.len(),
                max = config.series_max,
                "the store holds more ids than --series.max: known ids are still updated, \
                 new ones are refused until enough are forgotten"
            );
        }
        let mut view = View {
            names: Arc::new(names),
            ..View::default()
        };
        for (key, entry) in entries {
            view.insert(key, entry);
        }
        let view = Arc::new(RwLock::new(view));

        let (jobs, queue) = mpsc::channel(QUEUE);
        let mut writer = Writer {
            store,
            view: Arc::clone(&view),
            config,
            metrics,
            queue,
        };
        writer.publish_gauges();
        let writer = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open {
                path: String::new(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;

        Ok(Ingest {
            jobs,
            view,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Applies the events of one request (sorted by ActionDate), all or none.
    ///
    /// Returns each event's outcome, in the order given, once they are durable.
    pub async fn apply(
        &self,
        events: Vec<Event>,
        group: Option<Box<str>>,
    ) -> Result<Vec<Outcome>, IngestError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Apply {
            events,
            group,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.unwrap_or(Err(IngestError::ShuttingDown))
    }

    /// Forgets one id, durably. Returns whether it was tracked.
    pub async fn delete(&self, key: Key) -> Result<bool, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Delete { key, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.unwrap_or(Err(IngestError::ShuttingDown))
    }

    /// Asks the writer to forget every id whose newest event is older than `before`.
    pub async fn expire(&self, before: Nanos) {
        let _ = self.jobs.send(Job::Expire { before }).await;
    }

    /// Replaces the names; labels of tracked ids follow at once.
    pub fn set_names(&self, names: Names) {
        self.view.write().set_names(Arc::new(names));
    }

    /// Reads the published state. Hold the guard briefly: the writer waits for it to publish.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, View> {
        self.view.read()
    }

    /// Lets the writer finish the jobs sent so far, then stops it. Later jobs are refused.
    pub async fn close(&self) {
        let _ = self.jobs.send(Job::Stop).await;
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

/// A change decided in the current batch: `None` forgets the key.
type Overlay = HashMap<Key, Option<Entry>>;

/// Something to do once the batch's commit succeeded or failed.
enum Pending {
    Apply {
        reply: oneshot::Sender<Result<Vec<Outcome>, IngestError>>,
        outcomes: Vec<Outcome>,
        changes: Vec<StateChange>,
    },
    Delete {
        reply: oneshot::Sender<Result<bool, IngestError>>,
        existed: bool,
    },
}

/// A status change, logged once it is durable.
struct StateChange {
    key: Key,
    shown_id: Option<Box<str>>,
    from: Option<Status>,
    to: Status,
    at: Nanos,
}

struct Writer {
    store: Box<dyn Store>,
    view: Arc<RwLock<View>>,
    config: Config,
    metrics: Arc<Metrics>,
    queue: mpsc::Receiver<Job>,
}

impl Writer {
    // TODO(#6): durable ingest reaches about 24,000 events/s on the 2-core benchmark machine
    // against a 40,000 target; each batch costs an fsync plus two thread hand-offs (here and
    // back to the handlers), and hyper/axum's per-request cost is the rest (BENCHMARKS.md).
    fn run(&mut self) {
        while let Some(first) = self.queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let stop = batch.iter().any(|job| matches!(job, Job::Stop));
            self.run_batch(batch);
            if stop {
                break;
            }
        }
        // Answer whatever is still queued, so no handler waits forever.
        self.queue.close();
        while let Ok(job) = self.queue.try_recv() {
            refuse(job, IngestError::ShuttingDown);
        }
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let mut overlay = Overlay::new();
        let mut pending = Vec::with_capacity(batch.len());
        let mut expired = 0usize;
        {
            let view = self.view.read();
            let mut tracked = view.len();
            for job in batch {
                match job {
                    Job::Apply {
                        events,
                        group,
                        reply,
                    } => match self.decide(&view, &mut overlay, &mut tracked, &events, group) {
                        Ok((outcomes, changes)) => pending.push(Pending::Apply {
                            reply,
                            outcomes,
                            changes,
                        }),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    },
                    Job::Delete { key, reply } => {
                        let existed = current(&view, &overlay, &key).is_some();
                        if existed {
                            overlay.insert(key, None);
                            tracked -= 1;
                        }
                        pending.push(Pending::Delete { reply, existed });
                    }
                    Job::Expire { before } => {
                        let forgotten = expire(&view, &mut overlay, before);
                        expired += forgotten;
                        tracked = tracked.saturating_sub(forgotten);
                    }
                    Job::Stop => {}
                }
            }
        }

        let committed = self.commit(&overlay);
        if committed {
            self.publish(overlay);
            if expired > 0 {
                tracing::info!(
                    count = expired,
                    "forgot ids with no event for --series.expire-after"
                );
            }
        }
        for p in pending {
            answer(p, committed, &self.view);
        }
    }

    /// Works out what one request's events do, adding their changes to `overlay`.
    fn decide(
        &self,
        view: &View,
        overlay: &mut Overlay,
        tracked: &mut usize,
        events: &[Event],
        group: Option<Box<str>>,
    ) -> Result<(Vec<Outcome>, Vec<StateChange>), IngestError> {
        let new: HashSet<&Key> = events
            .iter()
            .map(|e| &e.key)
            .filter(|key| current(view, overlay, key).is_none())
            .collect();
        if !new.is_empty() && *tracked + new.len() > self.config.series_max {
            return Err(IngestError::SeriesLimit {
                tracked: *tracked,
                adding: new.len(),
                max: self.config.series_max,
            });
        }
        *tracked += new.len();

        let mut outcomes = Vec::with_capacity(events.len());
        let mut changes = Vec::new();
        for event in events {
            let (entry, outcome) = match current(view, overlay, &event.key) {
                None => (
                    Entry::first(event.status, event.at, group.clone()),
                    Outcome::Created,
                ),
                Some(existing) => {
                    let mut entry = existing.clone();
                    let outcome = entry.apply(event.status, event.at, group.clone());
                    (entry, outcome)
                }
            };
            let from = match outcome {
                Outcome::Created => Some(None),
                Outcome::Changed { from } => Some(Some(from)),
                _ => None,
            };
            if let Some(from) = from {
                changes.push(StateChange {
                    key: event.key.clone(),
                    shown_id: event.shown_id.clone(),
                    from,
                    to: event.status,
                    at: event.at,
                });
            }
            if outcome != Outcome::Duplicate {
                let mut entry = entry;
                entry.shown_id.clone_from(&event.shown_id);
                overlay.insert(event.key.clone(), Some(entry));
            }
            outcomes.push(outcome);
        }
        Ok((outcomes, changes))
    }

    /// Commits the overlay; true when it is durable (or there was nothing to commit).
    fn commit(&mut self, overlay: &Overlay) -> bool {
        if overlay.is_empty() {
            return true;
        }
        let changes: Vec<Change<'_>> = overlay
            .iter()
            .map(|(key, entry)| match entry {
                Some(entry) => Change::Put(key, entry),
                None => Change::Delete(key),
            })
            .collect();

        let started = Instant::now();
        let result = self.store.commit(&changes);
        self.metrics
            .store_commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.store_commits.inc();
        match result {
            Ok(()) => true,
            Err(e) => {
                self.metrics.store_commit_errors.inc();
                tracing::error!(err = %e, changes = changes.len(), "store commit failed");
                false
            }
        }
    }

    fn publish(&self, overlay: Overlay) {
        {
            let mut view = self.view.write();
            for (key, entry) in overlay {
                match entry {
                    Some(entry) => view.insert(key, entry),
                    None => view.remove(&key),
                }
            }
        }
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let view = self.view.read();
        for kind in Kind::ALL {
            self.metrics.set_ids(kind, view.count(kind));
        }
        self.metrics
            .ids_max
            .set(i64::try_from(self.config.series_max).unwrap_or(i64::MAX));
        self.metrics
            .store_size
            .set(i64::try_from(self.store.size_bytes()).unwrap_or(i64::MAX));
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Token => 0,
        Kind::Tunnel => 1,
    }
}

/// Removes raw tokens that a run with `--webhook.expose-token-ids` left in the store, and
/// the traces they may have left on disk.
fn scrub_raw_tokens(store: &mut dyn Store, entries: &mut [(Key, Entry)]) -> Result<(), StoreError> {
    let mut scrubbed = Vec::new();
    for (key, entry) in entries.iter_mut() {
        if entry.shown_id.take().is_some() {
            scrubbed.push((key.clone(), entry.clone()));
        }
    }
    if scrubbed.is_empty() {
        return Ok(());
    }
    let changes: Vec<Change<'_>> = scrubbed.iter().map(|(k, e)| Change::Put(k, e)).collect();
    store.commit(&changes)?;
    store.compact()?;
    tracing::warn!(
        tokens = scrubbed.len(),
        "removed raw tokens from the store: --webhook.expose-token-ids is off"
    );
    Ok(())
}

/// The entry of `key` as the batch sees it: changed in the batch, or published.
fn current<'a>(view: &'a View, overlay: &'a Overlay, key: &Key) -> Option<&'a Entry> {
    match overlay.get(key) {
        Some(decided) => decided.as_ref(),
        None => view.get(key),
    }
}

/// Adds the forgetting of every id whose newest event is before `before`; returns how many.
fn expire(view: &View, overlay: &mut Overlay, before: Nanos) -> usize {
    let mut old: Vec<Key> = view
        .ids
        .iter()
        .filter(|(key, t)| t.entry.newest < before && !overlay.contains_key(*key))
        .map(|(key, _)| key.clone())
        .collect();
    old.extend(
        overlay
            .iter()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| e.newest < before))
            .map(|(key, _)| key.clone()),
    );
    let count = old.len();
    for key in old {
        overlay.insert(key, None);
    }
    count
}

fn answer(pending: Pending, committed: bool, view: &RwLock<View>) {
    match pending {
        Pending::Apply {
            reply,
            outcomes,
            changes,
        } => {
            if committed {
                log_changes(&changes, view);
                let _ = reply.send(Ok(outcomes));
            } else {
                let _ = reply.send(Err(IngestError::Unavailable));
            }
        }
        Pending::Delete { reply, existed } => {
            let _ = reply.send(if committed {
                Ok(existed)
            } else {
                Err(IngestError::Unavailable)
            });
        }
    }
}

fn log_changes(changes: &[StateChange], view: &RwLock<View>) {
    if changes.is_empty() {
        return;
    }
    let view = view.read();
    for change in changes {
        tracing::info!(
            r#type = change.key.kind.as_str(),
            id = change.shown_id.as_deref().unwrap_or(&change.key.id),
            name = view.name(&change.key).unwrap_or(""),
            old = change.from.map_or("unknown", Status::as_str),
            new = change.to.as_str(),
            action_date = exposition::seconds(change.at),
            "state changed"
        );
    }
}

fn refuse(job: Job, error: IngestError) {
    match job {
        Job::Apply { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Job::Delete { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Job::Expire { .. } | Job::Stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn event(id: &str, status: Status, at: Nanos) -> Event {
        Event {
            key: Key::new(Kind::Tunnel, id),
            status,
            at,
            index: 0,
            shown_id: None,
        }
    }

    fn start(series_max: usize) -> Ingest {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        Ingest::start(
            Box::new(MemoryStore),
            Names::default(),
            Config {
                series_max,
                expose_token_ids: false,
            },
            metrics,
        )
        .expect("start")
    }

    #[tokio::test]
    async fn events_of_one_request_are_applied_in_order_and_published() {
        let ingest = start(10);
        let outcomes = ingest
            .apply(
                vec![
                    event("a", Status::Connected, 1),
                    event("a", Status::Disconnected, 2),
                    event("a", Status::Disconnected, 2),
                ],
                Some("office".into()),
            )
            .await
            .expect("applied");
        assert_eq!(
            outcomes,
            [
                Outcome::Created,
                Outcome::Changed {
                    from: Status::Connected
                },
                Outcome::Duplicate
            ]
        );
        {
            let view = ingest.read();
            let entry = view.get(&Key::new(Kind::Tunnel, "a")).expect("tracked");
            let counts = (entry.status, entry.connects, entry.disconnects);
            assert_eq!(counts, (Status::Disconnected, 1, 1));
        }
        ingest.close().await;
        let refused = ingest
            .apply(vec![event("a", Status::Connected, 3)], None)
            .await;
        assert_eq!(refused, Err(IngestError::ShuttingDown));
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_id_are_applied_one_at_a_time() {
        let ingest = Arc::new(start(10));
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let ingest = Arc::clone(&ingest);
            let status = if i % 2 == 0 {
                Status::Connected
            } else {
                Status::Disconnected
            };
            tasks.push(tokio::spawn(async move {
                ingest
                    .apply(vec![event("a", status, 1_000 + i)], None)
                    .await
            }));
        }
        for task in tasks {
            task.await.expect("join").expect("applied");
        }
        let view = ingest.read();
        let entry = view.get(&Key::new(Kind::Tunnel, "a")).expect("tracked");
        assert_eq!(entry.connects + entry.disconnects, 200);
        assert_eq!((entry.connects, entry.disconnects), (100, 100));
        assert_eq!(entry.newest, 1_199);
        assert_eq!(entry.status, Status::Disconnected);
    }

    /// Changes committed to a [`Recording`] store: `None` is a deletion.
    type Committed = Arc<parking_lot::Mutex<Vec<(Key, Option<Entry>)>>>;

    /// A store that hands out fixed entries and records what is committed.
    #[derive(Default)]
    struct Recording {
        entries: Vec<(Key, Entry)>,
        committed: Committed,
    }

    impl Store for Recording {
        fn load(&mut self) -> Result<Vec<(Key, Entry)>, StoreError> {
            Ok(std::mem::take(&mut self.entries))
        }
        fn commit(&mut self, changes: &[Change<'_>]) -> Result<(), StoreError> {
            let mut committed = self.committed.lock();
            for change in changes {
                committed.push(match change {
                    Change::Put(k, e) => ((*k).clone(), Some((*e).clone())),
                    Change::Delete(k) => ((*k).clone(), None),
                });
            }
            Ok(())
        }
        fn size_bytes(&self) -> u64 {
            0
        }
    }

    fn start_with(store: Recording, series_max: usize, expose_token_ids: bool) -> Ingest {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let config = Config {
            series_max,
            expose_token_ids,
        };
        Ingest::start(Box::new(store), Names::default(), config, metrics).expect("start")
    }

    #[tokio::test]
    async fn known_ids_are_still_updated_when_the_store_holds_more_than_the_cap() {
        let entries = ["a", "b", "c"]
            .iter()
            .map(|id| {
                (
                    Key::new(Kind::Tunnel, *id),
                    Entry::first(Status::Connected, 1, None),
                )
            })
            .collect();
        let store = Recording {
            entries,
            ..Recording::default()
        };
        let ingest = start_with(store, 2, false);
        let known = ingest
            .apply(vec![event("a", Status::Disconnected, 2)], None)
            .await;
        assert_eq!(
            known,
            Ok(vec![Outcome::Changed {
                from: Status::Connected
            }])
        );
        let new = ingest
            .apply(vec![event("d", Status::Connected, 2)], None)
            .await;
        assert!(
            matches!(new, Err(IngestError::SeriesLimit { .. })),
            "{new:?}"
        );
    }

    #[tokio::test]
    async fn raw_tokens_left_by_an_exposing_run_are_scrubbed_at_start() {
        let fingerprint = crate::fingerprint::of("raw-token");
        let mut entry = Entry::first(Status::Connected, 1, None);
        entry.shown_id = Some("raw-token".into());
        let key = Key::new(Kind::Token, fingerprint.as_str());
        let entries = vec![(key.clone(), entry.clone())];

        let kept = Recording {
            entries: entries.clone(),
            ..Recording::default()
        };
        let committed = Arc::clone(&kept.committed);
        let ingest = start_with(kept, 10, true);
        assert!(
            committed.lock().is_empty(),
            "nothing to scrub while exposing"
        );
        assert_eq!(
            ingest.read().ids().next().map(|(_, t)| &*t.labels),
            Some("type=\"token\",id=\"raw-token\"")
        );

        let scrubbed = Recording {
            entries,
            ..Recording::default()
        };
        let committed = Arc::clone(&scrubbed.committed);
        let ingest = start_with(scrubbed, 10, false);
        let expected_labels = format!("type=\"token\",id=\"{fingerprint}\"");
        assert_eq!(
            ingest.read().ids().next().map(|(_, t)| &*t.labels),
            Some(expected_labels.as_str())
        );
        let committed = committed.lock();
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].0, key);
        assert_eq!(
            committed[0].1.as_ref().and_then(|e| e.shown_id.clone()),
            None
        );
    }

    #[tokio::test]
    async fn request_that_would_pass_the_series_cap_is_refused_whole() {
        let ingest = start(2);
        ingest
            .apply(vec![event("a", Status::Connected, 1)], None)
            .await
            .expect("first");
        let refused = ingest
            .apply(
                vec![
                    event("a", Status::Disconnected, 2),
                    event("b", Status::Connected, 2),
                    event("c", Status::Connected, 2),
                ],
                None,
            )
            .await;
        assert_eq!(
            refused,
            Err(IngestError::SeriesLimit {
                tracked: 1,
                adding: 2,
                max: 2
            })
        );
        let view = ingest.read();
        assert_eq!(view.len(), 1);
        let entry = view.get(&Key::new(Kind::Tunnel, "a")).expect("tracked");
        assert_eq!(
            entry.status,
            Status::Connected,
            "nothing of the refused request applied"
        );
    }

    #[tokio::test]
    async fn delete_forgets_an_id_and_says_whether_it_was_there() {
        let ingest = start(10);
        ingest
            .apply(vec![event("a", Status::Connected, 1)], None)
            .await
            .expect("applied");
        assert_eq!(ingest.read().count(Kind::Tunnel), 1);
        assert_eq!(ingest.delete(Key::new(Kind::Tunnel, "a")).await, Ok(true));
        assert_eq!(ingest.delete(Key::new(Kind::Tunnel, "a")).await, Ok(false));
        assert!(ingest.read().is_empty());
        assert_eq!(ingest.read().count(Kind::Tunnel), 0);
    }

    #[tokio::test]
    async fn expire_forgets_only_ids_whose_newest_event_is_older() {
        let ingest = start(10);
        ingest
            .apply(
                vec![
                    event("old", Status::Connected, 5),
                    event("new", Status::Connected, 50),
                ],
                None,
            )
            .await
            .expect("applied");
        ingest.expire(10).await;
        // A delete after the expiry is answered after the expiry's batch was published.
        ingest
            .delete(Key::new(Kind::Tunnel, "none"))
            .await
            .expect("delete");
        let view = ingest.read();
        assert!(view.get(&Key::new(Kind::Tunnel, "old")).is_none());
        assert!(view.get(&Key::new(Kind::Tunnel, "new")).is_some());
    }

    #[tokio::test]
    async fn failed_commit_applies_nothing_and_answers_unavailable() {
        struct Broken;
        impl Store for Broken {
            fn load(&mut self) -> Result<Vec<(Key, Entry)>, StoreError> {
                Ok(Vec::new())
            }
            fn commit(&mut self, _: &[Change<'_>]) -> Result<(), StoreError> {
                Err(StoreError::Open {
                    path: "broken".into(),
                    reason: "disk on fire".into(),
                })
            }
            fn size_bytes(&self) -> u64 {
                0
            }
        }
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let ingest = Ingest::start(
            Box::new(Broken),
            Names::default(),
            Config {
                series_max: 10,
                expose_token_ids: false,
            },
            metrics,
        )
        .expect("start");
        let result = ingest
            .apply(vec![event("a", Status::Connected, 1)], None)
            .await;
        assert_eq!(result, Err(IngestError::Unavailable));
        assert!(ingest.read().is_empty());
    }

    #[tokio::test]
    async fn names_reload_relabels_tracked_ids_and_lists_unreported_ones() {
        let ingest = start(10);
        ingest
            .apply(vec![event("a", Status::Connected, 1)], None)
            .await
            .expect("applied");
        let names = Names::parse("[tunnels]\na = \"A\"\nb = \"B\"\n").expect("names");
        ingest.set_names(names);
        let mut out = Vec::new();
        ingest.read().render(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("localtonet_connected{type=\"tunnel\",id=\"a\",name=\"A\"} 1"));
        assert!(text.contains("localtonet_unreported{type=\"tunnel\",id=\"b\",name=\"B\"} 1"));
        assert!(!text.contains("localtonet_unreported{type=\"tunnel\",id=\"a\""));
    }
}
