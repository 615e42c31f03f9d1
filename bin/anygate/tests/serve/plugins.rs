//! The built-in filters over real sockets: `headers`, `ip`, `cors`, `rate_limit` and `auth`
//! (API keys, bearer tokens), each on the wire, and their chain order (global → group →
//! nested group).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anygate_config::{Format, load_str};

use crate::http::{Reader, Resp, connect, one};
use crate::proxy::{reply, upstream};
use crate::support::{TempDir, in_process};

fn get(addr: SocketAddr, target: &str, fields: &str) -> Resp {
    one(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: gw.test\r\n{fields}\r\n").as_bytes(),
    )
}

fn code(resp: &Resp) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.body_str()));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn all<'a>(resp: &'a Resp, name: &str) -> Vec<&'a str> {
    resp.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn headers_edit_the_request_upstream_and_every_response() {
    let up = upstream(|_, s| {
        reply(
            s,
            "server: upstream/1.0\r\nx-powered-by: php\r\ncontent-security-policy: app-own\r\n",
            b"up",
        )
    });
    let gw = in_process(&format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
plugins:
  - kind: headers
    args:
      request: {{ set: {{ X-Env: prod }}, add: {{ X-Via: gw }}, remove: [X-Debug] }}
      response: {{ remove: [Server, X-Powered-By], set: {{ Cache-Control: no-store }} }}
      preset: security
      security: {{ frame_options: DENY, permissions_policy: false }}
routes:
  "/up/": "http://{}/"
  "/echo": "*"
  "/fixed": 'OK {{"a":1}}'
groups:
  - prefix: /closed
    plugins: [ {{ kind: ip, args: {{ deny: ["127.0.0.1"] }} }} ]
    routes: {{ "/": OK }}
"#,
        up.addr
    ));
    let addr = gw.addrs()[0];
    let r = get(addr, "/up/x", "x-env: dev\r\nx-debug: 1\r\n");
    assert_eq!(r.status, 200);
    let seen = up.seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen.fields("x-env"), ["prod"], "set replaces the client's");
    assert_eq!(seen.fields("x-via"), ["gw"]);
    assert!(seen.fields("x-debug").is_empty(), "removed before proxying");
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The preset fills in, never replacing the application's own value.
    assert_eq!(all(&r, "content-security-policy"), ["app-own"]);
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "overridden");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(r.header("permissions-policy"), None, "turned off");
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "no HSTS over plain HTTP"
    );
    // Echo shows the request as the filters left it.
    let e = get(addr, "/echo", "x-env: dev\r\nx-debug: 1\r\n");
    let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(v["headers"]["x-env"], "prod");
    assert!(v["headers"].get("x-debug").is_none());
    // A fixed rule (its final head encoded at load), and a filter's early answer.
    let f = get(addr, "/fixed", "");
    assert_eq!((f.status, f.body_str().as_str()), (200, "{\"a\":1}"));
    assert_eq!(f.header("x-frame-options"), Some("DENY"));
    assert_eq!(f.header("cache-control"), Some("no-store"));
    assert_eq!(
        f.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let denied = get(addr, "/closed/", "");
    assert_eq!(
        (denied.status, code(&denied).as_str()),
        (403, "AG-SEC-6002")
    );
    assert_eq!(denied.header("x-frame-options"), Some("DENY"));
    // Errors get the preset too (the global chain runs for a 404).
    let nf = get(addr, "/nowhere", "");
    assert_eq!(nf.status, 404);
    assert_eq!(nf.header("x-content-type-options"), Some("nosniff"));
    assert!(
        nf.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
}

#[test]
fn ip_rules_read_the_trusted_client_address_and_ignore_a_spoofed_one() {
    let cfg = |trusted: &str| {
        format!(
            r#"
server: {{ listen: "127.0.0.1:0"{trusted} }}
groups:
  - prefix: /office
    plugins: [ {{ kind: ip, args: {{ allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.6.6.0/24"] }} }} ]
    routes: {{ "/": OK }}
  - prefix: /open
    plugins: [ {{ kind: ip, args: {{ deny: ["127.0.0.1"] }} }} ]
    routes: {{ "/": OK }}
"#
        )
    };
    // No trusted proxy: the peer (127.0.0.1) is the client, whatever the header says.
    let gw = in_process(&cfg(""));
    let addr = gw.addrs()[0];
    let r = get(addr, "/office/", "x-forwarded-for: 10.1.2.3\r\n");
    assert_eq!((r.status, code(&r).as_str()), (403, "AG-SEC-6002"));
    let r = get(addr, "/open/", "");
    assert_eq!(r.status, 403, "the deny list matches the peer");
    // Behind a trusted proxy, its X-Forwarded-For names the client.
    let gw = in_process(&cfg(r#", trusted_proxies: ["127.0.0.1"]"#));
    let addr = gw.addrs()[0];
    assert_eq!(
        get(addr, "/office/", "x-forwarded-for: 10.1.2.3\r\n").status,
        200
    );
    assert_eq!(
        get(addr, "/office/", "x-forwarded-for: 2001:db8::5\r\n").status,
        200
    );
    assert_eq!(
        get(addr, "/office/", "x-forwarded-for: 10.6.6.6\r\n").status,
        403,
        "a denied carve-out of an allowed range"
    );
    assert_eq!(
        get(addr, "/office/", "x-forwarded-for: 11.0.0.1\r\n").status,
        403
    );
    assert_eq!(
        get(addr, "/open/", "x-forwarded-for: 192.0.2.1\r\n").status,
        200
    );
}

fn cors_gateway() -> anygate::serve::Server {
    in_process(
        r#"
server: { listen: "127.0.0.1:0" }
groups:
  - prefix: /api
    plugins:
      - kind: auth
        args: { bearer: { tokens: [t0ken] } }
      - kind: cors
        args:
          origins: ["https://app.example.com", "https://*.tenant.example"]
          methods: [GET, PUT]
          headers: [Content-Type, Authorization]
          expose: [X-Request-Id]
          credentials: true
          max_age: 10m
    routes:
      "GET /x": 'OK {"ok":true}'
  - prefix: /public
    plugins: [ { kind: cors, args: { origins: "*" } } ]
    routes: { "GET /": OK }
"#,
    )
}

fn preflight(addr: SocketAddr, path: &str, origin: &str, method: &str, headers: &str) -> Resp {
    let asked = if headers.is_empty() {
        String::new()
    } else {
        format!("access-control-request-headers: {headers}\r\n")
    };
    one(
        addr,
        format!(
            "OPTIONS {path} HTTP/1.1\r\nhost: gw.test\r\norigin: {origin}\r\n\
             access-control-request-method: {method}\r\n{asked}\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn cors_preflights_are_answered_first_and_checked() {
    let gw = cors_gateway();
    let addr = gw.addrs()[0];
    // Allowed: 204 before `auth` (a preflight carries no credentials), although the only
    // rule is `GET /x`.
    let r = preflight(
        addr,
        "/api/x",
        "https://app.example.com",
        "PUT",
        "content-type, authorization",
    );
    assert_eq!(r.status, 204, "{}", r.body_str());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type, Authorization")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").unwrap().contains("Origin"));
    // A wildcard subdomain, at any depth; never the bare domain.
    let r = preflight(addr, "/api/x", "https://a.b.tenant.example", "GET", "");
    assert_eq!(r.status, 204);
    let r = preflight(addr, "/api/x", "https://tenant.example", "GET", "");
    assert_eq!((r.status, code(&r).as_str()), (403, "AG-SEC-6001"));
    // Denied origin, method, header.
    let r = preflight(addr, "/api/x", "https://evil.test", "GET", "");
    assert_eq!((r.status, code(&r).as_str()), (403, "AG-SEC-6001"));
    let r = preflight(addr, "/api/x", "https://app.example.com", "DELETE", "");
    assert_eq!(r.status, 403, "method not allowed");
    let r = preflight(addr, "/api/x", "https://app.example.com", "PUT", "x-secret");
    assert_eq!(r.status, 403, "header not allowed");
    // A plain OPTIONS (no CORS) to that path is still the 405 it was.
    let r = one(addr, b"OPTIONS /api/x HTTP/1.1\r\nhost: gw.test\r\n\r\n");
    assert_eq!(r.status, 405);
    // `*` without credentials answers `*`.
    let r = preflight(addr, "/public/", "https://anyone.test", "GET", "x-custom");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-custom"));
}

#[test]
fn cors_actual_requests_get_their_headers_or_a_403() {
    let gw = cors_gateway();
    let addr = gw.addrs()[0];
    let auth = "authorization: Bearer t0ken\r\n";
    let r = get(
        addr,
        "/api/x",
        &format!("{auth}origin: https://app.example.com\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Request-Id")
    );
    assert_eq!(all(&r, "vary"), ["Origin"]);
    // An error response of the rule carries them too (here, auth's 401).
    let r = get(addr, "/api/x", "origin: https://app.example.com\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // No Origin: no CORS fields, but the response varies on it.
    let r = get(addr, "/api/x", auth);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(all(&r, "vary"), ["Origin"]);
    // A foreign origin is refused; the gateway's own origin is not cross-origin.
    let r = get(
        addr,
        "/api/x",
        &format!("{auth}origin: https://evil.test\r\n"),
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "AG-SEC-6001"));
    let r = get(addr, "/api/x", &format!("{auth}origin: http://gw.test\r\n"));
    assert_eq!(r.status, 200);
    // `*`: no Vary needed.
    let r = get(addr, "/public/", "origin: https://anyone.test\r\n");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
}

#[test]
fn rate_limit_answers_429_with_retry_after_and_the_ietf_fields() {
    let gw = in_process(
        r#"
server: { listen: "127.0.0.1:0" }
groups:
  - prefix: /ip
    plugins: [ { kind: rate_limit, args: { rate: 0.5, burst: 3, fields: all } } ]
    routes: { "/": OK }
  - prefix: /key
    plugins: [ { kind: rate_limit, args: { rate: 0.5, burst: 1, scope: { header: X-Api-Key } } } ]
    routes: { "/": OK }
"#,
    );
    let addr = gw.addrs()[0];
    let mut r = Reader::new(connect(addr));
    for left in [2, 1, 0] {
        r.send(b"GET /ip/ HTTP/1.1\r\nhost: t\r\n\r\n");
        let resp = r.response(false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("ratelimit-policy"),
            Some("\"default\";q=3;w=6"),
            "3 tokens, 6 s to fill"
        );
        let state = resp.header("ratelimit").unwrap();
        assert!(
            state.starts_with(&format!("\"default\";r={left};t=")),
            "{state}"
        );
    }
    r.send(b"GET /ip/ HTTP/1.1\r\nhost: t\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!((resp.status, code(&resp).as_str()), (429, "AG-SEC-6003"));
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=2).contains(&retry),
        "a token is back within 2 s: {retry}"
    );
    assert!(
        resp.header("ratelimit")
            .unwrap()
            .starts_with("\"default\";r=0;")
    );
    // A 429 keeps the connection. By default the fields are on a 429 only.
    r.send(b"GET /key/ HTTP/1.1\r\nhost: t\r\nx-api-key: a\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("ratelimit"), None);
    // Per header value: `a` is spent, `b` has its own bucket.
    let refused = get(addr, "/key/", "x-api-key: a\r\n");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"default\";q=1;w=2")
    );
    assert_eq!(get(addr, "/key/", "x-api-key: b\r\n").status, 200);
}

#[test]
fn rate_limit_holds_across_two_workers_under_load() {
    const RATE: f64 = 400.0;
    const BURST: u64 = 40;
    let gw = in_process(&format!(
        r#"
server: {{ listen: "127.0.0.1:0", workers: 2 }}
plugins: [ {{ kind: rate_limit, args: {{ rate: {RATE}, burst: {BURST}, scope: route }} }} ]
routes: {{ "/": OK }}
"#
    ));
    let (allowed, refused, elapsed) = hammer(gw.addrs(), 6, Duration::from_secs(3));
    #[expect(clippy::cast_precision_loss, reason = "counts of a few thousand")]
    let allowed = allowed as f64;
    #[expect(clippy::cast_precision_loss, reason = "a small constant")]
    let expected = BURST as f64 + RATE * elapsed;
    assert!(
        refused > 1000,
        "the load exceeded the limit: {refused} refused"
    );
    assert!(
        (allowed - expected).abs() <= expected * 0.05,
        "{allowed} allowed in {elapsed:.2} s, expected {expected:.0} ± 5 %"
    );
}

#[test]
fn auth_takes_api_keys_and_bearer_tokens_and_hides_a_query_key() {
    let dir = TempDir::new("auth");
    std::fs::write(dir.0.join("keys.txt"), "# ops keys\nk-file\n\n").unwrap();
    let up = upstream(|_, s| reply(s, "", b"up"));
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
groups:
  - prefix: /k
    plugins:
      - kind: auth
        args: {{ realm: ops, api_key: {{ query: api_key, keys: [k-123], keys_file: keys.txt }} }}
    routes: {{ "/": "http://{}/" }}
  - prefix: /b
    plugins: [ {{ kind: auth, args: {{ bearer: {{ tokens: [t-456] }} }} }} ]
    routes: {{ "/": OK }}
"#,
        up.addr
    );
    let config = load_str("t.yml", &yaml, Format::Yaml, &dir.0, &[]).unwrap();
    let gw = anygate::serve::Server::start(config).unwrap();
    let addr = gw.addrs()[0];
    let r = get(addr, "/k/a", "");
    assert_eq!((r.status, code(&r).as_str()), (401, "AG-SEC-6005"));
    assert_eq!(r.header("www-authenticate"), Some("ApiKey realm=\"ops\""));
    assert_eq!(get(addr, "/k/a", "x-api-key: wrong\r\n").status, 401);
    assert_eq!(get(addr, "/k/a", "x-api-key: k-123\r\n").status, 200);
    assert_eq!(get(addr, "/k/a", "X-API-Key: k-file\r\n").status, 200);
    let seen: Vec<_> = up.seen.try_iter().collect();
    assert_eq!(seen.len(), 2);
    // In the query: accepted, and dropped from the target sent upstream.
    let r = get(addr, "/k/a?x=1&api_key=k-123&y=2", "");
    assert_eq!(r.status, 200);
    let seen = up.seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen.request_line(), "GET /a?x=1&y=2 HTTP/1.1");
    assert_eq!(get(addr, "/k/a?api_key=nope", "").status, 401);
    // Bearer.
    let r = get(addr, "/b/", "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"anygate\"")
    );
    let r = get(addr, "/b/", "authorization: Bearer nope\r\n");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"anygate\", error=\"invalid_token\"")
    );
    assert_eq!(
        get(addr, "/b/", "authorization: bearer t-456\r\n").status,
        200
    );
}

#[test]
fn built_in_filters_run_global_then_group_then_nested_and_post_in_reverse() {
    let gw = in_process(
        r#"
server: { listen: "127.0.0.1:0" }
plugins: [ { kind: headers, args: { request: { add: { X-Order: global } }, response: { add: { X-Order: global } } } } ]
groups:
  - prefix: /g
    plugins: [ { kind: headers, args: { request: { add: { X-Order: group } }, response: { add: { X-Order: group } } } } ]
    groups:
      - prefix: /n
        plugins: [ { kind: headers, args: { request: { add: { X-Order: nested } }, response: { add: { X-Order: nested } } } } ]
        routes: { "/": "*" }
"#,
    );
    let r = get(gw.addrs()[0], "/g/n/", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        all(&r, "x-order"),
        ["nested", "group", "global"],
        "post: reverse"
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["headers"]["x-order"], "global, group, nested",
        "pre: in order"
    );
}

#[test]
fn filter_args_are_checked_at_load_with_positions() {
    let cases = [
        (
            "plugins: [ { kind: headers, args: { response: { set: { Content-Length: \"1\" } } } } ]\n",
            "t.yml:1:56",
            "`Content-Length` cannot be changed by a filter",
        ),
        (
            "plugins: [ { kind: rate_limit, args: { rate: -1 } } ]\n",
            "t.yml:1:46",
            "`rate` must be from",
        ),
        (
            "plugins: [ { kind: ip, args: { allow: [\"10.0.0.1/8\"] } } ]\n",
            "t.yml:1:40",
            "has bits set past its /8",
        ),
        (
            "plugins: [ { kind: cors, args: { origins: \"*\", credentials: true } } ]\n",
            "t.yml:1:43",
            "cannot be used with `credentials: true`",
        ),
        (
            "plugins: [ { kind: auth, args: { bearer: { tokenz: [a] } } } ]\n",
            "t.yml:1:44",
            "unknown key `tokenz`",
        ),
        (
            "plugins: [ { kind: rate_limit, args: { rate: 1, scope: everyone } } ]\n",
            "t.yml:1:56",
            "unknown `scope`",
        ),
    ];
    for (plugins, at, message) in cases {
        let yaml = format!("{plugins}routes: {{ \"/\": OK }}\n");
        let config = load_str("t.yml", &yaml, Format::Yaml, Path::new("."), &[]).unwrap();
        let err = anygate_plugins::compile(&config, &anygate_plugins::Registry::builtin())
            .expect_err(plugins);
        let text: Vec<String> = err
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.span
                        .map(|s| config.sources.location(s))
                        .unwrap_or_default(),
                    d.message
                )
            })
            .collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with(at) && t.contains(message)),
            "{plugins}: {text:?}"
        );
    }
}

#[test]
fn check_prints_each_filter_with_what_it_does() {
    let yaml = r#"
plugins: [ { kind: rate_limit, args: { rate: 100, burst: 200 } } ]
groups:
  - prefix: /admin
    plugins: [ { kind: ip, args: { allow: ["10.0.0.0/8"] } } ]
    routes: { "/": OK }
"#;
    let config = load_str("t.yml", yaml, Format::Yaml, Path::new("."), &[]).unwrap();
    let report = anygate::check::report("t.yml", &config);
    assert!(
        report.contains("filters (global): rate_limit [100/s, burst 200, per ip]"),
        "{report}"
    );
    assert!(
        report.contains(
            "filters: rate_limit [100/s, burst 200, per ip] → ip (group /admin) [allow 1 range(s)]"
        ),
        "{report}"
    );
}

/// An ES256 signing key (PKCS#8), its public key as PEM, and as a JWK named `kid`.
struct EsKey {
    signing: jsonwebtoken::EncodingKey,
    public_pem: String,
    kid: String,
}

impl EsKey {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self {
            signing: jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
                .unwrap(),
            public_pem: pair.public_key_pem(),
            kid: kid.to_owned(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
            &self.signing,
            jsonwebtoken::Algorithm::ES256,
        )
        .unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(&jwk).unwrap()
    }

    fn token(&self, claims: &serde_json::Value) -> String {
        sign(
            &self.signing,
            jsonwebtoken::Algorithm::ES256,
            Some(&self.kid),
            claims,
        )
    }
}

fn sign(
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

fn write_jwks(path: &Path, keys: &[&EsKey]) {
    let set = serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
    // Written aside and renamed: the watcher never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, set.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";

fn jwt_gateway(dir: &TempDir, es: &EsKey) -> anygate::serve::Server {
    std::fs::write(dir.0.join("es.pub.pem"), &es.public_pem).unwrap();
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
groups:
  - prefix: /api
    plugins:
      - kind: auth
        args:
          jwt:
            keys:
              - {{ kid: es, alg: ES256, file: es.pub.pem }}
              - {{ kid: hs, alg: HS256, secret: "{HS_SECRET}" }}
            issuer: https://id.test
            audience: api
            leeway: 5s
            claims: {{ sub: X-User-Id, email: X-User-Email }}
    routes: {{ "/": "*" }}
  - prefix: /admin
    plugins:
      - kind: auth
        args: {{ jwt: {{ jwks_file: jwks.json, roles: [admin] }} }}
    routes: {{ "/": "*" }}
"#
    );
    let config = load_str("t.yml", &yaml, Format::Yaml, &dir.0, &[]).unwrap();
    anygate::serve::Server::start(config).unwrap()
}

fn bearer(addr: SocketAddr, path: &str, token: &str, extra: &str) -> Resp {
    get(
        addr,
        path,
        &format!("authorization: Bearer {token}\r\n{extra}"),
    )
}

#[test]
fn jwt_tokens_are_checked_pinned_to_their_key_algorithm_and_their_claims_sent_on() {
    let dir = TempDir::new("jwt");
    let es = EsKey::new("es");
    write_jwks(&dir.0.join("jwks.json"), &[&EsKey::new("k1")]);
    let gw = jwt_gateway(&dir, &es);
    let addr = gw.addrs()[0];
    let now = unix_now();
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({
            "sub": "alice", "email": "a@example.com",
            "iss": "https://id.test", "aud": "api", "exp": now + 600,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Valid: the claims go on as fields, and the client's own copies never do.
    let r = bearer(
        addr,
        "/api/",
        &es.token(&claims(serde_json::json!({}))),
        "x-user-id: mallory\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["headers"]["x-user-id"], "alice");
    assert_eq!(v["headers"]["x-user-email"], "a@example.com");
    let hs = jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()).unwrap();
    let t = sign(
        &hs,
        jsonwebtoken::Algorithm::HS256,
        Some("hs"),
        &claims(serde_json::json!({})),
    );
    assert_eq!(bearer(addr, "/api/", &t, "").status, 200, "the HMAC key");
    // No token.
    let r = get(addr, "/api/", "x-user-id: mallory\r\n");
    assert_eq!((r.status, code(&r).as_str()), (401, "AG-SEC-6005"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"anygate\"")
    );
    // Each way a token can be wrong: 401 invalid_token.
    let other = EsKey::new("es");
    let wrong = [
        (
            "expired",
            es.token(&claims(serde_json::json!({ "exp": now - 60 }))),
        ),
        (
            "not yet valid",
            es.token(&claims(serde_json::json!({ "nbf": now + 60 }))),
        ),
        (
            "wrong audience",
            es.token(&claims(serde_json::json!({ "aud": "other" }))),
        ),
        (
            "wrong issuer",
            es.token(&claims(serde_json::json!({ "iss": "https://evil.test" }))),
        ),
        ("no exp", {
            let mut c = claims(serde_json::json!({}));
            c.as_object_mut().unwrap().remove("exp");
            es.token(&c)
        }),
        ("bad signature", other.token(&claims(serde_json::json!({})))),
        // The `alg` confusion: the ES256 public key used as an HMAC secret.
        (
            "alg confusion, kid es",
            sign(
                &jsonwebtoken::EncodingKey::from_secret(es.public_pem.as_bytes()).unwrap(),
                jsonwebtoken::Algorithm::HS256,
                Some("es"),
                &claims(serde_json::json!({})),
            ),
        ),
        (
            "alg confusion, no kid",
            sign(
                &jsonwebtoken::EncodingKey::from_secret(es.public_pem.as_bytes()).unwrap(),
                jsonwebtoken::Algorithm::HS256,
                None,
                &claims(serde_json::json!({})),
            ),
        ),
        ("alg none", {
            use std::fmt::Write as _;
            let b64 = |s: &str| {
                let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let mut out = String::new();
                for chunk in s.as_bytes().chunks(3) {
                    let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b))
                        << (8 * (3 - chunk.len()));
                    for i in 0..=chunk.len() {
                        let _ =
                            out.write_char(char::from(table[((n >> (18 - 6 * i)) & 63) as usize]));
                    }
                }
                out
            };
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&claims(serde_json::json!({})).to_string())
            )
        }),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in wrong {
        let r = bearer(addr, "/api/", &token, "");
        assert_eq!(r.status, 401, "{what}: {}", r.body_str());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"anygate\", error=\"invalid_token\""),
            "{what}"
        );
    }
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test bounds its wait for the watcher with the real clock"
)]
fn jwt_roles_are_required_and_a_rotated_jwks_file_is_picked_up() {
    let dir = TempDir::new("jwks");
    let (k1, k2) = (EsKey::new("k1"), EsKey::new("k2"));
    let jwks = dir.0.join("jwks.json");
    write_jwks(&jwks, &[&k1]);
    let gw = jwt_gateway(&dir, &EsKey::new("es"));
    let addr = gw.addrs()[0];
    let exp = unix_now() + 600;
    let admin =
        |k: &EsKey| k.token(&serde_json::json!({ "sub": "root", "roles": ["admin"], "exp": exp }));
    let user = k1.token(&serde_json::json!({ "sub": "u", "roles": ["user"], "exp": exp }));
    let r = bearer(addr, "/admin/", &user, "");
    assert_eq!((r.status, code(&r).as_str()), (403, "AG-SEC-6006"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"anygate\", error=\"insufficient_scope\"")
    );
    let scope = k1.token(&serde_json::json!({ "sub": "s", "roles": "read admin", "exp": exp }));
    assert_eq!(
        bearer(addr, "/admin/", &scope, "").status,
        200,
        "a space-separated string"
    );
    assert_eq!(bearer(addr, "/admin/", &admin(&k1), "").status, 200);
    assert_eq!(
        bearer(addr, "/admin/", &admin(&k2), "").status,
        401,
        "k2 not published yet"
    );
    // Rotate: k2 in, k1 out. The watcher picks the file up without a reload.
    write_jwks(&jwks, &[&k2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bearer(addr, "/admin/", &admin(&k2), "").status != 200 {
        assert!(
            Instant::now() < deadline,
            "the new JWK set was never loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        bearer(addr, "/admin/", &admin(&k1), "").status,
        401,
        "k1 retired"
    );
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(table[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    format!("authorization: Basic {out}\r\n")
}

#[test]
fn basic_auth_checks_bcrypt_and_argon2_hashes_off_the_workers_and_limits_guessing() {
    use argon2::PasswordHasher;
    let dir = TempDir::new("basic");
    let bcrypt_hash = bcrypt::hash("alice-pw", 4).unwrap();
    let carol_hash = bcrypt::hash("carol-pw", 4).unwrap();
    let dave_hash = bcrypt::hash("dave-pw", 13).unwrap();
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, None).unwrap(),
    )
    .hash_password_with_salt(b"bob-pw", b"0123456789abcdef")
    .unwrap()
    .to_string();
    std::fs::write(dir.0.join("htpasswd"), format!("# users\nbob:{argon}\n")).unwrap();
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:0", workers: 1 }}
plugins:
  - kind: auth
    args:
      realm: ops
      basic:
        users: {{ alice: "{bcrypt_hash}", carol: "{carol_hash}", dave: "{dave_hash}" }}
        users_file: htpasswd
        failures: {{ rate: 0.01, burst: 3 }}
routes: {{ "/": OK }}
"#
    );
    let config = load_str("t.yml", &yaml, Format::Yaml, &dir.0, &[]).unwrap();
    let gw = anygate::serve::Server::start(config).unwrap();
    let addr = gw.addrs()[0];
    let r = get(addr, "/", "");
    assert_eq!((r.status, code(&r).as_str()), (401, "AG-SEC-6005"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"ops\", charset=\"UTF-8\"")
    );
    assert_eq!(
        get(addr, "/", &basic("alice", "alice-pw")).status,
        200,
        "bcrypt"
    );
    assert_eq!(
        get(addr, "/", &basic("bob", "bob-pw")).status,
        200,
        "argon2id"
    );
    // Again, from the cache; one keep-alive connection holds many in a row.
    let mut c = Reader::new(connect(addr));
    for _ in 0..20 {
        c.send(
            format!(
                "GET / HTTP/1.1\r\nhost: t\r\n{}\r\n",
                basic("alice", "alice-pw")
            )
            .as_bytes(),
        );
        assert_eq!(c.response(false).unwrap().status, 200);
    }
    // A slow verification (bcrypt cost 13, a good fraction of a second) does not hold the
    // only worker: another connection is answered while it is out.
    let mut slow = Reader::new(connect(addr));
    slow.send(
        format!(
            "GET / HTTP/1.1\r\nhost: t\r\n{}\r\n",
            basic("dave", "dave-pw")
        )
        .as_bytes(),
    );
    let r = get(addr, "/", "");
    assert_eq!(r.status, 401);
    slow.stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(std::io::Read::read(&mut slow.stream, &mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow verification was still out"
    );
    slow.stream.set_nonblocking(false).unwrap();
    assert_eq!(slow.response(false).unwrap().status, 200);
    // Wrong passwords and unknown users: 401 until the failure bucket (3) is spent, then
    // 429 without verifying, even for the right password.
    assert_eq!(get(addr, "/", &basic("alice", "wrong")).status, 401);
    assert_eq!(get(addr, "/", &basic("nobody", "x")).status, 401);
    assert_eq!(get(addr, "/", &basic("bob", "wrong")).status, 401);
    let r = get(addr, "/", &basic("alice", "guess"));
    assert_eq!((r.status, code(&r).as_str()), (429, "AG-SEC-6003"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        get(addr, "/", &basic("carol", "carol-pw")).status,
        429,
        "never verified yet: refused without a verification"
    );
    assert_eq!(
        get(addr, "/", &basic("alice", "alice-pw")).status,
        200,
        "a remembered pair still passes"
    );
}

#[test]
fn basic_auth_hashes_are_checked_at_load() {
    let yaml = "plugins: [ { kind: auth, args: { basic: { users: { alice: hunter2 } } } } ]\nroutes: { \"/\": OK }\n";
    let config = load_str("t.yml", yaml, Format::Yaml, Path::new("."), &[]).unwrap();
    let err = anygate_plugins::compile(&config, &anygate_plugins::Registry::builtin()).unwrap_err();
    let text: Vec<String> = err
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.span
                    .map(|s| config.sources.location(s))
                    .unwrap_or_default(),
                d.message
            )
        })
        .collect();
    assert!(
        text.iter().any(|t| t.starts_with("t.yml:1:59")
            && t.contains("user `alice`: a password must be given as a bcrypt")),
        "{text:?}"
    );
}

#[test]
fn forward_auth_lets_a_2xx_through_with_its_fields_and_relays_anything_else() {
    let service = upstream(|seen, s| {
        if seen.fields("authorization") == ["Bearer good"] {
            reply(s, "x-user: alice\r\nx-roles: admin\r\nx-other: no\r\n", b"")
        } else {
            let body = b"{\"denied\":true}";
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"sso\"\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            std::io::Write::write_all(s, head.as_bytes()).is_ok()
                && std::io::Write::write_all(s, body).is_ok()
        }
    });
    let gw = in_process(&format!(
        r#"
server: {{ listen: "127.0.0.1:0", workers: 1 }}
plugins:
  - kind: auth
    args: {{ forward: {{ url: "http://{}/verify", copy_headers: [X-User, X-Roles] }} }}
routes: {{ "/": "*" }}
"#,
        service.addr
    ));
    let addr = gw.addrs()[0];
    let r = get(
        addr,
        "/app/page?x=1",
        "authorization: Bearer good\r\nx-user: mallory\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["headers"]["x-user"], "alice",
        "from the service, not the client"
    );
    assert_eq!(v["headers"]["x-roles"], "admin");
    assert!(v["headers"].get("x-other").is_none(), "only copy_headers");
    let seen = service.seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen.request_line(), "GET /verify HTTP/1.1");
    assert_eq!(seen.fields("x-forwarded-method"), ["GET"]);
    assert_eq!(seen.fields("x-forwarded-uri"), ["/app/page?x=1"]);
    assert_eq!(seen.fields("x-forwarded-host"), ["gw.test"]);
    assert_eq!(seen.fields("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.fields("x-forwarded-for"), ["127.0.0.1"]);
    // Denied: the service's answer, as it is.
    let r = get(addr, "/app/page", "authorization: Bearer bad\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"sso\""));
    assert_eq!(r.body_str(), "{\"denied\":true}");
    // One worker, keep-alive to the service: one connection for all of them.
    assert_eq!(get(addr, "/", "authorization: Bearer good\r\n").status, 200);
    assert_eq!(service.accepted.load(Ordering::SeqCst), 1);
    // The service gone: fail closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = in_process(&format!(
        "server: {{ listen: \"127.0.0.1:0\" }}\nplugins: [ {{ kind: auth, args: {{ forward: {{ url: \"http://{dead}/\" }} }} }} ]\nroutes: {{ \"/\": OK }}\n"
    ));
    let r = get(gw.addrs()[0], "/", "authorization: Bearer good\r\n");
    assert_eq!((r.status, code(&r).as_str()), (502, "AG-UPS-5021"));
}

/// A `redis-server` of its own on a free loopback port, killed on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test bounds its wait for the server with the real clock"
    )]
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shared_limit(redis_port: u16, rate: u32, burst: u32, on_error: &str) -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", workers: 1 }}
plugins:
  - kind: rate_limit
    args: {{ rate: {rate}, burst: {burst}, scope: route, store: "redis://127.0.0.1:{redis_port}/0", sync_interval: 50ms, on_store_error: {on_error} }}
routes: {{ "/": OK }}
"#
    )
}

/// Requests from `clients` keep-alive connections to each of `addrs` for `run`; the
/// number answered 200 and 429 (anything else fails the test).
#[expect(
    clippy::disallowed_methods,
    reason = "the client threads run outside the runtime; the test measures the load's span"
)]
fn hammer(addrs: &[SocketAddr], clients: usize, run: Duration) -> (u64, u64, f64) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = addrs
        .iter()
        .flat_map(|&a| std::iter::repeat_n(a, clients))
        .map(|addr| {
            let (ok, limited) = (ok.clone(), limited.clone());
            std::thread::spawn(move || {
                let mut r = Reader::new(connect(addr));
                while start.elapsed() < run {
                    r.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
                    match r.response(false).unwrap().status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        s => panic!("status {s}"),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}

#[test]
fn a_limit_shared_through_redis_holds_for_two_gateway_processes() {
    let redis = Redis::start();
    const RATE: u32 = 100;
    const BURST: u32 = 10;
    let a = crate::support::Gateway::start(&shared_limit(redis.port, RATE, BURST, "allow"));
    let b = crate::support::Gateway::start(&shared_limit(redis.port, RATE, BURST, "allow"));
    let (allowed, refused, elapsed) = hammer(&[a.addr, b.addr], 2, Duration::from_secs(3));
    let expected = f64::from(BURST) + f64::from(RATE) * elapsed;
    #[expect(clippy::cast_precision_loss, reason = "counts of a few hundred")]
    let allowed_f = allowed as f64;
    eprintln!(
        "shared limit: {allowed} allowed, {refused} refused in {elapsed:.2} s (expected {expected:.0})"
    );
    assert!(
        refused > 200,
        "the load exceeded the limit: {refused} refused"
    );
    assert!(
        (allowed_f - expected).abs() <= expected * 0.10,
        "{allowed} allowed by the two gateways in {elapsed:.2} s, expected {expected:.0} ± 10 %"
    );
}

#[test]
fn when_redis_dies_allow_limits_locally_and_deny_answers_503() {
    let mut redis = Redis::start();
    let allow = crate::support::Gateway::start(&shared_limit(redis.port, 1000, 1000, "allow"));
    let deny = crate::support::Gateway::start(&shared_limit(redis.port, 1000, 1000, "deny"));
    assert_eq!(get(allow.addr, "/", "").status, 200);
    assert_eq!(get(deny.addr, "/", "").status, 200);
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    // A request makes the sync thread talk to Redis, which fails and is logged.
    assert_eq!(get(deny.addr, "/", "").status, 200);
    deny.wait_line("answering 503 until it is back");
    let r = get(deny.addr, "/", "");
    assert_eq!((r.status, code(&r).as_str()), (503, "AG-SRV-5030"));
    assert_eq!(get(allow.addr, "/", "").status, 200);
    allow.wait_line("limiting locally until it is back");
    for _ in 0..5 {
        assert_eq!(get(allow.addr, "/", "").status, 200, "still served");
    }
}

#[test]
fn jwt_rs256_keys_verify_and_an_rsa_key_is_never_an_hmac_secret() {
    let dir = TempDir::new("jwt-rs");
    let key = dir.0.join("rs.pem");
    let public = dir.0.join("rs.pub.pem");
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (scripts/test installs it)")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let yaml = r#"
server: { listen: "127.0.0.1:0" }
plugins:
  - kind: auth
    args: { jwt: { keys: [ { alg: RS256, file: rs.pub.pem } ] } }
routes: { "/": OK }
"#;
    let config = load_str("t.yml", yaml, Format::Yaml, &dir.0, &[]).unwrap();
    let gw = anygate::serve::Server::start(config).unwrap();
    let addr = gw.addrs()[0];
    let claims = serde_json::json!({ "sub": "svc", "exp": unix_now() + 600 });
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap()).unwrap();
    let good = sign(&signing, jsonwebtoken::Algorithm::RS256, None, &claims);
    assert_eq!(bearer(addr, "/", &good, "").status, 200);
    let pem = std::fs::read(&public).unwrap();
    let confused = sign(
        &jsonwebtoken::EncodingKey::from_secret(&pem).unwrap(),
        jsonwebtoken::Algorithm::HS256,
        None,
        &claims,
    );
    assert_eq!(
        bearer(addr, "/", &confused, "").status,
        401,
        "the public key as an HMAC secret"
    );
    let ps = sign(&signing, jsonwebtoken::Algorithm::PS256, None, &claims);
    assert_eq!(
        bearer(addr, "/", &ps, "").status,
        401,
        "pinned to RS256: PS256 is refused"
    );
}
