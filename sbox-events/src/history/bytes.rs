//! The history's records' JSON, one after another in one ring of bytes:
//! recording appends (a copy into memory written in order), evicting the
//! oldest moves the start (nothing is freed), and the ring is reallocated
//! only to grow or shrink.

/// A ring of bytes holding spans appended in order and dropped oldest
/// first. A span is named by its absolute offset: bytes ever appended
/// before it, so spans stay valid when the ring is reallocated.
#[derive(Default)]
pub(super) struct Bytes {
    /// The ring: its length is the capacity.
    buf: Box<[u8]>,
    /// Index in `buf` of the oldest byte held.
    start: usize,
    /// Bytes held.
    len: usize,
    /// Absolute offset of the oldest byte held.
    first: u64,
}

impl Bytes {
    /// Bytes the ring has room for (all allocated).
    pub(super) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Room left before the oldest span must go.
    pub(super) fn free(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Appends `bytes` (at most [`free`](Bytes::free)); returns the
    /// absolute offset of its first byte.
    pub(super) fn push(&mut self, bytes: &[u8]) -> u64 {
        assert!(bytes.len() <= self.free(), "the caller makes room first");
        let at = self.first + self.len as u64;
        let end = self.index(self.len);
        let (head, tail) = bytes.split_at(bytes.len().min(self.buf.len() - end));
        self.buf[end..end + head.len()].copy_from_slice(head);
        self.buf[..tail.len()].copy_from_slice(tail);
        self.len += bytes.len();
        at
    }

    /// Drops the oldest `n` bytes (the oldest span's length).
    pub(super) fn pop(&mut self, n: usize) {
        assert!(n <= self.len, "only bytes held are dropped");
        self.start = self.index(n);
        self.len -= n;
        self.first += n as u64;
    }

    /// The span of `n` bytes at absolute offset `at`, in one or two pieces.
    pub(super) fn span(&self, at: u64, n: usize) -> (&[u8], &[u8]) {
        let offset = at
            .checked_sub(self.first)
            .and_then(|offset| usize::try_from(offset).ok())
            .filter(|&offset| offset <= self.len && n <= self.len - offset)
            .expect("a span held by the ring");
        let from = self.index(offset);
        let first = n.min(self.buf.len() - from);
        (&self.buf[from..from + first], &self.buf[..n - first])
    }

    /// Moves what is held into a ring of `capacity` bytes (at least
    /// [`len`](Bytes::len)); spans keep their offsets.
    pub(super) fn reallocate(&mut self, capacity: usize) {
        assert!(capacity >= self.len, "what is held fits");
        let mut buf = vec![0; capacity].into_boxed_slice();
        let (head, tail) = self.span(self.first, self.len);
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..self.len].copy_from_slice(tail);
        self.buf = buf;
        self.start = 0;
    }

    /// Drops everything and gives the memory back.
    pub(super) fn clear(&mut self) {
        *self = Bytes {
            first: self.first + self.len as u64,
            ..Bytes::default()
        };
    }

    /// The index in `buf` of the byte `offset` bytes after the oldest
    /// (`offset` at most the capacity).
    fn index(&self, offset: usize) -> usize {
        let index = self.start + offset;
        if index >= self.buf.len() {
            index - self.buf.len()
        } else {
            index
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    fn text(ring: &Bytes, at: u64, n: usize) -> Vec<u8> {
        let (head, tail) = ring.span(at, n);
        [head, tail].concat()
    }

    #[test]
    fn spans_wrap_around_and_survive_reallocation() {
        let mut ring = Bytes::default();
        ring.reallocate(8);
        let a = ring.push(b"abcde");
        assert_eq!((a, ring.free()), (0, 3));
        ring.pop(5);
        let b = ring.push(b"fghijk"); // wraps: 3 bytes at the end, 3 at the start
        assert_eq!(b, 5);
        assert_eq!(text(&ring, b, 6), b"fghijk");
        let (head, tail) = ring.span(b, 6);
        assert_eq!((head.len(), tail.len()), (3, 3));
        ring.reallocate(16);
        assert_eq!(text(&ring, b, 6), b"fghijk");
        let c = ring.push(b"lmn");
        assert_eq!((c, ring.len()), (11, 9));
        ring.pop(6);
        assert_eq!(text(&ring, c, 3), b"lmn");
        ring.reallocate(3);
        assert_eq!((text(&ring, c, 3), ring.free()), (b"lmn".to_vec(), 0));
        ring.clear();
        assert_eq!((ring.capacity(), ring.len()), (0, 0));
        assert_eq!(ring.push(b""), 14, "offsets go on after a clear");
    }

    #[test]
    fn many_sizes_round_trip() {
        let mut ring = Bytes::default();
        ring.reallocate(37);
        let mut held: std::collections::VecDeque<(u64, Vec<u8>)> = Default::default();
        for i in 0..2_000u32 {
            let bytes: Vec<u8> = (0..(i * 7 % 23) as u8).map(|b| b ^ i as u8).collect();
            while ring.free() < bytes.len() {
                let (at, old) = held.pop_front().expect("something to drop");
                assert_eq!(text(&ring, at, old.len()), old);
                ring.pop(old.len());
            }
            let at = ring.push(&bytes);
            held.push_back((at, bytes));
            if i % 301 == 0 {
                ring.reallocate(ring.len() + 37);
            }
        }
        for (at, bytes) in &held {
            assert_eq!(&text(&ring, *at, bytes.len()), bytes);
        }
    }
}
