//! The access-log line, pinned: the JSON field order of SPEC §8 and the human format.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use anygate_obs::access::{FieldSink, Format, Record, Tls, write};

fn no_headers(_: &mut FieldSink<'_>) {}

fn some_headers(f: &mut FieldSink<'_>) {
    f(b"authorization", b"Bearer abc");
    f(b"cookie", b"session=s1; theme=dark");
    f(b"x-tenant", b"acme");
}

fn record(headers: &dyn for<'s> Fn(&mut FieldSink<'s>)) -> Record<'_> {
    Record {
        ts: anygate_obs::time::unix_nanos(UNIX_EPOCH + Duration::new(1_796_240_400, 123_456_789)),
        trace_id: Some([0x4b; 16]),
        span_id: Some([0x0f; 8]),
        route: Some("GET /api/*"),
        action: Some("proxy"),
        method: b"GET",
        host: Some(b"example.com"),
        path: b"/api/users/7",
        query: Some(b"page=2&access_token=abc"),
        status: 502,
        duration: Some(Duration::from_micros(12_345)),
        bytes_rx: 78,
        bytes_tx: 190,
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
        user_agent: Some(b"curl/8.5 \"x\""),
        upstream: Some(SocketAddr::from(([10, 0, 0, 1], 9000))),
        attempt: 1,
        code: Some("AG-UPS-5020"),
        tls: Some(Tls {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            sni: Some("example.com"),
            resumed: false,
        }),
        spa_fallback: false,
        headers,
    }
}

fn line(format: Format, r: &Record<'_>) -> String {
    let mut out = Vec::new();
    write(&mut out, format, r);
    String::from_utf8(out).unwrap()
}

#[test]
fn golden_json_line() {
    let expected = concat!(
        r#"{"ts":"2026-12-02T19:40:00.123456789Z","level":"error","#,
        r#""trace_id":"4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b","span_id":"0f0f0f0f0f0f0f0f","#,
        r#""route":"GET /api/*","action":"proxy","method":"GET","host":"example.com","#,
        r#""path":"/api/users/7","query":"page=2&access_token=***","status":502,"#,
        r#""duration_ms":12.345,"bytes_rx":78,"bytes_tx":190,"client_ip":"203.0.113.9","#,
        r#""user_agent":"curl/8.5 \"x\"","upstream":"10.0.0.1:9000","attempt":1,"#,
        r#""code":"AG-UPS-5020","tls":{"version":"TLSv1.3","cipher":"TLS13_AES_128_GCM_SHA256","#,
        r#""sni":"example.com","resumed":false}}"#,
        "\n"
    );
    assert_eq!(line(Format::Json, &record(&no_headers)), expected);
}

#[test]
fn golden_json_line_of_a_bare_request() {
    let mut r = record(&no_headers);
    r.trace_id = None;
    r.span_id = None;
    r.route = None;
    r.action = None;
    r.host = None;
    r.query = None;
    r.status = 404;
    r.duration = None;
    r.client_ip = None;
    r.user_agent = None;
    r.upstream = None;
    r.attempt = 0;
    r.code = Some("AG-RTE-4040");
    r.tls = None;
    r.spa_fallback = true;
    let expected = concat!(
        r#"{"ts":"2026-12-02T19:40:00.123456789Z","level":"warn","trace_id":null,"span_id":null,"#,
        r#""route":null,"action":null,"method":"GET","host":null,"path":"/api/users/7","#,
        r#""query":null,"status":404,"duration_ms":null,"bytes_rx":78,"bytes_tx":190,"#,
        r#""client_ip":null,"user_agent":null,"upstream":null,"attempt":0,"#,
        r#""code":"AG-RTE-4040","spa_fallback":true}"#,
        "\n"
    );
    assert_eq!(line(Format::Json, &r), expected);
}

#[test]
fn golden_json_line_with_logged_headers_masks_secrets() {
    let l = line(Format::Json, &record(&some_headers));
    assert!(
        l.trim_end().ends_with(
            r#""headers":{"authorization":"***","cookie":"session=***; theme=***","x-tenant":"acme"}}"#
        ),
        "{l}"
    );
    assert!(!l.contains("abc") && !l.contains("s1"), "{l}");
}

#[test]
fn golden_text_line() {
    let expected = concat!(
        r#"2026-12-02T19:40:00.123456789Z 203.0.113.9 "GET /api/users/7?page=2&access_token=***" 502 190B 12.345ms"#,
        r#" route="GET /api/*" action=proxy host="example.com" ua="curl/8.5 \"x\"" rx=78"#,
        r#" upstream=10.0.0.1:9000 attempt=1 code=AG-UPS-5020 tls=TLSv1.3"#,
        r#" trace=4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b"#,
        "\n"
    );
    assert_eq!(line(Format::Text, &record(&no_headers)), expected);
}

#[test]
fn a_hostile_path_cannot_forge_a_line() {
    let mut r = record(&no_headers);
    r.path = b"/x\n{\"forged\":1}\xff";
    let json = line(Format::Json, &r);
    assert_eq!(json.matches('\n').count(), 1);
    assert!(
        json.contains(r#""path":"/x\n{\"forged\":1}\ufffd""#),
        "{json}"
    );
    let text = line(Format::Text, &r);
    assert_eq!(text.matches('\n').count(), 1);
    assert!(text.contains(r#"/x\x0a{\"forged\":1}\xff"#), "{text}");
}

#[test]
fn regression_a_huge_hostile_field_is_cut_so_the_log_queue_stays_bounded() {
    let mut r = record(&no_headers);
    let agent = vec![0xffu8; 60_000];
    let path = vec![b'a'; 60_000];
    r.user_agent = Some(&agent);
    r.path = &path;
    let json = line(Format::Json, &r);
    assert!(
        json.len() < 4 * anygate_obs::access::MAX_FIELD * 6 + 1024,
        "{}",
        json.len()
    );
    let v: Vec<&str> = json.matches("…").collect();
    assert_eq!(v.len(), 2, "both fields end with the cut mark");
    let text = line(Format::Text, &r);
    assert!(text.len() < 4 * anygate_obs::access::MAX_FIELD * 4 + 1024);
}
