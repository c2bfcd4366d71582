//! The process lifecycle, above everything else: the runtime, the listener (bound, or passed by
//! systemd) and its rebind when `listen` changes, the config watcher and SIGHUP, systemd
//! notifications, and the ordered shutdown on SIGTERM/SIGINT. Nothing imports it but
//! `commands`; tests start [`run`] on a listener bound to port 0.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::daemon::{Daemon, Trigger};

/// How long shutdown waits for running syncs before exiting anyway (systemd's default stop
/// timeout is 90 s; a fetch that takes longer is retried after the restart).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long shutdown waits for queued notifications after the syncs ended (a hung receiver
/// must not hold the stop up; systemd's stop timeout has room for it).
pub const NOTIFY_GRACE: Duration = Duration::from_secs(5);

/// `HOOKMIRROR_METRICS=off` stops recording metrics. For the overhead benchmark only: recording
/// is cheap enough to be always on, and `/metrics` answers 404 then.
pub const METRICS_ENV: &str = "HOOKMIRROR_METRICS";

/// How long the config may keep changing before a reload happens (editors write in bursts).
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);

/// Runs the daemon until SIGTERM or SIGINT: builds the runtime, takes the socket systemd passed
/// (socket activation wins over `listen`) or binds `listen`.
pub fn serve(config: Config) -> anyhow::Result<()> {
    raise_open_files_limit(config.limits.max_connections);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking threads run git; `workers` bounds how many sync at once. Sized for the most a
        // reload may set (threads start only when needed and end when idle).
        .max_blocking_threads(crate::config::MAX_WORKERS + 8)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let activated = crate::systemd::activated_listener();
        let socket_activated = activated.is_some();
        let listener = match activated {
            Some(l) => tokio::net::TcpListener::from_std(l)
                .context("cannot use the socket systemd passed")?,
            None => {
                tokio::net::TcpListener::bind((config.listen.host.as_str(), config.listen.port))
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?
            }
        };
        run_on(config, listener, socket_activated, shutdown_signal()).await
    })
}

/// Descriptors needed besides connections: the listener, logs, the config watcher, git's
/// files and sockets during syncs.
const SPARE_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard one: the usual soft limit (1024) is below what
/// `limits.max_connections` allows, and a full descriptor table makes `accept` fail, which stalls
/// every client. Says so when even the hard limit is too low for `max_connections`.
fn raise_open_files_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::warn!(soft, hard, "cannot raise the open files limit");
    }
    let needed = (max_connections as u64).saturating_add(SPARE_FILES);
    if hard < needed {
        tracing::warn!(
            limit = hard,
            "the open files limit is below limits.max_connections + {SPARE_FILES}: raise LimitNOFILE= or lower max_connections"
        );
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Cannot install handlers: never resolve; the process is stopped by SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// A running HTTP server on one listener.
struct Server {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn start(listener: tokio::net::TcpListener, daemon: &Daemon) -> Server {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::server::serve(listener, daemon.clone(), stop_rx));
        Server { stop, task }
    }

    /// Stops accepting; requests in flight finish.
    async fn retire(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Reads the config again and puts it in force. A changed `listen` is bound first (the new
/// listener is returned for the caller to serve on); when it cannot be bound, the rest of the
/// config applies, `listen` stays as it was and the reload counts as failed, so the status says
/// so and the next reload tries the address again.
async fn reload(
    daemon: &Daemon,
    socket_activated: bool,
    watcher: &mut Option<crate::reload::Watcher>,
) -> Option<tokio::net::TcpListener> {
    let mut new = match daemon.read_config().await {
        Ok(new) => new,
        Err(e) => {
            daemon.count_reload(Err(e));
            return None;
        }
    };
    let old = daemon.config().listen.clone();
    let mut listener = None;
    let mut outcome = Ok(());
    if new.listen != old && socket_activated {
        tracing::warn!(listen = %new.listen, "`listen` changed, but the socket comes from systemd (hookmirror.socket): change ListenStream= there");
    } else if new.listen != old {
        // Bound before the old one is released, so no request finds the port closed.
        match tokio::net::TcpListener::bind((new.listen.host.as_str(), new.listen.port)).await {
            Ok(l) => listener = Some(l),
            Err(e) => {
                tracing::error!(listen = %new.listen, error = %e, "cannot bind the new listen address; still serving on the old one");
                outcome = Err(format!("cannot listen on {}: {e}", new.listen));
                new.listen = old;
            }
        }
    }
    for notice in new.notices(chrono::Utc::now()) {
        tracing::warn!(%notice, "config warning");
    }
    daemon.apply(new);
    daemon.count_reload(outcome);
    if let Some(w) = watcher.as_mut() {
        w.rewatch(&daemon.config());
    }
    listener
}

/// Runs the daemon on `listener` until `shutdown` resolves: start-up syncs (with `initialise`),
/// schedules, the HTTP server, hot reload (file watcher and SIGHUP), systemd notifications,
/// then a graceful stop — intake answers 503, running syncs get [`SHUTDOWN_GRACE`] to finish,
/// connections close.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_on(config, listener, false, shutdown).await
}

/// [`run`], where `socket_activated` says the listener came from systemd: then `listen` is
/// ignored, also when a reload changes it.
pub async fn run_on(
    config: Config,
    listener: tokio::net::TcpListener,
    socket_activated: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<&'static str>(16);
    crate::reload::on_sighup(reload_tx.clone());
    let metrics_on = std::env::var(METRICS_ENV).map_or(true, |v| v != "off");
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(metrics_on));
    let daemon = Daemon::with_metrics(config, metrics);
    daemon.set_reload_channel(reload_tx.clone());
    daemon.load_commits().await;
    // Before anything is served: pushes go to the fleet from the first one (until NATS is
    // reached they are synced here and kept in the outbox).
    let mut fleet = crate::fleet::Running::start(&daemon).await;
    let addr = listener.local_addr()?;
    let config = daemon.config();
    // Watching starts before anything is served or synced: an edit made once the daemon answers
    // (or once a start-up sync finished) is never missed.
    let mut watcher = crate::reload::Watcher::start(&config, reload_tx);
    // Logged before the first request can be answered, so whoever sees an answer finds the line.
    tracing::info!(%addr, repos = config.repos.len(), workers = config.workers, "hookmirror listening");
    for notice in config.notices(chrono::Utc::now()) {
        tracing::warn!(%notice, "config warning");
    }
    let mut server = Server::start(listener, &daemon);
    daemon.sync_schedules();
    if config.initialise {
        for r in &config.repos {
            let _ = daemon.request_sync(&r.name, Trigger::Startup, None, false);
        }
    }

    crate::systemd::ready(&format!("listening on {addr}; {}", daemon.summary_line()));
    let mut watchdog = crate::systemd::watchdog_interval().map(tokio::time::interval);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                crate::systemd::watchdog();
                crate::systemd::status(&daemon.summary_line());
            }
            Some(why) = reload_rx.recv() => {
                // Debounce: wait until the changes stop.
                while let Ok(Some(_)) = tokio::time::timeout(RELOAD_DEBOUNCE, reload_rx.recv()).await {}
                tracing::info!(cause = why, "reloading the config");
                crate::systemd::reloading();
                if let Some(l) = reload(&daemon, socket_activated, &mut watcher).await {
                    let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let old = std::mem::replace(&mut server, Server::start(l, &daemon));
                    old.retire().await;
                    tracing::info!(%addr, "now listening on the new address");
                }
                // A changed `fleet` block reconnects.
                fleet.follow(&daemon).await;
                crate::systemd::reloaded(&daemon.summary_line());
            }
        }
    }
    tracing::info!("shutting down: intake closed, waiting for running syncs");
    crate::systemd::stopping();
    daemon.close_intake();
    if !daemon.drain(SHUTDOWN_GRACE).await {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "syncs still running at shutdown; exiting anyway");
    }
    let unsent = fleet.stop(&daemon).await;
    if !unsent.is_empty() {
        tracing::warn!(
            requests = unsent.len(),
            "fleet: requests synced here could not be sent to the fleet before exiting"
        );
    }
    server.retire().await;
    let d = daemon.clone();
    let _ = tokio::task::spawn_blocking(move || d.finish_notifications(NOTIFY_GRACE)).await;
    tracing::info!("stopped");
    Ok(())
}
