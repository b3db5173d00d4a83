//! The connection to the broker: the client (which reconnects by itself,
//! with a capped delay), the JetStream context, the stream, and waiting
//! for the link to work again after a failure.

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use sbox_events::escape::LogSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// The stream, created if missing; an error if a stream of that name
    /// exists and does not take the bridge's subjects.
    pub(crate) async fn stream(&self) -> Result<stream::Stream, String> {
        let stream = self
            .jetstream
            .get_or_create_stream(self.stream.clone())
            .await
            .map_err(|e| e.to_string())?;
        let wanted = &self.stream.subjects[0];
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|s| covers(s, wanted)) {
            return Err(format!(
                "the stream {} exists and does not take the subjects {wanted} (it takes {subjects:?}): \
                 add them to it, or give the bridge another stream name or prefix",
                self.stream.name
            ));
        }
        Ok(stream)
    }

    /// Waits until publishing can work again after the `failures`-th
    /// failure in a row, of `kind`: connected, the stream there (created
    /// again if the server lost it), and a delay that doubles with each
    /// failure (none for the first, up to 5 s), until `stop`. `tick` runs
    /// every 100 ms meanwhile.
    pub(crate) async fn recover(
        &self,
        kind: PublishErrorKind,
        failures: u32,
        stop: &Arc<crate::Stop>,
        mut tick: impl FnMut(),
    ) {
        let delay = match failures {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2))
                .min(Duration::from_secs(5)),
        };
        let ready = Instant::now() + delay;
        let mut need_stream = kind == PublishErrorKind::StreamNotFound;
        let mut warned = false;
        loop {
            if stop.is_set() {
                return;
            }
            tick();
            if self.connected() {
                if need_stream {
                    match self.stream().await {
                        Ok(_) => need_stream = false,
                        Err(err) if !warned && failures >= 2 => {
                            warned = true;
                            tracing::warn!(
                                target: "sbox_events_nats",
                                error = %LogSafe(&err),
                                "events wait for the stream"
                            );
                        }
                        Err(err) => tracing::debug!(
                            target: "sbox_events_nats",
                            error = %LogSafe(&err),
                            "stream not ready yet"
                        ),
                    }
                }
                if !need_stream && Instant::now() >= ready {
                    return;
                }
            }
            let step = ready
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = stop.wait() => return,
            }
        }
    }
}

/// Whether the subject filter `pattern` takes every subject of `wanted`
/// (both may end in `>`; `*` is one token).
fn covers(pattern: &str, wanted: &str) -> bool {
    let mut theirs = pattern.split('.');
    let mut ours = wanted.split('.');
    loop {
        match (theirs.next(), ours.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn subject_filters_cover_the_bridges_subjects_or_not() {
        assert!(covers("sbox.>", "sbox.>"));
        assert!(covers(">", "sbox.>"));
        assert!(covers("*.>", "sbox.>"));
        assert!(covers("acme.>", "acme.sbox.>"));
        assert!(!covers("sbox.*", "sbox.>"));
        assert!(!covers("sbox.orders.>", "sbox.>"));
        assert!(!covers("other.>", "sbox.>"));
        assert!(!covers("sbox", "sbox.>"));
    }
}
