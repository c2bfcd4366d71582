#!/usr/bin/env bash
# hookmirror benchmark: one command, one run, results as ratios against floors measured in the
# same run (absolute times drift on shared machines; ratios hold).
#
#   bench/run.sh [driver options]        e.g. bench/run.sh --iterations 50 --requests 50000
#   bench/run.sh faults [options]        the fault benchmarks instead: a healthy repository beside a
#                                        hung and a dead remote, 50 repositories at once (method in
#                                        bench/src/faults.rs)
#
# It builds hookmirror (`cargo build --release`) and the driver (bench/, a standalone cargo
# project with its own workspace and Cargo.lock, built --locked into target/bench), makes a temp
# folder, runs everything on 127.0.0.1, prints a summary table to stdout (progress to stderr),
# stops every process it started and removes the temp folder. About 3-5 minutes after the builds
# ((e) clones 1,000 checkouts). The slowloris in (d) opens ~3,000 sockets: the script raises the
# soft open-files limit (ulimit -n) to the hard one.
# HOOKMIRROR_BIN=path skips the main build and uses that binary.
#
# Setup: a bare "origin" repository (201 files of ~2 KiB in 10 folders, 300 commits of history
# written with `git fast-import`) served by `git daemon --listen=127.0.0.1` over git://;
# hookmirror (release, `serve`, text logs at info to a file, workers 4) tracking `main` of
# git://127.0.0.1:PORT/origin.git with a GitHub secret, its checkout cloned at start-up; and a
# separate `git clone` of the same URL for raw git. A change is one new commit that rewrites one
# existing file, made with plumbing in the bare repository (hash-object, update-index on a
# scratch index, write-tree, commit-tree, update-ref). The history matters: with a short history
# (under ~16 commits here) fetch negotiation needs no extra round trip, and the ~40 ms TCP
# delayed-ACK stall `git daemon` causes in that round trip would not show (the git CLI pays it
# twice per fetch; hookmirror's own git:// transport, src/sync/git_proto.rs, avoids it).
#
# Latency over the other transports (file://, smart HTTP, SSH) is measured separately by
# `cargo bench --bench transports` (bench/transports.rs).
#
# (a) push -> synced latency. Per iteration (3 warm-up + 30 timed): make a change and move `main`,
#     then, in alternating order so neither side always goes first:
#     - hookmirror: send the GitHub push delivery for it (POST /hooks/bench on a keep-alive
#       connection; X-GitHub-Event: push, unique X-GitHub-Delivery, X-Hub-Signature-256 =
#       HMAC-SHA256 over the exact body, plus the SHA-1 header GitHub also sends; body = the
#       fixture tests/fixtures/webhooks/github/push_branch_created.json with ref refs/heads/main,
#       before/after and repository.clone_url/git_url set, compact JSON as GitHub sends it), then
#       poll GET /api/repos/bench every 1 ms until its `commit` is the new commit. The status
#       commit is set after fetch, reset --hard and the post-sync actions, i.e. when the checkout
#       is really synced (the ref file is written earlier, before the reset, so it is not used).
#       Timed from just before sending to the poll that sees it: includes up to ~1 ms of polling
#       granularity plus one API round trip (~0.1 ms). The daemon's own `last_duration_ms` is
#       shown as the sync's share, and its trend (first vs last third) with the pack count.
#     - raw git: `git fetch -q origin main` then `git reset -q --hard origin/main` as two
#       subprocesses in the separate clone (default git config, no global/system config, so
#       fetch's auto-maintenance check runs as it would for a user), timed around both.
#     Median, p90, min, max; ratio hookmirror/raw (target <= 0.5).
# (b) burst. 5 times: prepare 50 commits, wait until hookmirror is idle, then 50 times move
#     `main` (writing the loose ref like git does) and send that move's signed delivery (waiting
#     only for the 202, not for the sync); time from the first move until the API shows the last
#     commit; the status API's `fetches` and `syncs` before/after give the fetches the burst
#     cost (coalescing: one running + one pending sync per repo, so about one fetch per
#     sync-length of sending time, plus one). For scale, one raw fetch+reset over the same 50 commits.
# (c) intake throughput. The same signed delivery (~7.6 KB) to an UNTRACKED branch
#     (refs/heads/untracked, right repository URL), so hookmirror verifies, parses and answers
#     200 {"ignored": ...} without git work; versus two floors from the driver (axum, same
#     axum/hyper/tokio versions as hookmirror, answering 200 with a JSON body of the same size):
#     `checked-server` — what any correct receiver does: the HMAC-SHA256 of the body checked in
#     constant time against X-Hub-Signature-256, then the push parsed (serde_json, typed, only the
#     fields hookmirror reads) — the floor of the target; and `minimal-server`, which does nothing
#     (for scale). Each server started fresh per round (hookmirror with initialise: false and its
#     default limits), 5 rounds rotating which goes first; per round 3,000 warm-up then 20,000
#     timed requests over 32 keep-alive HTTP/1.1 connections from 127.0.0.1 (hyper client,
#     TCP_NODELAY, each connection sends back-to-back; fresh delivery id per request). Median
#     req/s of the rounds; ratio hookmirror/checked of the medians (target >= 0.9), and the
#     median of the per-round ratios. Also server CPU per request (utime+stime from /proc) and
#     client CPU per request: client and server share the 2 cores. Finally the in-process cost
#     of HMAC-SHA256 and of JSON parsing of the same body, measured in the driver.
# (d) the same intake during a slowloris: 1,500 connections (--attack N) from 30 loopback
#     addresses (127.0.0.2 ... 127.0.0.31, 50 each, under the per-address limit, so the global
#     limit and shedding are what is measured), each sending a request head a byte a second and
#     reconnecting a second after the server drops it; the attack builds up before the load
#     starts. hookmirror and the checked floor, each under attack. Ratio: hookmirror under attack
#     / checked floor without attack from (c) (target >= 0.7), and / checked floor under attack.
# (e) idle memory: hookmirror with 1,000 repositories (--rss-repos N; --rss-workers N, default
#     16) following the origin over git://, each in its own checkout, started with none cloned
#     (initialise: true clones them all), and restarted with all cloned (each fetched); after
#     each start every repository synced, the daemon idles 25 s (idle blocking threads exit after
#     10 s; freed memory is returned after the allocator's 10 s decay) and VmRSS, RssAnon and
#     VmHWM are read from /proc. Target: the worse of the two <= 25 MB. Takes 1-3 minutes.
# (f) metrics overhead: (c)'s load against hookmirror as it runs (metrics always recorded) and
#     against the same binary started with HOOKMIRROR_METRICS=off (no counters, no delivery
#     list; a switch for this comparison only), alternating per round. Target: >= 0.95.
#
# Driver options (after run.sh): --sections abcdef (which of the above run; default all)
# --iterations N --warmup N --bursts N --burst-size N --requests N --warm-requests N --rounds N
# --concurrency N --depth N (hookmirror `depth:`) --attack N --rss-repos N --rss-workers N.
# The driver also has `load PORT FIXTURE URL REQUESTS CONCURRENCY` to load a running server by
# hand (e.g. under `perf record`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${HOOKMIRROR_BIN:-}" ]]; then
  echo "[bench] cargo build --release (hookmirror)" >&2
  cargo build --release --quiet
  HOOKMIRROR_BIN="$ROOT/target/release/hookmirror"
fi
echo "[bench] cargo build --release --locked (bench driver)" >&2
CARGO_TARGET_DIR="$ROOT/target/bench" cargo build --release --locked --quiet \
  --manifest-path "$ROOT/bench/Cargo.toml"
DRIVER="$ROOT/target/bench/release/hookmirror-bench"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hookmirror-bench.XXXXXX")"
BPID=""
cleanup() {
  # The driver stops what it started; this also covers a driver killed by a signal: it runs in
  # its own process group (setsid), so the group (git daemon, servers) goes with it.
  if [[ -n "$BPID" ]]; then
    kill -TERM -- "-$BPID" 2>/dev/null || true
    sleep 0.2
    kill -KILL -- "-$BPID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MODE=run
if [[ "${1:-}" == "faults" ]]; then
  MODE=faults
  shift
fi
setsid -w "$DRIVER" "$MODE" \
  --hookmirror "$HOOKMIRROR_BIN" \
  --fixture "$ROOT/tests/fixtures/webhooks/github/push_branch_created.json" \
  --work "$WORK" \
  "$@" &
BPID=$!
wait "$BPID"
