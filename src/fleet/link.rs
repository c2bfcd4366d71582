//! The NATS edge: the connection (it reconnects by itself), the stream, this node's durable
//! consumer and the status bucket (created when missing), publishing with JetStream's ack, and
//! reading the status bucket. Decisions are made in `message` and `status`; this file only
//! talks to NATS.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};
use futures_util::StreamExt;

use super::message::{self, Message};
use super::status::NodeStatus;
use crate::config::Fleet as FleetConfig;

/// How long a webhook's answer may wait for JetStream to store its request, retries included
/// (a cluster elects a new stream leader within a few seconds when one dies); GitHub gives up
/// on a delivery after 10 s.
pub const PUBLISH_BUDGET: Duration = Duration::from_secs(5);

/// One publish attempt's wait for its ack, and for any other JetStream API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between publish attempts within [`PUBLISH_BUDGET`].
const PUBLISH_RETRY: Duration = Duration::from_millis(200);

/// Longest pause between reconnect attempts: a server that comes back is used within it.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// How long a message may wait for its ack before JetStream delivers it again. A node that
/// is still syncing says so every [`PROGRESS_EVERY`], so a long clone is not redelivered.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Pull requests' idle heartbeat: a consumer whose server died is noticed after two missed.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// Requests kept: a node that was down for longer syncs everything at start-up anyway.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Status entries of nodes that stopped writing vanish after a day.
const STATUS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Entries kept per node in the status bucket. More than one: listing the keys walks the
/// bucket's stream, and with one entry per key a node that writes while the listing runs has
/// its only entry replaced under it and is missed.
const STATUS_HISTORY: i64 = 5;

/// Messages delivered to this node and not yet acked, at most (a sync each, coalesced per
/// repository, so far more than a node's repositories never help).
const MAX_ACK_PENDING: i64 = 10_000;

/// The status bucket's name for a stream.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_status")
}

/// This node's durable consumer.
pub fn durable(node: &str) -> String {
    format!("node-{node}")
}

/// The client for `cfg`: connects (and reconnects) in the background, so a node whose NATS is
/// down at start runs degraded until it is up. Only a bad URL or credentials file fail here.
pub async fn connect(cfg: &FleetConfig, node: &str) -> Result<Client, String> {
    let mut addrs = Vec::new();
    for url in &cfg.servers {
        addrs.push(
            url.parse::<ServerAddr>()
                .map_err(|e| format!("fleet.nats `{url}`: {e}"))?,
        );
    }
    // The last error logged as a warning: a server that keeps refusing (every reconnect
    // attempt) is reported once, and again only when the error changes.
    let last_error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let mut opts = ConnectOptions::new()
        .name(format!("hookmirror {node}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(|attempts| {
            let ms = 50u64.saturating_mul(1 << attempts.min(16));
            Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
        })
        .event_callback(move |event| {
            let last_error = last_error.clone();
            async move { log_event(event, &last_error) }
        });
    if let Some(c) = &cfg.credentials {
        opts = opts
            .credentials(c.value.expose())
            .map_err(|e| format!("fleet.credentials_file: not a NATS credentials file ({e})"))?;
    }
    if let Some(t) = &cfg.token {
        opts = opts.token(t.value.expose().to_string());
    }
    opts.connect(addrs)
        .await
        .map_err(|e| format!("cannot connect to NATS: {e}"))
}

/// Logs what the client reports: connects and disconnects, and errors (refused credentials, a
/// TLS failure) once each until the next connect.
fn log_event(event: async_nats::Event, last_error: &std::sync::Mutex<Option<String>>) {
    let mut last = last_error.lock().unwrap_or_else(|p| p.into_inner());
    let error = match event {
        async_nats::Event::Connected => {
            *last = None;
            tracing::info!("fleet: connected to NATS");
            return;
        }
        async_nats::Event::Disconnected => {
            tracing::warn!("fleet: disconnected from NATS; reconnecting");
            return;
        }
        async_nats::Event::ServerError(e) => format!("NATS server error: {e}"),
        async_nats::Event::ClientError(e) => format!("NATS client error: {e}"),
        other => {
            tracing::debug!(event = %other, "fleet: NATS event");
            return;
        }
    };
    if last.as_deref() == Some(error.as_str()) {
        tracing::debug!(%error, "fleet: again");
    } else {
        tracing::warn!(%error, "fleet: the connection to NATS fails; retrying");
        *last = Some(error);
    }
}

/// The JetStream context on `client`, with this file's timeouts.
pub fn jetstream(client: Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client)
}

/// Whether the client is connected now.
pub fn connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// How long setting up may take before it is tried again (each request has its own timeout;
/// this bounds them all, whatever hangs).
const SETUP_LIMIT: Duration = Duration::from_secs(15);

/// Creates what is missing: the stream (newest request per repository, deduped by message id)
/// and the status bucket; returns the bucket and this node's consumer's message stream.
pub async fn setup(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    node: &str,
) -> Result<(kv::Store, consumer::pull::Stream), String> {
    tokio::time::timeout(SETUP_LIMIT, set_up(js, cfg, node))
        .await
        .map_err(|_| format!("setting up did not finish within {SETUP_LIMIT:?}"))?
}

async fn set_up(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    node: &str,
) -> Result<(kv::Store, consumer::pull::Stream), String> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![message::all_subjects()],
            max_messages_per_subject: 1,
            max_age: MAX_AGE,
            num_replicas: cfg.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {}: {e}", cfg.stream))?;
    let replicas = stream.cached_info().config.num_replicas;
    if replicas != cfg.replicas {
        // Changing a live stream's replicas is an operator's decision (`nats stream edit`).
        tracing::warn!(stream = %cfg.stream, replicas, configured = cfg.replicas, "fleet: the stream exists with another number of replicas; it is used as it is");
    }
    let bucket_name = bucket(&cfg.stream);
    // The bucket's stream is made here as async-nats' `create_key_value` makes it: that call
    // first reads the account's info, which it cannot parse from a 2.9 server (Debian's).
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket_name}"),
        subjects: vec![format!("$KV.{bucket_name}.>")],
        max_messages_per_subject: STATUS_HISTORY,
        max_age: STATUS_MAX_AGE,
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("status bucket {bucket_name}: {e}"))?;
    let store = js
        .get_key_value(&bucket_name)
        .await
        .map_err(|e| format!("status bucket {bucket_name}: {e}"))?;
    let name = durable(node);
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                // A new node starts from each repository's newest request.
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                filter_subject: message::all_subjects(),
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {name}: {e}"))?;
    let messages = consumer
        .stream()
        .heartbeat(PULL_HEARTBEAT)
        .expires(PULL_EXPIRES)
        .messages()
        .await
        .map_err(|e| format!("consumer {name}: {e}"))?;
    Ok((store, messages))
}

/// Publishes `m` and waits for JetStream to store it, retrying within [`PUBLISH_BUDGET`]. True
/// when it was a duplicate of a message stored before.
pub async fn publish(js: &jetstream::Context, m: &Message) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + PUBLISH_BUDGET;
    loop {
        let attempt = async {
            let ack = js
                .send_publish(
                    message::subject(&m.repo),
                    jetstream::message::PublishMessage::build()
                        .payload(m.encode().into())
                        .message_id(&m.id),
                )
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        let last = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(ack)) => return Ok(ack.duplicate),
            Ok(Err(e)) => e,
            Err(_) => format!("no ack within {PUBLISH_BUDGET:?}"),
        };
        if tokio::time::Instant::now() + PUBLISH_RETRY >= deadline {
            return Err(last);
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

/// How long reading the whole status bucket may take: an API answer waits for it, and a
/// listing whose server died mid-way would otherwise wait for ever.
const READ_STATUS_LIMIT: Duration = Duration::from_secs(4);

/// Every entry of the status bucket that can be read: the keys listed now and those in
/// `known` (listed before: a listing can still miss a key being written), which is updated.
pub async fn read_status(
    store: &kv::Store,
    known: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) -> Result<Vec<NodeStatus>, String> {
    tokio::time::timeout(READ_STATUS_LIMIT, read_all(store, known))
        .await
        .map_err(|_| format!("the status bucket did not answer within {READ_STATUS_LIMIT:?}"))?
}

async fn read_all(
    store: &kv::Store,
    known: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) -> Result<Vec<NodeStatus>, String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut listed = Vec::new();
    while let Some(k) = keys.next().await {
        listed.push(k.map_err(|e| e.to_string())?);
    }
    let names: Vec<String> = {
        let mut known = known.lock().unwrap_or_else(|p| p.into_inner());
        known.extend(listed);
        known.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for k in names {
        match store.get(&k).await.map_err(|e| e.to_string())? {
            Some(bytes) => {
                if let Ok(s) = serde_json::from_slice::<NodeStatus>(&bytes) {
                    out.push(s);
                }
            }
            // Expired or deleted: forgotten.
            None => {
                known.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
            }
        }
    }
    Ok(out)
}

/// Writes this node's entry.
pub async fn write_status(store: &kv::Store, s: &NodeStatus) -> Result<(), String> {
    let bytes = serde_json::to_vec(s).map_err(|e| e.to_string())?;
    tokio::time::timeout(REQUEST_TIMEOUT, store.put(&s.node, bytes.into()))
        .await
        .map_err(|_| "timed out".to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
