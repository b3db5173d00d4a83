//! The audit log after a write that fails half-way through a record (the
//! disk fills up mid-line): the file is back at a record boundary, later
//! records are readable, and the counts say exactly what is in the file.
//!
//! A binary of its own with a single test: it lowers the process's file size
//! limit (`RLIMIT_FSIZE`), which makes a real write stop part-way, exactly as
//! a full disk does.

#![cfg(target_os = "linux")]

use sbox_events::EventBus;
use sbox_events::audit::AuditLogger;
use sbox_events::events::SubscriptionProcessed;
use sbox_events::history::{ImportOptions, import_jsonl};
use std::path::Path;

fn processed(n: u64) -> SubscriptionProcessed {
    SubscriptionProcessed {
        url: format!("https://provider.example.com/sub/{n}"),
        servers_count: n,
        success: true,
        duration_ms: 1,
    }
}

/// Sets the soft file size limit; returns the previous one.
fn set_file_size_limit(bytes: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) },
        0
    );
    let previous = limit.rlim_cur;
    limit.rlim_cur = bytes.min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit no higher than the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
    previous
}

#[test]
fn a_record_cut_short_by_a_full_disk_leaves_the_log_readable() {
    // Past the limit the kernel sends SIGXFSZ (which would end the process)
    // and fails the write with EFBIG; ignore the signal to see the error.
    // SAFETY: setting a signal's disposition to "ignore" has no handler to
    // be unsafe about.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-disk-full");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("audit.jsonl");
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let audit = AuditLogger::builder()
        .jsonl(&path)
        .attach(&bus)
        .expect("open the audit log");

    bus.emit(processed(1));
    bus.emit(processed(2));
    let good = std::fs::metadata(&path).expect("log").len();
    assert_eq!(audit.records(), 2);

    // Room for only part of the next record: it is cut short mid-line.
    let previous = set_file_size_limit(good + 40);
    let cut = bus.emit(processed(3));
    let refused = bus.emit(processed(4));
    set_file_size_limit(previous);
    assert!(
        cut.is_ok() && refused.is_ok(),
        "audit failures are not handler failures"
    );

    bus.emit(processed(5));
    let text = std::fs::read_to_string(&path).expect("log");
    let urls: Vec<String> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("unreadable record {line:?}: {e}"));
            record["data"]["url"].as_str().expect("url").to_owned()
        })
        .collect();
    assert_eq!(
        urls,
        [1, 2, 5].map(|n| format!("https://provider.example.com/sub/{n}"))
    );
    assert_eq!(
        (audit.records(), audit.write_errors()),
        (3, 2),
        "records counts what is readable in the file, write_errors what was lost"
    );
    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).expect("strict import");
    assert_eq!(imported.events.len(), 3);
}
