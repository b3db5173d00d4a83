//! An async service: `cargo run --example async_service`.
//!
//! A config builder emits `config.ready`; an async handler uploads the
//! config to a storage server over TCP (the example starts that server
//! itself, on 127.0.0.1) and emits `config.stored` with the server's
//! receipt; a task consumes a stream of `config.stored`. The trace id of
//! each emit travels with it: into the handler, over the wire (the server
//! parses it and logs inside it), and out through the stream.
//!
//! Two configs are handled at once on a multi-thread tokio runtime, each in
//! its own trace.

use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::trace::{self, TraceFutureExt, TraceId};
use sbox_events::{Event, EventBus, EventContext, handler};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A sing-box config is ready to be stored.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "config.ready", source = "builder")]
pub struct ConfigReady {
    /// The config's name (one word).
    pub name: String,
    /// The config itself.
    pub json: String,
}

/// The storage server kept a config.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "config.stored", source = "uploader")]
pub struct ConfigStored {
    /// The config's name.
    pub name: String,
    /// What the server answered.
    pub receipt: String,
    /// How many bytes it stored.
    pub bytes: usize,
}

/// The uploader's client for the storage server: application state, given
/// to the bus as a resource (`EventBus::builder().resource(..)`) and taken
/// by the `#[handler]` as a parameter.
pub struct StorageClient {
    /// Where the storage server listens.
    pub addr: SocketAddr,
}

/// A sync handler first (priority 10): an empty config is not uploaded.
#[handler(priority = 10, emits = [])]
fn reject_empty(config: &ConfigReady) -> Result<(), String> {
    if config.json.trim().is_empty() {
        return Err(format!("config {} is empty", config.name));
    }
    Ok(())
}

/// The async handler: real network I/O, then a nested emit. The event and
/// the context stay borrowed across the `.await`s; the trace id is current
/// in every poll, so the log lines below carry it. It declares what it
/// emits, so the catalog can draw the flow (`--example catalog -- --mermaid`).
#[handler(emits = [ConfigStored])]
async fn upload(
    config: &ConfigReady,
    ctx: &EventContext<'_>,
    storage: &StorageClient,
) -> io::Result<()> {
    let addr = storage.addr;
    tracing::info!(name = %config.name, %addr, "uploading");
    let mut stream = TcpStream::connect(addr).await?;
    let header = format!(
        "STORE {} {} {}\n",
        ctx.trace_id(),
        config.name,
        config.json.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(config.json.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    let receipt = match answer.trim_end().split_once(' ') {
        Some(("STORED", receipt)) => receipt.to_owned(),
        _ => {
            return Err(io::Error::other(format!(
                "storage refused: {}",
                answer.trim_end()
            )));
        }
    };
    tracing::info!(name = %config.name, %receipt, "stored");
    let stored = ConfigStored {
        name: config.name.clone(),
        receipt,
        bytes: config.json.len(),
    };
    let report = ctx.bus().emit_async(stored).await;
    if !report.is_ok() {
        return Err(io::Error::other(report.to_string()));
    }
    Ok(())
}

/// The storage server: `STORE <trace id> <name> <length>\n<bytes>` →
/// `STORED <receipt>\n`. It handles each request inside the trace it was
/// given, so its log lines show the sender's trace id.
async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<(String, TraceId)>>>) {
    let mut next_receipt = 1u32;
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let receipt = format!("r-{next_receipt}");
        next_receipt += 1;
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            if let Err(err) = store(socket, receipt, seen).await {
                tracing::warn!(%err, "storage: bad request");
            }
        });
    }
}

async fn store(
    socket: TcpStream,
    receipt: String,
    seen: Arc<Mutex<Vec<(String, TraceId)>>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(socket);
    let mut header = String::new();
    reader.read_line(&mut header).await?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut words = header.split_whitespace();
    let (Some("STORE"), Some(trace_id), Some(name), Some(length), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(bad("expected `STORE <trace id> <name> <length>`"));
    };
    let trace_id: TraceId = trace_id
        .parse()
        .map_err(|err| bad(&format!("trace id: {err}")))?;
    let length: usize = length.parse().map_err(|_| bad("length is not a number"))?;
    if length > 1 << 20 {
        return Err(bad("config over 1 MiB"));
    }
    let name = name.to_owned();
    async move {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        tracing::info!(%name, bytes = length, "storage: kept");
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, trace_id));
        let mut socket = reader.into_inner();
        socket
            .write_all(format!("STORED {receipt}\n").as_bytes())
            .await
    }
    .with_trace_id(trace_id)
    .await
}

/// What the example printed, and whether each trace id made it end to end.
#[derive(Debug)]
pub struct Transcript {
    /// The lines to show.
    pub lines: Vec<String>,
    /// Checks that failed (empty when all is well).
    pub problems: Vec<String>,
}

impl Transcript {
    /// True when every config was stored and its trace id was the same in
    /// the report, at the server and in the stream.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the service: starts the storage server, handles two configs at
/// once, and reads the stream of stored configs.
pub fn run() -> io::Result<Transcript> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()?;
    runtime.block_on(service())
}

async fn service() -> io::Result<Transcript> {
    let mut lines = Vec::new();
    let mut problems = Vec::new();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    lines.push(format!("storage server listening on {addr}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(listener, Arc::clone(&seen)));

    // The uploader's client is a resource: the build fails, naming the
    // handler, if it were missing.
    let bus = EventBus::builder()
        .resource(StorageClient { addr })
        .build()
        .map_err(io::Error::other)?;
    let mut stored = bus.subscribe_stream::<ConfigStored>(16, Overflow::DropOldest);
    let consumer = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(item) = stored.recv().await {
            match item {
                StreamItem::Event(delivery) => {
                    let trace_id = delivery.envelope().trace_id();
                    received.push((delivery.into_event(), trace_id));
                }
                StreamItem::Lagged(n) => tracing::warn!(n, "the stream lagged"),
            }
        }
        received
    });

    let configs = [
        (
            "nl-servers",
            r#"{"outbounds":[{"type":"vless","tag":"nl-1"}]}"#,
        ),
        (
            "de-servers",
            r#"{"outbounds":[{"type":"trojan","tag":"de-1"}]}"#,
        ),
    ];
    let tasks: Vec<_> = configs
        .iter()
        .map(|&(name, json)| {
            let bus = bus.clone();
            let config = ConfigReady {
                name: name.to_owned(),
                json: json.to_owned(),
            };
            let trace_id = TraceId::random();
            // The task runs in its own trace; `emit_async` takes it up.
            tokio::spawn(async move { bus.emit_async(config).await }.with_trace_id(trace_id))
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        let report = task.await.map_err(io::Error::other)?;
        lines.push(format!("{report} (trace {})", report.trace_id().short()));
        if !report.is_ok() {
            problems.push(format!("emit_async: {report}"));
        }
        reports.push(report);
    }

    // A plain `emit` cannot await the uploader: it says so.
    let skipped = bus.emit(ConfigReady {
        name: "sync".into(),
        json: "{}".into(),
    });
    lines.push(format!("plain emit: {skipped}"));
    if skipped.skipped().len() != 1 {
        problems.push("plain emit did not report the async handler as skipped".into());
    }

    drop(bus); // ends the stream
    let received = consumer.await.map_err(io::Error::other)?;
    server.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (report, &(name, _)) in reports.iter().zip(&configs) {
        let id = report.trace_id();
        let at_server = seen.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let in_stream = received.iter().find(|(e, _)| e.name == name);
        match (at_server, in_stream) {
            (Some(server_trace), Some((event, stream_trace)))
                if server_trace == id && *stream_trace == id =>
            {
                lines.push(format!(
                    "{name}: stored as {} ({} bytes); trace {} in the emit, at the server and in the stream",
                    event.receipt,
                    event.bytes,
                    id.short()
                ));
            }
            other => problems.push(format!("{name}: trace {id} not seen end to end: {other:?}")),
        }
    }
    if trace::current().is_some() {
        problems.push("a trace was left installed on the main task".into());
    }
    Ok(Transcript { lines, problems })
}
