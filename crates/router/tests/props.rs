//! Property tests: the parser is total, the trie agrees with the reference scorer, and path
//! normalisation is idempotent and never leaves the root.

use anygate_router::explain::{Outcome, explain};
use anygate_router::path::normalize;
use anygate_router::{HostKey, Lookup, RequestHost, Router, parse_action, parse_head};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics(s in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_head(&s);
        let _ = parse_action(&s);
        let lossy = String::from_utf8_lossy(&bytes);
        let _ = parse_head(&lossy);
        let _ = parse_action(&lossy);
    }

    #[test]
    fn dsl_shaped_input_never_panics(s in "[A-Z ]{0,8}[/:*%a-z0-9.{}\\[\\]\" ]{0,24}") {
        let _ = parse_head(&s);
        let _ = parse_action(&s);
    }

    #[test]
    fn normalisation_is_idempotent_and_stays_under_the_root(
        segs in proptest::collection::vec(prop_oneof![
            Just("a".to_owned()), Just("..".to_owned()), Just(".".to_owned()), Just(String::new()),
            Just("%2e%2e".to_owned()), Just("%2E".to_owned()), Just("%2f".to_owned()), Just("%61".to_owned()),
            "[a-z%.]{1,4}",
        ], 0..10),
        trailing in any::<bool>(),
    ) {
        let mut p = String::new();
        for s in &segs { p.push('/'); p.push_str(s); }
        if trailing || p.is_empty() { p.push('/'); }
        if let Ok(once) = normalize(p.as_bytes()) {
            let twice = normalize(&once).expect("a normalised path normalises");
            prop_assert_eq!(&*once, &*twice);
            prop_assert_eq!(once.first(), Some(&b'/'));
            for seg in once[1..].split(|&b| b == b'/') {
                prop_assert!(seg != b".." && seg != b".", "dot segment left in {:?}", String::from_utf8_lossy(&once));
            }
            prop_assert!(!once.windows(2).any(|w| w == b"//"));
        }
    }

    #[test]
    fn trie_lookup_agrees_with_the_reference(
        rules in proptest::collection::vec(rule_strategy(), 1..24),
        requests in proptest::collection::vec(request_strategy(), 1..24),
    ) {
        let parsed: Vec<_> = rules.iter().map(|(h, a)| (parse_head(h).unwrap(), parse_action(a).unwrap())).collect();
        // Random sets may contain conflicts; those are rejected, which is tested elsewhere.
        let Ok(router) = Router::build(parsed) else { return Ok(()) };
        for (method, path) in &requests {
            let reference = explain(&router, method.as_bytes(), None, path.as_bytes());
            match (router.lookup(method.as_bytes(), path.as_bytes()), reference.outcome) {
                (Lookup::Found(m), Outcome::Found(i)) => {
                    prop_assert_eq!(m.rule.index, i, "{} {}", method, path);
                    let winner = &reference.candidates[0];
                    let params: Vec<(String, String)> = m.params.iter()
                        .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned())).collect();
                    prop_assert_eq!(&params, &winner.params);
                    let splat = m.params.splat().map(|s| String::from_utf8_lossy(s).into_owned());
                    prop_assert_eq!(&splat, &winner.splat);
                }
                (Lookup::MethodNotAllowed(a), Outcome::MethodNotAllowed(b)) => prop_assert_eq!(a, b),
                (Lookup::NotFound, Outcome::NotFound) => {}
                (got, want) => prop_assert!(false, "{} {}: trie {:?}, reference {:?}", method, path, got, want),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Host + path rule sets: the host table and tries answer what scoring every rule does.
    #[test]
    fn host_routing_agrees_with_the_reference(
        rules in proptest::collection::vec((host_rule_strategy(), rule_strategy()), 1..24),
        requests in proptest::collection::vec((host_request_strategy(), request_strategy()), 1..24),
    ) {
        let parsed: Vec<_> = rules
            .iter()
            .map(|(host, (h, a))| (parse_head(&with_host(h, host)).unwrap(), parse_action(a).unwrap()))
            .collect();
        let Ok(router) = Router::build(parsed) else { return Ok(()) };
        for (authority, (method, path)) in &requests {
            let host = authority.and_then(|a| RequestHost::parse(a.as_bytes()));
            let key = host.as_ref().map(|h| h.key(80));
            let reference = explain(&router, method.as_bytes(), key, path.as_bytes());
            let got = match router.lookup_host(method.as_bytes(), key, path.as_bytes()) {
                Lookup::Found(m) => Outcome::Found(m.rule.index),
                Lookup::MethodNotAllowed(a) => Outcome::MethodNotAllowed(a),
                Lookup::NotFound => Outcome::NotFound,
            };
            prop_assert_eq!(got, reference.outcome, "{:?} {} {}", authority, method, path);
            // And the reference's host test is the naive one: label by label.
            for c in &reference.candidates {
                if let (Some(p), Some(k)) = (c.host, key) {
                    prop_assert!(naive_host_match(&p.to_string(), k), "{} vs {:?}", p, authority);
                }
            }
        }
    }
}

/// `*.` one label, `**.` one or more, exact otherwise; a `:port` must equal the request's.
fn naive_host_match(pattern: &str, key: HostKey<'_>) -> bool {
    let name = std::str::from_utf8(key.name).unwrap();
    let (pat, port) = match pattern.rsplit_once(':') {
        Some((p, port)) => (p, Some(port.parse::<u16>().unwrap())),
        None => (pattern, None),
    };
    if port.is_some() && port != key.port {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    if let Some(suffix) = pat.strip_prefix("**.") {
        let n = suffix.split('.').count();
        labels.len() > n && labels[labels.len() - n..].join(".") == suffix
    } else if let Some(suffix) = pat.strip_prefix("*.") {
        labels.len() == suffix.split('.').count() + 1 && labels[1..].join(".") == suffix
    } else {
        name == pat
    }
}

fn with_host(head: &str, host: &str) -> String {
    // `GET /a` -> `GET host/a`: the host goes before the path, the last word.
    match head.rfind(' ') {
        Some(i) => format!("{} {host}{}", &head[..i], &head[i + 1..]),
        None => format!("{host}{head}"),
    }
}

fn host_rule_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just(""),
        Just("a.com"),
        Just("A.com:8080"),
        Just("a.com:80"),
        Just("*.a.com"),
        Just("**.a.com"),
        Just("b.a.com"),
        Just("*.b.a.com"),
        Just("**.b.a.com:80"),
    ]
}

fn host_request_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("a.com")),
        Just(Some("A.COM.")),
        Just(Some("a.com:8080")),
        Just(Some("x.a.com")),
        Just(Some("b.a.com")),
        Just(Some("y.b.a.com")),
        Just(Some("z.y.b.a.com:80")),
        Just(Some("c.com")),
        Just(Some("[::1]:80")),
    ]
}

fn rule_strategy() -> impl Strategy<Value = (String, String)> {
    let methods = prop_oneof![
        Just(""),
        Just("GET "),
        Just("POST "),
        Just("GET POST "),
        Just("PROPFIND "),
        Just("* "),
        Just("HEAD "),
    ];
    let seg = prop_oneof![Just("a"), Just("b"), Just("c"), Just(":p"), Just(":q")];
    let tail = prop_oneof![Just(""), Just("/"), Just("/*")];
    (methods, proptest::collection::vec(seg, 0..4), tail).prop_map(|(m, segs, tail)| {
        // Param names must be unique within a path.
        let mut path = String::new();
        for (i, s) in segs.iter().enumerate() {
            path.push('/');
            if s.starts_with(':') {
                path.push_str(&format!("{s}{i}"));
            } else {
                path.push_str(s);
            }
        }
        if path.is_empty() {
            path.push('/');
        } else {
            path.push_str(tail);
        }
        (format!("{m}{path}"), "OK".to_owned())
    })
}

fn request_strategy() -> impl Strategy<Value = (String, String)> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("HEAD"),
        Just("PROPFIND"),
        Just("DELETE")
    ];
    let seg = prop_oneof![Just("a"), Just("b"), Just("c"), Just("x")];
    (method, proptest::collection::vec(seg, 0..5), any::<bool>()).prop_map(|(m, segs, slash)| {
        let mut p = String::new();
        for s in segs {
            p.push('/');
            p.push_str(s);
        }
        if slash || p.is_empty() {
            p.push('/');
        }
        (m.to_owned(), p)
    })
}
