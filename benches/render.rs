//! Rendering `/metrics`: the per-id series written straight from the state, as the exporter
//! does, against the same series kept in the `prometheus` crate and written by its
//! `gather()` and `TextEncoder`, as the exporter does for its own metrics only.
//!
//! Before timing, it prints the heap each representation holds for the same ids (a counting
//! allocator wraps the system one), since memory decided the design as much as time.
//!
//! `cargo bench --bench render`; under `cargo test` each benchmark runs once, at 1,000 ids.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use localtonet_exporter::event::{Event, Key, Kind, Status};
use localtonet_exporter::ingest::{Config, Ingest};
use localtonet_exporter::metrics::Metrics;
use localtonet_exporter::names::Names;
use localtonet_exporter::store::MemoryStore;
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Id counts compared.
const SIZES: [usize; 2] = [10_000, 100_000];
/// Id count when `cargo test` runs the benchmarks once each, to check that they work.
const TEST_SIZES: [usize; 1] = [1_000];

/// True under `cargo bench`, false under `cargo test`, which runs each benchmark once.
fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// ActionDate of the first event, in nanoseconds (2024-04-29T12:35:17Z).
const BASE: i64 = 1_714_394_117_000_000_000;

fn id(i: usize) -> String {
    format!("bench-{i:06}")
}

/// Three events per id (connect, disconnect, connect), so every counter is above zero.
fn events(from: usize, to: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(3 * (to - from));
    for (round, status) in [Status::Connected, Status::Disconnected, Status::Connected]
        .into_iter()
        .enumerate()
    {
        for i in from..to {
            events.push(Event {
                key: Key::new(Kind::Tunnel, id(i)),
                status,
                at: BASE + (round * 1_000_000 + i) as i64 * 1_000,
                index: events.len(),
                shown_id: None,
            });
        }
    }
    events
}

/// The exporter's state holding `n` ids, built through its public write path.
fn exporter_state(n: usize) -> (tokio::runtime::Runtime, Ingest) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let metrics = Arc::new(Metrics::new().expect("self-metrics"));
    let ingest = Ingest::start(
        Box::new(MemoryStore),
        Names::default(),
        Config {
            series_max: n,
            expose_token_ids: false,
        },
        metrics,
    )
    .expect("ingest starts");
    runtime.block_on(async {
        for from in (0..n).step_by(1_000) {
            let to = (from + 1_000).min(n);
            ingest.apply(events(from, to), None).await.expect("applied");
        }
    });
    assert_eq!(ingest.read().len(), n);
    (runtime, ingest)
}

/// The same four families kept as `prometheus` crate metrics.
struct CrateMetrics {
    registry: Registry,
}

impl CrateMetrics {
    fn new(n: usize) -> CrateMetrics {
        let registry = Registry::new();
        let labels = &["type", "id"];
        let connected = GaugeVec::new(Opts::new("localtonet_connected", "help"), labels);
        let connects = IntCounterVec::new(Opts::new("localtonet_connects_total", "help"), labels);
        let disconnects =
            IntCounterVec::new(Opts::new("localtonet_disconnects_total", "help"), labels);
        let since = GaugeVec::new(
            Opts::new("localtonet_last_change_timestamp_seconds", "help"),
            labels,
        );
        let (connected, connects, disconnects, since) = (
            connected.expect("valid"),
            connects.expect("valid"),
            disconnects.expect("valid"),
            since.expect("valid"),
        );
        for collector in [
            Box::new(connected.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connects.clone()),
            Box::new(disconnects.clone()),
            Box::new(since.clone()),
        ] {
            registry.register(collector).expect("registered");
        }
        for i in 0..n {
            let id = id(i);
            let values = ["tunnel", id.as_str()];
            connected.with_label_values(&values).set(1.0);
            connects.with_label_values(&values).inc_by(2);
            disconnects.with_label_values(&values).inc();
            since
                .with_label_values(&values)
                .set((BASE + (2_000_000 + i as i64) * 1_000) as f64 / 1e9);
        }
        CrateMetrics { registry }
    }

    fn render(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        TextEncoder::new().encode(&families, out).expect("encodes");
    }
}

/// Prints heap and output size of both representations for each size.
fn report_memory() {
    if !benchmarking() {
        return;
    }
    for n in SIZES {
        let before = live_bytes();
        let (runtime, ingest) = exporter_state(n);
        let ours = live_bytes() - before;
        let mut out = Vec::new();
        ingest.read().render(&mut out);
        let our_bytes = out.len();
        runtime.block_on(ingest.close());
        drop((runtime, ingest, out));

        let before = live_bytes();
        let metrics = CrateMetrics::new(n);
        let theirs = live_bytes() - before;
        let mut out = Vec::new();
        metrics.render(&mut out);
        println!(
            "heap for {n} ids: exporter state {:.1} MB ({} B/id), prometheus crate {:.1} MB \
             ({} B/id); body {:.1} MB vs {:.1} MB",
            ours as f64 / 1e6,
            ours / n as isize,
            theirs as f64 / 1e6,
            theirs / n as isize,
            our_bytes as f64 / 1e6,
            out.len() as f64 / 1e6,
        );
    }
}

fn render(c: &mut Criterion) {
    report_memory();
    let mut group = c.benchmark_group("render");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let sizes: &[usize] = if benchmarking() { &SIZES } else { &TEST_SIZES };
    for &n in sizes {
        group.throughput(Throughput::Elements(n as u64));

        let (runtime, ingest) = exporter_state(n);
        let mut size = 0;
        group.bench_with_input(BenchmarkId::new("exporter View::render", n), &n, |b, _| {
            b.iter(|| {
                // As the /metrics handler does: size the buffer from the previous scrape.
                let mut out = Vec::with_capacity(size + size / 8 + 4096);
                ingest.read().render(&mut out);
                size = out.len();
                black_box(out)
            })
        });
        runtime.block_on(ingest.close());
        drop((runtime, ingest));

        let metrics = CrateMetrics::new(n);
        group.bench_with_input(
            BenchmarkId::new("prometheus crate gather+encode", n),
            &n,
            |b, _| {
                b.iter(|| {
                    let mut out = Vec::new();
                    metrics.render(&mut out);
                    black_box(out)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
