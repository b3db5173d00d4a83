//! The spool: a write-ahead JSON Lines file of outgoing events.
//!
//! With [`Policy::Spool`](crate::Policy::Spool), every forwarded event is
//! appended here before its emit returns (one `write` per event, under a
//! lock only the bridge's own code takes), and the publisher forwards from
//! the file, in order, advancing an acknowledged offset. So an event whose
//! emit returned survives the process being killed, the broker being down,
//! or both: the next start forwards what was not acknowledged first.
//!
//! * The acknowledged offset is kept in `<spool>.acked` (written with the
//!   periodic `fsync`, only when it moved), so a restart resends at most
//!   what was acknowledged since; those resends carry their original
//!   `Nats-Msg-Id` and the broker drops them as duplicates (within its
//!   duplicate window). The sidecar is never ahead of the file it
//!   describes: whenever the file is cut, the sidecar says `0` first, so a
//!   crash in between can only resend, never skip.
//! * When everything written is acknowledged, the file is truncated to
//!   zero; when the acknowledged part is large (at least
//!   [`COMPACT_AT`] and at least what is left), the part not yet
//!   acknowledged is copied to a new file that replaces it (emitters wait
//!   only for the copy of what they wrote during the bulk copy).
//! * A line cut short by a crash mid-write (its emit never returned) is
//!   removed when the spool is opened.
//! * What is not yet acknowledged is bounded in bytes (`max_bytes`): an
//!   event that does not fit is dropped and counted. The file itself can
//!   grow to about twice that before it is compacted.
//! * One bridge at a time: the file is locked while a bridge has it open.

use crate::wire::Outgoing;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The acknowledged bytes from which the spool is compacted (if they are
/// also at least what is left).
pub(crate) const COMPACT_AT: u64 = 4 << 20;

/// The writing side, shared by the emitting threads.
pub(crate) struct Spool {
    path: PathBuf,
    acked_path: PathBuf,
    max_bytes: u64,
    writer: Mutex<Writer>,
    /// Held while the sidecar is written or the file replaced, so the two
    /// never disagree; keeps a handle for `fsync` without the writer's lock
    /// held during a slow `fsync`.
    meta: Mutex<Meta>,
    /// The offset up to which the broker acknowledged (set by the
    /// publisher).
    acked: AtomicU64,
    /// [`COMPACT_AT`], smaller in tests.
    compact_at: u64,
}

struct Writer {
    file: File,
    len: u64,
    dirty: bool,
}

struct Meta {
    sync: File,
    /// The offset the sidecar holds.
    recorded: Option<u64>,
}

/// Why an event was not spooled.
pub(crate) enum SpoolError {
    /// The spool is at its byte limit.
    Full,
    /// Writing failed (disk full, I/O error).
    Io(io::Error),
}

impl Spool {
    /// Opens (or creates) the spool at `path`; returns it with the offset
    /// up to which a previous run had its events acknowledged.
    pub(crate) fn open(path: &Path, max_bytes: u64) -> io::Result<(Spool, u64)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        file.try_lock().map_err(|err| match err {
            std::fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another bridge has this spool open",
            ),
            std::fs::TryLockError::Error(err) => err,
        })?;
        // A compaction cut short by a crash: the spool itself is intact.
        let _ = std::fs::remove_file(with_suffix(path, ".compact"));
        let len = cut_partial_line(&mut file)?;
        let acked_path = with_suffix(path, ".acked");
        let acked = std::fs::read_to_string(&acked_path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&offset| offset <= len)
            .unwrap_or(0);
        let sync = file.try_clone()?;
        let spool = Spool {
            path: path.to_owned(),
            acked_path,
            max_bytes,
            writer: Mutex::new(Writer {
                file,
                len,
                dirty: false,
            }),
            meta: Mutex::new(Meta {
                sync,
                recorded: Some(acked),
            }),
            acked: AtomicU64::new(acked),
            compact_at: COMPACT_AT,
        };
        Ok((spool, acked))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Only this module's code runs under the lock.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one event (a complete line), or refuses it; `written` runs
    /// under the writer's lock once the line is in the file (so whatever
    /// it counts is counted in the file's order).
    pub(crate) fn append(
        &self,
        event: &Outgoing,
        written: impl FnOnce(),
    ) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(event).map_err(|e| SpoolError::Io(e.into()))?;
        line.push(b'\n');
        let mut writer = self.writer();
        let waiting = writer
            .len
            .saturating_sub(self.acked.load(Ordering::Acquire));
        if waiting + line.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full);
        }
        let start = writer.len;
        if let Err(err) = writer.file.write_all(&line) {
            // Cut what part of the line reached the file: the next line
            // must start on a line of its own.
            let _ = writer.file.set_len(start);
            return Err(SpoolError::Io(err));
        }
        writer.len += line.len() as u64;
        writer.dirty = true;
        written();
        Ok(())
    }

    /// Bytes in the file.
    pub(crate) fn len(&self) -> u64 {
        self.writer().len
    }

    /// Records that the broker acknowledged everything up to `offset`.
    pub(crate) fn set_acked(&self, offset: u64) {
        self.acked.store(offset, Ordering::Release);
    }

    /// Makes what was written durable (`fsync`) and records the
    /// acknowledged offset beside it (when it moved).
    pub(crate) fn sync(&self) -> io::Result<()> {
        let mut meta = self.meta();
        let dirty = std::mem::take(&mut self.writer().dirty);
        if dirty && let Err(err) = meta.sync.sync_data() {
            self.writer().dirty = true;
            return Err(err);
        }
        let acked = self.acked.load(Ordering::Acquire);
        if meta.recorded != Some(acked) {
            write_sidecar(&self.acked_path, acked)?;
            meta.recorded = Some(acked);
        }
        Ok(())
    }

    /// Drops what is acknowledged from the file when worth it: all of it
    /// (a truncation) or, past [`COMPACT_AT`], by copying the rest to a new
    /// file. Returns how many bytes were dropped from the front (every
    /// offset the caller holds moves back by that much), or 0.
    pub(crate) fn compact(&self) -> io::Result<u64> {
        let mut meta = self.meta();
        let acked = self.acked.load(Ordering::Acquire);
        let len = self.writer().len;
        if acked == 0 || (acked < len && (acked < self.compact_at || acked < len - acked)) {
            return Ok(0);
        }
        // The sidecar says 0 before the file is cut: a crash in between
        // resends what was acknowledged (dropped by the broker as
        // duplicates), never skips what was not.
        meta.recorded = None;
        if acked == len {
            let mut writer = self.writer();
            if writer.len != acked {
                // Written to since: next time.
                return Ok(0);
            }
            write_sidecar(&self.acked_path, 0)?;
            writer.file.set_len(0)?;
            writer.len = 0;
            writer.dirty = true;
            drop(writer);
            self.acked.store(0, Ordering::Release);
            meta.recorded = Some(0);
            return Ok(acked);
        }
        let temp = with_suffix(&self.path, ".compact");
        let result = self.copy_rest(&mut meta, acked, &temp);
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Copies the file from `acked` to `temp` and puts it in the file's
    /// place.
    fn copy_rest(&self, meta: &mut Meta, acked: u64, temp: &Path) -> io::Result<u64> {
        let mut from = File::open(&self.path)?;
        from.seek(SeekFrom::Start(acked))?;
        let mut to = File::create(temp)?;
        // The bulk without the writer's lock: emitters go on appending.
        let bulk = self.writer().len;
        copy_exactly(&mut from, &mut to, bulk - acked)?;
        to.sync_data()?;
        let mut writer = self.writer();
        copy_exactly(&mut from, &mut to, writer.len - bulk)?;
        to.sync_data()?;
        drop(to);
        write_sidecar(&self.acked_path, 0)?;
        std::fs::rename(temp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The rename, durable (best effort: not every system can).
            let _ = File::open(dir).and_then(|dir| dir.sync_all());
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        // The old file's lock goes with its handle; the new one is ours.
        let _ = file.try_lock();
        meta.sync = file.try_clone()?;
        writer.file = file;
        writer.len -= acked;
        writer.dirty = false;
        drop(writer);
        self.acked.store(0, Ordering::Release);
        meta.recorded = Some(0);
        Ok(acked)
    }

    /// A reader from `offset` (the acknowledged offset); it opens the file
    /// when first read.
    pub(crate) fn reader(&self, offset: u64) -> Reader {
        Reader {
            file: None,
            pos: offset,
        }
    }

    /// The spool's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes the acknowledged offset, durably.
fn write_sidecar(path: &Path, acked: u64) -> io::Result<()> {
    let mut sidecar = File::create(path)?;
    sidecar.write_all(format!("{acked}\n").as_bytes())?;
    sidecar.sync_data()
}

/// Copies `n` bytes, or fails.
fn copy_exactly(from: &mut File, to: &mut File, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut from.take(n), to)?;
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the spool is shorter than written",
        ));
    }
    Ok(())
}

/// `<spool><suffix>`, beside it.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes a last line without its newline (written by a process killed
/// mid-write); returns the length left.
fn cut_partial_line(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + at as u64 + 1;
            file.set_len(keep)?;
            return Ok(keep);
        }
        end = start;
    }
    file.set_len(0)?;
    Ok(0)
}

/// The publisher's side: reads complete lines below the writer's length.
pub(crate) struct Reader {
    /// Opened when needed (again after a compaction or a read error).
    file: Option<BufReader<File>>,
    pos: u64,
}

impl Reader {
    /// The next event written before `limit` (the spool's length when
    /// asked), with the offset just past it; a line that is not an event
    /// (damaged on disk) is skipped and returned as `Err`. `None` when
    /// there is nothing more now (or the file cannot be read now: tried
    /// again next time, from the same line).
    pub(crate) fn next(
        &mut self,
        spool: &Spool,
        limit: u64,
    ) -> Option<(u64, Result<Outgoing, String>)> {
        if self.pos >= limit {
            return None;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => match File::open(&spool.path).and_then(|mut file| {
                file.seek(SeekFrom::Start(self.pos))?;
                Ok(file)
            }) {
                Ok(file) => self.file.insert(BufReader::new(file)),
                Err(err) => {
                    tracing::warn!(target: "sbox_events_nats", error = %err, "cannot read the spool");
                    return None;
                }
            },
        };
        let mut line = Vec::new();
        match file.read_until(b'\n', &mut line) {
            Ok(n) if n > 0 && line.ends_with(b"\n") => self.pos += n as u64,
            Ok(_) => {
                // Below the writer's length, so written: read again.
                self.file = None;
                return None;
            }
            Err(err) => {
                tracing::warn!(target: "sbox_events_nats", error = %err, "cannot read the spool");
                self.file = None;
                return None;
            }
        }
        let event = serde_json::from_slice(&line).map_err(|e| e.to_string());
        Some((self.pos, event))
    }

    /// Follows the spool after [`Spool::compact`] dropped `shift` bytes
    /// from its front.
    pub(crate) fn shifted(&mut self, shift: u64) {
        self.pos -= shift;
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireEnvelope;
    use sbox_events::EventId;
    use sbox_events::trace::TraceId;

    fn event(n: u64) -> Outgoing {
        Outgoing {
            name: "test.note".into(),
            fingerprint: "f".into(),
            event_id: EventId::new(std::time::SystemTime::now()),
            trace_id: TraceId::random(),
            instance: "i".into(),
            envelope: WireEnvelope {
                source: "s".into(),
                metadata: Default::default(),
                timestamp: None,
                sequence: n,
                depth: 0,
                cause: None,
            },
            data: format!("{{\"n\":{n}}}"),
        }
    }

    fn append(spool: &Spool, n: u64) -> bool {
        spool.append(&event(n), || {}).is_ok()
    }

    /// The events a reader from `offset` sees, with their end offsets.
    fn read_all(spool: &Spool, offset: u64) -> Vec<(u64, u64)> {
        let mut reader = spool.reader(offset);
        std::iter::from_fn(|| reader.next(spool, spool.len()))
            .map(|(end, e)| (end, e.expect("an event").envelope.sequence))
            .collect()
    }

    #[test]
    fn the_limit_is_on_what_is_not_yet_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_vec(&event(0)).unwrap().len() as u64 + 1;
        let (spool, _) = Spool::open(&dir.path().join("s"), 3 * line + 2).unwrap();
        assert!((0..3).all(|n| append(&spool, n)));
        assert!(!append(&spool, 3), "full");
        spool.set_acked(spool.len());
        assert!(append(&spool, 3), "room again once acknowledged");
    }

    #[test]
    fn a_fully_acknowledged_spool_is_truncated_and_a_restart_resends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (spool, _) = Spool::open(&path, 1 << 20).unwrap();
        assert!(append(&spool, 0) && append(&spool, 1));
        let len = spool.len();
        spool.set_acked(len);
        assert_eq!(spool.compact().unwrap(), len);
        assert_eq!(spool.len(), 0);
        assert!(append(&spool, 2));
        spool.sync().unwrap();
        drop(spool);
        let (spool, acked) = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(acked, 0);
        assert_eq!(
            read_all(&spool, 0).iter().map(|e| e.1).collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn compaction_keeps_exactly_what_is_not_acknowledged_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (mut spool, _) = Spool::open(&path, 1 << 20).unwrap();
        spool.compact_at = 1;
        assert!((0..4).all(|n| append(&spool, n)));
        let ends = read_all(&spool, 0);
        // Two of four acknowledged: worth compacting (half of it).
        spool.set_acked(ends[1].0);
        let mut reader = spool.reader(ends[1].0);
        assert_eq!(
            reader.next(&spool, spool.len()).map(|e| e.0),
            Some(ends[2].0)
        );
        assert_eq!(spool.compact().unwrap(), ends[1].0);
        reader.shifted(ends[1].0);
        assert!(append(&spool, 4));
        let rest: Vec<u64> = std::iter::from_fn(|| reader.next(&spool, spool.len()))
            .map(|(_, e)| e.unwrap().envelope.sequence)
            .collect();
        assert_eq!(rest, [3, 4], "the reader goes on where it was");
        // A crash now: the next start resends 2, 3 and 4, nothing else.
        drop(spool);
        assert_eq!(
            std::fs::read_to_string(with_suffix(&path, ".acked")).unwrap(),
            "0\n"
        );
        let (spool, acked) = Spool::open(&path, 1 << 20).unwrap();
        let again: Vec<u64> = read_all(&spool, acked).iter().map(|e| e.1).collect();
        assert_eq!(again, [2, 3, 4]);
    }

    #[test]
    fn compaction_waits_until_it_is_worth_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(&dir.path().join("s"), 1 << 20).unwrap();
        spool.compact_at = 1;
        assert!((0..4).all(|n| append(&spool, n)));
        let ends = read_all(&spool, 0);
        spool.set_acked(ends[0].0);
        assert_eq!(spool.compact().unwrap(), 0, "a quarter acknowledged");
        spool.compact_at = COMPACT_AT;
        spool.set_acked(ends[2].0);
        assert_eq!(spool.compact().unwrap(), 0, "below COMPACT_AT");
    }

    #[test]
    fn one_bridge_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _first = Spool::open(&path, 1 << 20).unwrap();
        let second = Spool::open(&path, 1 << 20).map(|_| ()).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::ResourceBusy, "{second}");
    }
}
