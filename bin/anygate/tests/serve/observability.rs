//! Observability on the wire: the `log` filter's lines (to a file, masked, sampled,
//! reopened on `SIGUSR1`), the admin listener (`/metrics` counted exactly and checked by
//! `promtool`, `/ready`, `/routes`, `/debug/runtime`, `POST /reload`), the JSON server log,
//! and a stalled log pipe that must not slow requests.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::http::{LIMIT, Reader, Resp, connect, one};
use crate::proxy::{reply, upstream};
use crate::support::{Gateway, TempDir, spawn_serve};

const TOKEN: &str = "test-admin-token-0123456789";

fn get(addr: SocketAddr, target: &str, fields: &str) -> Resp {
    one(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: gw.test\r\n{fields}\r\n").as_bytes(),
    )
}

fn admin(gw: &Gateway) -> SocketAddr {
    gw.admin.expect("the admin listener's address")
}

fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics", "");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body_str()
}

/// The value of the sample `line` (name and labels, exactly) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// Reads `path` until it holds `n` lines (the writer thread writes within milliseconds;
/// this waits for it, bounded).
#[expect(
    clippy::disallowed_methods,
    reason = "a test's deadline, on the real clock"
)]
pub(crate) fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::yield_now();
    }
}

fn post_reload(addr: SocketAddr, auth: Option<&str>) -> Resp {
    let field = auth.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    one(
        addr,
        format!("POST /reload HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n{field}\r\n")
            .as_bytes(),
    )
}

fn json(resp: &Resp) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.body_str()))
}

#[test]
fn the_access_log_writes_json_lines_to_a_file_with_secrets_masked() {
    let dir = TempDir::new("access-log");
    std::fs::create_dir(dir.0.join("site")).unwrap();
    std::fs::write(dir.0.join("site/index.html"), "<p>spa</p>").unwrap();
    let gw = Gateway::start_in(
        &dir,
        r#"
server: { listen: "127.0.0.1:0" }
plugins:
  - kind: log
    args: { to: access.log, headers: [authorization, cookie, x-tenant] }
groups:
  - prefix: /app
    static: { spa: true }
    routes: { "/": "./site/" }
routes:
  "GET /api/users/:id": 'OK {"a":1}'
"#,
    );
    let r = get(
        gw.addr,
        "/api/users/7?page=2&access_token=abc",
        "authorization: Bearer sekrit\r\ncookie: session=s3cr3t; theme=dark\r\nx-tenant: acme\r\nuser-agent: t/1\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(gw.addr, "/nope", "").status, 404);
    assert_eq!(get(gw.addr, "/app/deep/link", "").status, 200);
    assert_eq!(
        one(gw.addr, b"GET /x HTTP/1.1\r\nhost: t\r\nno colon\r\n\r\n").status,
        400
    );
    let lines = lines_of(&dir.0.join("access.log"), 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    // Each worker hands its own batch of lines to the writer: across workers the file's
    // order is the order the batches left, not always the requests' (regression: a full
    // CI run found the 400's line before the SPA one). Each line is picked by what it is.
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pick = |what: &str, is: &dyn Fn(&serde_json::Value) -> bool| -> usize {
        values
            .iter()
            .position(is)
            .unwrap_or_else(|| panic!("no line for {what}: {lines:?}"))
    };
    let i_first = pick("/api/users/7", &|v| v["path"] == "/api/users/7");
    let i_second = pick("the 404", &|v| v["status"] == 404);
    let i_third = pick("the SPA", &|v| v["path"] == "/app/deep/link");
    let i_fourth = pick("the 400", &|v| v["status"] == 400);
    let first = values[i_first].clone();
    // The fields in the SPEC's order, then the logged headers.
    let order = [
        "ts",
        "level",
        "trace_id",
        "span_id",
        "route",
        "action",
        "method",
        "host",
        "path",
        "query",
        "status",
        "duration_ms",
        "bytes_rx",
        "bytes_tx",
        "client_ip",
        "user_agent",
        "upstream",
        "attempt",
        "code",
        "headers",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| {
            lines[i_first]
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", lines[i_first]);
    assert_eq!(first.as_object().unwrap().len(), order.len());
    assert_eq!(first["route"], "GET /api/users/:id");
    assert_eq!(first["action"], "fixed");
    assert_eq!(first["path"], "/api/users/7");
    assert_eq!(first["query"], "page=2&access_token=***");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["user_agent"], "t/1");
    assert_eq!(first["headers"]["authorization"], "***");
    assert_eq!(first["headers"]["cookie"], "session=***; theme=***");
    assert_eq!(first["headers"]["x-tenant"], "acme");
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(first["bytes_tx"].as_u64().unwrap() > 0);
    for l in &lines {
        assert!(
            !l.contains("abc") && !l.contains("sekrit") && !l.contains("s3cr3t"),
            "{l}"
        );
    }
    let second = &values[i_second];
    assert_eq!(second["status"], 404);
    assert_eq!(second["level"], "warn");
    assert_eq!(second["code"], "AG-RTE-4040");
    assert_eq!(second["route"], serde_json::Value::Null);
    assert_eq!(second.get("spa_fallback"), None);
    let third = &values[i_third];
    assert_eq!(third["action"], "static");
    assert_eq!(third["spa_fallback"], true, "{}", lines[i_third]);
    // Refused by the driver: logged with what is known (no method or path: unparsed).
    let fourth = &values[i_fourth];
    assert_eq!(fourth["status"], 400, "{}", lines[i_fourth]);
    assert_eq!(fourth["code"], "AG-HTTP-4000");
    assert_eq!(fourth["client_ip"], "127.0.0.1");
    assert!(fourth["bytes_tx"].as_u64().unwrap() > 0);
}

#[test]
fn sampling_keeps_every_error_and_a_share_of_the_rest() {
    let dir = TempDir::new("sample");
    let gw = Gateway::start_in(
        &dir,
        r#"
server: { listen: "127.0.0.1:0" }
plugins:
  - kind: log
    args: { to: none.log, sample: 0, format: text }
groups:
  - prefix: /half
    plugins: [{ kind: log, args: { to: half.log, sample: 0.5 } }]
    routes: { "/": "OK" }
routes:
  "/ok": "OK"
"#,
    );
    let mut r = Reader::new(connect(gw.addr));
    for i in 0..60 {
        let target = if i % 3 == 0 { "/missing" } else { "/ok" };
        r.send(format!("GET {target} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes());
        let resp = r.response(false).unwrap();
        assert_eq!(resp.status, if i % 3 == 0 { 404 } else { 200 });
    }
    for _ in 0..400 {
        r.send(b"GET /half/ HTTP/1.1\r\nhost: t\r\n\r\n");
        assert_eq!(r.response(false).unwrap().status, 200);
    }
    // sample: 0 keeps exactly the 20 errors; their text lines say 404.
    let none = lines_of(&dir.0.join("none.log"), 20 + 200);
    let errors = none
        .iter()
        .filter(|l| l.contains("\"GET /missing\" 404 "))
        .count();
    // The /half requests go through the global `log` too (sample 0, no errors there).
    assert_eq!((none.len(), errors), (20, 20), "{none:?}");
    // sample: 0.5 over 400: binomial, σ = 10; ±80 is eight σ.
    let half = lines_of(&dir.0.join("half.log"), 400).len();
    assert!((120..=280).contains(&half), "{half} of 400 kept");
}

#[test]
fn sigusr1_reopens_the_log_file_after_a_rotation() {
    let dir = TempDir::new("reopen");
    let gw = Gateway::start_in(
        &dir,
        r#"
server: { listen: "127.0.0.1:0" }
plugins: [{ kind: log, args: { to: access.log } }]
routes: { "/": "OK" }
"#,
    );
    let log = dir.0.join("access.log");
    assert_eq!(get(gw.addr, "/before", "").status, 200);
    assert_eq!(lines_of(&log, 1).len(), 1);
    std::fs::rename(&log, dir.0.join("access.log.1")).unwrap();
    gw.signal("USR1");
    gw.wait_line("log files reopened");
    assert_eq!(get(gw.addr, "/after", "").status, 200);
    let fresh = lines_of(&log, 1);
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0].contains("\"/after\""), "{fresh:?}");
    let rotated = std::fs::read_to_string(dir.0.join("access.log.1")).unwrap();
    assert_eq!(rotated.lines().count(), 1, "{rotated}");
    assert!(rotated.contains("\"/before\""));
}

#[test]
fn metrics_count_a_scripted_request_mix_exactly_and_promtool_accepts_them() {
    let up = upstream(|_, s| reply(s, "", b"up"));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap();
    drop(closed);
    let site = TempDir::new("metrics-static");
    std::fs::write(site.0.join("index.html"), "<!doctype html><p>spa</p>").unwrap();
    std::fs::write(site.0.join("app.js"), "console.log('app');\n".repeat(100)).unwrap();
    std::fs::write(site.0.join("app.js.gz"), b"GZ-BYTES").unwrap();
    // One worker: the file cache (hit or miss) and the upstream pool are per worker.
    let gw = Gateway::start(&format!(
        r#"
server: {{ listen: "127.0.0.1:0", workers: 1 }}
admin: {{ listen: "127.0.0.1:0" }}
groups:
  - prefix: /limited
    plugins: [{{ kind: rate_limit, args: {{ rate: 0.001, burst: 2 }} }}]
    routes: {{ "/": "OK" }}
  - prefix: /site
    static: {{ spa: true }}
    routes: {{ "/": "{}/" }}
routes:
  "GET /a": "OK"
  "/echo": "*"
  "/up/": "http://{}/"
  "/down/": "http://{refused}/"
"#,
        site.0.display(),
        up.addr
    ));
    let mut r = Reader::new(connect(gw.addr));
    let mut send = |raw: &str| {
        r.send(raw.as_bytes());
        r.response(raw.starts_with("HEAD")).unwrap().status
    };
    for _ in 0..5 {
        assert_eq!(send("GET /a HTTP/1.1\r\nhost: t\r\n\r\n"), 200);
    }
    assert_eq!(send("HEAD /a HTTP/1.1\r\nhost: t\r\n\r\n"), 200);
    for _ in 0..3 {
        assert_eq!(
            send("POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n"),
            405
        );
    }
    for _ in 0..2 {
        assert_eq!(send("GET /missing HTTP/1.1\r\nhost: t\r\n\r\n"), 404);
    }
    assert_eq!(
        send("PUT /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc"),
        200
    );
    for expected in [200, 200, 429, 429] {
        assert_eq!(send("GET /limited/ HTTP/1.1\r\nhost: t\r\n\r\n"), expected);
    }
    for _ in 0..3 {
        assert_eq!(send("GET /up/x HTTP/1.1\r\nhost: t\r\n\r\n"), 200);
    }
    assert_eq!(send("GET /down/x HTTP/1.1\r\nhost: t\r\n\r\n"), 502);
    // Static: a miss then hits, a 304, a range, a precompressed sibling, the SPA fallback.
    assert_eq!(send("GET /site/app.js HTTP/1.1\r\nhost: t\r\n\r\n"), 200);
    let etag = get(gw.addr, "/site/app.js", "")
        .header("etag")
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&format!(
            "GET /site/app.js HTTP/1.1\r\nhost: t\r\nif-none-match: {etag}\r\n\r\n"
        )),
        304
    );
    assert_eq!(
        send("GET /site/app.js HTTP/1.1\r\nhost: t\r\nrange: bytes=0-9\r\n\r\n"),
        206
    );
    assert_eq!(
        send("GET /site/app.js HTTP/1.1\r\nhost: t\r\naccept-encoding: gzip\r\n\r\n"),
        200
    );
    assert_eq!(send("GET /site/deep/link HTTP/1.1\r\nhost: t\r\n\r\n"), 200);
    drop(r);
    // Refused by the driver before routing: a malformed head, a body over the limit.
    assert_eq!(
        one(gw.addr, b"GET /a HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n").status,
        400
    );
    assert_eq!(
        one(
            gw.addr,
            b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 99999999999999\r\n\r\n"
        )
        .status,
        413
    );

    let text = scrape(admin(&gw));
    let requests = |route: &str, action: &str, method: &str, class: &str| {
        sample(
            &text,
            &format!(
                r#"anygate_http_requests_total{{route="{route}",action="{action}",method="{method}",status_class="{class}"}}"#
            ),
        )
    };
    assert_eq!(
        requests("GET /a", "fixed", "GET", "2xx"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        requests("GET /a", "fixed", "HEAD", "2xx"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(requests("unmatched", "none", "GET", "4xx"), Some(2.0));
    // The 400's method is unknown (its head did not parse); the 413's was parsed.
    assert_eq!(requests("unmatched", "none", "other", "4xx"), Some(1.0));
    assert_eq!(requests("unmatched", "none", "POST", "4xx"), Some(4.0));
    assert_eq!(requests("* /echo", "echo", "PUT", "2xx"), Some(1.0));
    assert_eq!(requests("* /limited/", "fixed", "GET", "2xx"), Some(2.0));
    assert_eq!(requests("* /limited/", "fixed", "GET", "4xx"), Some(2.0));
    assert_eq!(requests("* /up/", "proxy", "GET", "2xx"), Some(3.0));
    assert_eq!(requests("* /down/", "proxy", "GET", "5xx"), Some(1.0));
    assert_eq!(requests("* /site/", "static", "GET", "2xx"), Some(5.0));
    assert_eq!(requests("* /site/", "static", "GET", "3xx"), Some(1.0));
    let statics = |kind: &str| {
        sample(
            &text,
            &format!(r#"anygate_static_responses_total{{route="* /site/",kind="{kind}"}}"#),
        )
    };
    // app.js built once (its .gz sibling is part of its entry), index.html once.
    assert_eq!(statics("miss"), Some(2.0), "{text}");
    assert_eq!(statics("hit"), Some(4.0));
    assert_eq!(statics("not_modified"), Some(1.0));
    assert_eq!(statics("range"), Some(1.0));
    assert_eq!(statics("precompressed"), Some(1.0));
    assert_eq!(statics("spa_fallback"), Some(1.0));
    assert_eq!(statics("listing"), None);
    // Nothing else was counted.
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("anygate_http_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 28.0, "{text}");
    let hist = |suffix: &str, route: &str, action: &str, extra: &str| {
        sample(
            &text,
            &format!(
                r#"anygate_http_request_duration_seconds_{suffix}{{route="{route}",action="{action}"{extra}}}"#
            ),
        )
    };
    assert_eq!(hist("count", "GET /a", "fixed", ""), Some(6.0));
    assert_eq!(
        hist("bucket", "GET /a", "fixed", r#",le="+Inf""#),
        Some(6.0)
    );
    assert_eq!(hist("count", "* /limited/", "fixed", ""), Some(4.0));
    let up_name = format!("{}", up.addr);
    let upstream = |name: &str, result: &str| {
        sample(
            &text,
            &format!(r#"anygate_upstream_requests_total{{upstream="{name}",result="{result}"}}"#),
        )
    };
    assert_eq!(upstream(&up_name, "ok"), Some(3.0));
    assert_eq!(upstream(&refused.to_string(), "refused"), Some(1.0));
    // One connect per connection the upstream accepted; they all rest in the pool now.
    let accepted = up.accepted.load(std::sync::atomic::Ordering::SeqCst) as f64;
    assert!(accepted >= 1.0);
    let one_up = |metric: &str, extra: &str| {
        sample(
            &text,
            &format!(r#"{metric}{{upstream="{up_name}"{extra}}}"#),
        )
    };
    assert_eq!(
        one_up("anygate_upstream_connect_duration_seconds_count", ""),
        Some(accepted),
        "{text}"
    );
    assert_eq!(
        one_up(
            "anygate_upstream_connect_duration_seconds_bucket",
            r#",le="+Inf""#
        ),
        Some(accepted)
    );
    assert_eq!(
        one_up("anygate_upstream_connections", r#",state="idle""#),
        Some(accepted)
    );
    assert_eq!(
        one_up("anygate_upstream_connections", r#",state="active""#),
        Some(0.0)
    );
    // A refused connect is no connect time.
    assert_eq!(
        sample(
            &text,
            &format!(r#"anygate_upstream_connect_duration_seconds_count{{upstream="{refused}"}}"#)
        ),
        None
    );
    let denials = sample(
        &text,
        r#"anygate_filter_denials_total{filter="rate_limit",reason="limited"}"#,
    );
    assert_eq!(denials, Some(2.0));
    assert_eq!(
        sample(
            &text,
            r#"anygate_gateway_errors_total{code="AG-RTE-4050",status="405"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"anygate_gateway_errors_total{code="AG-RTE-4040",status="404"}"#
        ),
        Some(2.0)
    );
    for code in [
        r#"code="AG-HTTP-4000",status="400""#,
        r#"code="AG-HTTP-4130",status="413""#,
    ] {
        assert_eq!(
            sample(&text, &format!("anygate_gateway_errors_total{{{code}}}")),
            Some(1.0),
            "{code}"
        );
    }
    // Counted, not timed: the unmatched histogram has only the routed requests.
    assert_eq!(hist("count", "unmatched", "none", ""), Some(5.0));
    // The request body: 3 bytes of `abc` plus its head.
    let rx = sample(
        &text,
        r#"anygate_http_request_bytes_total{route="* /echo",action="echo"}"#,
    );
    assert!(rx.unwrap() > 3.0);
    assert_eq!(sample(&text, "anygate_ready"), Some(1.0));
    assert_eq!(
        sample(&text, r#"anygate_config_reloads_total{result="success"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"anygate_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    // Labels never carry a path, an id or an address of a client.
    assert!(!text.contains("/missing") && !text.contains("/up/x"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's `prometheus` package; scripts/test installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // OpenMetrics when the scraper asks for it.
    let om = get(
        admin(&gw),
        "/metrics",
        "accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    );
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = om.body_str();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE anygate_http_requests counter\n"));
}

#[test]
fn ready_is_false_during_a_drain_and_the_admin_endpoints_answer() {
    // An upstream that accepts and holds the request: it stays in flight.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap();
    let gw = Gateway::start(&format!(
        r#"
server: {{ listen: "127.0.0.1:0", shutdown_timeout: 20s }}
admin: {{ listen: "127.0.0.1:0" }}
plugins: [{{ kind: headers, args: {{ response: {{ set: {{ X-A: "1" }} }} }} }}]
routes:
  "GET /slow": "http://{held_addr}/"
  "/": "OK"
"#
    ));
    let a = admin(&gw);
    let ready = get(a, "/ready", "");
    assert_eq!(
        (ready.status, json(&ready)["state"].clone()),
        (200, "ready".into())
    );
    assert_eq!(get(a, "/health", "").status, 200);
    let routes = json(&get(a, "/routes", ""));
    assert_eq!(routes["rules"][0]["rule"], "GET /slow");
    assert_eq!(routes["rules"][0]["action"], "proxy");
    assert_eq!(routes["rules"][1]["filters"][0]["kind"], "headers");
    let rt = json(&get(a, "/debug/runtime", ""));
    assert!(rt["workers"].as_u64().unwrap() >= 1, "{rt}");
    let per_worker = rt["per_worker"].as_array().unwrap();
    assert_eq!(per_worker.len() as u64, rt["workers"].as_u64().unwrap());
    for w in per_worker {
        for k in ["run_queue", "timers", "registered_descriptors"] {
            assert!(w[k].is_u64(), "{k} in {rt}");
        }
    }
    // Every worker's reactor has at least its listener (and the admin's own is apart).
    assert!(
        per_worker
            .iter()
            .all(|w| w["registered_descriptors"].as_u64() >= Some(1))
    );
    assert!(rt["open_connections"].is_u64());
    let wrong = one(a, b"DELETE /ready HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(get(a, "/nope", "").status, 404);

    let mut slow = Reader::new(connect(gw.addr));
    slow.send(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n");
    let (mut upstream_side, _) = held.accept().unwrap();
    gw.signal("TERM");
    gw.wait_line("shutting down");
    let draining = get(a, "/ready", "");
    assert_eq!(draining.status, 503, "{}", draining.body_str());
    assert_eq!(json(&draining)["state"], "draining");
    assert_eq!(sample(&scrape(a), "anygate_ready"), Some(0.0));
    // Liveness stays: the process is alive and finishing its work.
    assert_eq!(get(a, "/health", "").status, 200);
    let mut buf = [0u8; 1024];
    use std::io::{Read, Write};
    let _ = upstream_side.read(&mut buf).unwrap();
    upstream_side
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
        .unwrap();
    let resp = slow.response(false).unwrap();
    assert_eq!((resp.status, resp.body_str()), (200, "done".to_owned()));
    gw.wait_line("stopped");
}

#[test]
fn post_reload_needs_the_token_and_reports_a_bad_config_without_applying_it() {
    let dir = TempDir::new("admin-reload");
    let config = |body: &str| {
        format!(
            "server: {{ listen: \"127.0.0.1:0\" }}\nadmin: {{ listen: \"127.0.0.1:0\", token: {TOKEN} }}\nroutes:\n{body}"
        )
    };
    let gw = Gateway::start_in(&dir, &config("  \"/v\": \"OK one\"\n"));
    let a = admin(&gw);
    let no_token = post_reload(a, None);
    assert_eq!(no_token.status, 401);
    assert!(no_token.header("www-authenticate").is_some());
    assert_eq!(
        post_reload(a, Some("test-admin-token-wrong-00000")).status,
        401
    );
    assert_eq!(get(a, "/reload", "").status, 405);

    std::fs::write(
        &gw.config,
        config("  \"/v\": \"OK two\"\n  \"/w\": \"nope://x\"\n"),
    )
    .unwrap();
    let refused = post_reload(a, Some(TOKEN));
    assert_eq!(refused.status, 422, "{}", refused.body_str());
    let body = json(&refused);
    assert_eq!(body["error"]["code"], "AG-ADM-4220");
    let d = &body["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 5, "{body}");
    assert!(d["column"].as_u64().unwrap() > 1);
    assert!(d["file"].as_str().unwrap().ends_with("anygate.yml"));
    assert_eq!(get(gw.addr, "/v", "").body_str(), "one");

    std::fs::write(&gw.config, config("  \"/v\": \"OK two\"\n")).unwrap();
    let ok = post_reload(a, Some(TOKEN));
    assert_eq!(ok.status, 200, "{}", ok.body_str());
    assert_eq!(json(&ok)["rules"], 1);
    assert_eq!(get(gw.addr, "/v", "").body_str(), "two");
    let text = scrape(a);
    assert_eq!(
        sample(&text, r#"anygate_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"anygate_config_reloads_total{result="failure"}"#),
        Some(1.0)
    );
}

#[test]
fn a_stalled_log_pipe_never_slows_requests_the_drop_counter_rises() {
    let dir = TempDir::new("stalled");
    let path = dir.0.join("anygate.yml");
    std::fs::write(
        &path,
        r#"
server: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
plugins: [{ kind: log }]
routes: { "/": "OK" }
"#,
    )
    .unwrap();
    // stdout is a pipe nobody reads: once its 64 KiB fill, the writer thread blocks.
    let (child, lines) = spawn_serve(&path, Stdio::piped());
    let gw = Gateway::started(child, lines, path);
    let mut r = Reader::new(connect(gw.addr));
    let batch = "GET /x HTTP/1.1\r\nhost: t\r\n\r\n".repeat(100);
    for _ in 0..120 {
        r.send(batch.as_bytes());
        for _ in 0..100 {
            assert_eq!(r.response(false).unwrap().status, 200);
        }
    }
    let text = scrape(admin(&gw));
    let dropped = sample(&text, "anygate_log_dropped_lines_total").unwrap();
    // 12 000 lines, of which the pipe and the queue hold under 9 000.
    assert!(dropped >= 2000.0, "dropped {dropped}\n{text}");
    // And the server still answers at once.
    assert_eq!(get(gw.addr, "/", "").status, 200);
}

#[test]
fn the_server_log_can_be_json() {
    let dir = TempDir::new("json-server-log");
    let path = dir.0.join("anygate.yml");
    std::fs::write(
        &path,
        "server: { listen: \"127.0.0.1:0\", log_format: json }\nroutes: { \"/\": \"OK\" }\n",
    )
    .unwrap();
    let (mut child, lines) = spawn_serve(&path, Stdio::null());
    let line = lines.recv_timeout(LIMIT).expect("a server log line");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "info");
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn an_admin_listener_on_a_public_port_is_refused_with_its_position() {
    let failure = anygate_config::load_str(
        "t.yml",
        "server: { listen: \"127.0.0.1:8080\" }\nadmin: { listen: \"0.0.0.0:8080\" }\nroutes: { \"/\": OK }\n",
        anygate_config::Format::Yaml,
        Path::new("."),
        &[],
    )
    .expect_err("the overlap must be refused");
    let text = failure.to_string();
    assert!(
        text.contains("t.yml:2:18") && text.contains("overlaps a public listener"),
        "{text}"
    );
    let short = anygate_config::load_str(
        "t.yml",
        "admin: { token: short }\nroutes: { \"/\": OK }\n",
        anygate_config::Format::Yaml,
        Path::new("."),
        &[],
    )
    .expect_err("a short token must be refused");
    assert!(short.to_string().contains("at least 16"), "{short}");
}

/// A local OTLP/HTTP receiver: each POST's JSON body, in arrival order; answers 200.
struct Collector {
    addr: SocketAddr,
    bodies: std::sync::mpsc::Receiver<serde_json::Value>,
}

fn collector() -> Collector {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, bodies) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(LIMIT)).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            let (head_end, len) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .trim()
                        .parse::<usize>()
                        .unwrap();
                    break (i + 4, len);
                }
            };
            if head_end == 0 {
                continue;
            }
            while buf.len() < head_end + len {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "the export body was cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: serde_json::Value = serde_json::from_slice(&buf[head_end..]).unwrap();
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
            if tx.send(body).is_err() {
                return;
            }
        }
    });
    Collector { addr, bodies }
}

impl Collector {
    /// Spans received, across posts, until the trace `trace_id` has `n` spans.
    fn trace(&self, trace_id: &str, n: usize) -> (Vec<serde_json::Value>, Vec<String>) {
        let mut mine = Vec::new();
        let mut seen_traces = Vec::new();
        while mine.len() < n {
            let body = self
                .bodies
                .recv_timeout(LIMIT)
                .expect("spans were exported in time");
            let rs = &body["resourceSpans"][0];
            assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
            assert_eq!(
                rs["resource"]["attributes"][0]["value"]["stringValue"],
                "edge"
            );
            for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                let t = s["traceId"].as_str().unwrap().to_owned();
                if t == trace_id {
                    mine.push(s.clone());
                } else if !seen_traces.contains(&t) {
                    seen_traces.push(t);
                }
            }
        }
        (mine, seen_traces)
    }
}

fn span<'a>(spans: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
}

#[test]
fn traces_join_the_callers_trace_reach_the_upstream_and_export_over_otlp() {
    let otlp = collector();
    let up = upstream(|seen, s| {
        let tp = seen.fields("traceparent").join(",");
        let ts = seen.fields("tracestate").join(",");
        reply(s, &format!("x-seen-tracestate: [{ts}]\r\n"), tp.as_bytes())
    });
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap();
    drop(closed);
    let gw = Gateway::start(&format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
tracing:
  sample: 0
  service_name: edge
  otlp: {{ endpoint: "http://{}/v1/traces" }}
plugins: [{{ kind: headers, args: {{ response: {{ set: {{ X-A: "1" }} }} }} }}]
routes:
  "/up/": "http://{}/"
  "/down/": "http://{refused}/"
  "/ok": "OK"
"#,
        otlp.addr, up.addr
    ));
    // 1. A sampled caller: its trace is joined, and the upstream is the child of our
    //    `upstream.request` span.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = get(
        gw.addr,
        "/up/x",
        &format!("traceparent: 00-{trace}-{parent}-01\r\ntracestate: vendor=1\r\n"),
    );
    assert_eq!(r.status, 200);
    // Without an X-Request-Id from the client, the request id is the trace id.
    assert_eq!(r.header("x-request-id"), Some(trace));
    assert_eq!(r.header("x-seen-tracestate"), Some("[vendor=1]"));
    // An invalid traceparent starts a trace here: the caller's tracestate is not ours to
    // pass on.
    let fresh = get(
        gw.addr,
        "/up/x",
        "traceparent: 00-zz-00f067aa0ba902b7-01\r\ntracestate: vendor=1\r\n",
    );
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("x-seen-tracestate"), Some("[]"));
    let sent_up = r.body_str();
    let parts: Vec<&str> = sent_up.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent_up}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace, "01"),
        "{sent_up}"
    );
    assert_ne!(
        parts[2], parent,
        "the upstream's parent is our span, not the caller's"
    );

    // 2. Unsampled (sample: 0, no caller) and fine: nothing is exported. 3. Unsampled but
    //    failing: exported anyway.
    let quiet = get(gw.addr, "/ok", "");
    assert_eq!(quiet.status, 200);
    let quiet_id = quiet.header("x-request-id").unwrap().to_owned();
    // A client error is not a failure of the server: it follows the sampling (a flood of
    // 404s cannot bypass it).
    let missing = get(gw.addr, "/no-such-rule", "");
    assert_eq!(missing.status, 404);
    let missing_id = missing.header("x-request-id").unwrap().to_owned();
    let failed = get(gw.addr, "/down/x", "");
    assert_eq!(failed.status, 502);
    let failed_id = failed.header("x-request-id").unwrap().to_owned();

    let (spans, mut others) = otlp.trace(trace, 7);
    let server = span(&spans, "server.request");
    assert_eq!(server["parentSpanId"], parent);
    assert_eq!(server["kind"], 2);
    let server_id = server["spanId"].as_str().unwrap();
    let attr = |s: &serde_json::Value, key: &str| {
        s["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr(server, "http.route").unwrap()["stringValue"], "* /up/");
    assert_eq!(
        attr(server, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    for name in [
        "router.match",
        "filters.pre",
        "action.proxy",
        "filters.post",
    ] {
        assert_eq!(span(&spans, name)["parentSpanId"], server_id, "{name}");
    }
    let action_id = span(&spans, "action.proxy")["spanId"].as_str().unwrap();
    let request = span(&spans, "upstream.request");
    assert_eq!(request["parentSpanId"], action_id);
    assert_eq!(request["kind"], 3);
    assert_eq!(request["spanId"], parts[2], "the id the upstream saw");
    assert_eq!(span(&spans, "upstream.connect")["parentSpanId"], action_id);
    let (start, end) = (
        server["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        server["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
    );
    assert!(start <= end);
    for s in &spans {
        let (a, b) = (
            s["startTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            s["endTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        assert!(start <= a && a <= b && b <= end, "{s} outside its request");
    }

    let (failing, more) = otlp.trace(&failed_id, 1);
    others.extend(more);
    let server = span(&failing, "server.request");
    assert_eq!(server["status"]["code"], 2);
    assert_eq!(
        attr(server, "anygate.error_code").unwrap()["stringValue"],
        "AG-UPS-5021"
    );
    assert!(
        !others.contains(&quiet_id),
        "an unsampled success was exported"
    );
    assert!(
        !others.contains(&missing_id),
        "an unsampled 404 was exported"
    );
}

#[test]
fn diagnose_reports_ports_certificates_upstreams_and_the_running_instances_last_reload() {
    let dir = TempDir::new("diagnose");
    let pki = crate::tls::Pki::new("diag-ca");
    let (cert, key) = pki
        .server(&["diag.test", "www.diag.test"])
        .write(&dir, "site");
    let up = upstream(|_, s| reply(s, "", b"up"));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap();
    drop(closed);
    let good = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
admin: {{ listen: "127.0.0.1:0" }}
tls:
  listen: "127.0.0.1:0"
  certificates: [{{ cert: "{}", key: "{}" }}]
routes:
  "/up/": "http://{}/"
  "/down/": "http://{refused}/"
"#,
        cert.display(),
        key.display(),
        up.addr
    );
    let gw = Gateway::start_in(&dir, &good);
    let admin = admin(&gw);
    // A refused reload, for the running instance's state; then the file is good again.
    std::fs::write(&gw.config, good.replace("http://", "nope://")).unwrap();
    gw.signal("HUP");
    gw.wait_line("still serving the previous configuration");
    // diagnose reads the file: its admin listener is the running one's (port 0 would pick
    // a new port, so the file names the bound one).
    std::fs::write(
        &gw.config,
        good.replacen(
            "admin: { listen: \"127.0.0.1:0\" }",
            &format!("admin: {{ listen: \"{admin}\" }}"),
            1,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["diagnose", "-c"])
        .arg(&gw.config)
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |what: &str, needle: &str| {
        assert!(
            text.lines()
                .any(|l| l.starts_with(what) && l.contains(needle)),
            "no `{what}` line with {needle:?}:\n{text}"
        );
    };
    line("configuration", "valid, 2 rules");
    line("listener", &format!("{admin}"));
    line("listener", "held: another process listens");
    line("certificate", "diag.test, www.diag.test; expires in");
    line("upstream", &format!("reachable at {}", up.addr));
    line("upstream", &format!("unreachable at {refused}"));
    line("running", "last reload: failure");
    assert!(
        text.contains("unknown") || text.contains("nope"),
        "the reload's first error:\n{text}"
    );

    // An invalid file: check's errors, exit 1.
    std::fs::write(&gw.config, "routes: { \"/\": \"nope://x\" }\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["diagnose", "-c"])
        .arg(&gw.config)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("anygate.yml:1:"));
}

/// Everything the admin listener sends for `raw` (it closes after one answer).
fn raw_admin(addr: SocketAddr, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a test's deadline, on the real clock"
)]
fn regression_review_admin_probes_answer_while_slow_clients_hold_every_slot() {
    use std::io::{Read, Write};
    let gw = Gateway::start(
        r#"
server: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
routes: { "/": "OK" }
"#,
    );
    let a = admin(&gw);
    // HEAD answers the head alone.
    let head = raw_admin(a, b"HEAD /health HTTP/1.1\r\nhost: a\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head:?}"
    );
    // Every slot held by a client that sends nothing.
    let held: Vec<_> = (0..16)
        .map(|_| std::net::TcpStream::connect(a).unwrap())
        .collect();
    // Probes are still answered (by the accepting thread); other endpoints are refused.
    for path in ["/health", "/ready"] {
        let r = get(a, path, "");
        assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    }
    let busy = get(a, "/metrics", "");
    assert_eq!(busy.status, 503);
    assert!(busy.body_str().contains("AG-ADM-5030"));
    drop(held);
    // Their threads see the close and give the slots back: wait until a slot is free.
    let deadline = Instant::now() + LIMIT;
    while get(a, "/metrics", "").status != 200 {
        assert!(Instant::now() < deadline, "the admin slots are given back");
        std::thread::park_timeout(std::time::Duration::from_millis(10));
    }

    // A client trickling its head a byte at a time gets 408 at the head's deadline: the
    // bytes do not extend it.
    let mut slow = std::net::TcpStream::connect(a).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let give_up = Instant::now() + LIMIT;
    for b in b"GET /health HTTP/1.1\r\nx-pad: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
    {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !got.is_empty() || Instant::now() > give_up {
            break;
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408 "), "{got:?}");
}
