use super::*;
use crate::orchestrator::link::{Plugin, Protocol, Server, parse_uri};

/// One entry: its position, and its link or why it is unusable.
type Found = (usize, Result<String, String>);

/// Each entry of `document`, or the document's error.
fn entries(document: &str) -> Result<Vec<Found>, String> {
    let mut found = Vec::new();
    each_server(document.as_bytes(), &mut |n, link| found.push((n, link))).map_err(
        |e| match e {
            Sip008Error::Io(e) => format!("io: {e}"),
            Sip008Error::Format(e) => e,
        },
    )?;
    Ok(found)
}

/// The server one object stands for, through the `ss://` conversion.
fn server(object: &str) -> Result<Server, String> {
    let fields: Map<String, Value> = serde_json::from_str(object).expect("an object");
    parse_uri(&to_link(&fields)?)
}

#[test]
fn the_specification_example_converts() {
    let document = r#"{
        "version": 1,
        "servers": [
            {
                "id": "27b8a625-4f4b-4428-9f0f-8a2317db7c79",
                "remarks": "Name of the server",
                "server": "example.com",
                "server_port": 8388,
                "password": "example",
                "method": "chacha20-ietf-poly1305",
                "plugin": "obfs-local",
                "plugin_opts": "obfs=http;obfs-host=www.example.com"
            }
        ],
        "bytes_used": 274877906944,
        "bytes_remaining": 824633720832
    }"#;
    let found = entries(document).expect("a SIP008 document");
    assert_eq!(found.len(), 1);
    let (position, link) = &found[0];
    assert_eq!(*position, 1);
    let server = parse_uri(link.as_ref().expect("usable")).expect("converts");
    assert_eq!(server.name, "Name of the server");
    assert_eq!((server.host.as_str(), server.port), ("example.com", 8388));
    assert_eq!(
        server.protocol,
        Protocol::Shadowsocks {
            method: "chacha20-ietf-poly1305".to_owned(),
            password: "example".to_owned(),
            plugin: Some(Plugin {
                name: "obfs-local",
                opts: "obfs=http;obfs-host=www.example.com".to_owned(),
            }),
        }
    );
}

#[test]
fn passwords_names_and_hosts_survive_the_link_exactly() {
    for password in ["p@ss:w/o?r#d%20&=+", "пароль 密码", " spaces ", "a;b=c"] {
        let object = serde_json::json!({
            "server": "2001:db8::1", "server_port": 443, "method": "aes-256-gcm",
            "password": password, "remarks": "Tokyo #1 / 東京 100%",
        });
        let server = server(&object.to_string()).expect("converts");
        let Protocol::Shadowsocks { password: kept, .. } = &server.protocol else {
            panic!("shadowsocks")
        };
        assert_eq!(kept, password);
        assert_eq!(server.name, "Tokyo #1 / 東京 100%");
        assert_eq!(server.host, "2001:db8::1");
    }
    let bracketed = server(
        r#"{"server": "[2001:db8::1]", "server_port": 1, "method": "none", "password": ""}"#,
    )
    .expect("a bracketed IPv6 address too, and `none` without a password");
    assert_eq!(bracketed.host, "2001:db8::1");
}

#[test]
fn a_zone_an_unused_plugin_option_and_an_over_long_field() {
    let zoned = server(
        r#"{"server": "fe80::1%eth0", "server_port": 1, "method": "none", "password": "",
            "plugin_opts": "obfs=http"}"#,
    )
    .expect("a zone is kept; options without a plugin are ignored, as clients do");
    assert_eq!(zoned.host, "fe80::1%eth0");
    assert!(matches!(
        zoned.protocol,
        Protocol::Shadowsocks { plugin: None, .. }
    ));
    let long = serde_json::json!({
        "server": "h", "server_port": 1, "method": "none", "password": "",
        "remarks": "x".repeat(70_000),
    });
    assert_eq!(
        server(&long.to_string()).map(|s| s.name),
        Err("`remarks` is 70000 bytes, longer than 65536".to_owned())
    );
}

#[test]
fn a_quoted_port_and_null_optional_fields_are_accepted() {
    let server = server(
        r#"{"server": "h", "server_port": " 8388 ", "method": "AES-128-GCM", "password": "pw",
            "plugin": null, "plugin_opts": "", "remarks": null}"#,
    )
    .expect("converts");
    assert_eq!(server.port, 8388);
    assert_eq!(server.name, "");
    assert!(matches!(
        server.protocol,
        Protocol::Shadowsocks { ref method, plugin: None, .. } if method == "aes-128-gcm"
    ));
}

#[test]
fn each_unusable_server_says_which_field_is_wrong() {
    let cases = [
        (
            r#"{"server_port": 1, "method": "none", "password": ""}"#,
            "`server` is missing",
        ),
        (
            r#"{"server": "", "server_port": 1, "method": "none", "password": ""}"#,
            "`server` is empty",
        ),
        (
            r#"{"server": 7, "server_port": 1, "method": "none", "password": ""}"#,
            "`server` is a number, not a string",
        ),
        (
            r#"{"server": "h:8388", "server_port": 8388, "method": "none", "password": ""}"#,
            "`server` \"h:8388\" is neither a host name nor an IP address (the port goes in \
             `server_port`)",
        ),
        (
            r#"{"server": "h", "method": "none", "password": ""}"#,
            "`server_port` is missing",
        ),
        (
            r#"{"server": "h", "server_port": 70000, "method": "none", "password": ""}"#,
            "`server_port` 70000 is not a port number (1-65535)",
        ),
        (
            r#"{"server": "h", "server_port": 0, "method": "none", "password": ""}"#,
            "`server_port` 0 is not a port number (1-65535)",
        ),
        (
            r#"{"server": "h", "server_port": "x", "method": "none", "password": ""}"#,
            "`server_port` \"x\" is not a port number (1-65535)",
        ),
        (
            r#"{"server": "h", "server_port": [1], "method": "none", "password": ""}"#,
            "`server_port` is a list, not a port number",
        ),
        (
            r#"{"server": "h", "server_port": 1, "password": ""}"#,
            "`method` is missing",
        ),
        (
            r#"{"server": "h", "server_port": 1, "method": "none"}"#,
            "`password` is missing",
        ),
        (
            r#"{"server": "h", "server_port": 1, "method": "none", "password": 5}"#,
            "`password` is a number, not a string",
        ),
        (
            r#"{"server": "h", "server_port": 1, "method": "none", "password": "", "remarks": {}}"#,
            "`remarks` is an object, not a string",
        ),
        (
            r#"{"server": "a@evil.example", "server_port": 1, "method": "none", "password": ""}"#,
            "`server`: invalid host \"a@evil.example\"",
        ),
        (
            r#"{"server": "a#b", "server_port": 1, "method": "none", "password": ""}"#,
            "`server`: invalid host \"a#b\"",
        ),
        (
            r#"{"server": "h", "server_port": 1, "method": "aes-256-gcm:x", "password": "pw"}"#,
            "`method` \"aes-256-gcm:x\" is not a shadowsocks method",
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(
            server(object).map(|s| s.name),
            Err(expected.to_owned()),
            "{object}"
        );
    }
    // What the `ss://` checks refuse is refused the same way.
    let refused = server(r#"{"server": "h", "server_port": 1, "method": "rc2", "password": "x"}"#)
        .expect_err("sing-box has no rc2");
    assert!(
        refused.starts_with("unsupported shadowsocks method \"rc2\""),
        "{refused}"
    );
    let refused = server(
        r#"{"server": "h", "server_port": 1, "method": "aes-256-gcm", "password": "x", "plugin": "kcptun"}"#,
    )
    .expect_err("kcptun");
    assert!(refused.contains("`plugin=kcptun`"), "{refused}");
    let refused =
        server(r#"{"server": "a/b", "server_port": 1, "method": "none", "password": ""}"#)
            .expect_err("a host with a slash");
    assert!(refused.contains("invalid host"), "{refused}");
}

#[test]
fn servers_come_one_by_one_with_their_positions_and_bad_ones_do_not_stop_the_rest() {
    let document = r#"{"servers": [
        {"server": "a", "server_port": 1, "method": "none", "password": ""},
        "not an object",
        {"server": "b", "server_port": 2, "method": "none", "password": ""},
        null
    ], "version": 1}"#;
    let found = entries(document).expect("a SIP008 document");
    let summary: Vec<_> = found
        .iter()
        .map(|(n, link)| {
            (
                *n,
                link.as_ref().map(|l| parse_uri(l).expect("converts").host),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, Ok("a".to_owned())),
            (2, Err(&"not a server object but a string".to_owned())),
            (3, Ok("b".to_owned())),
            (4, Err(&"not a server object but null".to_owned())),
        ]
    );
}

#[test]
fn documents_that_are_not_sip008_are_refused_with_the_reason_and_where() {
    assert_eq!(
        entries(r#"{"version": 2, "servers": []}"#),
        Err("SIP008 version 2 is not supported (version 1 is) at line 1 column 25".to_owned())
    );
    assert_eq!(
        entries(r#"{"version": 1}"#),
        Err("no `servers` list (a SIP008 document has one)".to_owned())
    );
    assert_eq!(
        entries(r#"{"version": "1", "servers": []}"#),
        Err(
            "`version` \"1\" is not a version number (SIP008 documents say 1) at line 1 column 16"
                .to_owned()
        )
    );
    assert_eq!(
        entries(r#"{"servers": {"a": 1}}"#),
        Err(
            "invalid type: map, expected `servers` as a list of server objects at line 1 column 13"
                .to_owned()
        )
    );
    assert_eq!(
        entries(r#"{"servers": [], "servers": []}"#),
        Err("`servers` appears twice at line 1 column 26".to_owned())
    );
    assert_eq!(
        entries("{\"servers\": [\n  {\"server\": \"a\",}\n]}"),
        Err("key must be a string at line 2 column 18".to_owned())
    );
    assert_eq!(
        entries(r#"{"servers": []} {}"#),
        Err("trailing characters at line 1 column 17".to_owned())
    );
    assert_eq!(
        entries(r#"[{"servers": []}]"#),
        Err("invalid type: sequence, expected a SIP008 document (a JSON object with a `servers` list) at line 1 column 1".to_owned())
    );
}

#[test]
fn a_bad_string_drops_its_server_only() {
    // A lone UTF-16 surrogate: what `JSON.stringify` writes for an emoji
    // cut in half.
    let document = r#"{"servers": [
        {"server": "a", "server_port": 1, "method": "none", "password": "", "remarks": "\ud83c Tokyo"},
        {"server": "b", "server_port": 1, "method": "none", "password": ""}
    ]}"#;
    let found = entries(document).expect("the document is read");
    assert_eq!(found.len(), 2);
    let first = found[0]
        .1
        .as_ref()
        .expect_err("the first server is dropped");
    assert!(first.starts_with("not valid JSON: "), "{first}");
    assert!(!first.contains(" at line "), "{first}");
    assert!(found[1].1.is_ok(), "{:?}", found[1]);
}

#[test]
fn a_server_past_its_bound_fails_the_document_and_says_which() {
    let big = format!(
        r#"{{"servers": [{{"server": "a", "server_port": 1, "method": "none", "password": ""}},
            {{"server": "b", "x": "{}"}}]}}"#,
        "y".repeat(MAX_SERVER_BYTES as usize)
    );
    let mut seen = Vec::new();
    let err = each_server(big.as_bytes(), &mut |n, _| seen.push(n)).expect_err("too large");
    assert!(
        matches!(&err, Sip008Error::Format(m) if m.starts_with("server 2 is larger than 1048576 bytes")),
        "{err:?}"
    );
    assert_eq!(seen, [1], "the first server was handed out before");
    // Just under the bound is fine.
    let fits = format!(
        r#"{{"servers": [{{"server": "b", "server_port": 1, "method": "none", "password": "", "x": "{}"}}]}}"#,
        "y".repeat(MAX_SERVER_BYTES as usize - 200)
    );
    assert_eq!(entries(&fits).expect("fits").len(), 1);
}

#[test]
fn a_version_before_the_servers_is_checked_before_them() {
    let mut seen = 0;
    let err = each_server(
        r#"{"version": 2, "servers": [{"server": "a"}]}"#.as_bytes(),
        &mut |_, _| seen += 1,
    )
    .expect_err("version 2");
    assert!(
        matches!(err, Sip008Error::Format(m) if m.starts_with("SIP008 version 2 is not supported"))
    );
    assert_eq!(seen, 0, "no server of a refused document is handed out");
}
