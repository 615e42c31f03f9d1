//! Loading, validation and positions, in the three formats.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anygate_config::{Config, Failure, Format, Severity, Workers, load, load_str};
use anygate_router::{Action, Lookup};

fn yaml(text: &str) -> Result<Config, Failure> {
    load_str("t.yml", text, Format::Yaml, Path::new("."), &[])
}

fn yaml_env(text: &str, env: &[(&str, &str)]) -> Result<Config, Failure> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_str("t.yml", text, Format::Yaml, Path::new("."), &env)
}

/// `(location, code, message)` of every error, for exact assertions.
fn errors(r: Result<Config, Failure>) -> Vec<(String, &'static str, String)> {
    let f = r.expect_err("the configuration should be rejected");
    f.errors()
        .map(|d| {
            let at = d.span.map_or_else(String::new, |s| f.sources.location(s));
            (at, d.code, d.message.clone())
        })
        .collect()
}

/// The only error: its `file:line:column` and code.
fn only_error(r: Result<Config, Failure>) -> (String, &'static str, String) {
    let mut e = errors(r);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.remove(0)
}

fn labels(c: &Config) -> Vec<String> {
    c.routes.iter().map(|r| r.label()).collect()
}

#[test]
fn the_same_model_from_yaml_json_and_toml() {
    let y = r#"
server:
  listen: ["127.0.0.1:8081", "[::1]:8082"]
  workers: 3
proxy:
  timeouts: { connect: 250ms, total: 1m30s }
routes:
  "GET /a": 'OK {"a":1}'
  "/v1/": "http://up:9000/"
  "* /c": "FORBIDDEN *"
"#;
    let j = r#"{
  "server": {"listen": ["127.0.0.1:8081", "[::1]:8082"], "workers": 3},
  "proxy": {"timeouts": {"connect": "250ms", "total": "1m30s"}},
  "routes": {"GET /a": "OK {\"a\":1}", "/v1/": "http://up:9000/", "* /c": "FORBIDDEN *"}
}"#;
    let t = r#"
[server]
listen = ["127.0.0.1:8081", "[::1]:8082"]
workers = 3
[proxy.timeouts]
connect = "250ms"
total = "1m30s"
[routes]
"GET /a" = 'OK {"a":1}'
"/v1/" = "http://up:9000/"
"* /c" = "FORBIDDEN *"
"#;
    let mut seen = Vec::new();
    for (name, text, format) in [
        ("t.yml", y, Format::Yaml),
        ("t.json", j, Format::Json),
        ("t.toml", t, Format::Toml),
    ] {
        let c = load_str(name, text, format, Path::new("."), &[])
            .unwrap_or_else(|f| panic!("{name}: {f}"));
        let listen: Vec<String> = c.server.listen.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(listen, ["127.0.0.1:8081", "[::1]:8082"], "{name}");
        assert_eq!(c.server.workers, Workers::Count(3), "{name}");
        assert_eq!(c.proxy.timeouts.connect, Duration::from_millis(250));
        assert_eq!(c.proxy.timeouts.total, Some(Duration::from_secs(90)));
        assert_eq!(
            c.proxy.timeouts.read,
            Duration::from_secs(60),
            "default kept"
        );
        let kinds: Vec<&str> = c.routes.iter().map(|r| r.action.kind()).collect();
        seen.push((labels(&c), kinds));
    }
    assert_eq!(seen[0].0, ["GET /a", "* /v1/", "* /c"]);
    assert_eq!(seen[0].1, ["fixed", "proxy", "echo"]);
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
}

#[test]
fn route_order_is_the_order_written_in_every_format() {
    // Names chosen so that no sorted order (by text or by hash) is the written one.
    let names: Vec<String> = (0..60).map(|i| format!("/r{}", (i * 37) % 61)).collect();
    let y: String = names.iter().map(|n| format!("  \"{n}\": OK\n")).collect();
    let j: Vec<String> = names.iter().map(|n| format!("\"{n}\": \"OK\"")).collect();
    let t: String = names
        .iter()
        .map(|n| format!("\"{n}\" = \"OK\"\n"))
        .collect();
    for (text, format) in [
        (format!("routes:\n{y}"), Format::Yaml),
        (format!("{{\"routes\": {{{}}}}}", j.join(",")), Format::Json),
        (format!("[routes]\n{t}"), Format::Toml),
    ] {
        let c = load_str("t", &text, format, Path::new("."), &[]).unwrap();
        let got: Vec<String> = c.routes.iter().map(|r| r.key_text.clone()).collect();
        assert_eq!(got, names, "{format:?}");
    }
}

#[test]
fn dsl_errors_point_at_the_character_in_the_key_or_value() {
    let cases = [
        (
            r#""/bad/*/path": OK"#,
            "t.yml:2:9",
            "AG-CFG-1101",
            "`*` must be the last",
        ),
        (
            r#""/dup/:/x": OK"#,
            "t.yml:2:9",
            "AG-CFG-1101",
            "empty parameter name",
        ),
        (
            r#""/a/*/*": OK"#,
            "t.yml:2:7",
            "AG-CFG-1101",
            "`*` must be the last",
        ),
        (r#""/x": """#, "t.yml:2:10", "AG-CFG-1102", "empty action"),
        (
            r#""/x": "999 nope""#,
            "t.yml:2:10",
            "AG-CFG-1102",
            "unknown status `999`",
        ),
        (
            r#""/x": "FORBIDEN""#,
            "t.yml:2:10",
            "AG-CFG-1102",
            "did you mean `FORBIDDEN`",
        ),
        (r#""/x": "http://""#, "t.yml:2:17", "AG-CFG-1102", "no host"),
        (
            r#""/x": "http://up:99999/""#,
            "t.yml:2:20",
            "AG-CFG-1102",
            "port",
        ),
        (
            r#""/x": 'OK {"a":}'"#,
            "t.yml:2:18",
            "AG-CFG-1102",
            "not valid JSON",
        ),
        (
            r#""GE(T /x": OK"#,
            "t.yml:2:4",
            "AG-CFG-1101",
            "not a valid HTTP method",
        ),
        (
            r#"/plain/*/x: OK"#,
            "t.yml:2:10",
            "AG-CFG-1101",
            "`*` must be the last",
        ),
    ];
    for (line, at, code, why) in cases {
        let (loc, c, msg) = only_error(yaml(&format!("routes:\n  {line}\n")));
        assert_eq!((loc.as_str(), c), (at, code), "{line}: {msg}");
        assert!(msg.contains(why), "{line}: {msg}");
    }
}

#[test]
fn a_missing_value_points_at_its_key() {
    let (loc, code, msg) = only_error(yaml("routes:\n  \"/x\": OK\n  \"/e\":\n"));
    assert_eq!((loc.as_str(), code), ("t.yml:3:3", "AG-CFG-1102"));
    assert!(msg.contains("`/e` has no action"), "{msg}");
}

#[test]
fn escaped_strings_point_at_the_whole_string() {
    // `\u002a` is `*`: the content is not verbatim in the file, so the whole key is marked.
    let (loc, _, msg) = only_error(yaml("routes:\n  \"/a/\\u002a/b\": OK\n"));
    assert_eq!(loc, "t.yml:2:3");
    assert!(msg.contains("`*` must be the last"), "{msg}");
}

#[test]
fn errors_in_json_and_toml_have_positions_too() {
    let j = "{\n  \"routes\": {\n    \"/ok\": \"OK\",\n    \"/dup/:/x\": \"OK\"\n  }\n}";
    let (loc, code, _) = only_error(load_str("t.json", j, Format::Json, Path::new("."), &[]));
    assert_eq!((loc.as_str(), code), ("t.json:4:11", "AG-CFG-1101"));
    let t = "[routes]\n\"/ok\" = \"OK\"\n\"/x\" = \"999\"\n";
    let (loc, code, _) = only_error(load_str("t.toml", t, Format::Toml, Path::new("."), &[]));
    assert_eq!((loc.as_str(), code), ("t.toml:3:9", "AG-CFG-1102"));
    let bare = "[routes]\n'/a/*/b' = \"OK\"\n";
    let (loc, _, _) = only_error(load_str("t.toml", bare, Format::Toml, Path::new("."), &[]));
    assert_eq!(loc, "t.toml:2:5");
}

#[test]
fn duplicate_rules_are_rejected_with_both_positions() {
    // The same key twice: a duplicate key.
    let f = yaml("routes:\n  \"GET /x\": OK\n  \"/y\": OK\n  \"GET /x\": CREATED\n").unwrap_err();
    let d = f.errors().next().unwrap();
    assert_eq!(d.code, "AG-CFG-1003");
    assert_eq!(f.sources.location(d.span.unwrap()), "t.yml:4:3");
    assert_eq!(f.sources.location(d.notes[0].0), "t.yml:2:3");
    // Different text, same methods and shape: a conflict.
    let f = yaml("routes:\n  \"GET POST /u/:id\": OK\n  \"POST GET /u/:name\": OK\n").unwrap_err();
    let d = f.errors().next().unwrap();
    assert_eq!(d.code, "AG-CFG-1103");
    assert_eq!(f.sources.location(d.span.unwrap()), "t.yml:3:3");
    assert_eq!(f.sources.location(d.notes[0].0), "t.yml:2:3");
    let rendered = f.to_string();
    assert!(
        rendered.contains("t.yml:2:3: note: the earlier rule `GET POST /u/:id`"),
        "{rendered}"
    );
    // In JSON too (serde_json would silently keep the last one).
    let j = r#"{"routes": {"/x": "OK", "/x": "GONE"}}"#;
    let (loc, code, _) = only_error(load_str("t.json", j, Format::Json, Path::new("."), &[]));
    assert_eq!((loc.as_str(), code), ("t.json:1:25", "AG-CFG-1003"));
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let e = errors(yaml(
        "server:\n  listen: nope\n  wrkers: 2\nroutes:\n  \"/a/*/b\": OK\n  \"/c\": NOPE\n",
    ));
    let codes: Vec<&str> = e.iter().map(|e| e.1).collect();
    assert_eq!(
        codes,
        ["AG-CFG-1005", "AG-CFG-1002", "AG-CFG-1101", "AG-CFG-1102"],
        "{e:#?}"
    );
}

#[test]
fn rendering_underlines_the_offending_text() {
    let f = yaml("routes:\n  \"/x\": \"BAD_STATUS body\"\n").unwrap_err();
    let text = f.to_string();
    let expected = "t.yml:2:10: error[AG-CFG-1102]: unknown status `BAD_STATUS`";
    assert!(text.starts_with(expected), "{text}");
    assert!(
        text.contains(" 2 |   \"/x\": \"BAD_STATUS body\"\n   |          ^^^^^^^^^^\n"),
        "{text}"
    );
}

#[test]
fn unknown_keys_are_rejected_everywhere_with_a_hint() {
    let cases = [
        (
            "servr: {}\nroutes: {\"/\": OK}\n",
            "t.yml:1:1",
            "did you mean `server`?",
        ),
        (
            "server: {listn: x}\nroutes: {\"/\": OK}\n",
            "t.yml:1:10",
            "did you mean `listen`?",
        ),
        (
            "static: {indx: a}\nroutes: {\"/\": OK}\n",
            "t.yml:1:10",
            "did you mean `index`?",
        ),
        (
            "proxy: {timeouts: {conect: 1s}}\nroutes: {\"/\": OK}\n",
            "t.yml:1:20",
            "did you mean `connect`?",
        ),
        (
            "groups:\n  - prefx: /a\n    routes: {\"/\": OK}\n",
            "t.yml:2:5",
            "did you mean `prefix`?",
        ),
        (
            "routes: {\"/\": OK}\nzzz: 1\n",
            "t.yml:2:1",
            "known keys: server",
        ),
    ];
    for (text, at, help) in cases {
        let f = yaml(text).unwrap_err();
        let d = f.errors().next().unwrap();
        assert_eq!(d.code, "AG-CFG-1002", "{text}");
        assert_eq!(f.sources.location(d.span.unwrap()), at, "{text}");
        assert!(
            d.help.as_deref().unwrap_or("").contains(help),
            "{text}: {d:?}"
        );
    }
}

#[test]
fn types_and_values_are_checked() {
    let cases = [
        ("server: {workers: 0}", "AG-CFG-1005", "1 to 1024"),
        (
            "server: {workers: many}",
            "AG-CFG-1004",
            "a number or \"auto\"",
        ),
        (
            "server: {listen: 8080}",
            "AG-CFG-1004",
            "a string or a list",
        ),
        (
            "server: {listen: \"1.2.3.4\"}",
            "AG-CFG-1005",
            "not a listen address",
        ),
        (
            "server: {listen: []}",
            "AG-CFG-1005",
            "needs a `tls` section",
        ),
        ("server: [1]", "AG-CFG-1004", "`server` must be a map"),
        ("static: {spa: yes}", "AG-CFG-1004", "true or false"),
        (
            "server: {trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]}",
            "AG-CFG-1005",
            "`10.0.0.1/8` has bits set past its /8 (the range starts at 10.0.0.0)",
        ),
        (
            "server: {trusted_proxies: [proxy.internal]}",
            "AG-CFG-1005",
            "not an IP address or range",
        ),
        (
            "server: {allow_underscores_in_headers: 1}",
            "AG-CFG-1004",
            "`server.allow_underscores_in_headers` must be true or false",
        ),
        (
            "static: {index: [\"a/b.html\"]}",
            "AG-CFG-1005",
            "not a file name",
        ),
        (
            "proxy: {timeouts: {read: 5}}",
            "AG-CFG-1004",
            "must be a string",
        ),
        ("proxy: {timeouts: {read: \"5\"}}", "AG-CFG-1005", "no unit"),
        (
            "proxy: {timeouts: {read: 0s}}",
            "AG-CFG-1005",
            "more than 0",
        ),
        (
            "proxy: {upstreams: {u: {targets: [\"nohost\"]}}}",
            "AG-CFG-1005",
            "host:port",
        ),
        (
            "proxy: {upstreams: {u: {}}}",
            "AG-CFG-1005",
            "needs `targets`",
        ),
        (
            "proxy: {upstreams: {\"a b\": {targets: []}}}",
            "AG-CFG-1005",
            "pool name",
        ),
        ("groups: {prefix: /a}", "AG-CFG-1004", "a list of groups"),
        (
            "plugins: {kind: x}",
            "AG-CFG-1004",
            "a list of `{ kind, args }`",
        ),
        ("plugins: [{args: {}}]", "AG-CFG-1005", "needs a `kind`"),
        (
            "plugins: [{kind: x, args: [1]}]",
            "AG-CFG-1004",
            "`args` must be a map",
        ),
        ("plugins: [{kind: x, arg: {}}]", "AG-CFG-1002", "arg"),
        ("tls: {}", "AG-CFG-1005", "needs `certificates`"),
        (
            "tls: {certificates: [{cert: a.pem}]}",
            "AG-CFG-1005",
            "needs `cert` and `key`",
        ),
        (
            "tls: {profile: old, certificates: [{cert: a, key: b}]}",
            "AG-CFG-1005",
            "`tls.profile` must be",
        ),
        (
            "tls: {client_auth: {mode: required}, certificates: [{cert: a, key: b}]}",
            "AG-CFG-1005",
            "needs `ca`",
        ),
        (
            "tls: {client_auth: {mode: always, ca: c}, certificates: [{cert: a, key: b}]}",
            "AG-CFG-1005",
            "`off`, `optional` or `required`",
        ),
        (
            "tls: {certificates: [{cert: a, key: b}], hosts: {\"a b\": {}}}",
            "AG-CFG-1005",
            "not a host name",
        ),
        (
            "tls: {certificates: [{cert: a, key: b}], listen: \"127.0.0.1:8080\"}",
            "AG-CFG-1005",
            "both a plain and a TLS listener",
        ),
        (
            "tls: {certificates: [{cert: a, key: b}], redirect: true}",
            "AG-CFG-1002",
            "redirect",
        ),
        (
            "proxy: {upstreams: {u: {targets: [\"a:1\"], tls: {cert: c}}}}",
            "AG-CFG-1005",
            "needs both `cert` and `key`",
        ),
        (
            "proxy: {client_cert_header: \"X Subject\"}",
            "AG-CFG-1005",
            "must be a header name",
        ),
        (
            "proxy: {upstreams: {u: {targets: [\"a:1\"], protocol: h3}}}",
            "AG-CFG-1005",
            "`proxy.upstreams.u.protocol` is h1, h2 or auto, not `h3`",
        ),
    ];
    for (section, code, why) in cases {
        let text = format!("{section}\nroutes: {{\"/\": OK}}\n");
        let (_, c, msg) = only_error(yaml(&text));
        assert_eq!(c, code, "{section}: {msg}");
        assert!(msg.contains(why), "{section}: {msg}");
    }
}

#[test]
fn listen_forms() {
    let c =
        yaml("server:\n  listen: [\":80\", \"localhost:81\", \"0.0.0.0:82\"]\nroutes: {\"/\": OK}")
            .unwrap();
    let got: Vec<String> = c.server.listen.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(got, ["0.0.0.0:80", "127.0.0.1:81", "0.0.0.0:82"]);
    let c = yaml("routes: {\"/\": OK}").unwrap();
    assert_eq!(c.server.listen[0].addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.workers, Workers::Auto);
    let (_, code, msg) = only_error(yaml(
        "server: {listen: [\":80\", \"0.0.0.0:80\"]}\nroutes: {\"/\": OK}",
    ));
    assert_eq!(code, "AG-CFG-1005");
    assert!(msg.contains("listed twice"), "{msg}");
}

#[test]
fn no_routes_is_an_error() {
    let (_, code, _) = only_error(yaml("server: {workers: 2}\n"));
    assert_eq!(code, "AG-CFG-1006");
    let (_, code, _) = only_error(yaml(""));
    assert_eq!(code, "AG-CFG-1006");
}

#[test]
fn groups_prefix_nest_and_override_settings_field_by_field() {
    let c = yaml(
        r#"
static: { index: [index.htm], listing: true }
proxy: { timeouts: { connect: 1s, read: 2s } }
routes:
  "/": "OK"
groups:
  - prefix: /admin
    static: { listing: false }
    proxy: { timeouts: { read: 9s } }
    routes:
      "/": "http://admin-ui:3000/"
      "GET /users/:id": "OK"
    groups:
      - prefix: /deep/:tenant
        routes:
          "/x/*": "*"
  - routes:
      "/plain": "OK"
"#,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        labels(&c),
        [
            "* /",
            "* /admin/",
            "GET /admin/users/:id",
            "* /admin/deep/:tenant/x/*",
            "* /plain"
        ]
    );
    let admin = &c.routes[1];
    assert_eq!(admin.group.as_deref(), Some("/admin"));
    assert_eq!(admin.static_settings.index, ["index.htm"], "inherited");
    assert!(!admin.static_settings.listing, "overridden");
    assert_eq!(
        admin.proxy.timeouts.connect,
        Duration::from_secs(1),
        "inherited"
    );
    assert_eq!(
        admin.proxy.timeouts.read,
        Duration::from_secs(9),
        "overridden"
    );
    assert_eq!(c.routes[3].group.as_deref(), Some("/admin/deep/:tenant"));
    assert!(c.routes[3].static_settings.listing == admin.static_settings.listing);
    assert!(c.routes[0].static_settings.listing, "top level untouched");
    // The joined paths route as one table.
    match c.router.lookup(b"GET", b"/admin/deep/acme/x/y/z") {
        Lookup::Found(m) => {
            assert_eq!(m.rule.value, 3);
            assert_eq!(m.params.get("tenant"), Some(&b"acme"[..]));
            assert_eq!(m.params.splat(), Some(&b"y/z"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_errors() {
    let cases = [
        (
            "groups:\n  - prefix: /a/*\n    routes: {\"/\": OK}",
            "t.yml:2:16",
            "AG-CFG-1105",
        ),
        (
            "groups:\n  - prefix: GET /a\n    routes: {\"/\": OK}",
            "t.yml:2:16",
            "AG-CFG-1105",
        ),
        (
            "groups:\n  - prefix: /a/:id\n    routes: {\"/:id\": OK}",
            "t.yml:3:14",
            "AG-CFG-1101",
        ),
        (
            "groups:\n  - plugins: [{kind: 7}]\n    routes: {\"/\": OK}",
            "t.yml:2:22",
            "AG-CFG-1004",
        ),
        (
            "groups:\n  - proxy: {upstreams: {}}\n    routes: {\"/\": OK}",
            "t.yml:2:13",
            "AG-CFG-1005",
        ),
    ];
    for (text, at, code) in cases {
        let (loc, c, msg) = only_error(yaml(text));
        assert_eq!((loc.as_str(), c), (at, code), "{text}: {msg}");
    }
}

#[test]
fn env_overrides_replace_values_and_report_their_own_positions() {
    let base = "server:\n  listen: \"127.0.0.1:8080\"\nroutes: {\"/\": OK}\n";
    let c = yaml_env(
        base,
        &[
            ("ANYGATE__SERVER__LISTEN", "0.0.0.0:80"),
            ("ANYGATE__SERVER__WORKERS", "4"),
            ("ANYGATE__PROXY__TIMEOUTS__CONNECT", "3s"),
            ("OTHER__SERVER__WORKERS", "9"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen[0].addr.to_string(), "0.0.0.0:80");
    assert_eq!(c.server.workers, Workers::Count(4));
    assert_eq!(c.proxy.timeouts.connect, Duration::from_secs(3));
    // Lists and whole route tables, as YAML values.
    let c = yaml_env(
        base,
        &[
            ("ANYGATE__SERVER__LISTEN", "[\":81\", \":82\"]"),
            ("ANYGATE__ROUTES", "{\"GET /env\": CREATED}"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(labels(&c), ["GET /env"]);
    // An index into a list.
    let c = yaml_env(
        "groups:\n  - prefix: /a\n    routes: {\"/\": OK}\n",
        &[("ANYGATE__GROUPS__0__PREFIX", "/b")],
    )
    .unwrap();
    assert_eq!(labels(&c), ["* /b/"]);
    // An empty value resets to the default.
    let c = yaml_env(base, &[("ANYGATE__SERVER__LISTEN", "")]).unwrap();
    assert_eq!(c.server.listen[0].addr.to_string(), "127.0.0.1:8080");
    // Errors point into the variable.
    let cases = [
        (
            "ANYGATE__SERVER__LISTEN",
            "nope",
            "environment:1:25",
            "AG-CFG-1005",
        ),
        (
            "ANYGATE__SERVER__WORKRS",
            "2",
            "environment:1:18",
            "AG-CFG-1002",
        ),
        (
            "ANYGATE__ROUTES__X",
            "OK",
            "environment:1:18",
            "AG-CFG-1008",
        ),
        (
            "ANYGATE__SERVER____X",
            "1",
            "environment:1:18",
            "AG-CFG-1008",
        ),
        (
            "ANYGATE__SERVER__LISTEN__X",
            "1",
            "environment:1:26",
            "AG-CFG-1008",
        ),
        (
            "ANYGATE__GROUPS__3",
            "{}",
            "environment:1:18",
            "AG-CFG-1008",
        ),
        (
            "ANYGATE__ROUTES",
            "{\"/\": NOPE}",
            "environment:1:23",
            "AG-CFG-1102",
        ),
        (
            "ANYGATE__SERVER__WORKERS",
            "[1",
            "environment:1:28",
            "AG-CFG-1001",
        ),
    ];
    let groups = "groups:\n  - routes: {\"/\": OK}\n";
    for (name, value, at, code) in cases {
        let text = if name.contains("GROUPS") {
            groups
        } else {
            base
        };
        let (loc, c, msg) = only_error(yaml_env(text, &[(name, value)]));
        assert_eq!((loc.as_str(), c), (at, code), "{name}={value}: {msg}");
    }
}

#[test]
fn error_page_files_are_read_relative_to_the_config_file_and_a_missing_one_says_where() {
    let dir = tempdir("error-pages");
    std::fs::create_dir_all(dir.join("site/errors")).unwrap();
    std::fs::write(dir.join("site/errors/404.html"), "<b>gone</b>").unwrap();
    let file = dir.join("site/anygate.yml");
    std::fs::write(
        &file,
        "errors:\n  404: ./errors/404.html\n  500: ./errors/500.html\nroutes: { \"/\": OK }\n",
    )
    .unwrap();
    let f = load(&file, &[]).unwrap_err();
    let text = f.to_string();
    assert!(
        text.contains("error page `./errors/500.html` does not exist"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "relative files are resolved against the config file's directory: {}",
            dir.join("site/./errors/500.html").display()
        )),
        "{text}"
    );
    assert_eq!(f.errors().count(), 1, "{text}");
}

#[test]
fn static_directories_must_exist_relative_to_the_config_file() {
    let dir = tempdir("static");
    std::fs::create_dir_all(dir.join("site/dist")).unwrap();
    std::fs::write(dir.join("site/file.txt"), "x").unwrap();
    let file = dir.join("site/anygate.yml");
    std::fs::write(
        &file,
        "routes:\n  \"/\": \"./dist/\"\n  \"/b/\": \"./missing/\"\n  \"/c/\": \"./file.txt\"\n",
    )
    .unwrap();
    let f = load(&file, &[]).unwrap_err();
    let e: Vec<(String, &str)> = f
        .errors()
        .map(|d| (f.sources.location(d.span.unwrap()), d.code))
        .collect();
    let name = file.display();
    assert_eq!(
        e,
        [
            (format!("{name}:3:10"), "AG-CFG-1104"),
            (format!("{name}:4:10"), "AG-CFG-1104")
        ]
    );
    let text = f.to_string();
    assert!(text.contains("`./missing/` does not exist"), "{text}");
    assert!(text.contains("`./file.txt` is not a directory"), "{text}");
    let looked = dir.join("site/./missing/");
    assert!(
        text.contains(&format!(
            "relative directories are resolved against the config file's directory: {}",
            looked.display()
        )),
        "{text}"
    );
    std::fs::write(&file, "routes:\n  \"/\": \"./dist/\"\n").unwrap();
    let c = load(&file, &[]).unwrap();
    assert_eq!(
        c.routes[0].static_root.as_deref(),
        Some(&*dir.join("site/./dist/"))
    );
    assert!(matches!(c.routes[0].action, Action::Static(_)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn file_level_errors() {
    let dir = tempdir("files");
    let (_, code, msg) = only_error(load(&dir.join("nope.yml"), &[]));
    assert_eq!(code, "AG-CFG-1000");
    assert!(msg.contains("cannot read"), "{msg}");
    let (_, code, msg) = only_error(load(&dir.join("x.conf"), &[]));
    assert_eq!(code, "AG-CFG-1000");
    assert!(msg.contains(".yml, .yaml, .json or .toml"), "{msg}");
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, b"routes:\n  \"/\": \"O\xffK\"\n").unwrap();
    let (loc, code, _) = only_error(load(&bad, &[]));
    assert_eq!(
        (loc, code),
        (format!("{}:2:10", bad.display()), "AG-CFG-1001")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn yaml_specifics() {
    // A bare `*` is an alias in YAML: say how to quote it.
    let f = yaml("routes:\n  \"/\": *\n").unwrap_err();
    let d = f.errors().next().unwrap();
    assert_eq!(d.code, "AG-CFG-1001");
    assert!(d.help.as_deref().unwrap().contains("quote it"), "{d:?}");
    // Anchors and aliases work.
    let c = yaml("x: &ok OK\nroutes: {\"/a\": *ok}\n");
    assert_eq!(errors(c)[0].2, "unknown key `x` in the configuration");
    let c = yaml("routes:\n  \"/a\": &ok OK\n  \"/b\": *ok\n").unwrap();
    assert_eq!(labels(&c), ["* /a", "* /b"]);
    // Billion laughs stops at the node budget, quickly.
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (_, code, msg) = only_error(yaml(&doc));
    assert_eq!(code, "AG-CFG-1001");
    assert!(msg.contains("million"), "{msg}");
    // One document, no tags.
    let (loc, code, _) = only_error(yaml("routes: {\"/\": OK}\n---\nroutes: {}\n"));
    assert_eq!((loc.as_str(), code), ("t.yml:2:1", "AG-CFG-1001"));
    let (_, code, msg) = only_error(yaml("routes: !!map {\"/\": OK}\n"));
    assert_eq!(code, "AG-CFG-1001");
    assert!(msg.contains("tags"), "{msg}");
    let c = yaml("routes: {\"/\": !!str 200}\n").unwrap();
    assert!(matches!(&c.routes[0].action, Action::Fixed(f) if f.status == 200));
    // Plain integers are actions too (`"/x": 204`).
    let c = yaml("routes: {\"/\": 204}\n").unwrap();
    assert!(matches!(&c.routes[0].action, Action::Fixed(f) if f.status == 204));
    // Deep nesting is an error, not a stack overflow.
    let deep = format!("routes: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(errors(yaml(&deep))[0].1, "AG-CFG-1001");
}

#[test]
fn json_specifics() {
    let j = |t: &str| load_str("t.json", t, Format::Json, Path::new("."), &[]);
    for (text, at) in [
        ("{\"routes\": {\"/\": \"OK\"}} x", "t.json:1:25"),
        ("{\"routes\": {\"/\": \"OK\",}}", "t.json:1:23"),
        ("{\"routes\": {\"/\": 'OK'}}", "t.json:1:18"),
        ("{\"routes\": {\"/\": \"OK}}", "t.json:1:18"),
        ("{\"routes\": {\"/\": 01}}", "t.json:1:18"),
        ("{\"routes\": {\"/\": \"\\x\"}}", "t.json:1:19"),
        ("{\"routes\": {\"/\": \"\\ud800\"}}", "t.json:1:19"),
        ("", "t.json:1:1"),
    ] {
        let (loc, code, _) = only_error(j(text));
        assert_eq!((loc.as_str(), code), (at, "AG-CFG-1001"), "{text}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(only_error(j(&deep)).1, "AG-CFG-1001");
    let c = j("{\"routes\": {\"/caf\\u00e9\": \"OK \\ud83d\\ude00\"}}").unwrap();
    assert!(matches!(&c.routes[0].action, Action::Fixed(f) if f.body == "\u{1f600}"));
}

#[test]
fn shadowed_and_overlapping_rules_are_warned_about() {
    let c = yaml(
        r#"
routes:
  "GET /x": OK
  "POST /x": OK
  "GET POST /x/": OK
  "POST GET /x": CREATED
  "POST PUT /x": ACCEPTED
  "* /x": FORBIDDEN
  "GET /y/:a": OK
  "GET /y/:b": GONE
"#,
    );
    // `GET /y/:a` and `GET /y/:b` have the same shape and methods: that one is a conflict.
    let (loc, code, _) = only_error(c);
    assert_eq!((loc.as_str(), code), ("t.yml:10:3", "AG-CFG-1103"));
    let c = yaml(
        r#"
routes:
  "GET /x": OK
  "POST /x": OK
  "GET POST /x/": OK
  "PUT POST /x": ACCEPTED
  "POST GET /x/:id": OK
  "GET DELETE /x": GONE
  "DELETE /x": GONE
  "* /x": FORBIDDEN
"#,
    )
    .unwrap();
    let w: Vec<(String, &str)> = c
        .warnings
        .iter()
        .map(|d| (c.sources.location(d.span.unwrap()), d.code))
        .collect();
    assert_eq!(
        w,
        [
            ("t.yml:6:3".to_owned(), "AG-CFG-1202"),
            ("t.yml:8:3".to_owned(), "AG-CFG-1202"),
            ("t.yml:9:3".to_owned(), "AG-CFG-1201"),
        ]
    );
    assert!(c.warnings.iter().all(|d| d.severity == Severity::Warning));
    let shadowed = &c.warnings[2];
    assert!(shadowed.message.contains("can never match"), "{shadowed:?}");
    assert_eq!(shadowed.notes.len(), 1, "points at `GET DELETE /x`");
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anygate-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn regression_deep_yaml_block_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("routes: {{\"/\": OK}}\nx:\n{}x\n", "- ".repeat(200_000));
    let (_, code, msg) = only_error(yaml(&deep));
    assert_eq!(code, "AG-CFG-1001");
    assert!(msg.contains("128"), "{msg}");
}

#[test]
fn regression_anchored_copies_count_against_the_node_budget() {
    // ~100k nodes, then 40 anchored wrappers each storing another copy: 4M nodes.
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..5 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    doc.push_str("b: ");
    for i in 0..40 {
        doc.push_str(&format!("&w{i} ["));
    }
    doc.push_str("*a4");
    doc.push_str(&"]".repeat(40));
    let (_, code, msg) = only_error(yaml(&format!("{doc}\nroutes: {{\"/\": OK}}\n")));
    assert_eq!(code, "AG-CFG-1001");
    assert!(msg.contains("million"), "{msg}");
}

#[test]
fn regression_an_alias_cannot_splice_past_the_depth_limit() {
    let open: String = (0..100).map(|_| "[").collect();
    let close: String = (0..100).map(|_| "]").collect();
    let doc = format!(
        "a: &a {open}x{close}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
    );
    let (_, code, msg) = only_error(yaml(&format!("{doc}routes: {{\"/\": OK}}\n")));
    assert_eq!(code, "AG-CFG-1001");
    assert!(msg.contains("through this alias"), "{msg}");
}

#[test]
fn regression_env_names_with_many_parts_are_refused() {
    let name = format!("ANYGATE{}", "__A".repeat(10_000));
    let (_, code, msg) = only_error(yaml_env("routes: {\"/\": OK}\n", &[(&name, "1")]));
    assert_eq!(code, "AG-CFG-1008");
    assert!(msg.contains("parts"), "{msg}");
    let (_, code, _) = only_error(yaml_env(
        "groups: [{routes: {\"/\": OK}}]\n",
        &[("ANYGATE__GROUPS__0__ROUTES__X", "OK")],
    ));
    assert_eq!(code, "AG-CFG-1008");
}

#[test]
fn regression_positions_with_cr_crlf_and_multibyte_text() {
    for (eol, name) in [("\r", "cr"), ("\r\n", "crlf"), ("\n", "lf")] {
        let text = ["# é ü", "routes:", "  \"/é/*/x\": OK"].join(eol);
        let (loc, _, _) = only_error(yaml(&text));
        assert_eq!(loc, "t.yml:3:7", "{name}");
    }
    let f = yaml("routes:\r\n  \"/ü\": \"NÖPE\"\r\n").unwrap_err();
    let text = f.to_string();
    assert!(text.starts_with("t.yml:2:10:"), "{text}");
    assert!(text.contains("\n   |          ^^^^\n"), "{text}");
}

#[test]
fn regression_prefix_and_splat_rules_have_the_same_shape_for_shadowing() {
    let c = yaml("routes:\n  \"GET POST /v1/\": OK\n  \"GET /v1/*\": GONE\n").unwrap();
    let codes: Vec<&str> = c.warnings.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["AG-CFG-1201"]);
}

#[test]
fn a_named_method_beating_a_more_specific_rule_is_warned_about() {
    let c =
        yaml("routes:\n  \"GET /\": OK\n  \"/api/\": \"http://api/\"\n  \"/ok\": OK\n").unwrap();
    let at: Vec<(String, &str)> = c
        .warnings
        .iter()
        .map(|w| (c.sources.location(w.span.unwrap()), w.code))
        .collect();
    assert_eq!(
        at,
        [
            ("t.yml:3:3".to_owned(), "AG-CFG-1202"),
            ("t.yml:4:3".to_owned(), "AG-CFG-1202")
        ]
    );
    let w = &c.warnings[0];
    assert!(
        w.message
            .starts_with("GET HEAD requests under `/api/` go to `GET /`"),
        "{w:?}"
    );
    // Naming the methods on the specific rule silences it.
    let c = yaml("routes:\n  \"GET /\": OK\n  \"GET POST /api/\": \"http://api/\"\n").unwrap();
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn regression_pool_names_ignore_case() {
    let c = yaml(
        "proxy: {upstreams: {Users: {targets: [\"127.0.0.1:9\"]}}}\nroutes: {\"/\": \"http://USERS/\"}",
    )
    .unwrap();
    assert!(c.upstream("users").is_some());
    let (_, code, msg) = only_error(yaml(
        "proxy: {upstreams: {a: {targets: [\"h:1\"]}, A: {targets: [\"h:1\"]}}}\nroutes: {\"/\": OK}",
    ));
    assert_eq!(code, "AG-CFG-1005");
    assert!(msg.contains("defined twice"), "{msg}");
    let (_, code, _) = only_error(yaml(
        "proxy: {upstreams: {a: {targets: [\"1.2.3.4:0\"]}}}\nroutes: {\"/\": OK}",
    ));
    assert_eq!(code, "AG-CFG-1005");
}

#[test]
fn regression_a_bad_group_prefix_does_not_cause_false_conflicts() {
    let e = errors(yaml(
        "routes: {\"/x\": OK}\ngroups:\n  - prefix: /a/*\n    routes: {\"/x\": OK}\n",
    ));
    let codes: Vec<&str> = e.iter().map(|e| e.1).collect();
    assert_eq!(codes, ["AG-CFG-1105"]);
}

#[test]
fn spa_is_on_by_default_for_root_static_rules_only() {
    let dir = tempdir("spa");
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    let c = load_str(
        "t.yml",
        "routes:\n  \"/*\": ./dist\n  \"/x/\": ./dist\ngroups:\n  - prefix: /app\n    routes: {\"/\": ./dist}\n",
        Format::Yaml,
        &dir,
        &[],
    )
    .unwrap();
    let spa: Vec<bool> = c.routes.iter().map(|r| r.spa).collect();
    assert_eq!(spa, [true, false, true]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn static_settings_are_read_with_positions_and_groups_override_them() {
    let c = yaml(
        "static:\n  cache: { default: \"public, max-age=60\" }\n  compress: true\n  memory_file_max: 16KiB\n  memory_total_max: 8MiB\n  revalidate: 250ms\nroutes:\n  \"/ok\": \"OK\"\ngroups:\n  - prefix: /g\n    static: { compress: false, cache: { html: \"no-store\" } }\n    routes:\n      \"/x\": \"OK\"\n",
    )
    .unwrap();
    let top = &c.static_settings;
    assert_eq!(top.cache.default, "public, max-age=60");
    assert_eq!(top.cache.html, "no-cache");
    assert!(top.compress);
    assert_eq!(
        (top.memory_file_max, top.memory_total_max),
        (16 << 10, 8 << 20)
    );
    assert_eq!(top.revalidate, Duration::from_millis(250));
    let g = &c.routes[1].static_settings;
    assert!(!g.compress, "overridden");
    assert_eq!(g.cache.html, "no-store");
    assert_eq!(
        g.cache.default, "public, max-age=60",
        "inherited field by field"
    );
    assert_eq!(g.memory_file_max, 16 << 10);

    let errs = errors(yaml(
        "static:\n  cache: { html: \"no-cache\\r\\nx-evil: 1\" }\n  memory_file_max: -1\n  compress: yes please\nroutes:\n  \"/ok\": \"OK\"\ngroups:\n  - prefix: /g\n    static: { memory_total_max: 1MiB }\n    routes:\n      \"/x\": \"OK\"\n",
    ));
    let text = format!("{errs:?}");
    assert_eq!(errs.len(), 4, "{text}");
    assert!(
        text.contains("t.yml:2:18") && text.contains("printable ASCII"),
        "{text}"
    );
    assert!(text.contains("t.yml:3:20"), "{text}");
    assert!(text.contains("static.compress"), "{text}");
    assert!(
        text.contains("t.yml:9:15") && text.contains("top level"),
        "{text}"
    );
}

#[test]
fn proxy_connection_and_header_keys() {
    use anygate_config::HostHeader;
    let c = yaml("routes: {\"/\": OK}\n").unwrap();
    assert_eq!(c.proxy.host, HostHeader::Upstream);
    assert!(!c.proxy.via);
    assert_eq!((c.proxy.max_idle, c.proxy.max_conns), (64, 0));
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.proxy.dns_ttl, Duration::from_secs(30));

    let c = yaml(
        "proxy: {host: client, via: true, max_idle: 4, max_conns: 100, idle_timeout: 5s, dns_ttl: 1m}\n\
         groups:\n  - prefix: /g\n    proxy: {host: \"api.internal:8443\", max_idle: 0}\n    routes: {\"/\": \"http://u/\"}\n\
         routes: {\"/\": OK}\n",
    )
    .unwrap();
    assert_eq!(c.proxy.host, HostHeader::Client);
    assert!(c.proxy.via);
    assert_eq!((c.proxy.max_idle, c.proxy.max_conns), (4, 100));
    assert_eq!(c.proxy.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.proxy.dns_ttl, Duration::from_secs(60));
    let g = c.routes.iter().find(|r| r.group.is_some()).unwrap();
    assert_eq!(g.proxy.host, HostHeader::Fixed("api.internal:8443".into()));
    assert_eq!(g.proxy.max_idle, 0);
    assert!(g.proxy.via, "inherited field by field");
    assert_eq!(g.proxy.max_conns, 100);

    for (section, code, why) in [
        (
            "proxy: {host: \"a b\"}",
            "AG-CFG-1005",
            "`proxy.host` must be",
        ),
        ("proxy: {host: \"\"}", "AG-CFG-1005", "`proxy.host` must be"),
        ("proxy: {via: 1}", "AG-CFG-1004", "true or false"),
        ("proxy: {max_idle: -1}", "AG-CFG-1005", "cannot be negative"),
        ("proxy: {max_conns: \"many\"}", "AG-CFG-1004", "a number"),
        ("proxy: {idle_timeout: 0s}", "AG-CFG-1005", "more than 0"),
        ("proxy: {dns_ttl: soon}", "AG-CFG-1005", ""),
    ] {
        let text = format!("{section}\nroutes: {{\"/\": OK}}\n");
        let (at, c, msg) = only_error(yaml(&text));
        assert_eq!(c, code, "{section}: {msg}");
        assert!(msg.contains(why), "{section}: {msg}");
        assert!(at.starts_with("t.yml:1:"), "{section}: {at}");
    }
}

#[test]
fn plugin_chains_are_global_then_each_enclosing_group_in_order() {
    let c = yaml(
        "plugins: [{kind: g1}, {kind: g2, args: {n: 1}}]\n\
         routes: {\"/top\": OK}\n\
         groups:\n\
         \x20 - prefix: /a\n\
         \x20   plugins: [{kind: a}]\n\
         \x20   routes: {\"/x\": OK}\n\
         \x20   groups:\n\
         \x20     - prefix: /b\n\
         \x20       plugins: [{kind: b}]\n\
         \x20       routes: {\"/y\": OK}\n\
         \x20 - prefix: /c\n\
         \x20   routes: {\"/z\": OK}\n",
    )
    .unwrap();
    let kinds = |route: usize| -> Vec<&str> {
        c.routes[route]
            .plugins
            .iter()
            .map(|&i| c.plugins[i].kind.as_str())
            .collect()
    };
    assert_eq!(kinds(0), ["g1", "g2"]);
    assert_eq!(kinds(1), ["g1", "g2", "a"]);
    assert_eq!(kinds(2), ["g1", "g2", "a", "b"]);
    assert_eq!(kinds(3), ["g1", "g2"]);
    assert_eq!(&*c.global_plugins, [0, 1]);
    assert_eq!(c.plugins[2].group.as_deref(), Some("/a"));
    assert!(c.plugins[1].args.is_some() && c.plugins[0].args.is_none());
}

#[test]
fn fixed_bodies_that_are_json_documents_are_json() {
    // Moved from the router's DSL tests when JSON validation moved to the loader.
    let c = yaml(
        "routes:\n  \"/a\": 'FORBIDDEN {\"msg\":\"GO PATCH UR MUM!\"}'\n  \"/b\": \"201 42\"\n  \"/c\": \"200 key: value:more\"\n  \"/d\": OK\n",
    )
    .unwrap();
    let types: Vec<_> = c
        .routes
        .iter()
        .map(|r| match &r.action {
            Action::Fixed(f) => (f.status, f.body_type),
            other => panic!("{other:?}"),
        })
        .collect();
    use anygate_router::dsl::BodyType;
    assert_eq!(
        types,
        [
            (403, BodyType::Json),
            (201, BodyType::Json), // a JSON scalar is a JSON document
            (200, BodyType::Text),
            (200, BodyType::None),
        ]
    );
    // Starts like JSON, does not parse: an error pointing into the body.
    let (loc, code, msg) = only_error(yaml("routes:\n  \"/x\": 'OK {\"a\":}'\n"));
    assert_eq!((loc.as_str(), code), ("t.yml:2:18", "AG-CFG-1102"), "{msg}");
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn edge_defaults_are_safe() {
    // SECURITY.md lists these; a change here is a change of the threat model.
    let c = yaml("routes: {\"/\": \"OK\"}\n").unwrap();
    assert_eq!(c.server.limits.max_connections, 10_000);
    assert_eq!(c.server.limits.max_connections_per_ip, 256);
    assert_eq!(c.server.limits.head_memory, 64 << 20);
    assert_eq!(c.server.limits.min_body_rate, 512);
    assert_eq!(c.server.timeouts.body_grace, Duration::from_secs(10));
    assert_eq!(c.server.limits.min_send_rate, 512);
    assert_eq!(c.server.timeouts.send_grace, Duration::from_secs(10));
    assert!(!c.server.allow_underscores_in_headers);
    assert!(c.server.trusted_proxies.is_empty());
    assert!(!c.proxy.allow_encoded_traversal);
    assert_eq!(c.proxy.timeouts.total, Some(Duration::from_secs(3600)));
    let off = yaml("proxy: {timeouts: {total: off}}\nroutes: {\"/\": \"OK\"}\n").unwrap();
    assert_eq!(off.proxy.timeouts.total, None);
}

#[test]
fn hosts_in_rules_and_groups_are_parsed_and_bad_ones_refused_with_positions() {
    let c = yaml(
        r#"
routes:
  "GET api.example.com/v1/": "OK"
groups:
  - host: [www.example.com, "*.example.com"]
    prefix: /docs
    routes:
      "/": "OK docs"
  - host: shop.example.com:8443
    routes:
      "POST /cart": "CREATED"
"#,
    )
    .unwrap();
    assert_eq!(
        labels(&c),
        [
            "GET api.example.com/v1/",
            "* www.example.com,*.example.com/docs/",
            "POST shop.example.com:8443/cart"
        ]
    );
    let host = anygate_router::RequestHost::parse(b"docs.example.com").unwrap();
    assert!(matches!(
        c.router.lookup_host(b"GET", Some(host.key(80)), b"/docs/x"),
        Lookup::Found(m) if m.rule.value == 1
    ));
    // A bad host in a key points into the key.
    assert_eq!(
        only_error(yaml("routes:\n  \"GET a..b/x\": OK\n")),
        (
            "t.yml:2:10".into(),
            "AG-CFG-1101",
            "empty label (`..`) in the host name".into()
        )
    );
    // A bad host in a group's list points at the item.
    let (at, code, msg) = only_error(yaml(
        "groups:\n  - host: [a.example, \"*\"]\n    routes:\n      \"/\": OK\n",
    ));
    assert_eq!((at.as_str(), code), ("t.yml:2:24", "AG-CFG-1108"), "{msg}");
    // A rule naming its own host inside a group with `host`.
    let (at, code, msg) = only_error(yaml(
        "groups:\n  - host: a.example\n    routes:\n      \"b.example/\": OK\n",
    ));
    assert_eq!((at.as_str(), code), ("t.yml:4:7", "AG-CFG-1108"), "{msg}");
    // Hosts are set once on a path of groups.
    let (at, code, _) = only_error(yaml(
        "groups:\n  - host: a.example\n    groups:\n      - host: b.example\n        routes:\n          \"/\": OK\n",
    ));
    assert_eq!((at.as_str(), code), ("t.yml:4:15", "AG-CFG-1108"));
    // Listed twice.
    let (at, code, _) = only_error(yaml(
        "groups:\n  - host: [a.example, A.example]\n    routes:\n      \"/\": OK\n",
    ));
    assert_eq!((at.as_str(), code), ("t.yml:2:23", "AG-CFG-1108"));
}

#[test]
fn one_host_spelled_two_ways_is_a_conflict_with_both_positions() {
    let e = yaml(
        r#"
routes:
  "GET Example.com/a": OK
groups:
  - host: example.com.
    routes:
      "GET /a": OK
"#,
    )
    .expect_err("a conflict");
    let d = e.errors().next().unwrap();
    assert_eq!(d.code, "AG-CFG-1103");
    assert_eq!(e.sources.location(d.span.unwrap()), "t.yml:7:7");
    assert_eq!(e.sources.location(d.notes[0].0), "t.yml:3:3");
}

#[test]
fn a_rule_for_every_host_that_a_host_s_rule_takes_over_gets_a_warning() {
    let c = yaml(
        r#"
routes:
  "GET /api/": OK
  "shop.example.com/": OK shop
"#,
    )
    .unwrap();
    let w: Vec<(String, String)> = c
        .warnings
        .iter()
        .map(|d| (c.sources.location(d.span.unwrap()), d.message.clone()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "t.yml:3:3");
    assert!(
        w[0].1
            .contains("requests for `shop.example.com` under `/api/`"),
        "{}",
        w[0].1
    );
}
