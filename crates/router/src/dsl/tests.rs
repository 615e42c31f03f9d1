use super::*;

fn head(s: &str) -> Head {
    parse_head(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
}

fn head_err(s: &str) -> DslError {
    parse_head(s).expect_err(s)
}

fn action(s: &str) -> Action {
    parse_action(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
}

fn action_err(s: &str) -> DslError {
    parse_action(s).expect_err(s)
}

#[test]
fn heads() {
    let h = head("GET POST PATCH /api/mock/rude");
    assert_eq!(
        h.methods,
        Methods::Named(vec!["GET".into(), "POST".into(), "PATCH".into()])
    );
    assert_eq!(h.path.tail, Tail::Exact);
    assert_eq!(h.path.display(), "/api/mock/rude");
    assert_eq!(head("/a/b/c").methods, Methods::Any);
    assert_eq!(head("* /path").methods, Methods::Any);
    assert_eq!(
        head("GET * /path").methods,
        Methods::Any,
        "`*` among methods means every method"
    );
    assert_eq!(head("PROPFIND SEARCH /dav/*").path.tail, Tail::Splat);
    let v1 = head("/v1/");
    assert_eq!((v1.path.tail, v1.path.segments.len()), (Tail::Prefix, 1));
    let root = head("/");
    assert_eq!(
        (root.path.tail, root.path.segments.len()),
        (Tail::Prefix, 0)
    );
    let p = head("/users/:id/posts/:post_id");
    assert_eq!(p.path.param_names().collect::<Vec<_>>(), ["id", "post_id"]);
    assert_eq!(
        head("/%61dmin").path.display(),
        "/admin",
        "literals are normalised like requests"
    );
    assert_eq!(
        head("GET  GET   /x").methods,
        Methods::Named(vec!["GET".into()])
    );
}

#[test]
fn head_errors_point_at_the_offending_text() {
    let e = head_err("/bad/*/path");
    assert_eq!((e.part, e.offset, e.len), (Part::Head, 5, 1));
    assert!(e.message.contains("last segment"), "{}", e.message);
    let e = head_err("/dup/:/x");
    assert_eq!((e.offset, e.len), (5, 1));
    assert!(e.message.contains("empty parameter name"));
    let e = head_err("/a/*/*");
    assert_eq!(e.offset, 3);
    let e = head_err("GET /a/:id/:id");
    assert_eq!(e.offset, 11);
    assert!(e.message.contains("twice"));
    let e = head_err("GET api");
    assert_eq!((e.offset, e.len), (4, 3));
    let e = head_err("");
    assert!(e.message.contains("empty route"));
    let e = head_err("G(T /x");
    assert_eq!((e.offset, e.len), (0, 3));
    let e = head_err("/a//b");
    assert_eq!(e.offset, 3, "the second `/` of `//`");
    let e = head_err("/a/:b-c");
    assert_eq!(e.offset, 5);
    let e = head_err("/files/*.js");
    assert_eq!(e.offset, 7);
    let e = head_err("/a?x=1");
    assert_eq!(e.offset, 2);
    let e = head_err("/x%zz");
    assert_eq!(e.offset, 2);
}

#[test]
fn fixed_actions() {
    assert_eq!(
        action("OK"),
        Action::Fixed(Fixed {
            status: 200,
            body: String::new(),
            body_type: BodyType::None,
            location: None
        })
    );
    // Whether a body is JSON is the loader's decision (crates/config/tests/load.rs,
    // fixed_bodies_that_are_json_documents_are_json): here every body is text.
    let Action::Fixed(f) = action(r#"FORBIDDEN {"msg":"GO PATCH UR MUM!"}"#) else {
        panic!()
    };
    assert_eq!(
        (f.status, f.body_type, f.body.as_str()),
        (403, BodyType::Text, r#"{"msg":"GO PATCH UR MUM!"}"#)
    );
    let Action::Fixed(f) = action("200 key: value:more") else {
        panic!()
    };
    assert_eq!(
        (f.status, f.body_type, f.body.as_str()),
        (200, BodyType::Text, "key: value:more")
    );
    let Action::Fixed(f) = action("MOVED https://example.com/new") else {
        panic!()
    };
    assert_eq!(
        (f.status, f.location.as_deref()),
        (301, Some("https://example.com/new"))
    );
    let Action::Fixed(f) = action("418 I'm a teapot") else {
        panic!()
    };
    assert_eq!(f.body, "I'm a teapot");
}

#[test]
fn echo_static_and_proxy_actions() {
    assert_eq!(action("*"), Action::Echo(200));
    assert_eq!(action("FORBIDDEN *"), Action::Echo(403));
    assert_eq!(action("/dist/"), Action::Static("/dist/".into()));
    assert_eq!(action("./public"), Action::Static("./public".into()));
    let Action::Proxy(p) = action("http://up:9000/") else {
        panic!()
    };
    assert_eq!(
        (p.host.as_str(), p.port, p.path.as_str(), p.has_path),
        ("up", Some(9000), "/", true)
    );
    let Action::Proxy(p) = action("https://user:pw@API.example.com") else {
        panic!()
    };
    assert_eq!(p.scheme, Scheme::Https);
    assert_eq!(p.userinfo.as_deref(), Some("user:pw"));
    assert_eq!(
        (p.host.as_str(), p.has_path, p.path.as_str()),
        ("api.example.com", false, "/")
    );
    assert_eq!(
        p.origin(),
        "https://api.example.com",
        "origin never shows userinfo"
    );
    let Action::Proxy(p) = action("h2c://grpc:50051/svc/") else {
        panic!()
    };
    assert_eq!(p.scheme, Scheme::H2c);
    assert_eq!(
        (p.host.as_str(), p.port, p.path.as_str()),
        ("grpc", Some(50051), "/svc/")
    );
    assert_eq!(p.origin(), "h2c://grpc:50051");
    let Action::Proxy(p) = action("http://[::1]:8080/x") else {
        panic!()
    };
    assert_eq!((p.host.as_str(), p.port), ("[::1]", Some(8080)));
}

#[test]
fn action_errors_point_at_the_offending_text() {
    let e = action_err("");
    assert!(e.message.contains("empty action"));
    let e = action_err("   ");
    assert!(e.message.contains("empty action"));
    let e = action_err("FOBIDDEN nope");
    assert_eq!((e.part, e.offset, e.len), (Part::Action, 0, 8));
    assert!(
        e.message.contains("did you mean `FORBIDDEN`"),
        "{}",
        e.message
    );
    let e = action_err("http://up:99999/");
    assert_eq!((e.offset, e.len), (10, 5));
    let e = action_err("http:///x");
    assert!(e.message.contains("no host"));
    let e = action_err("http://up/x?y=1");
    assert_eq!(e.offset, 11);
    let e = action_err("http://u p/");
    assert_eq!(e.offset, 8);
    let e = action_err("localhost:3000");
    assert!(e.message.contains("http://"), "{}", e.message);
    let e = action_err("MOVED");
    assert!(e.message.contains("Location"), "{}", e.message);
    let e = action_err("MOVED  ");
    assert!(e.message.contains("Location"));
    let e = action_err("204 body");
    assert!(e.message.contains("cannot have a body"));
    let e = action_err("600");
    assert_eq!(e.offset, 0);
}

/// Regression (found by the `dsl_parse` and `router_lookup` fuzzers): `/.` normalised to an
/// empty literal segment, a rule the trie could never match but the reference did.
#[test]
fn dot_segment_in_a_rule_path_is_rejected_not_turned_into_an_empty_literal() {
    for p in ["/.", "/..", "/a/.", "/a/%2e", "/%2E%2E/x", "GET /x/./y"] {
        let e = head_err(p);
        assert!(e.message.contains("normalised"), "{p}: {}", e.message);
    }
}

#[test]
fn regression_informational_statuses_are_not_answers() {
    for text in ["100", "101", "CONTINUE_NOT_A_NAME", "199 body"] {
        let Err(e) = parse_action(text) else {
            panic!("{text} accepted");
        };
        if text.starts_with('1') {
            assert!(e.message.contains("informational"), "{text}: {}", e.message);
            assert_eq!((e.offset, e.len), (0, 3));
        }
    }
}

#[test]
fn regression_bodiless_statuses_cannot_echo() {
    for text in ["204 *", "304 *", "NO_CONTENT *", "NOT_MODIFIED *"] {
        let e = parse_action(text).unwrap_err();
        assert!(e.message.contains("cannot echo"), "{text}: {}", e.message);
    }
    assert!(matches!(parse_action("FORBIDDEN *"), Ok(Action::Echo(403))));
}
