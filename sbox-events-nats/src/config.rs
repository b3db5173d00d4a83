//! How a bridge is set up: [`BridgeBuilder`], the outbound [`Policy`], and
//! the errors of setting it up.

use sbox_events::EventSelector;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What the bridge does with an event when the broker cannot take it now
/// (down, or slower than the emitters).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Keep up to `queue` events in memory; when the queue is full, the
    /// emitting thread waits up to `timeout` for room, then the event is
    /// dropped and counted. Events in memory are lost if the process dies.
    Block {
        /// Events kept in memory.
        queue: usize,
        /// How long an emit may wait for room.
        timeout: Duration,
    },
    /// Keep up to `queue` events in memory; drop (and count) what does not
    /// fit. An emit never waits.
    Drop {
        /// Events kept in memory.
        queue: usize,
    },
    /// Write every event to a local file before its emit returns, and
    /// forward from the file: nothing whose emit returned is lost, whether
    /// the broker is down, the process is killed, or both (the next start
    /// forwards the rest first; a crash of the whole machine can lose what
    /// was written since the last `fsync`). Costs one `write` per event;
    /// `fsync` every `fsync_every`. An event that would make what is not
    /// yet acknowledged larger than `max_bytes` is dropped and counted.
    /// What is acknowledged leaves the file as it goes (the file is
    /// truncated, or compacted once 4 MiB of it are acknowledged), so the
    /// file stays under about twice `max_bytes`. One bridge at a time may
    /// have a spool file open.
    Spool {
        /// The spool file (`<path>.acked` is kept beside it).
        path: PathBuf,
        /// The most the file may hold that the broker has not acknowledged.
        max_bytes: u64,
        /// How often written events are made durable.
        fsync_every: Duration,
    },
}

impl Policy {
    /// [`Policy::Spool`] at `path`, bounded to 256 MiB, `fsync` every
    /// 100 ms.
    pub fn spool(path: impl Into<PathBuf>) -> Policy {
        Policy::Spool {
            path: path.into(),
            max_bytes: 256 << 20,
            fsync_every: Duration::from_millis(100),
        }
    }
}

impl Default for Policy {
    /// [`Policy::Block`] with a queue of 8,192 events and a timeout of 5 s.
    fn default() -> Policy {
        Policy::Block {
            queue: 8192,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Options of a [`NatsBridge`](crate::NatsBridge); see
/// [`NatsBridge::builder`](crate::NatsBridge::builder).
#[derive(Clone, Debug)]
#[must_use]
pub struct BridgeBuilder {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) stream: String,
    pub(crate) publish: Option<EventSelector>,
    pub(crate) consume: Option<(String, EventSelector)>,
    pub(crate) policy: Policy,
    pub(crate) instance: Option<String>,
    pub(crate) max_in_flight: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) ack_wait: Duration,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) reconnect_delay_max: Duration,
}

impl BridgeBuilder {
    pub(crate) fn new(url: String) -> BridgeBuilder {
        BridgeBuilder {
            url,
            prefix: "sbox".to_owned(),
            stream: "SBOX_EVENTS".to_owned(),
            publish: None,
            consume: None,
            policy: Policy::default(),
            instance: None,
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            reconnect_delay_max: Duration::from_secs(1),
        }
    }

    /// Forwards the local events `selector` picks to the broker (emitted
    /// here, not replays, not events that came from the broker).
    pub fn publish(mut self, selector: EventSelector) -> Self {
        self.publish = Some(selector);
        self
    }

    /// Receives events from the broker through the durable consumer
    /// `durable` (its position survives restarts; processes sharing it
    /// share the work), and emits those that `selector` picks on the local
    /// bus (others are acknowledged and skipped). `durable` is letters,
    /// digits, `_` or `-` (as JetStream recommends; `start` refuses
    /// anything else with [`BridgeError::Name`]).
    ///
    /// Processes that share a durable must use the same selector, and none
    /// of them should publish what the durable takes: a process skips (and
    /// acknowledges) its own events and those its selector leaves out, so
    /// the others sharing the durable never get them. Give each publishing
    /// process, and each selector, a durable of its own.
    pub fn consume(mut self, durable: impl Into<String>, selector: EventSelector) -> Self {
        self.consume = Some((durable.into(), selector));
        self
    }

    /// Subjects are `<prefix>.<event name>` (default `sbox`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The JetStream stream (default `SBOX_EVENTS`), created when missing,
    /// holding `<prefix>.>`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// What to do when the broker cannot keep up (default
    /// [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// This process's instance id, sent with every event (default: the
    /// process id and a random suffix). Events carrying it are never
    /// received back here.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// Publishes awaiting their acknowledgement at once (default 256). `1`
    /// keeps the broker's order exactly, also across failures, at a
    /// fraction of the throughput.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// How long a publish waits for its acknowledgement before it is sent
    /// again (default 5 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The stream's de-duplication window, when the bridge creates the
    /// stream (default 2 minutes, the server's): a message with an id seen
    /// within it is stored once.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Deliveries of a message whose handlers fail before it is terminated
    /// and reported (default 5).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = i64::from(n.max(1));
        self
    }

    /// How long the broker waits for an acknowledgement before it delivers
    /// a message again (default 30 s): the time a consumer that died
    /// mid-handler takes to get its messages back.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Delays before each redelivery of a message whose handlers failed
    /// (default 1 s, 5 s, 30 s; the last repeats). The messages behind it
    /// are handled meanwhile: a redelivered message comes after them.
    pub fn redelivery_backoff(mut self, delays: Vec<Duration>) -> Self {
        if !delays.is_empty() {
            self.backoff = delays;
        }
        self
    }

    /// The longest wait between two reconnection attempts (default 1 s).
    pub fn reconnect_delay_max(mut self, delay: Duration) -> Self {
        self.reconnect_delay_max = delay;
        self
    }
}

/// The bridge could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The URL is not a NATS server address.
    Url {
        /// The URL, without credentials.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The subject prefix or stream name is not usable.
    Name {
        /// What is wrong.
        message: String,
    },
    /// The spool cannot be opened.
    Spool {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bridge's thread could not start.
    Start {
        /// What happened.
        message: String,
    },
    /// A setting the bridge cannot work with (a zero timeout, an instance
    /// id that cannot travel in a header).
    Setting {
        /// What is wrong, and with which setting.
        message: String,
    },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Url { url, message } => {
                write!(f, "invalid NATS server address {url:?}: {message}")
            }
            BridgeError::Name { message } => f.write_str(message),
            BridgeError::Setting { message } => write!(f, "invalid bridge setting: {message}"),
            BridgeError::Spool { path, error } => {
                write!(f, "cannot open the spool {}: {error}", path.display())
            }
            BridgeError::Start { message } => write!(f, "cannot start the bridge: {message}"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Spool { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The bridge did not get its backlog acknowledged in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushError {
    /// Events still waiting.
    pub backlog: u64,
    /// How long it waited.
    pub waited: Duration,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} event(s) still waiting for the broker after {:?}",
            self.backlog, self.waited
        )
    }
}

impl std::error::Error for FlushError {}

/// `url` with any user name, password or token replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

/// Subject tokens: no spaces, dots only between tokens, no wildcards.
impl BridgeBuilder {
    /// Refuses settings the bridge cannot work with.
    pub(crate) fn check_settings(&self) -> Result<(), BridgeError> {
        let problem = if self.ack_timeout.is_zero() {
            Some("ack_timeout must be more than zero".to_owned())
        } else if self.ack_wait.is_zero() {
            Some("ack_wait must be more than zero".to_owned())
        } else if let Policy::Spool { fsync_every, .. } = &self.policy
            && fsync_every.is_zero()
        {
            Some("the spool's fsync_every must be more than zero".to_owned())
        } else if let Some(id) = &self.instance
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        {
            Some(format!(
                "instance id {id:?} must be printable ASCII (it travels in a header)"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(BridgeError::Setting { message }),
            None => Ok(()),
        }
    }
}

pub(crate) fn check_names(
    prefix: &str,
    stream: &str,
    durable: Option<&str>,
) -> Result<(), BridgeError> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '*' | '>' | '.'))
    };
    if !prefix.split('.').all(token_ok) {
        return Err(BridgeError::Name {
            message: format!(
                "subject prefix {prefix:?} is not dotted tokens without spaces or wildcards"
            ),
        });
    }
    // JetStream refuses `.`, `*`, `>`, spaces and path separators in
    // stream and consumer names; these are the names it recommends.
    let name_ok = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !name_ok(stream) {
        return Err(BridgeError::Name {
            message: format!("stream name {stream:?} must be letters, digits, `_` or `-`"),
        });
    }
    if let Some(durable) = durable
        && !name_ok(durable)
    {
        return Err(BridgeError::Name {
            message: format!(
                "durable consumer name {durable:?} must be letters, digits, `_` or `-`"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("nats://alice:s3cret@10.0.0.1:4222"),
            "nats://***@10.0.0.1:4222"
        );
        assert_eq!(redact("tls://token@host"), "tls://***@host");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact("user:pw@host"), "***@host");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names("sbox", "SBOX_EVENTS", None).is_ok());
        assert!(check_names("acme.sbox", "EVENTS-1", Some("audit_eu-1")).is_ok());
        assert!(check_names("sb ox", "S", None).is_err());
        assert!(check_names("sbox.*", "S", None).is_err());
        assert!(check_names("sbox.", "S", None).is_err());
        assert!(check_names("sbox", "S.E", None).is_err());
        for durable in ["", "audit.eu", "a b", "a*", "a>", "a/b", "\u{1b}[31m"] {
            assert!(
                check_names("sbox", "S", Some(durable)).is_err(),
                "{durable:?}"
            );
        }
    }
}
