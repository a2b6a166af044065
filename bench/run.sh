#!/usr/bin/env bash
# Benchmark harness: localtonet-exporter against Pushgateway and a bare hyper server, side by
# side on loopback, in one run. Prints one Markdown table on standard output (progress goes to
# standard error) and exits non-zero if a step broke.
#
#   bench/run.sh           the full run (about 3 minutes on 2 cores, after the build)
#   bench/run.sh --smoke   a short run with small id counts that only proves the harness works
#
# Needs: the Rust toolchain, wrk, curl, prometheus-pushgateway (scripts/install-test-deps.sh
# installs them on Debian), and bash, awk, sort, date from the base system.
#
# Environment:
#   BENCH_DIR      working folder (default target/bench); emptied first, removed at the end
#   BENCH_KEEP=1   keep BENCH_DIR (stores, logs, scrapes) after the run
#   BENCH_PORT     first of the three loopback ports used (default 19870)
#   BENCH_BUILD=0  use the binaries already in target/release instead of building them
#   PUSHGATEWAY    path of the Pushgateway binary (default: prometheus-pushgateway on PATH)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

MODE=full
case "${1:-}" in
    "") ;;
    --smoke) MODE=smoke ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: bench/run.sh [--smoke]" >&2
        exit 2
        ;;
esac

# What each mode measures. The full run follows the targets' definitions; the smoke run keeps
# every step but makes each one take a second or two.
if [ "$MODE" = full ]; then
    INGEST_SECONDS=10
    CONNECTIONS=(16 64)
    SCRAPE_SIZES=(1000 10000 100000)
    CHUNK=1000
    SCRAPES=20
    GZIP_SCRAPES=5
    LOAD_SECONDS=15
else
    INGEST_SECONDS=1
    CONNECTIONS=(16 64)
    SCRAPE_SIZES=(100 1000)
    CHUNK=100
    SCRAPES=5
    GZIP_SCRAPES=2
    LOAD_SECONDS=3
fi
KEYS=10000
THREADS=2
LARGEST=${SCRAPE_SIZES[${#SCRAPE_SIZES[@]} - 1]}

BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
BENCH_PORT=${BENCH_PORT:-19870}
EXPORTER_PORT=$BENCH_PORT
PUSHGATEWAY_PORT=$((BENCH_PORT + 1))
CEILING_PORT=$((BENCH_PORT + 2))
EXPORTER_BIN=$ROOT/target/release/localtonet-exporter
CEILING_BIN=$ROOT/target/release/examples/bench_ceiling

declare -A R=()   # results, by key
FAILURES=()       # broken steps, with the reason
PIDS=()           # every process this script started and has not reaped yet

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

fail() {
    FAILURES+=("$1: $2")
    log "FAILED $1: $2"
}

die() {
    echo "bench/run.sh: $*" >&2
    exit 1
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null # in case it was stopped while the other was scraped
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -d "$BENCH_DIR" ]; then
        rm -rf "$BENCH_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- formatting -----------------------------------------------------------------------------

# 1234567 -> 1,234,567
thousands() {
    awk -v n="$1" 'BEGIN {
        s = sprintf("%d", n); out = ""
        while (length(s) > 3) {
            out = "," substr(s, length(s) - 2) out
            s = substr(s, 1, length(s) - 3)
        }
        print s out
    }'
}

# microseconds -> "0.85 ms", "12.3 ms", "2,104 ms"
ms() {
    awk -v us="$1" 'BEGIN {
        m = us / 1000
        if (m < 10) printf "%.2f ms\n", m
        else if (m < 100) printf "%.1f ms\n", m
        else printf "%d ms\n", m + 0.5
    }' | sed -E ':a; s/([0-9])([0-9]{3})( ms)/\1,\2\3/; ta'
}

us() { echo "$(thousands "$1") µs"; }

# bytes -> "512 kB", "23.4 MB" (powers of 1000)
size() {
    awk -v b="$1" 'BEGIN {
        if (b < 1e6) printf "%d kB\n", b / 1e3 + 0.5
        else if (b < 1e8) printf "%.1f MB\n", b / 1e6
        else printf "%d MB\n", b / 1e6 + 0.5
    }'
}

# --- processes ------------------------------------------------------------------------------

# Starts a server in the background with its output in a log file; sets STARTED to its pid.
start() {
    local name=$1
    shift
    "$@" >"$BENCH_DIR/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# Forgets a pid that has been reaped.
forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# Stops a server started by start() with SIGTERM and reaps it; sets STOPPED to its exit
# status.
stop() {
    STOPPED=0
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null || STOPPED=$?
    forget "$1"
}

# True when something answers HTTP on the port.
port_busy() {
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
    [ $? -ne 7 ]
}

# Waits until URL answers 200 (at most $2 seconds, default 20); false if it never does or
# the process $3 ended.
wait_ok() {
    local url=$1 deadline=$((SECONDS + ${2:-20})) pid=${3:-}
    while [ $SECONDS -lt $deadline ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url")" = 200 ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.01
    done
    return 1
}

# Nanoseconds since the epoch.
now_ns() { date +%s%N; }

# CPU time a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

vm_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

start_exporter() { # name, then storage flags
    local name=$1
    shift
    start "$name" "$EXPORTER_BIN" \
        "--web.listen-address=127.0.0.1:$EXPORTER_PORT" \
        --web.rate-limit=0 \
        --series.max=1000000 \
        --webhook.max-body-bytes=16777216 \
        "$@"
    EXPORTER_PID=$STARTED
    wait_ok "http://127.0.0.1:$EXPORTER_PORT/-/ready" 60 "$EXPORTER_PID"
}

start_pushgateway() {
    start "$1" "$PUSHGATEWAY" \
        "--web.listen-address=127.0.0.1:$PUSHGATEWAY_PORT" \
        --persistence.file= \
        --log.level=warn
    PUSHGATEWAY_PID=$STARTED
    wait_ok "http://127.0.0.1:$PUSHGATEWAY_PORT/-/ready" 20 "$PUSHGATEWAY_PID"
}

start_ceiling() {
    start "$1" "$CEILING_BIN" "127.0.0.1:$CEILING_PORT"
    CEILING_PID=$STARTED
    # Any answer will do: the ceiling answers 202 to everything.
    local deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$CEILING_PORT/")" = 202 ] && return 0
        kill -0 "$CEILING_PID" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# Sum of a self-metric's samples whose line contains every given string.
metric_sum() {
    local file=$1 name=$2
    shift 2
    awk -v name="$name" -v want="$*" '
        index($0, name) == 1 {
            n = split(want, parts, " "); ok = 1
            for (i = 1; i <= n; i++) if (index($0, parts[i]) == 0) ok = 0
            if (ok) sum += $NF
        }
        END { printf "%d\n", sum }' "$file"
}

# --- step: ingest ---------------------------------------------------------------------------

# Runs wrk against URL with SCRIPT; sets W[requests], W[rate], W[p50], W[p99] and returns
# false (with WRK_ERROR set) when a request failed.
declare -A W=()
run_wrk() {
    local url=$1 script=$2 connections=$3 seconds=$4 out
    out=$(BENCH_THREADS=$THREADS BENCH_KEYS=$KEYS BENCH_BASE=$(($(date +%s) - 3600)) \
        timeout $((seconds + 30)) wrk -t"$THREADS" -c"$connections" -d"${seconds}s" \
        --timeout 10s -s "$script" "$url" 2>&1)
    local line
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        WRK_ERROR="wrk printed no result: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
        return 1
    fi
    W=()
    local pair
    for pair in ${line#RESULT }; do
        W[${pair%%=*}]=${pair#*=}
    done
    W[rate]=$(awk -v n="${W[requests]}" -v us="${W[duration_us]}" \
        'BEGIN { printf "%d", n / (us / 1e6) }')
    local errors=$((W[bad_status] + W[connect] + W[read] + W[write] + W[timeout]))
    if [ "${W[requests]}" -eq 0 ] || [ "$errors" -gt 0 ]; then
        WRK_ERROR="${W[requests]} requests, ${W[bad_status]} answered 4xx/5xx, socket errors:"
        WRK_ERROR+=" connect ${W[connect]} read ${W[read]} write ${W[write]}"
        WRK_ERROR+=" timeout ${W[timeout]}"
        return 1
    fi
    return 0
}

# One ingest measurement: SYSTEM (durable, memory, pushgateway, ceiling) at N connections.
ingest_one() {
    local system=$1 connections=$2 step="ingest $1 c=$2" url script pid
    script=$ROOT/bench/webhook.lua
    case $system in
        durable)
            rm -f "$BENCH_DIR"/ingest.db*
            start_exporter "ingest-$system-$connections" \
                "--storage.path=$BENCH_DIR/ingest.db" || {
                fail "$step" "exporter did not become ready"
                return
            }
            pid=$EXPORTER_PID url="http://127.0.0.1:$EXPORTER_PORT/webhook"
            ;;
        memory)
            start_exporter "ingest-$system-$connections" --storage.in-memory || {
                fail "$step" "exporter did not become ready"
                return
            }
            pid=$EXPORTER_PID url="http://127.0.0.1:$EXPORTER_PORT/webhook"
            ;;
        pushgateway)
            start_pushgateway "ingest-$system-$connections" || {
                fail "$step" "Pushgateway did not become ready"
                return
            }
            pid=$PUSHGATEWAY_PID url="http://127.0.0.1:$PUSHGATEWAY_PORT/"
            script=$ROOT/bench/pushgateway.lua
            ;;
        ceiling)
            start_ceiling "ingest-$system-$connections" || {
                fail "$step" "bench_ceiling did not start"
                return
            }
            pid=$CEILING_PID url="http://127.0.0.1:$CEILING_PORT/webhook"
            ;;
    esac

    log "$step: wrk ${INGEST_SECONDS}s"
    local ticks
    ticks=$(cpu_ticks "$pid")
    if run_wrk "$url" "$script" "$connections" "$INGEST_SECONDS"; then
        ticks=$(($(cpu_ticks "$pid") - ticks))
        R[ingest.$system.$connections.cpu]=$((ticks * 1000000 / CLK_TCK / W[requests]))
        R[ingest.$system.$connections.rate]=${W[rate]}
        R[ingest.$system.$connections.p50]=${W[p50_us]}
        R[ingest.$system.$connections.p99]=${W[p99_us]}
        if [ "$system" = durable ] || [ "$system" = memory ]; then
            check_events_applied "$step" "$system" "$connections"
        fi
    else
        fail "$step" "$WRK_ERROR"
    fi
    stop "$pid"
    rm -f "$BENCH_DIR"/ingest.db* "$BENCH_DIR/ingest-$system-$connections.log"
}

# Every answered event must have been applied: none a duplicate, none lost. Also records how
# the SQLite store grouped them: events per commit and mean commit time.
check_events_applied() {
    local step=$1 system=$2 connections=$3 scrape=$BENCH_DIR/after-ingest.prom
    if ! curl -sf --max-time 30 -o "$scrape" "http://127.0.0.1:$EXPORTER_PORT/metrics"; then
        fail "$step" "scrape after the run failed"
        return
    fi
    local applied duplicate late requests=${W[requests]}
    applied=$(metric_sum "$scrape" localtonet_exporter_events_total 'outcome="applied"')
    late=$(metric_sum "$scrape" localtonet_exporter_events_total 'outcome="out_of_order"')
    duplicate=$(metric_sum "$scrape" localtonet_exporter_events_total 'outcome="duplicate"')
    if [ "$duplicate" -ne 0 ] || [ $((applied + late)) -lt "$requests" ]; then
        fail "$step" "wrk got $requests answers but the exporter counted $applied applied,\
 $late out of order, $duplicate duplicates"
    fi

    [ "$system" = durable ] || return 0
    local commits
    commits=$(metric_sum "$scrape" localtonet_exporter_store_commits_total)
    [ "$commits" -gt 0 ] || return 0
    R[ingest.durable.$connections.batch]=$(((applied + late) / commits))
    R[ingest.durable.$connections.commit]=$(awk -v n="$commits" '
        index($0, "localtonet_exporter_store_commit_duration_seconds_sum ") == 1 {
            printf "%d", $2 * 1e6 / n
        }' "$scrape")
}

step_ingest() {
    local connections system
    for connections in "${CONNECTIONS[@]}"; do
        for system in ceiling durable memory pushgateway; do
            ingest_one "$system" "$connections"
        done
    done
}

# --- step: scrape, RSS, start to ready ------------------------------------------------------

# Writes the pre-load files: LARGEST ids in chunks of CHUNK, as webhook bodies (JSON arrays
# of one Connected event per id) and as Pushgateway pushes of the same four series per id.
write_preload() {
    local second
    second=$(date -u -d "@$(($(date +%s) - 7200))" +%Y-%m-%dT%H:%M:%S)
    mkdir -p "$BENCH_DIR/preload"
    awk -v total="$LARGEST" -v chunk="$CHUNK" -v dir="$BENCH_DIR/preload" \
        -v second="$second" -v epoch="$(date -u -d "$second" +%s)" '
    function pushed(c, from, to,    f, i, id, family, fams) {
        f = sprintf("%s/pgw-%05d.prom", dir, c)
        fams = "localtonet_connected gauge 1|localtonet_connects_total counter 1|" \
               "localtonet_disconnects_total counter 0|" \
               "localtonet_last_change_timestamp_seconds gauge -"
        split(fams, family, "|")
        for (k = 1; k <= 4; k++) {
            split(family[k], part, " ")
            printf "# HELP %s Benchmark copy of the exporter series.\n", part[1] > f
            printf "# TYPE %s %s\n", part[1], part[2] > f
            for (i = from; i < to; i++) {
                id = sprintf("bench-%06d", i)
                value = part[3] == "-" ? sprintf("%d.%06d", epoch, i) : part[3]
                printf "%s{type=\"tunnel\",id=\"%s\"} %s\n", part[1], id, value > f
            }
        }
        close(f)
    }
    BEGIN {
        for (c = 0; c * chunk < total; c++) {
            f = sprintf("%s/ev-%05d.json", dir, c)
            printf "[" > f
            for (i = c * chunk; i < (c + 1) * chunk && i < total; i++) {
                if (i > c * chunk) printf "," > f
                printf "{\"Id\":\"bench-%06d\",\"ActionDate\":\"%s.%06d\",", \
                    i, second, i % 1000000 > f
                printf "\"Type\":\"Tunnel\",\"Status\":\"Connected\"}" > f
            }
            printf "]" > f
            close(f)
            pushed(c, c * chunk, i)
        }
    }'
}

# Loads chunks [from, to) into both servers.
load_chunks() {
    local from=$1 to=$2 c code
    for ((c = from; c < to; c++)); do
        code=$(curl -s -o "$BENCH_DIR/answer" -w '%{http_code}' --max-time 120 \
            -H 'Content-Type: application/json' \
            --data-binary @"$(printf '%s/preload/ev-%05d.json' "$BENCH_DIR" "$c")" \
            "http://127.0.0.1:$EXPORTER_PORT/webhook")
        if [ "$code" != 200 ]; then
            echo "exporter answered $code to chunk $c: $(head -c 300 "$BENCH_DIR/answer")"
            return 1
        fi
        code=$(curl -s -o "$BENCH_DIR/answer" -w '%{http_code}' --max-time 300 \
            -H 'Content-Type: text/plain; version=0.0.4' \
            --data-binary @"$(printf '%s/preload/pgw-%05d.prom' "$BENCH_DIR" "$c")" \
            "http://127.0.0.1:$PUSHGATEWAY_PORT/metrics/job/localtonet/shard/$c")
        if [ "$code" != 200 ] && [ "$code" != 202 ]; then
            echo "Pushgateway answered $code to chunk $c: $(head -c 300 "$BENCH_DIR/answer")"
            return 1
        fi
    done
}

# Scrapes URL once into FILE (untimed: it is checked afterwards), then COUNT times into
# /dev/null; sets S[p50], S[max] (µs) and S[bytes] from the timed ones. Extra curl arguments
# follow. False, with SCRAPE_ERROR set, if a scrape failed.
declare -A S=()
scrape_n() {
    local url=$1 count=$2 file=$3 i line code
    shift 3
    local times=$BENCH_DIR/times
    : >"$times"
    for ((i = 0; i <= count; i++)); do
        local out=/dev/null
        [ "$i" -eq 0 ] && out=$file
        line=$(curl -s -o "$out" -w '%{http_code} %{time_total} %{size_download}' \
            --max-time 60 "$@" "$url")
        code=${line%% *}
        if [ "$code" != 200 ]; then
            SCRAPE_ERROR="scrape $((i + 1)) answered ${code:-nothing}"
            return 1
        fi
        [ "$i" -eq 0 ] || echo "${line#* }" >>"$times"
    done
    S[p50]=$(awk '{ print $1 * 1e6 }' "$times" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] }')
    S[max]=$(awk '$1 > m { m = $1 } END { printf "%d", m * 1e6 }' "$times")
    S[bytes]=$(awk 'END { print $2 }' "$times")
}

# Number of series of one family in a scrape.
series_count() { awk -v p="$2{" 'index($0, p) == 1 { n++ } END { print n + 0 }' "$1"; }

step_scrape() {
    local step=scrape size chunks=0 want error
    rm -rf "$BENCH_DIR/preload" "$BENCH_DIR"/scrape.db*
    log "$step: writing pre-load files for $(thousands "$LARGEST") ids"
    write_preload

    start_exporter scrape-exporter "--storage.path=$BENCH_DIR/scrape.db" || {
        fail "$step" "exporter did not become ready"
        return
    }
    start_pushgateway scrape-pushgateway || {
        fail "$step" "Pushgateway did not become ready"
        stop "$EXPORTER_PID"
        return
    }

    for size in "${SCRAPE_SIZES[@]}"; do
        want=$(((size + CHUNK - 1) / CHUNK))
        log "$step: loading up to $(thousands "$size") ids into both"
        if ! error=$(load_chunks "$chunks" "$want"); then
            fail "$step $size" "$error"
            break
        fi
        chunks=$want

        log "$step: $SCRAPES scrapes of each at $(thousands "$size") ids"
        scrape_pair "$size" "$SCRAPES" || break
    done

    if [ -n "${R[scrape.exporter.$LARGEST.p50]:-}" ]; then
        log "$step: $GZIP_SCRAPES gzip scrapes of each at $(thousands "$size") ids"
        scrape_pair "$size.gzip" "$GZIP_SCRAPES" --compressed
        R[rss.exporter]=$(vm_kb "$EXPORTER_PID" VmRSS)
        R[hwm.exporter]=$(vm_kb "$EXPORTER_PID" VmHWM)
        R[rss.pushgateway]=$(vm_kb "$PUSHGATEWAY_PID" VmRSS)
        R[hwm.pushgateway]=$(vm_kb "$PUSHGATEWAY_PID" VmHWM)
        R[store.bytes]=$(du -cb "$BENCH_DIR"/scrape.db* | awk 'END { print $1 }')
    fi
    stop "$PUSHGATEWAY_PID"

    stop "$EXPORTER_PID"
    if [ "$STOPPED" != 0 ]; then
        fail "start to ready" "the exporter exited with status $STOPPED on SIGTERM"
        return
    fi
    step_restart
}

# Scrapes both servers at one size; the size key may carry a suffix (".gzip"). While one is
# scraped the other is stopped (SIGSTOP), so that its background work (Pushgateway's garbage
# collector after a load, say) does not take CPU from the one measured.
scrape_pair() {
    local key=$1 count=$2 size=${1%%.*}
    shift 2
    scrape_paused exporter "$EXPORTER_PORT" "$PUSHGATEWAY_PID" "$key" "$count" "$@" || return 1
    scrape_paused pushgateway "$PUSHGATEWAY_PORT" "$EXPORTER_PID" "$key" "$count" "$@" \
        || return 1

    [ "$key" = "$size" ] || return 0
    local family e p
    for family in localtonet_connected localtonet_connects_total \
        localtonet_disconnects_total localtonet_last_change_timestamp_seconds; do
        e=$(series_count "$BENCH_DIR/exporter.prom" "$family")
        p=$(series_count "$BENCH_DIR/pushgateway.prom" "$family")
        if [ "$e" != "$size" ] || [ "$p" != "$size" ]; then
            fail "scrape $size" "$family: exporter has $e series, Pushgateway $p, want $size"
            return 1
        fi
    done
}

# Scrapes one server (name, port) COUNT times with the other (PID) stopped; records the figures
# under KEY. Extra arguments go to curl.
scrape_paused() {
    local name=$1 port=$2 paused=$3 key=$4 count=$5 scraped
    shift 5
    kill -STOP "$paused"
    scrape_n "http://127.0.0.1:$port/metrics" "$count" "$BENCH_DIR/$name.prom" "$@"
    scraped=$?
    kill -CONT "$paused"
    if [ "$scraped" != 0 ]; then
        fail "scrape $name $key" "$SCRAPE_ERROR"
        return 1
    fi
    R[scrape.$name.$key.p50]=${S[p50]}
    R[scrape.$name.$key.max]=${S[max]}
    R[scrape.$name.$key.bytes]=${S[bytes]}
}

# Restarts the exporter on the store the scrape step filled; times start to ready.
step_restart() {
    local step="start to ready" started ready
    log "$step: restarting the exporter on $(thousands "$LARGEST") stored ids"
    started=$(now_ns)
    if ! start_exporter restart "--storage.path=$BENCH_DIR/scrape.db"; then
        fail "$step" "exporter did not become ready: $(tail -n 2 "$BENCH_DIR/restart.log")"
        return
    fi
    ready=$(now_ns)
    R[ready.us]=$(((ready - started) / 1000))
    R[ready.loaded_ms]=$(awk '/state loaded/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^took_ms=/) { sub(/^took_ms=/, "", $i); print $i } }' \
        "$BENCH_DIR/restart.log" | tail -n 1)
    R[ready.rss]=$(vm_kb "$EXPORTER_PID" VmRSS)
    local ids
    ids=$(curl -sf --max-time 30 "http://127.0.0.1:$EXPORTER_PORT/metrics" |
        awk 'index($0, "localtonet_exporter_ids{") == 1 { n += $NF } END { print n + 0 }')
    if [ "$ids" != "$LARGEST" ]; then
        fail "$step" "after the restart the exporter tracks $ids ids, want $LARGEST"
    fi
    stop "$EXPORTER_PID"
}

# --- step: scrapes during sustained ingest --------------------------------------------------

# While wrk posts events, scrapes back to back; every scrape must answer 200 and no
# connects/disconnects counter may go down or vanish between consecutive scrapes.
step_consistency() {
    local step="scrape during ingest" wrk_pid n=0 bad=0 code line result
    rm -f "$BENCH_DIR"/load.db*
    start_exporter load "--storage.path=$BENCH_DIR/load.db" || {
        fail "$step" "exporter did not become ready"
        return
    }
    log "$step: wrk ${LOAD_SECONDS}s at 16 connections, scraping meanwhile"
    BENCH_THREADS=$THREADS BENCH_KEYS=$KEYS BENCH_BASE=$(($(date +%s) - 3600)) \
        timeout $((LOAD_SECONDS + 30)) wrk -t"$THREADS" -c16 -d"${LOAD_SECONDS}s" \
        --timeout 10s -s "$ROOT/bench/webhook.lua" \
        "http://127.0.0.1:$EXPORTER_PORT/webhook" >"$BENCH_DIR/load-wrk.out" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")

    local previous=$BENCH_DIR/load-previous.prom current=$BENCH_DIR/load-current.prom
    local times=$BENCH_DIR/load-times
    : >"$times"
    rm -f "$previous"
    while kill -0 "$wrk_pid" 2>/dev/null; do
        line=$(curl -s -o "$current" -w '%{http_code} %{time_total}' --max-time 30 \
            "http://127.0.0.1:$EXPORTER_PORT/metrics")
        code=${line%% *}
        n=$((n + 1))
        if [ "$code" != 200 ]; then
            fail "$step" "scrape $n answered ${code:-nothing}"
            bad=1
            break
        fi
        echo "${line#* }" >>"$times"
        if [ -f "$previous" ]; then
            result=$(awk '
                FNR == NR { if (counter($1)) before[$1] = $2; next }
                counter($1) {
                    now[$1] = 1
                    if (($1 in before) && $2 + 0 < before[$1] + 0) {
                        down++; if (example == "") example = $1 " " before[$1] " -> " $2
                    }
                }
                END {
                    for (k in before) if (!(k in now)) {
                        gone++; if (example == "") example = k " vanished"
                    }
                    if (down + gone > 0)
                        print down + 0, "went down,", gone + 0, "vanished, e.g.", example
                }
                function counter(s) {
                    return index(s, "localtonet_connects_total{") == 1 ||
                           index(s, "localtonet_disconnects_total{") == 1
                }' "$previous" "$current")
            if [ -n "$result" ]; then
                fail "$step" "between scrapes $((n - 1)) and $n: $result"
                bad=1
                break
            fi
        fi
        mv "$current" "$previous"
    done
    local wrk_status=0
    wait "$wrk_pid" 2>/dev/null || wrk_status=$?
    forget "$wrk_pid"
    local ids=0
    [ -f "$previous" ] && ids=$(series_count "$previous" localtonet_connects_total)
    stop "$EXPORTER_PID"
    [ "$bad" = 0 ] || return

    if [ "$wrk_status" != 0 ] || ! grep -q '^RESULT ' "$BENCH_DIR/load-wrk.out"; then
        fail "$step" "wrk failed: $(tail -n 3 "$BENCH_DIR/load-wrk.out" | tr '\n' ' ')"
        return
    fi
    if [ "$n" -lt 2 ]; then
        fail "$step" "only $n scrape(s) during the load; nothing compared"
        return
    fi
    R[load.scrapes]=$n
    R[load.ids]=$ids
    R[load.rate]=$(awk '/^RESULT / {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
        printf "%d", r["requests"] / (r["duration_us"] / 1e6) }' "$BENCH_DIR/load-wrk.out")
    R[load.p50]=$(awk '{ print $1 * 1e6 }' "$times" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] }')
    R[load.max]=$(awk '$1 > m { m = $1 } END { printf "%d", m * 1e6 }' "$times")
}

# --- the table ------------------------------------------------------------------------------

# A result, formatted by FORMAT (ms, size, thousands), or "failed".
show() {
    local format=$1 key=$2
    if [ -z "${R[$key]:-}" ]; then
        echo "failed"
    else
        "$format" "${R[$key]}"
    fi
}

ratio() { # key a, key b -> "a/b" as "0.42×"
    if [ -z "${R[$1]:-}" ] || [ -z "${R[$2]:-}" ] || [ "${R[$2]}" = 0 ]; then
        echo "?"
    else
        awk -v a="${R[$1]}" -v b="${R[$2]}" 'BEGIN { printf "%.2f×\n", a / b }'
    fi
}

quotient() { # key a, key b -> "a/b" as "0.6×", "3.1×" or "23×"
    if [ -z "${R[$1]:-}" ] || [ -z "${R[$2]:-}" ] || [ "${R[$2]}" = 0 ]; then
        echo "?"
    else
        awk -v a="${R[$1]}" -v b="${R[$2]}" \
            'BEGIN { r = a / b; printf (r < 10 ? "%.1f×\n" : "%.0f×\n"), r }'
    fi
}

mb_kb() { size $(($1 * 1024)); }

print_table() {
    local c size key
    echo "| measurement | localtonet-exporter (SQLite store) | localtonet-exporter" \
        "(in-memory) | Pushgateway $PUSHGATEWAY_VERSION | bare hyper (ceiling) |"
    echo "|---|---|---|---|---|"
    for c in "${CONNECTIONS[@]}"; do
        echo "| ingest, $c connections: events/s |" \
            "$(show thousands "ingest.durable.$c.rate") ($(ratio "ingest.durable.$c.rate" \
                "ingest.ceiling.$c.rate") of ceiling) |" \
            "$(show thousands "ingest.memory.$c.rate") ($(ratio "ingest.memory.$c.rate" \
                "ingest.ceiling.$c.rate")) |" \
            "$(show thousands "ingest.pushgateway.$c.rate") |" \
            "$(show thousands "ingest.ceiling.$c.rate") |"
        echo "| ingest, $c connections: server CPU per event |" \
            "$(show us "ingest.durable.$c.cpu") | $(show us "ingest.memory.$c.cpu") |" \
            "$(show us "ingest.pushgateway.$c.cpu") | $(show us "ingest.ceiling.$c.cpu") |"
        echo "| ingest, $c connections: events per store commit, mean commit time |" \
            "${R[ingest.durable.$c.batch]:-?}, $(show ms "ingest.durable.$c.commit") | | | |"
        echo "| ingest, $c connections: p50 / p99 latency |" \
            "$(show ms "ingest.durable.$c.p50") / $(show ms "ingest.durable.$c.p99") |" \
            "$(show ms "ingest.memory.$c.p50") / $(show ms "ingest.memory.$c.p99") |" \
            "$(show ms "ingest.pushgateway.$c.p50") / $(show ms "ingest.pushgateway.$c.p99") |" \
            "$(show ms "ingest.ceiling.$c.p50") / $(show ms "ingest.ceiling.$c.p99") |"
    done
    for size in "${SCRAPE_SIZES[@]}" "$LARGEST.gzip"; do
        key=$size
        local label
        label="$(thousands "${size%%.*}") ids ($(thousands $((${size%%.*} * 4))) series)"
        [ "$size" = "${size%.gzip}" ] || label="$(thousands "${size%%.*}") ids, gzip"
        local n=$SCRAPES
        [ "$size" = "${size%.gzip}" ] || n=$GZIP_SCRAPES
        echo "| scrape, $label: p50 / max of $n, size |" \
            "$(show ms "scrape.exporter.$key.p50") / $(show ms "scrape.exporter.$key.max")," \
            "$(show size "scrape.exporter.$key.bytes") | |" \
            "$(show ms "scrape.pushgateway.$key.p50") /" \
            "$(show ms "scrape.pushgateway.$key.max")," \
            "$(show size "scrape.pushgateway.$key.bytes")" \
            "($(quotient "scrape.pushgateway.$key.p50" "scrape.exporter.$key.p50") the exporter's" \
            "p50) | |"
    done
    echo "| RSS at $(thousands "$LARGEST") ids after the scrapes (peak) |" \
        "$(show mb_kb rss.exporter) ($(show mb_kb hwm.exporter)); store on disk" \
        "$(show size store.bytes) | |" \
        "$(show mb_kb rss.pushgateway) ($(show mb_kb hwm.pushgateway)) | |"
    echo "| start to ready with $(thousands "$LARGEST") stored ids |" \
        "$(show ms ready.us) (store loaded in ${R[ready.loaded_ms]:-?} ms; RSS then" \
        "$(show mb_kb ready.rss)) | | not persisted | |"
    local consistent="no"
    [ -n "${R[load.scrapes]:-}" ] && consistent="yes, ${R[load.scrapes]} scrapes"
    echo "| scrapes during ${LOAD_SECONDS}s of ingest at 16 connections |" \
        "consistent: $consistent; p50 / max $(show ms load.p50) / $(show ms load.max)" \
        "at up to $(thousands "${R[load.ids]:-0}") ids, $(show thousands load.rate) events/s" \
        "| | | |"
}

# The targets of the full run, each met or missed by how much.
print_targets() {
    [ "$MODE" = full ] || return 0
    local c best="" rate ceiling
    for c in "${CONNECTIONS[@]}"; do
        rate=${R[ingest.durable.$c.rate]:-0}
        if [ -z "$best" ] || [ "$rate" -gt "${R[ingest.durable.$best.rate]:-0}" ]; then
            best=$c
        fi
    done
    echo
    echo "Targets (2-core machine):"
    rate=${R[ingest.durable.$best.rate]:-0}
    ceiling=${R[ingest.ceiling.$best.rate]:-0}
    verdict "durable ingest >= 40,000 events/s (best: $best connections)" \
        "$rate" ge 40000 "$(thousands "$rate")/s"
    verdict "durable ingest >= 0.5x the bare-hyper ceiling at $best connections" \
        "$(awk -v a="$rate" -v b="$ceiling" \
            'BEGIN { printf "%d", (b > 0 ? 1000 * a / b : 0) }')" \
        ge 500 "$(ratio "ingest.durable.$best.rate" "ingest.ceiling.$best.rate")"

    local ours=${R[scrape.exporter.$LARGEST.p50]:-0}
    local theirs=${R[scrape.pushgateway.$LARGEST.p50]:-0}
    verdict "scrape of $(thousands "$LARGEST") ids: p50 <= 100 ms" "$ours" le 100000 \
        "$(show ms "scrape.exporter.$LARGEST.p50")"
    verdict "scrape >= 10x faster than Pushgateway" \
        "$(awk -v a="$theirs" -v b="$ours" \
            'BEGIN { printf "%d", (b > 0 ? 10 * a / b : 0) }')" \
        ge 100 "$(quotient "scrape.pushgateway.$LARGEST.p50" "scrape.exporter.$LARGEST.p50")"
    verdict "RSS at $(thousands "$LARGEST") ids <= 80 MB" "${R[rss.exporter]:-999999999}" \
        le 78125 "$(show mb_kb rss.exporter)"
    verdict "start to ready with $(thousands "$LARGEST") stored ids <= 1 s" \
        "${R[ready.us]:-999999999}" le 1000000 "$(show ms ready.us)"
}

verdict() { # text, value, ge|le, limit, shown value
    local met=missed
    if { [ "$3" = ge ] && [ "$2" -ge "$4" ]; } || { [ "$3" = le ] && [ "$2" -le "$4" ]; }; then
        met=met
    fi
    echo "- $1: $met ($5)"
}

# Clock ticks over ELAPSED seconds on every core, as a percentage.
percent() {
    awk -v t="$1" -v s="$2" -v hz="$CLK_TCK" -v n="$(nproc)" \
        'BEGIN { printf "%.1f%%\n", (s > 0 ? 100 * t / hz / s / n : 0) }'
}

# --- main -----------------------------------------------------------------------------------

# Cores, CPU model, RAM, kernel and tool versions, on one line.
machine() {
    printf '%s cores (%s), %s, Linux %s; %s, Pushgateway %s, %s' "$(nproc)" \
        "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        "$(awk '/^MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo)" \
        "$(uname -r)" "$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }')" \
        "$PUSHGATEWAY_VERSION" "$(rustc -V 2>/dev/null | awk '{ print $1, $2 }')"
}

# CPU time stolen from this machine by the hypervisor, in clock ticks.
steal_ticks() { awk '$1 == "cpu" { print $9 + 0 }' /proc/stat; }

# CPU time the whole machine spent busy, interrupts included (as they are in a process's
# system time), in clock ticks.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# CPU time of this script and every process it started and reaped, in clock ticks.
own_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat"; }

for tool in wrk curl awk sort date timeout getconf; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (scripts/install-test-deps.sh installs it)"
done
CLK_TCK=$(getconf CLK_TCK)
PUSHGATEWAY=${PUSHGATEWAY:-$(command -v prometheus-pushgateway || true)}
[ -x "${PUSHGATEWAY:-}" ] || die "prometheus-pushgateway not found (set PUSHGATEWAY=path)"
PUSHGATEWAY_VERSION=$("$PUSHGATEWAY" --version 2>&1 | awk 'NR == 1 { print $3 }')

for port in "$EXPORTER_PORT" "$PUSHGATEWAY_PORT" "$CEILING_PORT"; do
    port_busy "$port" && die "port $port is in use; set BENCH_PORT to a free range"
done

if [ "${BENCH_BUILD:-1}" != 0 ]; then
    log "building release binaries"
    cargo build --release --locked --quiet --bin localtonet-exporter --example bench_ceiling ||
        die "build failed"
fi
for binary in "$EXPORTER_BIN" "$CEILING_BIN"; do
    [ -x "$binary" ] || die "$binary missing (run without BENCH_BUILD=0 to build it)"
done

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
began=$SECONDS
load_before=$(cut -d' ' -f1 /proc/loadavg)
steal_before=$(steal_ticks)
busy_before=$(busy_ticks)
own_before=$(own_ticks)
log "$MODE run: results in $BENCH_DIR"

step_ingest
step_scrape
step_consistency

echo
echo "localtonet-exporter benchmark, $MODE run of $((SECONDS - began)) s on $(machine)."
elapsed=$((SECONDS - began))
others=$(($(busy_ticks) - busy_before - ($(own_ticks) - own_before)))
echo "Other processes used $(percent "$others" "$elapsed") of the machine's CPU during the run" \
    "(load average $load_before before, $(cut -d' ' -f1 /proc/loadavg) after); the" \
    "hypervisor stole $(percent $(($(steal_ticks) - steal_before)) "$elapsed")."
echo
print_table
print_targets

if [ ${#FAILURES[@]} -gt 0 ]; then
    echo
    echo "Broken steps:"
    printf -- '- %s\n' "${FAILURES[@]}"
    BENCH_KEEP=1
    echo "(kept $BENCH_DIR for inspection)" >&2
    exit 1
fi
