//! The body of the `log_line` fuzz target, shared with `cargo test`
//! (`crates/obs/tests/fuzz_corpus.rs` replays the corpus through it).

/// Input: any bytes, split at `\n` into a path, a query, a user agent, a `traceparent` and
/// a header value. Whatever they hold, the JSON access line is one line of valid JSON whose
/// fields say what went in (with secrets masked), the human line is one line of printable
/// ASCII, and `traceparent` parses without panicking and writes back as it read.
pub fn log_line(data: &[u8]) {
    use anygate_obs::access::{FieldSink, Format, Record, write};
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let path = parts.next().unwrap_or_default();
    let query = parts.next();
    let agent = parts.next();
    let traceparent = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    if let Some(p) = anygate_obs::trace::parse_traceparent(traceparent) {
        let mut out = Vec::new();
        anygate_obs::trace::write_traceparent(&mut out, &p.trace_id, &p.span_id, p.flags & 1 == 1);
        let again = anygate_obs::trace::parse_traceparent(&out).expect("what was written parses");
        assert_eq!((again.trace_id, again.span_id), (p.trace_id, p.span_id));
    }
    let headers = |f: &mut FieldSink<'_>| {
        f(b"cookie", header);
        f(b"x-tenant", header);
    };
    let record = Record {
        ts: 0,
        trace_id: None,
        span_id: None,
        route: Some("GET /"),
        action: Some("fixed"),
        method: b"GET",
        host: agent,
        path,
        query,
        status: 200,
        duration: None,
        bytes_rx: data.len() as u64,
        bytes_tx: 0,
        client_ip: None,
        user_agent: agent,
        upstream: None,
        attempt: 0,
        code: None,
        tls: None,
        spa_fallback: false,
        headers: &headers,
    };
    let mut json = Vec::new();
    write(&mut json, Format::Json, &record);
    assert_eq!(json.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(json.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&json).expect("the line is JSON");
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let max = anygate_obs::access::MAX_FIELD;
    if path.len() <= max {
        assert_eq!(v["path"].as_str().unwrap(), lossy(path));
    }
    if header.len() <= max {
        assert_eq!(v["headers"]["x-tenant"].as_str().unwrap(), lossy(header));
    }
    if let Some(q) = query.filter(|q| q.len() <= max) {
        let logged = v["query"].as_str().unwrap().to_owned();
        for pair in q.split(|&b| b == b'&') {
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                let (name, value) = (&pair[..eq], &pair[eq + 1..]);
                if anygate_obs::redact::is_secret(name) && !value.is_empty() {
                    let masked = format!("{}=***", lossy(name));
                    assert!(logged.contains(&masked), "{logged} lacks {masked}");
                }
            }
        }
    }
    let mut text = Vec::new();
    write(&mut text, Format::Text, &record);
    let (last, line) = text.split_last().unwrap();
    assert_eq!(*last, b'\n');
    assert!(
        line.iter().all(|&b| (0x20..0x7f).contains(&b)),
        "{}",
        lossy(line)
    );
}
