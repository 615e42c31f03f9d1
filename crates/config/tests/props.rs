//! Property tests: the loader never panics, and every error it reports has a position that
//! lies inside its source.

use std::path::Path;

use anygate_config::{Format, load_str};
use proptest::prelude::*;

fn check(text: &str, format: Format, env: &[(String, String)]) {
    match load_str(
        "p",
        text,
        format,
        Path::new("/nonexistent-anygate-props"),
        env,
    ) {
        Ok(c) => assert!(!c.routes.is_empty()),
        Err(f) => {
            assert!(f.errors().next().is_some());
            for d in &f.diagnostics {
                if let Some(s) = d.span {
                    let len = f.sources.get(s.src).text().len();
                    assert!(s.start <= s.end && s.end <= len + 1, "{d:?} in {len} bytes");
                }
                let _ = d.render(&f.sources);
            }
        }
    }
}

/// Pieces that configurations are made of, to get past the syntax layer often.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("routes:\n".to_owned()),
        Just("server:\n".to_owned()),
        Just("  listen: ".to_owned()),
        Just("groups:\n  - prefix: /g\n    routes:\n".to_owned()),
        Just("  \"".to_owned()),
        Just("\": ".to_owned()),
        Just("GET ".to_owned()),
        Just("/a/:b/*".to_owned()),
        Just("/v1/".to_owned()),
        Just("http://up:9000/".to_owned()),
        Just("OK {\"a\":1}".to_owned()),
        Just("FORBIDDEN *".to_owned()),
        Just("\n".to_owned()),
        Just("&x ".to_owned()),
        Just("*x".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("'".to_owned()),
        Just("\\u00".to_owned()),
        "[ -~]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn any_text_in_any_format_is_handled(text in "\\PC{0,200}", f in 0..3u8) {
        let format = [Format::Yaml, Format::Json, Format::Toml][usize::from(f)];
        check(&text, format, &[]);
    }

    #[test]
    fn config_shaped_text_is_handled(parts in prop::collection::vec(fragment(), 0..40)) {
        let text: String = parts.concat();
        check(&text, Format::Yaml, &[]);
        let json = text.replace(": ", "\": \"");
        check(&json, Format::Json, &[]);
        check(&text.replace(": ", " = "), Format::Toml, &[]);
    }

    #[test]
    fn env_overrides_are_handled(
        keys in prop::collection::vec("(SERVER|ROUTES|GROUPS|0|LISTEN|WORKERS|X|)", 0..4),
        value in "[ -~]{0,20}",
    ) {
        let name = format!("ANYGATE__{}", keys.join("__"));
        check("routes: {\"/\": OK}\ngroups: [{routes: {}}]\n", Format::Yaml, &[(name, value)]);
    }
}
