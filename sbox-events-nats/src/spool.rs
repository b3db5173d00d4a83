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
//!   periodic `fsync`), so a restart resends at most what was acknowledged
//!   since; those resends carry their original `Nats-Msg-Id` and the broker
//!   drops them as duplicates (within its duplicate window).
//! * When everything written is acknowledged, the file is truncated to zero.
//! * A line cut short by a crash mid-write (its emit never returned) is
//!   removed when the spool is opened.
//! * The file is bounded in bytes: an event that does not fit is dropped
//!   and counted.

use crate::wire::Outgoing;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The writing side, shared by the emitting threads.
pub(crate) struct Spool {
    path: PathBuf,
    acked_path: PathBuf,
    max_bytes: u64,
    writer: Mutex<Writer>,
    /// A handle for `fsync` and truncation without the writer's lock held
    /// during a slow `fsync`.
    sync: File,
}

struct Writer {
    file: File,
    len: u64,
    dirty: bool,
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
        let len = cut_partial_line(&mut file)?;
        let acked_path = sidecar(path);
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
            sync,
        };
        Ok((spool, acked))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Only this module's code runs under the lock.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one event (a complete line), or refuses it.
    pub(crate) fn append(&self, event: &Outgoing) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(event).map_err(|e| SpoolError::Io(e.into()))?;
        line.push(b'\n');
        let mut writer = self.writer();
        if writer.len + line.len() as u64 > self.max_bytes {
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
        Ok(())
    }

    /// Bytes written and not truncated.
    pub(crate) fn len(&self) -> u64 {
        self.writer().len
    }

    /// Makes what was written durable (`fsync`) and records the
    /// acknowledged offset beside it.
    pub(crate) fn sync(&self, acked: u64) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.writer().dirty);
        if dirty {
            self.sync.sync_data()?;
        }
        let mut sidecar = File::create(&self.acked_path)?;
        sidecar.write_all(format!("{acked}\n").as_bytes())?;
        if dirty {
            sidecar.sync_data()?;
        }
        Ok(())
    }

    /// Empties the spool if everything in it is acknowledged (`acked` is
    /// its length): returns whether it did.
    pub(crate) fn truncate_if_acked(&self, acked: u64) -> io::Result<bool> {
        let mut writer = self.writer();
        if writer.len != acked || acked == 0 {
            return Ok(false);
        }
        writer.file.set_len(0)?;
        writer.len = 0;
        writer.dirty = true;
        drop(writer);
        self.sync(0)?;
        Ok(true)
    }

    /// A reader from `offset` (the acknowledged offset).
    pub(crate) fn reader(&self, offset: u64) -> io::Result<Reader> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Reader {
            file: BufReader::new(file),
            pos: offset,
        })
    }

    /// The spool's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `<spool>.acked`.
fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".acked");
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
    file: BufReader<File>,
    pos: u64,
}

impl Reader {
    /// The next event written before `limit` (the spool's length when
    /// asked), with the offset just past it; a line that is not an event
    /// (damaged on disk) is skipped and returned as `Err` with its offset.
    pub(crate) fn next(&mut self, limit: u64) -> Option<(u64, Result<Outgoing, String>)> {
        if self.pos >= limit {
            return None;
        }
        let mut line = Vec::new();
        match self.file.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(n) => self.pos += n as u64,
            Err(err) => return Some((self.pos, Err(err.to_string()))),
        }
        let event = serde_json::from_slice(&line).map_err(|e| e.to_string());
        Some((self.pos, event))
    }

    /// Restarts at the beginning of a truncated spool.
    pub(crate) fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        Ok(())
    }
}
