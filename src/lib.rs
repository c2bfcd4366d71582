//! hookmirror keeps local git checkouts in step with their forge.
//!
//! A verified push webhook, a schedule tick, an API call or start-up becomes a *sync request*;
//! requests for one repository coalesce; a bounded pool runs git (clone if missing, fetch the one
//! tracked ref, reset --hard); the outcome becomes status and post-sync actions.
//!
//! # Layout
//! - [`config`]: the config model; parsing from text (YAML, TOML, JSON, gwg's format), validation
//!   that names every problem, and loading from disk (env and `*_file` resolution). Pure but for
//!   `load`.
//! - [`webhook`]: one file per forge; verify a delivery over the raw body, parse it into a push. Pure.
//! - [`sync`]: the git engine (git2: clone, fetch, reset, credentials, host keys, recovery),
//!   retry/backoff, post-sync actions.
//! - [`url`], [`origin`], [`refname`], [`secret`], [`printable`]: small pure helpers shared by
//!   the above (`origin`: whether a URL a server points to may get the configured credentials;
//!   `printable`: text from outside escaped so it stays on one line).
//! - [`access`]: who may call which API endpoint (scoped, expiring, hashed tokens). Pure.
//! - [`queue`]: the per-repository coalescing state machine and delivery dedupe. Pure.
//! - [`daemon`]: the domain: shared state, `deliver` (a verified push → which repositories are
//!   queued, ignored or a duplicate), sync workers bounded by `workers`, status, `apply` (reload).
//! - [`fleet`]: several nodes on NATS JetStream: publish verified pushes, consume them on every
//!   node into its queue, status in a key-value bucket, an outbox while NATS is away. The
//!   daemon sees it only through its `Relay` port.
//! - [`server`]: the HTTP edge (axum on hyper): extract, verify, parse, ask the daemon, map its
//!   answer to a status code; the API; limits and timeouts.
//! - [`run`]: the process lifecycle on top of it all: runtime, listener and rebind, watcher and
//!   SIGHUP, systemd notifications, ordered shutdown; `run(config, listener, shutdown)`.
//! - [`schedule`]: next-run arithmetic for cron/interval schedules (pure) and the tick loop that
//!   only enqueues sync requests.
//! - [`reload`]: config file watcher and SIGHUP, feeding the daemon's validate-then-swap reload.
//! - [`systemd`]: READY/WATCHDOG/STATUS/STOPPING notifications and socket activation.
//! - [`logging`]: tracing setup (text/JSON, stdout/stderr/file, journald-aware timestamps).
//! - [`cli`]: clap definitions (and the completions and man page made from them);
//!   [`commands`]: what `check` and `sync` do; [`client`]: `status`, asking the running daemon.
//! - [`metrics`]: the Prometheus registry the daemon and the server record into.
//! - [`notify`]: signed outbound notifications of sync events, sent off the sync path.

pub mod access;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod fleet;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod origin;
pub mod printable;
pub mod queue;
pub mod refname;
pub mod reload;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod signers;
pub mod sync;
pub mod systemd;
pub mod url;
pub mod webhook;
