//! The filter examples of `docs/PLUGINS.md` compile as documented: every ```yaml block that
//! is a `plugins` entry (`- kind: …`) is loaded as a configuration's `plugins` list and
//! compiled with the built-in kinds. Blocks that name files (`file:`, `*_file:`) need those
//! files to exist and are compiled with stand-ins written here (placeholder keys, a
//! generated htpasswd line, an HMAC secret); JWT key files and JWK sets are covered by the
//! serve tests instead, and their blocks are counted as such.

use std::path::Path;

use anygate_config::{Format, load_str};
use anygate_plugins::{Registry, compile};

#[test]
fn plugins_md_examples_compile() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/PLUGINS.md"),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("anygate-plugins-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keys.txt"), "k-1\n").unwrap();
    std::fs::write(dir.join("tokens.txt"), "t-1\n").unwrap();
    std::fs::write(dir.join("jwt.secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(
        dir.join("htpasswd"),
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let (mut compiled, mut jwt_files) = (0, 0);
    for block in text.split("```yaml\n").skip(1) {
        let Some(body) = block.split("```").next() else {
            continue;
        };
        if !body.trim_start().starts_with("- kind:") {
            continue;
        }
        if body.contains(".pem") || body.contains("jwks_file") {
            jwt_files += 1;
            continue;
        }
        // Elisions in the docs (`$2b$12$…`) stand for real hashes.
        let body = body.replace(
            "\"$2b$12$…\"",
            &format!("\"{}\"", bcrypt::hash("pw", 4).unwrap()),
        );
        let indented: String = body.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = format!("plugins:\n{indented}routes: {{ \"/\": OK }}\n");
        let config = load_str("PLUGINS.md", &yaml, Format::Yaml, &dir, &[])
            .unwrap_or_else(|f| panic!("{yaml}\n{f}"));
        if let Err(errors) = compile(&config, &Registry::builtin()) {
            let text: Vec<String> = errors.iter().map(|d| d.message.clone()).collect();
            panic!("a docs/PLUGINS.md example does not compile:\n{yaml}\n{text:?}");
        }
        compiled += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{compiled} examples compiled, {jwt_files} left to the serve tests");
    assert!(compiled >= 8, "{compiled} examples compiled");
    assert!(
        jwt_files >= 1,
        "the JWT example with key files is counted: {jwt_files}"
    );
}
