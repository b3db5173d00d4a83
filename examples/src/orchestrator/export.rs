//! Writing the configuration atomically: into a temporary file with a
//! unique, unpredictable name created in the target's own directory (so
//! nobody can plant a symlink there, and two runs never share one), synced
//! to disk, renamed over the target, and the directory synced so the rename
//! itself survives a crash. Readers see the old file or the new one, never
//! a partial one; a failed run deletes its temporary file.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// A configuration being written next to its target.
pub(super) struct Staged {
    target: PathBuf,
    dir: PathBuf,
    file: NamedTempFile,
}

impl Staged {
    /// Creates the target's directory if needed, and the temporary file in
    /// it (readable by the owner only: configs hold passwords).
    pub(super) fn new(target: &Path) -> io::Result<Staged> {
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        Ok(Staged {
            target: target.to_owned(),
            dir,
            file,
        })
    }

    /// A buffered writer into the temporary file.
    pub(super) fn writer(&mut self) -> BufWriter<&mut File> {
        BufWriter::with_capacity(1 << 16, self.file.as_file_mut())
    }

    /// Where the temporary file is (to check the configuration in it).
    pub(super) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Syncs the file, renames it over the target, syncs the directory.
    pub(super) fn commit(self) -> io::Result<()> {
        self.file.as_file().sync_all()?;
        self.file.persist(&self.target).map_err(|e| e.error)?;
        // The rename is durable once the directory is synced.
        File::open(&self.dir)?.sync_all()
    }
}

/// Whether two paths name the same file (existing or not): same directory
/// after resolving it, same file name.
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    fn resolved(path: &Path) -> Option<PathBuf> {
        if let Ok(path) = path.canonicalize() {
            return Some(path);
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Some(dir.canonicalize().ok()?.join(path.file_name()?))
    }
    match (resolved(a), resolved(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}
