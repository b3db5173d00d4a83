//! The orchestrator fetching subscriptions from a real HTTP server on
//! 127.0.0.1: caching and revalidation, provider headers, failures named
//! by cause, a stale copy standing in for an unreachable provider, and
//! secrets in URLs never shown.

use sbox_events::{AnyEvent, EventBus, EventContext, EventSelector};
use sbox_events_examples::orchestrator::{self, Options};
use sbox_events_tests::http::{Response, Server};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("orchestrator-fetch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn sample() -> Vec<u8> {
    std::fs::read(Options::sample_subscription()).expect("sample")
}

/// What one run showed.
struct Run {
    exit_code: u8,
    stdout: String,
    stderr: String,
    /// Each event: name, fields, metadata.
    events: Vec<(String, serde_json::Value, serde_json::Value)>,
    audit: String,
}

impl Run {
    fn event(&self, name: &str) -> (&serde_json::Value, &serde_json::Value) {
        let (_, data, meta) = self
            .events
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.events));
        (data, meta)
    }

    fn failure(&self) -> (String, String) {
        let (failed, _) = self.event("subscription.failed");
        (
            failed["error_type"].as_str().expect("type").to_owned(),
            failed["error"].as_str().expect("error").to_owned(),
        )
    }

    /// Everything the run let out: stdout, stderr, events, audit log.
    fn everything(&self) -> String {
        format!(
            "{}{}{:?}{}",
            self.stdout, self.stderr, self.events, self.audit
        )
    }
}

fn options(dir: &Path, subscription: &str) -> Options {
    Options {
        subscriptions: vec![PathBuf::from(subscription)],
        output: dir.join("config.json"),
        audit_log: dir.join("audit.jsonl"),
        cache_dir: Some(dir.join("cache")),
        prometheus: true,
        timeout: Duration::from_secs(5),
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
    }
}

fn run(options: &Options) -> Run {
    let bus = EventBus::builder()
        .static_handlers(false)
        .build()
        .expect("bus");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let _recorder = bus.subscribe_any(
        EventSelector::all(),
        move |event: &AnyEvent, ctx: &EventContext| {
            let data = event.to_json().map_err(|e| e.to_string())?;
            let meta = serde_json::to_value(ctx.metadata()).map_err(|e| e.to_string())?;
            seen.lock()
                .expect("events")
                .push((event.name().to_owned(), data, meta));
            Ok::<(), String>(())
        },
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&bus, options, &mut out, &mut err);
    let events = events.lock().expect("events").clone();
    Run {
        exit_code: outcome.exit_code,
        stdout: String::from_utf8(out).expect("utf-8"),
        stderr: String::from_utf8(err).expect("utf-8"),
        events,
        audit: std::fs::read_to_string(&options.audit_log).unwrap_or_default(),
    }
}

const USERINFO: &str =
    "upload=1073741824; download=12133238374; total=107374182400; expire=1801353600";

#[test]
fn a_url_is_fetched_cached_and_revalidated() {
    let dir = scratch("cached");
    let server = Server::start(|request| match request.header("if-none-match") {
        Some("\"v1\"") => Response::status(304).header("Subscription-Userinfo", USERINFO),
        _ => Response::ok(sample())
            .header("ETag", "\"v1\"")
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("Subscription-Userinfo", USERINFO)
            .header("Profile-Update-Interval", "24"),
    });
    let url = server.url("/sub");
    let options = options(&dir, &url);

    let first = run(&options);
    assert_eq!(first.exit_code, 0, "{}{}", first.stdout, first.stderr);
    let (fetched, meta) = first.event("subscription.fetched");
    assert_eq!(fetched["url"], url.as_str());
    assert_eq!(fetched["cache_hit"], false);
    assert_eq!(fetched["content_type"], "text/plain; charset=utf-8");
    assert_eq!(fetched["content_length"], sample().len());
    assert_eq!(meta["userinfo.total"], "107374182400");
    assert_eq!(meta["update_interval_hours"], "24");
    assert!(
        first
            .stdout
            .contains("  usage      12.3 GiB of 100 GiB used, expires 2027-01-31\n"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("  update     every 24 h"),
        "{}",
        first.stdout
    );
    let gauge = format!("sbox_subscription_quota_bytes{{subscription=\"{url}\"}} 107374182400\n");
    assert!(first.stdout.contains(&gauge), "{}", first.stdout);
    // The audit log keeps the fetch, with the provider's usage.
    let audited = first
        .audit
        .lines()
        .find(|l| l.contains("\"subscription.fetched\""))
        .expect("the fetch is audited");
    assert!(
        audited.contains("\"userinfo.upload\":\"1073741824\""),
        "{audited}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let agent = requests[0].header("user-agent").unwrap_or_default();
    assert!(agent.starts_with("sboxmgr-example/"), "{agent}");
    assert!(
        requests[0]
            .header("accept-encoding")
            .is_some_and(|e| e.contains("gzip"))
    );

    let second = run(&options);
    assert_eq!(second.exit_code, 0, "{}{}", second.stdout, second.stderr);
    let (fetched, _) = second.event("subscription.fetched");
    assert_eq!(fetched["cache_hit"], true);
    assert_eq!(server.requests()[1].header("if-none-match"), Some("\"v1\""));
    assert!(second.stdout.contains("not modified, used the cached copy"));
    assert_eq!(
        std::fs::read_to_string(&options.output).expect("config"),
        std::fs::read_to_string(dir.join("config.json")).expect("same config")
    );
}

/// A SIP008 document (the JSON subscriptions of Shadowsocks providers), as
/// providers serve it.
const SIP008: &str = r#"{
  "version": 1,
  "servers": [
    {"id": "27b8a625-4f4b-4428-9f0f-8a2317db7c79", "remarks": "Tokyo #1",
     "server": "198.51.100.7", "server_port": 8388, "password": "p@ss:word",
     "method": "chacha20-ietf-poly1305"},
    {"remarks": "Broken", "server": "198.51.100.8", "server_port": 99999,
     "password": "x", "method": "aes-256-gcm"},
    {"remarks": "Obfuscated", "server": "2001:db8::8", "server_port": "443",
     "password": "pw", "method": "aes-128-gcm", "plugin": "obfs-local",
     "plugin_opts": "obfs=tls;obfs-host=www.example.com"}
  ],
  "bytes_used": 274877906944,
  "bytes_remaining": 824633720832
}"#;

#[test]
fn a_sip008_document_is_converted_server_by_server() {
    let dir = scratch("sip008");
    let server = Server::start(|_| Response::ok(SIP008).header("Content-Type", "application/json"));
    let run = run(&options(&dir, &server.url("/sip008")));
    assert_eq!(run.exit_code, 0, "{}{}", run.stdout, run.stderr);
    let (parsed, _) = run.event("subscription.parsed");
    assert_eq!(parsed["format"], "sip008");
    assert_eq!(parsed["servers_count"], 3);
    let (validated, _) = run.event("subscription.validated");
    assert_eq!(validated["valid_count"], 2, "{validated}");
    assert!(
        run.stdout.contains("2 kept, 1 invalid dropped"),
        "{}",
        run.stdout
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config"))
            .expect("JSON");
    let outbounds = config["outbounds"].as_array().expect("outbounds");
    let tokyo = outbounds
        .iter()
        .find(|o| o["tag"] == "Tokyo #1")
        .expect("Tokyo #1");
    assert_eq!(tokyo["type"], "shadowsocks");
    assert_eq!(tokyo["server"], "198.51.100.7");
    assert_eq!(tokyo["server_port"], 8388);
    assert_eq!(tokyo["password"], "p@ss:word");
    assert_eq!(tokyo["method"], "chacha20-ietf-poly1305");
    let obfuscated = outbounds
        .iter()
        .find(|o| o["tag"] == "Obfuscated")
        .expect("Obfuscated");
    assert_eq!(obfuscated["server"], "2001:db8::8");
    assert_eq!(obfuscated["server_port"], 443);
    assert_eq!(obfuscated["plugin"], "obfs-local");
    assert_eq!(
        obfuscated["plugin_opts"],
        "obfs=tls;obfs-host=www.example.com"
    );
    assert!(outbounds.iter().all(|o| o["tag"] != "Broken"));

    // Nothing usable: the failure names the first bad server by position.
    let broken =
        r#"{"servers": [{"server": "h", "server_port": 1, "method": "rc2", "password": "x"}]}"#;
    let server = Server::start(move |_| Response::ok(broken));
    let run = self::run(&options(&dir, &server.url("/broken")));
    assert_eq!(run.exit_code, 1, "{}", run.stdout);
    let (error_type, message) = run.failure();
    assert_eq!(error_type, "no_servers", "{message}");
    assert!(
        message.contains("(first problem: server 1: unsupported shadowsocks method \"rc2\""),
        "{message}"
    );
}

#[test]
fn gzip_and_redirect_chains_are_followed_loops_are_not() {
    let dir = scratch("redirects");
    let server = Server::start(|request| match request.path.as_str() {
        "/a" => Response::redirect("/b"),
        "/b" => Response::redirect("/gz"),
        "/gz" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&sample()).expect("gzip");
            Response::ok(gz.finish().expect("gzip")).header("Content-Encoding", "gzip")
        }
        "/loop1" => Response::redirect("/loop2"),
        _ => Response::redirect("/loop1"),
    });
    let chained = run(&options(&dir, &server.url("/a")));
    assert_eq!(chained.exit_code, 0, "{}", chained.stderr);
    let (fetched, _) = chained.event("subscription.fetched");
    assert_eq!(fetched["content_length"], sample().len(), "decoded");

    let looped = run(&options(&dir, &server.url("/loop1")));
    assert_eq!(looped.exit_code, 1);
    let (kind, message) = looped.failure();
    assert_eq!(kind, "redirects", "{message}");
    assert!(
        server.requests().len() <= 3 + 1 + orchestrator::MAX_REDIRECTS as usize,
        "bounded"
    );
}

#[test]
fn failures_name_the_url_the_stage_and_the_cause() {
    let dir = scratch("failures");
    let big = vec![b'#'; 4096];
    let server = Server::start(move |request| match request.path.as_str() {
        "/missing" => Response::status(404),
        "/slow" => Response::ok(sample()).stall(Duration::from_secs(4)),
        "/big" => Response::ok(big.clone()),
        "/clash" => Response::ok("mixed-port: 7890\nproxies:\n  - name: a\n    type: ss\n"),
        "/singbox" => Response::ok("{\"outbounds\": [{\"type\": \"direct\"}]}"),
        "/json" => Response::ok("{\"nodes\": [{\"server\": \"a\"}]}"),
        "/sip008-v2" => Response::ok("{\"version\": 2, \"servers\": []}"),
        _ => Response::ok("<!DOCTYPE html><html>log in</html>"),
    });
    let cases = [
        ("/missing", "http_status", "HTTP 404"),
        ("/slow", "timeout", "timed out"),
        ("/big", "too_large", "larger than the limit of 1024 bytes"),
        ("/clash", "format", "a Clash YAML configuration"),
        ("/singbox", "format", "a sing-box JSON configuration"),
        ("/json", "format", "JSON that is neither a SIP008 document"),
        (
            "/sip008-v2",
            "format",
            "not a usable SIP008 document: SIP008 version 2 is not supported",
        ),
        ("/login", "format", "an HTML page"),
    ];
    for (path, kind, says) in cases {
        let url = server.url(path);
        let mut options = options(&dir, &url);
        options.no_cache = true;
        options.max_bytes = 1024;
        options.timeout = Duration::from_secs(1);
        let run = run(&options);
        assert_eq!(run.exit_code, 1, "{path}: {}", run.stdout);
        let (error_type, message) = run.failure();
        assert_eq!(error_type, kind, "{path}: {message}");
        assert!(message.contains(says), "{path}: {message}");
        assert!(message.contains(&url), "{path}: {message}");
        assert!(run.stderr.contains(says), "{path}: {}", run.stderr);
    }

    // Nobody listening: a connect error.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let run = run(&options(&dir, &format!("http://{closed}/sub")));
    assert_eq!(run.exit_code, 1);
    assert_eq!(run.failure().0, "connect", "{}", run.failure().1);
    // An unresolvable name: DNS.
    let run = self::run(&options(&dir, "http://no-such-host.invalid/sub"));
    assert_eq!(run.failure().0, "dns", "{}", run.failure().1);
}

#[test]
fn a_cached_copy_stands_in_for_an_unreachable_provider() {
    let dir = scratch("stale");
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let serving = Arc::clone(&up);
    let server = Server::start(
        move |_| match serving.load(std::sync::atomic::Ordering::SeqCst) {
            true => Response::ok(sample()).header("Subscription-Userinfo", USERINFO),
            false => Response::status(503),
        },
    );
    let url = server.url("/sub");
    let first = run(&options(&dir, &url));
    assert_eq!(first.exit_code, 0, "{}", first.stderr);

    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let stale = run(&options(&dir, &url));
    assert_eq!(stale.exit_code, 0, "{}{}", stale.stdout, stale.stderr);
    let (fetched, meta) = stale.event("subscription.fetched");
    assert_eq!(fetched["cache_hit"], true);
    assert_eq!(meta["stale"], "true");
    assert!(
        meta["stale_reason"]
            .as_str()
            .is_some_and(|r| r.contains("HTTP 503")),
        "{meta}"
    );
    assert!(stale.stdout.contains("provider failed"), "{}", stale.stdout);
    assert!(
        stale.stdout.contains("12.3 GiB of 100 GiB used"),
        "kept from the cache"
    );

    // Too old for --max-stale: the run fails, the previous config stays.
    std::thread::sleep(Duration::from_millis(2100));
    let mut strict = options(&dir, &url);
    strict.max_stale = Duration::from_secs(1);
    let before = std::fs::read(&strict.output).expect("config");
    let failed = run(&strict);
    assert_eq!(failed.exit_code, 1);
    assert_eq!(failed.failure().0, "http_status");
    assert_eq!(std::fs::read(&strict.output).expect("config"), before);

    // Without a cache, an unreachable provider is a failure.
    let mut uncached = options(&dir, &url);
    uncached.no_cache = true;
    assert_eq!(run(&uncached).exit_code, 1);
}

#[test]
fn secrets_in_a_url_are_never_shown() {
    let dir = scratch("secrets");
    let server = Server::start(|request| match request.path.starts_with("/ok") {
        true => Response::ok(sample()),
        false => Response::status(403),
    });
    let base = server.url("");
    let with_secrets = |path: &str| {
        base.replace("http://", "http://alice:hunter2pass@") + path + "?token=t0ps3cretvalue&flag=1"
    };
    for path in ["/ok/Ab3dEf6hIj9kLm2nOp", "/denied"] {
        let run = run(&options(&dir, &with_secrets(path)));
        let everything = run.everything();
        for secret in [
            "hunter2pass",
            "t0ps3cretvalue",
            "Ab3dEf6hIj9kLm2nOp",
            "alice",
        ] {
            assert!(!everything.contains(secret), "{secret} shown: {everything}");
        }
        assert!(everything.contains("token=***"), "{everything}");
    }
    // A URL that cannot be requested: its error does not repeat it.
    let broken = run(&options(
        &dir,
        "http://alice:hunter2pass@exa mple.com/?token=t0ps3cretvalue",
    ));
    assert_eq!(broken.failure().0, "url");
    let everything = broken.everything();
    assert!(!everything.contains("hunter2pass") && !everything.contains("t0ps3cretvalue"));
    // The server did get the credentials.
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.header("authorization").is_some()));
}

#[test]
fn https_is_verified_against_the_trusted_roots() {
    use sbox_events_tests::http::TestCa;
    let dir = scratch("https");
    let ca = TestCa::new();
    let server = Server::start_tls(&ca, |_| Response::ok(sample()));
    let url = server.url("/sub");
    assert!(url.starts_with("https://127.0.0.1:"));

    // Mozilla's roots do not know the test CA: a TLS failure, said so.
    let untrusted = run(&options(&dir, &url));
    assert_eq!(untrusted.exit_code, 1, "{}", untrusted.stdout);
    let (kind, message) = untrusted.failure();
    assert_eq!(kind, "tls", "{message}");
    assert!(message.contains("TLS"), "{message}");
    assert!(
        server.requests().is_empty(),
        "no request without a trusted server"
    );

    // Trusting it with --ca-cert.
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, &ca.ca_pem).expect("write");
    let mut trusted = options(&dir, &url);
    trusted.ca_cert = vec![pem];
    let run = run(&trusted);
    assert_eq!(run.exit_code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(server.requests().len(), 1);

    // A --ca-cert that is not PEM is a setup error (status 2).
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let mut bad = options(&dir, &url);
    bad.ca_cert = vec![garbage];
    let run = self::run(&bad);
    assert_eq!(run.exit_code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--ca-cert"), "{}", run.stderr);
}

#[test]
fn an_https_subscription_is_never_fetched_over_http_through_a_redirect() {
    use sbox_events_tests::http::TestCa;
    let dir = scratch("https-downgrade");
    let plain = Server::start(|_| Response::ok(sample()));
    let target = plain.url("/sub.txt?token=t0ps3cretvalue");
    let ca = TestCa::new();
    let server = Server::start_tls(&ca, move |request| match request.path.as_str() {
        "/same" => Response::redirect("/sub"),
        "/sub" => Response::ok(sample()),
        _ => Response::redirect(&target),
    });
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, &ca.ca_pem).expect("write");

    let mut downgraded = options(&dir, &server.url("/down"));
    downgraded.ca_cert = vec![pem.clone()];
    let run = run(&downgraded);
    assert_eq!(run.exit_code, 1, "{}{}", run.stdout, run.stderr);
    let (kind, message) = run.failure();
    assert_eq!(kind, "redirects", "{message}");
    assert!(
        message.contains("https") && message.contains("http"),
        "{message}"
    );
    assert!(plain.requests().is_empty(), "nothing was asked over http");
    assert!(!run.everything().contains("t0ps3cretvalue"));

    // A redirect that stays on https is followed.
    let mut same = options(&dir, &server.url("/same"));
    same.ca_cert = vec![pem];
    let run = self::run(&same);
    assert_eq!(run.exit_code, 0, "{}{}", run.stdout, run.stderr);
}
