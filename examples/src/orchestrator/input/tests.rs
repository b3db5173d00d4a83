use super::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

fn decode(text: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Base64Decoder::new(text.as_bytes()).read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn base64_in_any_alphabet_padding_and_layout() {
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let padded = STANDARD.encode(&data);
    let wrapped: String = padded
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect();
    for text in [
        padded.clone(),
        padded.trim_end_matches('=').to_owned(),
        URL_SAFE_NO_PAD.encode(&data),
        wrapped,
    ] {
        assert_eq!(decode(&text).expect("decodes"), data);
    }
    // Padded pieces one after another.
    assert_eq!(decode("YQ==Yg==").expect("two pieces"), b"ab");
    assert!(decode("YWJj!").is_err());
    assert!(decode("YWJjZ").is_err(), "one dangling character");
}

/// The lines `read_lines` hands out for a file holding `bytes`.
fn lines_of(bytes: &[u8]) -> (Format, Vec<String>) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, bytes).expect("write");
    let mut lines = Vec::new();
    let fetched = read_lines(file.path(), 1 << 20, |_, line| {
        lines.push(line.expect("a usable line").to_owned());
    })
    .expect("readable");
    (fetched.format, lines)
}

#[test]
fn a_byte_order_mark_is_dropped_before_or_inside_the_base64() {
    let list = "trojan://pw@example.com:443#A\nss://YWVzLTEyOC1nY206cHc@example.com:8388#B\n";
    let expected = [
        "trojan://pw@example.com:443#A",
        "ss://YWVzLTEyOC1nY206cHc@example.com:8388#B",
    ];
    let with_bom = format!("\u{feff}{list}");
    for (bytes, format) in [
        (with_bom.clone().into_bytes(), Format::Plain),
        (
            format!("\u{feff}{}", STANDARD.encode(list)).into_bytes(),
            Format::Base64,
        ),
        (STANDARD.encode(&with_bom).into_bytes(), Format::Base64),
        (
            format!("\u{feff}{}", STANDARD.encode(&with_bom)).into_bytes(),
            Format::Base64,
        ),
    ] {
        assert_eq!(
            lines_of(&bytes),
            (format, expected.map(String::from).to_vec())
        );
    }
}
#[test]
fn a_sip008_document_hands_out_its_servers_as_links() {
    let document = "\u{feff}{\"version\": 1, \"servers\": [\n\
        {\"server\": \"a.example\", \"server_port\": 1, \"method\": \"none\", \"password\": \"\"},\n\
        {\"server\": \"b.example\"}]}";
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, document.as_bytes()).expect("write");
    let mut entries = Vec::new();
    let fetched = read_lines(file.path(), 1 << 20, |at, link| {
        entries.push((at, link.map(str::to_owned)));
    })
    .expect("a SIP008 document, after its byte order mark");
    assert_eq!(fetched.format, Format::Sip008);
    assert_eq!(fetched.bytes, document.len() as u64);
    assert_eq!(
        entries,
        [
            (Entry::Server(1), Ok("ss://none:@a.example:1/".to_owned())),
            (Entry::Server(2), Err("`server_port` is missing".to_owned())),
        ]
    );
    assert_eq!(Entry::Server(2).to_string(), "server 2");
    // The size cap holds while the document streams in.
    let err = read_lines(file.path(), 40, |_, _| {}).expect_err("over 40 bytes");
    assert_eq!(err.kind, "too_large");
}

#[test]
fn json_is_sip008_only_with_servers_and_without_a_client_configuration() {
    let kind = |text: &str| {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        read_lines(file.path(), 1 << 20, |_, _| {})
            .map_or_else(|e| e.message, |f| f.format.as_str().to_owned())
    };
    assert_eq!(kind("{\"servers\": []}"), "sip008");
    // Words in values are not keys.
    assert_eq!(
        kind("{\"servers\": [{\"remarks\": \"route\", \"plugin_opts\": \"outbounds\"}]}"),
        "sip008"
    );
    // A sing-box configuration with DNS servers is not taken for SIP008.
    assert!(
        kind("{\"dns\": {\"servers\": []}, \"route\": {\"rules\": []}}")
            .contains("a sing-box JSON configuration")
    );
    assert!(kind("{\"outbounds\": [], \"servers\": []}").contains("a sing-box JSON configuration"));
    assert!(kind("[{\"servers\": []}]").contains("neither a SIP008 document"));
    assert!(kind("{\"nodes\": []}").contains("neither a SIP008 document"));
    assert!(
        kind("{\"servers\": [}").starts_with(
            "the subscription is not a usable SIP008 document: expected value at line 1 column 14"
        ),
        "{}",
        kind("{\"servers\": [}")
    );
}
