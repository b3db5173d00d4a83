//! [`TraceId`] and its short form, and the per-thread generator of fresh
//! ids.

use super::parent::{ErrorKind, ParseTraceError, Subject, char_at, parse_hex};
use core::fmt;
use core::num::NonZeroU128;
use core::str::FromStr;
use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// The trace-id generator's state; 0 until first use on the thread.
    static RNG_STATE: Cell<u64> = const { Cell::new(0) };
}

/// 64 random bits from the OS: std's `RandomState` keys come from the
/// operating system's generator (once per thread, then varied per instance).
fn os_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5b0c_e7e1_u64) | 1
}

/// 128 random bits from this thread's generator (wyrand, seeded once per
/// thread from the OS): trace ids, and the random part of event ids.
#[inline]
pub(crate) fn random_u128() -> u128 {
    RNG_STATE.with(|state| {
        let seed = match state.get() {
            0 => os_seed(),
            seed => seed,
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let value = rng.u128(..);
        state.set(rng.get_seed());
        value
    })
}

/// The id of the implicit trace of the event numbered `sequence` (an emit
/// outside any trace that takes a fresh one): a keyed permutation of the
/// number, under keys drawn once per process from the OS-seeded generator.
/// The same number gives the same id on every thread, so a report can make
/// its id when asked, wherever it was moved.
///
/// Sequence numbers are unique in the process, and each step below is a
/// bijection of u128, so these ids are unique too. The mixing carries every
/// bit of the number into every bit of the id, so they look as random as
/// [`TraceId::random`]'s (their short forms differ from one event to the
/// next), and the second key, mixed in after a multiplication, keeps an
/// observer of some ids from computing the others. It is not a
/// cryptographic function (neither are the draws): a trace id is a label,
/// never a secret. Cheaper than a draw (two multiplications), and it lets an
/// emit nobody observes make its id only when asked for it.
///
/// Out of line: inlined, its code made callers that read a context's trace
/// id (the history's record) too large for the compiler to inline them in
/// turn, which cost a recorded emit about 80 instructions.
#[inline(never)]
pub(crate) fn implicit_id(sequence: u64) -> TraceId {
    static KEYS: OnceLock<(u128, u128)> = OnceLock::new();
    let &(k1, k2) = KEYS.get_or_init(|| (random_u128(), random_u128()));
    const M1: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
    const M2: u128 = 0xd6e8_feb8_6659_fd93_a076_1d64_78bd_642f;
    let mut x = u128::from(sequence) ^ k1;
    x = x.wrapping_mul(M1);
    x ^= x >> 64;
    x ^= k2;
    x = x.wrapping_mul(M2);
    x ^= x >> 64;
    // One input in 2^128 maps to zero, which W3C forbids; it is a number
    // below 2^64 with a chance of 2^-64. Then a fixed id (not a draw: the
    // same report must give the same id each time it is asked).
    TraceId::from_u128(x).unwrap_or(TraceId(NonZeroU128::MIN.saturating_add(k2 >> 1)))
}

/// A 128-bit, non-zero trace identifier (W3C Trace Context `trace-id`).
///
/// `Display` gives 32 lowercase hex digits; [`short`](TraceId::short) gives
/// the first 8. Parsing is strict: exactly 32 lowercase hex digits, not all
/// zero. Serde uses the 32-digit string.
///
/// ```
/// use sbox_events::trace::TraceId;
///
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse()?;
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(id.short().to_string(), "4bf92f35");
///
/// let err = "4BF92F3577B34DA6A3CE929D0E0E4736".parse::<TraceId>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid trace id at byte 1: 'B' is not a lowercase hex digit (W3C ids are lowercase)"
/// );
/// # Ok::<(), sbox_events::trace::ParseTraceError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// A fresh random id: 128 random bits (never zero) from a per-thread
    /// generator seeded from the operating system, so no system call per id.
    #[inline]
    pub fn random() -> TraceId {
        loop {
            // Zero has a 2^-128 chance; W3C forbids it, so draw again.
            if let Some(value) = NonZeroU128::new(random_u128()) {
                return TraceId(value);
            }
        }
    }

    /// The id with this value, or `None` for zero (W3C forbids an all-zero id).
    pub const fn from_u128(value: u128) -> Option<TraceId> {
        match NonZeroU128::new(value) {
            Some(value) => Some(TraceId(value)),
            None => None,
        }
    }

    /// The id as a number.
    pub const fn as_u128(self) -> u128 {
        self.0.get()
    }

    /// The id as 16 big-endian bytes, the W3C binary form.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }

    /// The first 8 hex digits, for log lines read by people. Not unique: use
    /// the full id to correlate.
    pub const fn short(self) -> ShortTraceId {
        ShortTraceId((self.0.get() >> 96) as u32)
    }

    /// Parses 32 lowercase hex digits (same as [`str::parse`]).
    pub fn parse(input: &str) -> Result<TraceId, ParseTraceError> {
        let bytes = input.as_bytes();
        if bytes.len() != 32 {
            // 32 characters in more bytes: one is not ASCII, and that is
            // what is wrong (the length is counted in characters).
            if input.chars().count() == 32
                && let Some(at) = input.find(|c: char| !c.is_ascii())
            {
                parse_hex(input, 0, at, Subject::TraceId)?;
                let kind = ErrorKind::NotHex {
                    found: char_at(input, at),
                };
                return Err(ParseTraceError::new(Subject::TraceId, at, kind));
            }
            return Err(ParseTraceError::new(
                Subject::TraceId,
                0,
                ErrorKind::Length {
                    expected: 32,
                    found: input.chars().count(),
                },
            ));
        }
        let value = parse_hex(input, 0, 32, Subject::TraceId)?;
        TraceId::from_u128(value)
            .ok_or_else(|| ParseTraceError::new(Subject::TraceId, 0, ErrorKind::AllZero))
    }

    /// A `tracing` span named `trace` carrying this id as `trace_id`; the
    /// scopes of this module enter it for you.
    ///
    /// Its level is ERROR, so it is enabled whenever any logging is: a
    /// subscriber that shows only warnings and errors still shows which trace
    /// they belong to. (A span's level filters the span, not log lines.)
    pub fn span(self) -> tracing::Span {
        tracing::error_span!("trace", trace_id = %self)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl FromStr for TraceId {
    type Err = ParseTraceError;
    fn from_str(input: &str) -> Result<TraceId, ParseTraceError> {
        TraceId::parse(input)
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TraceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TraceId, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TraceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trace id of 32 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<TraceId, E> {
                TraceId::parse(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The first 8 hex digits of a [`TraceId`]; see [`TraceId::short`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ShortTraceId(u32);

impl fmt::Display for ShortTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}
