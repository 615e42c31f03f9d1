//! The static action over real sockets (issue 5): traversal, SPA fallback, directories,
//! headers by kind, validators, ranges, content codings, freshness, pack-spa, and a 1 GiB
//! file through sendfile with flat memory.

use std::io::Read;
use std::path::Path;

use anygate::serve::Server;
use anygate_config::{Format, load_str};

use crate::http::{LIMIT, Reader, Resp, connect, one};
use crate::support::{Gateway, TempDir};

const SECRET: &str = "TOPSECRET-outside-the-root-42";

/// A site under `dir/site` and a secret under `dir/outside`, with symlinks out and in.
fn site(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let d = &dir.0;
    for sub in [
        "site/assets",
        "site/docs",
        "site/empty",
        "site/.git",
        "outside",
    ] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("outside/secret.txt"), SECRET).unwrap();
    std::fs::write(
        d.join("site/index.html"),
        "<!doctype html><title>spa</title>",
    )
    .unwrap();
    std::fs::write(d.join("site/docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(d.join("site/docs/notes.txt"), "notes").unwrap();
    std::fs::write(d.join("site/.git/config"), SECRET).unwrap();
    std::fs::write(d.join("site/.env"), SECRET).unwrap();
    std::fs::write(d.join("site/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    std::fs::write(
        d.join("site/assets/app.3f9a1c.js"),
        "console.log('app');\n".repeat(100),
    )
    .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("site/big.bin"), &big).unwrap();
    std::os::unix::fs::symlink(d.join("outside/secret.txt"), d.join("site/abs-link.txt")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", d.join("site/rel-link.txt")).unwrap();
    std::os::unix::fs::symlink("../outside", d.join("site/dirlink")).unwrap();
    std::os::unix::fs::symlink("index.html", d.join("site/inside-link.html")).unwrap();
    dir
}

/// The server on `yaml`, relative paths resolved against `base`.
fn serve(base: &Path, yaml: &str) -> Server {
    let config =
        load_str("test.yml", yaml, Format::Yaml, base, &[]).unwrap_or_else(|f| panic!("{f}"));
    Server::start(config).unwrap()
}

const CONFIG: &str = r#"
server:
  listen: "127.0.0.1:0"
  workers: 2
static:
  memory_file_max: 64KiB
routes:
  "/": "./site/"
  "GET /handbook": "./site/docs/"
groups:
  - prefix: /plain
    static: { spa: false, listing: true, revalidate: 0s }
    routes:
      "/": "./site/"
      "GET /tree": "./site/assets/"
  - prefix: /gz
    static: { compress: true, compress_min: 100 }
    routes:
      "/": "./site/"
"#;

fn get(addr: std::net::SocketAddr, target: &str, headers: &str) -> Resp {
    one(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes(),
    )
}

#[test]
fn traversal_corpus_never_returns_a_byte_from_outside_the_root() {
    let dir = site("traversal");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    let corpus = [
        "/../outside/secret.txt",
        "/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e./outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/..%2Foutside/secret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/%2e%2e%2Foutside%2Fsecret.txt",
        "/..%5coutside%5csecret.txt",
        "/..\\outside\\secret.txt",
        "/%5c..%5coutside%5csecret.txt",
        "/assets/../../outside/secret.txt",
        "/assets/%2e%2e/%2e%2e/outside/secret.txt",
        "/assets/..%2f..%2foutside%2fsecret.txt",
        "/%252e%252e/outside/secret.txt",
        "/%25%32%65%25%32%65/outside/secret.txt",
        "/..%00/outside/secret.txt",
        "/index.html%00.png",
        "/%00",
        "/abs-link.txt",
        "/rel-link.txt",
        "/dirlink/secret.txt",
        "/dirlink/",
        "/dirlink",
        "/%64irlink/secret.txt",
        "/dir%6cink/secret.txt",
        "/.git/config",
        "/%2egit/config",
        "/.env",
        "/%2eenv",
        "/docs/../.env",
        "/assets/./../.git/config",
        "//outside/secret.txt",
        "///../outside/secret.txt",
        "/./../outside/secret.txt",
        "/docs/..%2f..%2foutside/secret.txt",
        "/%c0%ae%c0%ae/outside/secret.txt",
        "/%e0%80%ae%e0%80%ae/outside/secret.txt",
        "/..;/outside/secret.txt",
        "/outside/secret.txt",
        "/plain/../outside/secret.txt",
        "/plain/%2e%2e/outside/secret.txt",
        "/plain/..%2foutside%2fsecret.txt",
        "/plain/rel-link.txt",
        "/plain/abs-link.txt",
        "/plain/dirlink/secret.txt",
        "/plain/dirlink/",
        "/plain/.git/config",
        "/plain/.env",
        "/gz/rel-link.txt",
        "/gz/..%2f.env",
    ];
    assert!(corpus.len() >= 40);
    for target in corpus {
        for method in ["GET", "HEAD"] {
            let raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-\r\n\r\n");
            let resp = one(addr, raw.as_bytes());
            let all = format!("{:?}{}", resp.headers, resp.body_str());
            assert!(
                !all.contains("TOPSECRET"),
                "{method} {target} leaked: {resp:?}"
            );
            assert!(
                [200, 206, 301, 400, 403, 404].contains(&resp.status),
                "{method} {target}: {}",
                resp.status
            );
            if resp.status == 200 || resp.status == 206 {
                // Only the site's own files (the SPA index, most often).
                assert!(resp.header("etag").is_some(), "{target}");
            }
        }
    }
    // The precise answers for the kinds of trick.
    for (target, status, code) in [
        ("/rel-link.txt", 403, "AG-STA-4030"),
        ("/abs-link.txt", 403, "AG-STA-4030"),
        ("/dirlink/secret.txt", 403, "AG-STA-4030"),
        ("/..%2foutside%2fsecret.txt", 403, "AG-STA-4030"),
        ("/..%5coutside", 403, "AG-STA-4030"),
        ("/index.html%00.png", 403, "AG-STA-4030"),
        ("/plain/.env", 404, "AG-STA-4040"),
        ("/plain/.git/config", 404, "AG-STA-4040"),
        ("/plain/nothing.txt", 404, "AG-STA-4040"),
    ] {
        let resp = get(addr, target, "");
        assert_eq!(resp.status, status, "{target}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(
            resp.body_str().contains(code),
            "{target}: {}",
            resp.body_str()
        );
    }
    // A symlink that stays inside the root is followed.
    let inside = get(addr, "/inside-link.html", "");
    assert_eq!(
        (inside.status, inside.body_str().as_str()),
        (200, "<!doctype html><title>spa</title>")
    );
}

#[test]
fn spa_fallback_for_deep_links_and_404_for_missing_assets() {
    let dir = site("spa");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    for target in ["/deep/link", "/users/42/settings", "/deep/link?tab=1"] {
        let resp = get(addr, target, "");
        assert_eq!(resp.status, 200, "{target}");
        assert_eq!(resp.body_str(), "<!doctype html><title>spa</title>");
        assert_eq!(resp.header("cache-control"), Some("no-cache"));
    }
    for target in ["/missing.js", "/assets/app.000000.js", "/deep/missing.css"] {
        let resp = get(addr, target, "");
        assert_eq!(resp.status, 404, "{target}");
        assert!(resp.body_str().contains("AG-STA-4040"));
    }
    // spa: false in a group: a deep link is a plain 404.
    assert_eq!(get(addr, "/plain/deep/link", "").status, 404);
    // Only GET and HEAD.
    let post = one(
        addr,
        b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn directories_redirect_serve_their_index_and_list_only_when_asked() {
    let dir = site("dirs");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    let r = get(addr, "/docs?x=1", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    let r = get(addr, "/docs/", "");
    assert_eq!((r.status, r.body_str().as_str()), (200, "<h1>docs</h1>"));
    // An exact rule naming a directory serves its index, without a redirect.
    let r = get(addr, "/handbook", "");
    assert_eq!((r.status, r.body_str().as_str()), (200, "<h1>docs</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // No index, listing off: 404; listing on (the /plain group): names, dotfiles hidden.
    assert_eq!(get(addr, "/empty/", "").status, 404);
    std::fs::write(dir.0.join("site/assets/.hidden"), SECRET).unwrap();
    std::fs::create_dir_all(dir.0.join("site/assets/img <1>")).unwrap();
    let r = get(addr, "/plain/assets/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let body = r.body_str();
    for name in [
        "/plain/assets/app.3f9a1c.js",
        "/plain/assets/img%20%3C1%3E/",
        "/plain/",
    ] {
        assert!(
            body.contains(&format!("href=\"{name}\"")),
            "{name} in {body}"
        );
    }
    assert!(body.contains("img &lt;1&gt;/"), "{body}");
    assert!(
        !body.contains(".hidden") && !body.contains("TOPSECRET"),
        "{body}"
    );
    // A directory with an index shows the index, listing or not.
    assert_eq!(
        get(addr, "/plain/", "").body_str(),
        "<!doctype html><title>spa</title>"
    );
    assert_eq!(
        get(addr, "/plain/empty", "").header("location"),
        Some("/plain/empty/")
    );
}

#[test]
fn headers_by_kind_and_validators() {
    let dir = site("headers");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    let js = get(addr, "/assets/app.3f9a1c.js", "");
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(js.header("content-length"), Some("2000"));
    assert_eq!(js.header("accept-ranges"), Some("bytes"));
    assert_eq!(js.header("vary"), Some("accept-encoding"));
    let etag = js.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    assert!(js.header("last-modified").unwrap().ends_with(" GMT"));
    let png = get(addr, "/logo.png", "");
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(png.header("vary"), None);
    let html = get(addr, "/index.html", "");
    assert_eq!(html.header("cache-control"), Some("no-cache"));
    // HEAD: the same head, no body.
    let mut r = Reader::new(connect(addr));
    r.send(b"HEAD /assets/app.3f9a1c.js HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = r.response(true).unwrap();
    assert_eq!(head.header("content-length"), Some("2000"));
    assert_eq!(head.header("etag"), Some(etag));
    // The connection is still in sync: the next response is right behind.
    r.send(b"GET /docs/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().body_str(), "notes");
}

#[test]
fn conditional_requests_answer_304_on_either_validator() {
    let dir = site("conditional");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    for target in ["/assets/app.3f9a1c.js", "/big.bin"] {
        let first = get(addr, target, "");
        let etag = first.header("etag").unwrap().to_owned();
        let lm = first.header("last-modified").unwrap().to_owned();
        for inm in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"nope\", {etag}"),
            "*".into(),
        ] {
            let r = get(addr, target, &format!("If-None-Match: {inm}\r\n"));
            assert_eq!(r.status, 304, "{target} If-None-Match: {inm}");
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("content-length"), None);
        }
        assert_eq!(
            get(addr, target, "If-None-Match: \"other\"\r\n").status,
            200
        );
        assert_eq!(
            get(addr, target, &format!("If-Modified-Since: {lm}\r\n")).status,
            304
        );
        let later = "If-Modified-Since: Fri, 31 Dec 2100 23:59:59 GMT\r\n";
        assert_eq!(get(addr, target, later).status, 304);
        let earlier = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
        assert_eq!(get(addr, target, earlier).status, 200);
        assert_eq!(
            get(addr, target, "If-Modified-Since: garbage\r\n").status,
            200
        );
        // If-None-Match wins over If-Modified-Since.
        let both = format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n");
        assert_eq!(get(addr, target, &both).status, 200);
    }
}

/// Splits a multipart/byteranges body into (content-range, data) parts.
fn multipart(resp: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct = resp.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let delim = format!("--{boundary}");
    let body = &resp.body;
    let mut parts = Vec::new();
    let mut pos = 0;
    let find = |from: usize, pat: &[u8]| {
        body[from..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + from)
    };
    while let Some(start) = find(pos, delim.as_bytes()) {
        let after = start + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(after, b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&body[after..head_end]).to_lowercase();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("content-range: "))
            .unwrap()
            .to_owned();
        let end = find(head_end, format!("\r\n{delim}").as_bytes()).unwrap();
        parts.push((range, body[head_end..end].to_vec()));
        pos = end + 2;
    }
    parts
}

#[test]
fn ranges_single_multiple_unsatisfiable_and_if_range() {
    let dir = site("ranges");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    // big.bin is over memory_file_max (sendfile); the script is in memory.
    for (target, full) in [
        (
            "/big.bin",
            std::fs::read(dir.0.join("site/big.bin")).unwrap(),
        ),
        (
            "/assets/app.3f9a1c.js",
            std::fs::read(dir.0.join("site/assets/app.3f9a1c.js")).unwrap(),
        ),
    ] {
        let len = full.len();
        let r = get(addr, target, "Range: bytes=10-19\r\n");
        assert_eq!(r.status, 206, "{target}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 10-19/{len}").as_str())
        );
        assert_eq!(r.body, &full[10..20]);
        assert_eq!(r.header("content-encoding"), None);
        let r = get(addr, target, "Range: bytes=-5\r\n");
        assert_eq!(r.body, &full[len - 5..]);
        let r = get(addr, target, "Range: bytes=1990-\r\n");
        assert_eq!(r.body, &full[1990..]);
        let r = get(addr, target, "Range: bytes=0-4, 100-109, 1500-1502\r\n");
        assert_eq!(r.status, 206);
        assert_eq!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
        let parts = multipart(&r);
        assert_eq!(parts.len(), 3, "{target}");
        for ((range, data), (a, b)) in parts.iter().zip([(0, 4), (100, 109), (1500, 1502)]) {
            assert_eq!(range, &format!("bytes {a}-{b}/{len}"));
            assert_eq!(data, &full[a..=b]);
        }
        let r = get(addr, target, &format!("Range: bytes={len}-\r\n"));
        assert_eq!(r.status, 416);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert!(r.body_str().contains("AG-STA-4160"));
        // If-Range: the current ETag or date honours the range; a stale one sends it all.
        let etag = get(addr, target, "").header("etag").unwrap().to_owned();
        let r = get(
            addr,
            target,
            &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n"),
        );
        assert_eq!((r.status, r.body.len()), (206, 1));
        let r = get(addr, target, "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n");
        assert_eq!((r.status, r.body.len()), (200, len));
        // A malformed header is ignored.
        assert_eq!(get(addr, target, "Range: bytes=9-1\r\n").status, 200);
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn encoding_negotiation_table_with_precompressed_siblings() {
    let dir = site("encoding");
    let js = dir.0.join("site/assets/app.3f9a1c.js");
    let plain = std::fs::read(&js).unwrap();
    for (suffix, body) in [
        (".br", &b"BR-BYTES"[..]),
        (".zst", b"ZSTD-BYTES"),
        (".gz", b"GZ-BYTES"),
    ] {
        let mut p = js.clone().into_os_string();
        p.push(suffix);
        std::fs::write(p, body).unwrap();
    }
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    let target = "/assets/app.3f9a1c.js";
    for (accept, coding, body) in [
        ("gzip, deflate, br, zstd", Some("br"), &b"BR-BYTES"[..]),
        ("gzip, zstd", Some("zstd"), b"ZSTD-BYTES"),
        ("gzip", Some("gzip"), b"GZ-BYTES"),
        ("br;q=0.5, gzip;q=0.9", Some("gzip"), b"GZ-BYTES"),
        ("br;q=0, *", Some("zstd"), b"ZSTD-BYTES"),
        ("*", Some("br"), b"BR-BYTES"),
        ("identity", None, &plain),
        ("deflate", None, &plain),
        ("br;q=0, zstd;q=0, gzip;q=0", None, &plain),
    ] {
        let r = get(addr, target, &format!("Accept-Encoding: {accept}\r\n"));
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), coding, "{accept}");
        assert_eq!(r.body, body, "{accept}");
        assert_eq!(r.header("vary"), Some("accept-encoding"));
    }
    let none = get(addr, target, "");
    assert_eq!(
        (none.header("content-encoding"), none.body.len()),
        (None, plain.len())
    );
    // Each representation has its own ETag; If-None-Match works per representation.
    let br = get(addr, target, "Accept-Encoding: br\r\n");
    let br_tag = br.header("etag").unwrap();
    assert_ne!(Some(br_tag), none.header("etag"));
    let r = get(
        addr,
        target,
        &format!("Accept-Encoding: br\r\nIf-None-Match: {br_tag}\r\n"),
    );
    assert_eq!(r.status, 304);
    // A range is served from the identity.
    let r = get(addr, target, "Accept-Encoding: br\r\nRange: bytes=0-6\r\n");
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
    assert_eq!(r.body, &plain[..7]);
    // On the fly (the /gz group): gzip of the file, cached; too small a file stays plain.
    let r = get(addr, "/gz/docs/index.html", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), None, "under compress_min");
    let r = get(addr, "/gz/big.bin", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        r.header("content-encoding"),
        None,
        "not a compressible type"
    );
    std::fs::remove_file(dir.0.join("site/assets/app.3f9a1c.js.gz")).unwrap();
    std::fs::write(
        dir.0.join("site/docs/long.txt"),
        "all work and no play\n".repeat(500),
    )
    .unwrap();
    for _ in 0..2 {
        let r = get(addr, "/gz/docs/long.txt", "Accept-Encoding: gzip\r\n");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.len() < 1000);
        assert_eq!(
            gunzip(&r.body),
            "all work and no play\n".repeat(500).as_bytes()
        );
    }
}

#[test]
fn a_file_replaced_on_disk_is_served_fresh() {
    let dir = site("fresh");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    // The /plain group revalidates on every request (revalidate: 0s).
    let path = dir.0.join("site/docs/notes.txt");
    let first = get(addr, "/plain/docs/notes.txt", "");
    assert_eq!(first.body_str(), "notes");
    // Renamed over (how deploys replace files).
    let tmp = dir.0.join("site/docs/notes.tmp");
    std::fs::write(&tmp, "replaced by rename").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let second = get(addr, "/plain/docs/notes.txt", "");
    assert_eq!(second.body_str(), "replaced by rename");
    assert_ne!(first.header("etag"), second.header("etag"));
    // Rewritten in place, with another size.
    std::fs::write(&path, "rewritten in place, longer").unwrap();
    assert_eq!(
        get(addr, "/plain/docs/notes.txt", "").body_str(),
        "rewritten in place, longer"
    );
    // Deleted.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(get(addr, "/plain/docs/notes.txt", "").status, 404);
}

#[test]
fn pack_spa_is_deterministic_refuses_its_input_and_is_served_from_its_manifest() {
    let dir = site("pack");
    let bin = env!("CARGO_BIN_EXE_anygate");
    let from = dir.0.join("site");
    let pack = |to: &Path| {
        std::process::Command::new(bin)
            .arg("pack-spa")
            .arg("--from")
            .arg(&from)
            .arg("--to")
            .arg(to)
            .output()
            .unwrap()
    };
    // A bundler's own .gz next to a script is replaced by pack-spa's; a .gz download stays.
    std::fs::write(from.join("assets/app.3f9a1c.js.gz"), "not gzip at all").unwrap();
    std::fs::write(from.join("archive.tar.gz"), "a real download").unwrap();
    // Too small for pack-spa to compress: the source's own sibling is kept.
    std::fs::write(from.join("tiny.js"), "x()").unwrap();
    std::fs::write(from.join("tiny.js.gz"), "kept as is").unwrap();
    let (a, b) = (dir.0.join("out-a"), dir.0.join("out-b"));
    assert!(pack(&a).status.success());
    assert!(pack(&b).status.success());
    assert!(pack(&a).status.success(), "a previous output is replaced");
    let files = |root: &Path| {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((
                        p.strip_prefix(root).unwrap().to_path_buf(),
                        std::fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    };
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa, fb, "same input, same bytes");
    let names: Vec<String> = fa.iter().map(|(p, _)| p.display().to_string()).collect();
    for expected in [
        "assets/app.3f9a1c.js.br",
        "assets/app.3f9a1c.js.zst",
        "assets/app.3f9a1c.js.gz",
        ".anygate-manifest.json",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} in {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("link") || n.contains(".git") || n == ".env"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"logo.png.gz".to_owned()),
        "images are not compressed"
    );
    assert!(names.contains(&"archive.tar.gz".to_owned()));
    assert_eq!(std::fs::read(a.join("tiny.js.gz")).unwrap(), b"kept as is");
    let gz = std::fs::read(a.join("assets/app.3f9a1c.js.gz")).unwrap();
    assert_eq!(
        gunzip(&gz),
        std::fs::read(from.join("assets/app.3f9a1c.js")).unwrap()
    );
    // Refusals: inside --from, and a non-empty directory that is not an output.
    let inside = pack(&from.join("out"));
    assert!(!inside.status.success());
    assert!(String::from_utf8_lossy(&inside.stderr).contains("inside --from"));
    assert!(!from.join("out").exists());
    assert!(!pack(&dir.0.join("outside")).status.success());
    assert!(dir.0.join("outside/secret.txt").exists());
    // Served: ETags come from the manifest (content hashes), br from the sibling.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join(".anygate-manifest.json")).unwrap()).unwrap();
    let entry = &manifest["files"]["assets/app.3f9a1c.js"];
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\nroutes:\n  \"/\": \"{}/\"\n",
        a.display()
    );
    let s = serve(&dir.0, &yaml);
    let r = get(
        s.addrs()[0],
        "/assets/app.3f9a1c.js",
        "Accept-Encoding: br\r\n",
    );
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.header("etag"), entry["encodings"]["br"]["etag"].as_str());
    let mut plain = Vec::new();
    brotli::BrotliDecompress(&mut &r.body[..], &mut plain).unwrap();
    assert_eq!(
        plain,
        std::fs::read(from.join("assets/app.3f9a1c.js")).unwrap()
    );
    let r = get(s.addrs()[0], "/assets/app.3f9a1c.js", "");
    assert_eq!(r.header("etag"), entry["etag"].as_str());
    assert_eq!(get(s.addrs()[0], "/.anygate-manifest.json", "").status, 404);
}

/// Peak resident memory of a process, from /proc (KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_1_gib_file_is_sent_with_flat_memory() {
    let dir = TempDir::new("gib");
    let file = std::fs::File::create(dir.0.join("big.iso")).unwrap();
    file.set_len(1 << 30).unwrap(); // sparse: no disk used, reads as zeros
    std::fs::write(dir.0.join("small.txt"), "x").unwrap();
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\n  workers: 1\nroutes:\n  \"/\": \"{}/\"\n",
        dir.0.display()
    );
    let g = Gateway::start(&yaml);
    // Warm up, then measure the peak across the whole transfer.
    assert_eq!(get(g.addr, "/small.txt", "").body_str(), "x");
    let before = peak_rss_kib(g.child.id());
    let mut stream = connect(g.addr);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /big.iso HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if head.len() < 4096 && total == 0 {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                total = (head.len() - i - 4) as u64;
                assert!(String::from_utf8_lossy(&head[..i]).contains("content-length: 1073741824"));
            }
            continue;
        }
        total += n as u64;
    }
    assert_eq!(total, 1 << 30);
    let after = peak_rss_kib(g.child.id());
    assert!(after < 64 * 1024, "peak RSS {after} KiB");
    assert!(
        after - before < 8 * 1024,
        "RSS grew by {} KiB while sending 1 GiB",
        after - before
    );
}

#[test]
fn regression_review_exact_rule_on_a_directory_without_index_is_404_not_a_listing() {
    let dir = site("exact-listing");
    let s = serve(&dir.0, CONFIG);
    let r = get(s.addrs()[0], "/plain/tree", "");
    assert_eq!(r.status, 404, "{}", r.body_str());
}

#[test]
fn regression_review_precompressed_siblings_are_revalidated() {
    let dir = site("siblings");
    let s = serve(&dir.0, CONFIG);
    let addr = s.addrs()[0];
    let target = "/plain/assets/app.3f9a1c.js";
    let br = dir.0.join("site/assets/app.3f9a1c.js.br");
    // Added after the first request: picked up.
    assert_eq!(
        get(addr, target, "Accept-Encoding: br\r\n").header("content-encoding"),
        None
    );
    std::fs::write(&br, "first").unwrap();
    let r = get(addr, target, "Accept-Encoding: br\r\n");
    assert_eq!(
        (r.header("content-encoding"), r.body_str().as_str()),
        (Some("br"), "first")
    );
    // Rewritten in place with another length: the new bytes, with the right length.
    std::fs::write(&br, "second, longer").unwrap();
    let r = get(addr, target, "Accept-Encoding: br\r\n");
    assert_eq!(r.body_str(), "second, longer");
    // Deleted: back to the identity.
    std::fs::remove_file(&br).unwrap();
    let r = get(addr, target, "Accept-Encoding: br\r\n");
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 2000));
}

#[test]
fn regression_review_a_fifo_in_the_root_does_not_stall_the_worker() {
    let dir = site("fifo");
    let fifo = dir.0.join("site/pipe.txt");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let yaml = CONFIG.replace("workers: 2", "workers: 1");
    let s = serve(&dir.0, &yaml);
    let addr = s.addrs()[0];
    // With a blocking open, the single worker would wait for a writer forever.
    assert_eq!(get(addr, "/plain/pipe.txt", "").status, 404);
    assert_eq!(get(addr, "/docs/notes.txt", "").body_str(), "notes");
}

#[test]
fn regression_review_the_manifest_follows_a_root_switched_back() {
    let dir = site("rollback");
    let bin = env!("CARGO_BIN_EXE_anygate");
    let release = |name: &str, html: &str| {
        let src = dir.0.join(format!("src-{name}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("index.html"), html).unwrap();
        let out = dir.0.join(format!("release-{name}"));
        let ok = std::process::Command::new(bin)
            .arg("pack-spa")
            .arg("--from")
            .arg(&src)
            .arg("--to")
            .arg(&out)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(".anygate-manifest.json")).unwrap())
                .unwrap();
        m["files"]["index.html"]["etag"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Same size, different content: only the manifest tells them apart.
    let etag_a = release("a", "<p>version A</p>");
    let etag_b = release("b", "<p>version B</p>");
    let current = dir.0.join("current");
    std::os::unix::fs::symlink("release-b", &current).unwrap();
    let yaml = "server:\n  listen: \"127.0.0.1:0\"\nstatic:\n  revalidate: 0s\nroutes:\n  \"/\": \"./current/\"\n";
    let s = serve(&dir.0, yaml);
    let addr = s.addrs()[0];
    let r = get(addr, "/", "");
    assert_eq!(
        (r.body_str().as_str(), r.header("etag")),
        ("<p>version B</p>", Some(etag_b.as_str()))
    );
    // Roll back: swap the symlink atomically to the older release.
    let tmp = dir.0.join("current.tmp");
    std::os::unix::fs::symlink("release-a", &tmp).unwrap();
    std::fs::rename(&tmp, &current).unwrap();
    let r = get(addr, "/", "");
    assert_eq!(
        (r.body_str().as_str(), r.header("etag")),
        ("<p>version A</p>", Some(etag_a.as_str()))
    );
    let r = get(addr, "/", &format!("If-None-Match: {etag_b}\r\n"));
    assert_eq!(r.status, 200, "B's ETag must not validate A's content");
}

#[test]
fn a_reader_that_stops_reading_is_cut_off_by_the_write_timeout() {
    // A client that requests a large file and never reads it holds nothing for ever: the
    // writes stop making progress and the connection closes after `server.timeouts.idle`.
    let dir = TempDir::new("slow-reader");
    std::fs::write(dir.0.join("big.bin"), vec![7u8; 64 << 20]).unwrap();
    let s = serve(
        &dir.0,
        "server: {listen: \"127.0.0.1:0\", workers: 1, timeouts: {idle: 500ms}}\n\
         routes: {\"/\": \"./\"}\n",
    );
    let mut stream = connect(s.addrs()[0]);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Not reading: once the socket buffers are full the server's writes stall. Then read
    // what was sent: the connection ends (EOF or reset) long before 64 MiB.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    // The first read comes after the stall has begun: the kernel buffers are a few MiB.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got > 0 && got < 64 << 20, "{got} bytes");
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test bounds its own run with the real clock"
)]
fn regression_a_reader_that_keeps_taking_a_little_holds_the_connection_forever() {
    // Each write made progress within its timeout, so a reader taking a few KiB at a time
    // held the connection as long as it liked. Now the response must also average
    // `server.limits.min_send_rate` once `send_grace` has passed.
    let dir = TempDir::new("trickle-reader");
    std::fs::write(dir.0.join("big.bin"), vec![7u8; 64 << 20]).unwrap();
    let s = serve(
        &dir.0,
        "server:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n\
         \x20 limits: {min_send_rate: 8MiB}\n  timeouts: {idle: 30s, send_grace: 500ms}\n\
         routes: {\"/\": \"./\"}\n",
    );
    let mut stream = connect(s.addrs()[0]);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // For 3 s, 16 KiB every 50 ms (about 320 KiB/s, far under the rate; the pace is the
    // behaviour under test). The socket buffers hold megabytes, so the server sees this as
    // writes that take long; with the minimum rate it gives up after about a second, with
    // only the 30 s stall timeout it would go on.
    let started = std::time::Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 16 << 10];
    while started.elapsed() < std::time::Duration::from_secs(3) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Then as fast as possible: what the server had sent before it gave up, and the end.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 64 << 20, "{got} bytes");
}
