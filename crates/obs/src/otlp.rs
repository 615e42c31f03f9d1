//! Span export: OTLP/HTTP with the JSON encoding, in batches, from a side thread.
//!
//! ```text
//! worker ─ finish ─ submit(Trace) ─► [bounded queue] ─► exporter thread ─ POST /v1/traces ─► collector
//! ```
//!
//! - [`submit`] never waits: a full queue drops the trace and counts it.
//! - The exporter wakes every 500 ms (or when the queue is a quarter full), takes up to 512
//!   traces, encodes one `ExportTraceServiceRequest` as JSON and posts it over a fresh
//!   HTTP/1.1 connection (`Connection: close`; connect 2 s, I/O 5 s). A failed post is
//!   counted and its traces dropped: a collector that is down never builds a backlog here.
//! - `http://` endpoints only (no TLS client on this path yet): a collector or an agent
//!   on the host or the cluster network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;

/// Traces the queue holds.
const CAPACITY: usize = 4096;
/// Traces per export request.
const BATCH: usize = 512;

/// A span's kind (OTLP's `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Work inside the gateway.
    Internal = 1,
    /// The request the gateway serves.
    Server = 2,
    /// A request the gateway makes (upstream).
    Client = 3,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// A string.
    Str(Box<str>),
    /// An integer.
    Int(i64),
}

/// One finished span.
#[derive(Clone, Debug)]
pub struct Span {
    /// `server.request`, `router.match`, …
    pub name: &'static str,
    /// Its id.
    pub span_id: [u8; 8],
    /// Its parent, if any.
    pub parent: Option<[u8; 8]>,
    /// Server, client or internal.
    pub kind: Kind,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds.
    pub end_ns: u64,
    /// Attributes.
    pub attrs: Vec<(&'static str, Attr)>,
    /// The span failed (OTLP status `ERROR`).
    pub error: bool,
}

/// The spans of one request.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// Its spans.
    pub spans: Vec<Span>,
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, for the connection and the `Host` field.
    pub authority: String,
    /// The request path (`/v1/traces`).
    pub path: String,
    /// `service.name` of the resource.
    pub service: String,
}

struct Shared {
    queue: ArrayQueue<Trace>,
    endpoint: ArcSwapOption<Endpoint>,
    dropped: AtomicU64,
    exported: AtomicU64,
    failures: AtomicU64,
    idle: AtomicBool,
    thread: OnceLock<Thread>,
}

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let s: &'static Shared = Box::leak(Box::new(Shared {
            queue: ArrayQueue::new(CAPACITY),
            endpoint: ArcSwapOption::empty(),
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            thread: OnceLock::new(),
        }));
        match anygate_runtime::signal::spawn_side_thread("anygate-otlp", move || run(s)) {
            Ok(h) => {
                let _ = s.thread.set(h.thread().clone());
            }
            Err(e) => crate::log::server(
                crate::log::Level::Error,
                &format!("cannot start the span exporter: {e}; spans are dropped"),
            ),
        }
        s
    })
}

/// Sets (or clears) where spans are exported; starts the exporter the first time one is
/// set.
pub fn configure(endpoint: Option<Endpoint>) {
    match endpoint {
        Some(e) => shared().endpoint.store(Some(Arc::new(e))),
        None => {
            if let Some(s) = SHARED.get() {
                s.endpoint.store(None);
            }
        }
    }
}

/// Queues one request's spans for export; drops and counts them when the queue is full
/// or no endpoint is configured.
pub fn submit(trace: Trace) {
    let Some(s) = SHARED.get() else {
        return;
    };
    if s.endpoint.load().is_none() {
        return;
    }
    if s.queue.push(trace).is_err() {
        s.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SeqCst against the exporter's SeqCst store of `idle` (and the queue's SeqCst push
    // and emptiness check): either it sees this trace, or this sees it idle.
    if (s.idle.load(Ordering::SeqCst) || s.queue.len() >= CAPACITY / 4)
        && s.idle.swap(false, Ordering::SeqCst)
        && let Some(t) = s.thread.get()
    {
        t.unpark();
    }
}

/// Spans exported, traces dropped (queue full or export failed), failed export requests.
pub fn stats() -> (u64, u64, u64) {
    SHARED.get().map_or((0, 0, 0), |s| {
        (
            s.exported.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed),
        )
    })
}

fn run(s: &'static Shared) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        while batch.len() < BATCH
            && let Some(t) = s.queue.pop()
        {
            batch.push(t);
        }
        if batch.is_empty() {
            s.idle.store(true, Ordering::SeqCst);
            if s.queue.is_empty() {
                std::thread::park_timeout(Duration::from_millis(500));
            }
            s.idle.store(false, Ordering::Release);
            continue;
        }
        let Some(endpoint) = s.endpoint.load_full() else {
            batch.clear();
            continue;
        };
        let spans: u64 = batch.iter().map(|t| t.spans.len() as u64).sum();
        let body = encode(&endpoint.service, &batch);
        let n = batch.len() as u64;
        batch.clear();
        match post(&endpoint, &body) {
            Ok(()) => {
                s.exported.fetch_add(spans, Ordering::Relaxed);
            }
            Err(e) => {
                s.dropped.fetch_add(n, Ordering::Relaxed);
                if s.failures
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(100)
                {
                    crate::log::server(
                        crate::log::Level::Warn,
                        &format!(
                            "span export to http://{}{} failed: {e}; {n} traces dropped",
                            endpoint.authority, endpoint.path
                        ),
                    );
                }
            }
        }
        // Let the next batch gather.
        std::thread::park_timeout(Duration::from_millis(200));
    }
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding (ids in hex, times and
/// integers as decimal strings), written straight into the body: no value tree, one
/// allocation per batch.
pub fn encode(service: &str, traces: &[Trace]) -> Vec<u8> {
    use crate::escape::{hex, json_str, num};
    let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
    let mut out = Vec::with_capacity(256 + spans * 400);
    out.extend_from_slice(
        br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"#,
    );
    json_str(&mut out, service.as_bytes());
    out.extend_from_slice(br#"}}]},"scopeSpans":[{"scope":{"name":"anygate","version":"#);
    json_str(&mut out, env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(br#"},"spans":["#);
    let mut first = true;
    for t in traces {
        for s in &t.spans {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(br#"{"traceId":""#);
            hex(&mut out, &t.trace_id);
            out.extend_from_slice(br#"","spanId":""#);
            hex(&mut out, &s.span_id);
            if let Some(p) = s.parent {
                out.extend_from_slice(br#"","parentSpanId":""#);
                hex(&mut out, &p);
            }
            out.extend_from_slice(br#"","name":"#);
            json_str(&mut out, s.name.as_bytes());
            out.extend_from_slice(br#","kind":"#);
            num(&mut out, s.kind as u64);
            out.extend_from_slice(br#","startTimeUnixNano":""#);
            num(&mut out, s.start_ns);
            out.extend_from_slice(br#"","endTimeUnixNano":""#);
            num(&mut out, s.end_ns);
            out.extend_from_slice(br#"","attributes":["#);
            for (i, (k, v)) in s.attrs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"key":"#);
                json_str(&mut out, k.as_bytes());
                match v {
                    Attr::Str(v) => {
                        out.extend_from_slice(br#","value":{"stringValue":"#);
                        json_str(&mut out, v.as_bytes());
                        out.extend_from_slice(b"}}");
                    }
                    Attr::Int(v) => {
                        out.extend_from_slice(br#","value":{"intValue":""#);
                        if *v < 0 {
                            out.push(b'-');
                        }
                        num(&mut out, v.unsigned_abs());
                        out.extend_from_slice(br#""}}"#);
                    }
                }
            }
            out.extend_from_slice(br#"],"status":{"code":"#);
            out.push(if s.error { b'2' } else { b'0' });
            out.extend_from_slice(b"}}");
        }
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

fn post(endpoint: &Endpoint, body: &[u8]) -> std::io::Result<()> {
    let addr = endpoint
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the endpoint's host has no address"))?;
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nuser-agent: anygate/{}\r\nconnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut status = [0u8; 12];
    conn.read_exact(&mut status)?;
    match &status[9..10] {
        b"2" => Ok(()),
        _ => Err(std::io::Error::other(format!(
            "the collector answered {}",
            String::from_utf8_lossy(&status[9..12])
        ))),
    }
}

/// Unix nanoseconds of `t`.
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_valid_otlp_json_with_every_field() {
        let trace = Trace {
            trace_id: [0xab; 16],
            spans: vec![
                Span {
                    name: "server.request",
                    span_id: [1; 8],
                    parent: None,
                    kind: Kind::Server,
                    start_ns: 1_700_000_000_000_000_000,
                    end_ns: 1_700_000_000_000_500_000,
                    attrs: vec![
                        ("url.path", Attr::Str("/a\"q\"\n".into())),
                        ("http.response.status_code", Attr::Int(502)),
                        ("neg", Attr::Int(-7)),
                    ],
                    error: true,
                },
                Span {
                    name: "router.match",
                    span_id: [2; 8],
                    parent: Some([1; 8]),
                    kind: Kind::Internal,
                    start_ns: 5,
                    end_ns: 6,
                    attrs: Vec::new(),
                    error: false,
                },
            ],
        };
        let body = encode("edge \"1\"", &[trace.clone(), trace]);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            serde_json::json!({"key": "service.name", "value": {"stringValue": "edge \"1\""}})
        );
        let scope = &rs["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "anygate");
        let spans = scope["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 4);
        let s = &spans[0];
        assert_eq!(s["traceId"], "ab".repeat(16));
        assert_eq!(s["spanId"], "0101010101010101");
        assert!(s.get("parentSpanId").is_none());
        assert_eq!(s["name"], "server.request");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["endTimeUnixNano"], "1700000000000500000");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(
            s["attributes"],
            serde_json::json!([
                {"key": "url.path", "value": {"stringValue": "/a\"q\"\n"}},
                {"key": "http.response.status_code", "value": {"intValue": "502"}},
                {"key": "neg", "value": {"intValue": "-7"}},
            ])
        );
        assert_eq!(spans[1]["parentSpanId"], "0101010101010101");
        assert_eq!(spans[1]["attributes"], serde_json::json!([]));
        assert_eq!(spans[1]["status"]["code"], 0);
    }
}
