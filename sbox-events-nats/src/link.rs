//! The connection to the broker: the client (which reconnects by itself,
//! with a capped delay), the JetStream context, the stream, and waiting
//! for the link to work again after a failure.

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use std::sync::Arc;
use std::time::Duration;

/// What the bridge's tasks share about the broker.
pub(crate) struct Link {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) prefix: String,
    stream: stream::Config,
}

impl Link {
    pub(crate) fn new(
        client: async_nats::Client,
        prefix: String,
        stream_name: String,
        duplicate_window: Duration,
        ack_timeout: Duration,
    ) -> Link {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .ack_timeout(ack_timeout)
            .build(client.clone());
        let stream = stream::Config {
            name: stream_name,
            subjects: vec![format!("{prefix}.>")],
            duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        Link {
            client,
            jetstream,
            prefix,
            stream,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// The stream, created if missing.
    pub(crate) async fn stream(&self) -> Result<stream::Stream, String> {
        self.jetstream
            .get_or_create_stream(self.stream.clone())
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until publishing can work again after a failure of `kind`:
    /// connected, and the stream there (created again if the server lost
    /// it), checking every 100 ms, until `stop`.
    pub(crate) async fn recover(&self, kind: PublishErrorKind, stop: &Arc<crate::Stop>) {
        let mut need_stream = kind == PublishErrorKind::StreamNotFound;
        loop {
            if stop.is_set() {
                return;
            }
            if self.connected() {
                if !need_stream {
                    return;
                }
                match self.stream().await {
                    Ok(_) => return,
                    Err(err) => tracing::debug!(
                        target: "sbox_events_nats",
                        error = %err,
                        "stream not ready yet"
                    ),
                }
                need_stream = true;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = stop.wait() => return,
            }
        }
    }
}
