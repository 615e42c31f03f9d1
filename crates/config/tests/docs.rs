//! The YAML examples of `docs/CONFIG.md` load as documented (a `dist/` directory and the
//! `errors/` pages next to them, as the examples assume).

use std::path::Path;

use anygate_config::{Format, load_str};

#[test]
fn config_md_yaml_examples_are_valid() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md"))
            .unwrap();
    let dir = std::env::temp_dir().join(format!("anygate-config-docs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    // The error pages of the `errors` example.
    std::fs::create_dir_all(dir.join("errors")).unwrap();
    for page in ["404.html", "5xx.html", "app-down.html"] {
        std::fs::write(dir.join("errors").join(page), "<h1>error</h1>").unwrap();
    }
    let mut checked = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap();
        if !yaml.contains("routes") {
            continue;
        }
        if let Err(f) = load_str("CONFIG.md", yaml, Format::Yaml, &dir, &[]) {
            panic!("a docs/CONFIG.md example is invalid:\n{yaml}\n{f}");
        }
        checked += 1;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(checked >= 2, "the examples were not found");
}
