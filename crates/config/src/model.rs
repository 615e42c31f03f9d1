//! The validated configuration model (SPEC §4) and its decoding from a [`Node`] tree.
//!
//! Decoding never stops at the first problem: every error in the file is collected, so that
//! `anygate check` can list them all at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anygate_router::dsl::{self, Action, DslError, Head, PathPattern, Segment, Tail};

use crate::codes;
use crate::fields::Fields;
use crate::node::{Kind, Node};
use crate::source::{Diagnostic, Span};
use crate::values::{is_host_byte, is_pool_name, parse_listen, parse_prefix, parse_target};

/// `server`: listeners and workers.
#[derive(Clone, Debug)]
pub struct Server {
    /// The addresses to listen on (`server.listen`, default `127.0.0.1:8080`).
    pub listen: Vec<Listen>,
    /// `server.workers`.
    pub workers: Workers,
    /// `server.limits`.
    pub limits: ServerLimits,
    /// `server.timeouts`.
    pub timeouts: ServerTimeouts,
    /// `server.shutdown_timeout`: how long a graceful shutdown waits for in-flight requests
    /// (default 30s).
    pub shutdown_timeout: Duration,
}

/// `server.limits` (SPEC §9 defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Request line and header fields, bytes (default 64 KiB; 431 above).
    pub max_head: u64,
    /// Request target, bytes (default 8 KiB; 414 above).
    pub max_uri: u64,
    /// Header fields (default 100, at most 128; 431 above).
    pub max_headers: u64,
    /// Request body, bytes (default 1 GiB; 0 = unlimited; 413 above).
    pub max_body: u64,
    /// Open connections (default 10 000; 503 above).
    pub max_connections: u64,
    /// Bytes of the request body an echo response shows (default 64 KiB).
    pub echo_body: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_head: 64 << 10,
            max_uri: 8 << 10,
            max_headers: 100,
            max_body: 1 << 30,
            max_connections: 10_000,
            echo_body: 64 << 10,
        }
    }
}

/// `server.timeouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From the first byte of a request head to its end (default 10s; 408 after).
    pub head: Duration,
    /// Idle keep-alive connections (default 60s), and each write to a slow reader.
    pub idle: Duration,
    /// Longest pause while reading a request body (default 60s; 408 after).
    pub body: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(60),
        }
    }
}

/// One listening address.
#[derive(Clone, Debug)]
pub struct Listen {
    /// The socket address.
    pub addr: SocketAddr,
    /// Where it is written (`None` for the default).
    pub span: Option<Span>,
}

/// How many worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// One per available CPU (the default).
    Auto,
    /// Exactly this many.
    Count(usize),
}

/// `static`: settings of the static-file action. Groups override them field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticSettings {
    /// Index file names tried for a directory, in order (default `["index.html"]`).
    pub index: Vec<String>,
    /// SPA fallback; `None` means "on for a rule whose path is `/`, off otherwise".
    pub spa: Option<bool>,
    /// Directory listings (default off).
    pub listing: bool,
    /// `static.cache`: the `Cache-Control` value per kind of file.
    pub cache: CacheControl,
    /// `static.compress`: compress compressible files on the fly when no precompressed
    /// sibling exists (default off).
    pub compress: bool,
    /// `static.compress_min`: smaller files are not compressed on the fly (default 1 KiB).
    pub compress_min: u64,
    /// `static.memory_file_max`: files up to this size are kept in memory (default 64 KiB;
    /// 0 turns the memory cache off). On-the-fly compression applies up to this size too.
    pub memory_file_max: u64,
    /// `static.memory_total_max`: the memory cache's bound, per worker (default 64 MiB; top
    /// level only).
    pub memory_total_max: u64,
    /// `static.revalidate`: how long file metadata (and cached content) is trusted before
    /// the file is checked again (default 1 s).
    pub revalidate: Duration,
}

impl Default for StaticSettings {
    fn default() -> Self {
        Self {
            index: vec!["index.html".to_owned()],
            spa: None,
            listing: false,
            cache: CacheControl::default(),
            compress: false,
            compress_min: 1024,
            memory_file_max: 64 << 10,
            memory_total_max: 64 << 20,
            revalidate: Duration::from_secs(1),
        }
    }
}

/// `static.cache`: `Cache-Control` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheControl {
    /// For HTML (default `no-cache`: always revalidated, so a deploy shows at once).
    pub html: String,
    /// For fingerprinted assets such as `app.3f9a1c.js` (default
    /// `public, max-age=31536000, immutable`).
    pub fingerprinted: String,
    /// For every other file (default `public, max-age=3600`).
    pub default: String,
}

impl Default for CacheControl {
    fn default() -> Self {
        Self {
            html: "no-cache".to_owned(),
            fingerprinted: "public, max-age=31536000, immutable".to_owned(),
            default: "public, max-age=3600".to_owned(),
        }
    }
}

/// `proxy`: settings of the proxy action. Groups override them field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// `proxy.timeouts`.
    pub timeouts: Timeouts,
    /// `proxy.host`: the `Host` sent upstream.
    pub host: HostHeader,
    /// `proxy.via`: add `Via: 1.1 anygate` both ways (default off).
    pub via: bool,
    /// `proxy.max_idle`: idle keep-alive connections kept per target and worker (default
    /// 64; 0 disables keep-alive).
    pub max_idle: usize,
    /// `proxy.max_conns`: connections in use per target, all workers together (default 0:
    /// unlimited).
    pub max_conns: usize,
    /// `proxy.idle_timeout`: how long an idle connection is kept (default 30s).
    pub idle_timeout: Duration,
    /// `proxy.dns_ttl`: how long a resolved host name is used before it is resolved again
    /// (default 30s).
    pub dns_ttl: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            timeouts: Timeouts::default(),
            host: HostHeader::Upstream,
            via: false,
            max_idle: 64,
            max_conns: 0,
            idle_timeout: Duration::from_secs(30),
            dns_ttl: Duration::from_secs(30),
        }
    }
}

/// `proxy.host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostHeader {
    /// The upstream URI's host (and port), as nginx does (default).
    Upstream,
    /// The client's `Host`, unchanged.
    Client,
    /// This value.
    Fixed(String),
}

/// `proxy.timeouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the upstream connection (default 5s).
    pub connect: Duration,
    /// Between two reads from the upstream (default 60s).
    pub read: Duration,
    /// Between two writes to the upstream (default 60s).
    pub write: Duration,
    /// The whole exchange (default off).
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            total: None,
        }
    }
}

/// A named upstream pool (`proxy.upstreams.NAME`).
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The pool's name, used as the host of proxy URIs (`http://NAME/`).
    pub name: String,
    /// `host:port` targets.
    pub targets: Vec<Target>,
    /// Where the pool is defined.
    pub span: Span,
}

/// One upstream target.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Where it is written.
    pub span: Span,
}

/// One rule of the route table, with the group prefix applied.
#[derive(Clone, Debug)]
pub struct Route {
    /// Methods and the full path pattern (group prefixes included).
    pub head: Head,
    /// What the rule does.
    pub action: Action,
    /// The key as written in the file.
    pub key_text: String,
    /// Where the key is.
    pub key: Span,
    /// Where the value is.
    pub value: Span,
    /// The prefixes of the enclosing groups, joined (`/admin/v1`), if any.
    pub group: Option<String>,
    /// For static rules: the directory, resolved against the config file's directory.
    pub static_root: Option<PathBuf>,
    /// Static settings in effect for this rule.
    pub static_settings: Arc<StaticSettings>,
    /// For static rules: whether the SPA fallback is on (`static.spa`, or by default when
    /// the rule's own path, before any group prefix, is `/`).
    pub spa: bool,
    /// Proxy settings in effect for this rule.
    pub proxy: Arc<ProxySettings>,
    /// The rule's filter chain: indexes into [`crate::Config::plugins`], the global list
    /// first, then each enclosing group's, in declaration order.
    pub plugins: Arc<[usize]>,
}

impl Route {
    /// `GET POST /api/:id` or `* /v1/`: the rule's methods and full path, canonical.
    pub fn label(&self) -> String {
        format!("{} {}", self.methods_label(), self.head.path.display())
    }

    /// `GET POST`, or `*` for every method.
    pub fn methods_label(&self) -> String {
        match &self.head.methods {
            dsl::Methods::Any => "*".to_owned(),
            dsl::Methods::Named(m) => m.join(" "),
        }
    }
}

mod plugins;

pub use self::plugins::PluginSpec;

/// The decoded sections, before the router is built.
#[derive(Debug)]
pub(crate) struct Model {
    pub server: Server,
    pub static_settings: Arc<StaticSettings>,
    pub proxy: Arc<ProxySettings>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub plugins: Vec<PluginSpec>,
    pub global_plugins: Arc<[usize]>,
}

/// Decodes the root node. Problems go to `diags`; the model is partial when there are any.
pub(crate) fn decode(root: &Node, base_dir: &Path, diags: &mut Vec<Diagnostic>) -> Model {
    let mut d = Decoder {
        diags,
        base_dir,
        routes: Vec::new(),
        plugins: Vec::new(),
    };
    let mut f = Fields::new(d.diags, root, "the configuration");
    let server = d.server(f.take("server"));
    let static_settings =
        Arc::new(d.static_settings(f.take("static"), "static", &StaticSettings::default(), true));
    let proxy_node = f.take("proxy");
    let proxy = Arc::new(d.proxy_settings(proxy_node, true, &ProxySettings::default()));
    let upstreams = d.upstreams(proxy_node);
    let global_plugins = d.plugins(f.take("plugins"), &Arc::from([]), None);
    d.not_yet(&mut f, &["tls"]);
    let scope = Scope {
        prefix: Vec::new(),
        label: None,
        static_settings: static_settings.clone(),
        proxy: proxy.clone(),
        plugins: global_plugins.clone(),
    };
    d.routes_and_groups(&mut f, &scope);
    f.finish(
        d.diags,
        &[
            "server", "routes", "groups", "static", "proxy", "plugins", "tls",
        ],
    );
    if d.routes.is_empty() && d.diags.is_empty() {
        d.diags.push(
            Diagnostic::error(codes::NO_ROUTES, root.span, "no routes: nothing to serve")
                .help("add a `routes` map, for example `routes: { \"/\": \"OK\" }`"),
        );
    }
    let routes = std::mem::take(&mut d.routes);
    let plugins = std::mem::take(&mut d.plugins);
    Model {
        server,
        static_settings,
        proxy,
        upstreams,
        routes,
        plugins,
        global_plugins,
    }
}

/// What a group passes to the routes inside it.
struct Scope {
    prefix: Vec<Segment>,
    label: Option<String>,
    static_settings: Arc<StaticSettings>,
    proxy: Arc<ProxySettings>,
    /// The chain so far (global, then enclosing groups).
    plugins: Arc<[usize]>,
}

struct Decoder<'a> {
    diags: &'a mut Vec<Diagnostic>,
    base_dir: &'a Path,
    routes: Vec<Route>,
    plugins: Vec<PluginSpec>,
}

impl Decoder<'_> {
    fn type_error(&mut self, node: &Node, what: &str, expected: &str) {
        self.diags.push(Diagnostic::error(
            codes::TYPE,
            node.span,
            format!("`{what}` must be {expected}, found {}", node.describe()),
        ));
    }

    fn value_error(&mut self, span: Span, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(codes::VALUE, span, message));
    }

    /// Sections of the SPEC this version does not implement: an error, never ignored.
    fn not_yet(&mut self, f: &mut Fields<'_>, keys: &[&str]) {
        for key in keys {
            if let Some((k, _)) = f.take_entry(key) {
                self.diags.push(
                    Diagnostic::error(
                        codes::NOT_YET,
                        k.span,
                        format!("`{key}` is not implemented in this version yet"),
                    )
                    .help(format!(
                        "remove `{key}` for now; docs/CONFIG.md lists the keys that exist"
                    )),
                );
            }
        }
    }

    /// `routes` and `groups` of one map, flattened in the order they are written
    /// (declaration order breaks ties between rules).
    fn routes_and_groups(&mut self, f: &mut Fields<'_>, scope: &Scope) {
        let mut parts = [
            (f.take_entry("routes"), true),
            (f.take_entry("groups"), false),
        ];
        parts.sort_by_key(|(e, _)| e.map(|(k, _)| k.span.sort_key()));
        for (entry, is_routes) in parts {
            match (entry, is_routes) {
                (Some((_, v)), true) => self.routes(v, scope),
                (Some((_, v)), false) => self.groups(v, scope),
                (None, _) => {}
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        let s = node.as_str();
        if s.is_none() {
            self.type_error(node, what, "a string");
        }
        s
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.type_error(node, what, "true or false");
                None
            }
        }
    }

    /// A string or a list of strings.
    fn strings<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(&'n str, &'n Node)> {
        match &node.kind {
            Kind::Str(s) => vec![(s.as_str(), node)],
            Kind::Seq(items) => items
                .iter()
                .filter_map(|n| self.string(n, what).map(|s| (s, n)))
                .collect(),
            _ => {
                self.type_error(node, what, "a string or a list of strings");
                Vec::new()
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let s = self.string(node, what)?;
        match crate::duration::parse(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.value_error(node.span, e);
                None
            }
        }
    }

    fn server(&mut self, node: Option<&Node>) -> Server {
        let mut server = Server {
            listen: vec![Listen {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
                span: None,
            }],
            workers: Workers::Auto,
            limits: ServerLimits::default(),
            timeouts: ServerTimeouts::default(),
            shutdown_timeout: Duration::from_secs(30),
        };
        let Some(node) = node else {
            return server;
        };
        let mut f = Fields::new(self.diags, node, "server");
        if let Some(n) = f.take("limits") {
            server.limits = self.server_limits(n);
        }
        if let Some(n) = f.take("timeouts") {
            let mut t = Fields::new(self.diags, n, "server.timeouts");
            let timeouts = &mut server.timeouts;
            for (key, slot) in [
                ("head", &mut timeouts.head),
                ("idle", &mut timeouts.idle),
                ("body", &mut timeouts.body),
            ] {
                if let Some(n) = t.take(key) {
                    self.positive_duration(n, &format!("server.timeouts.{key}"), slot);
                }
            }
            t.finish(self.diags, &["head", "idle", "body"]);
        }
        if let Some(n) = f.take("shutdown_timeout") {
            self.positive_duration(n, "server.shutdown_timeout", &mut server.shutdown_timeout);
        }
        if let Some(n) = f.take("listen") {
            let mut seen: HashMap<SocketAddr, Span> = HashMap::new();
            let mut listen = Vec::new();
            for (text, n) in self.strings(n, "server.listen") {
                match parse_listen(text) {
                    Ok(addr) => {
                        if let Some(&first) = seen.get(&addr) {
                            self.diags.push(
                                Diagnostic::error(
                                    codes::VALUE,
                                    n.span,
                                    format!("`{addr}` is listed twice"),
                                )
                                .note(first, "first listed here"),
                            );
                        } else {
                            seen.insert(addr, n.span);
                            listen.push(Listen {
                                addr,
                                span: Some(n.span),
                            });
                        }
                    }
                    Err(e) => self.value_error(n.span, e),
                }
            }
            if matches!(&n.kind, Kind::Seq(items) if items.is_empty()) {
                self.value_error(n.span, "`server.listen` needs at least one address");
            }
            server.listen = listen;
        }
        if let Some(n) = f.take("workers") {
            match &n.kind {
                Kind::Str(s) if s == "auto" => server.workers = Workers::Auto,
                Kind::Int(i) if (1..=1024).contains(i) => {
                    server.workers = Workers::Count(usize::try_from(*i).unwrap_or(1));
                }
                Kind::Int(_) => self.value_error(n.span, "`server.workers` must be 1 to 1024"),
                _ => self.type_error(n, "server.workers", "a number or \"auto\""),
            }
        }
        f.finish(
            self.diags,
            &[
                "listen",
                "workers",
                "limits",
                "timeouts",
                "shutdown_timeout",
            ],
        );
        server
    }

    fn server_limits(&mut self, node: &Node) -> ServerLimits {
        let mut limits = ServerLimits::default();
        let mut f = Fields::new(self.diags, node, "server.limits");
        // (key, slot, smallest, largest)
        let table: [(&str, &mut u64, u64, u64); 6] = [
            ("max_head", &mut limits.max_head, 1024, 1 << 24),
            ("max_uri", &mut limits.max_uri, 64, 1 << 24),
            ("max_headers", &mut limits.max_headers, 1, 128),
            ("max_body", &mut limits.max_body, 0, u64::MAX),
            (
                "max_connections",
                &mut limits.max_connections,
                1,
                10_000_000,
            ),
            ("echo_body", &mut limits.echo_body, 0, 1 << 30),
        ];
        for (key, slot, min, max) in table {
            let Some(n) = f.take(key) else { continue };
            let units = key != "max_headers" && key != "max_connections";
            if let Some(v) = self.size(n, &format!("server.limits.{key}"), min, max, units) {
                *slot = v;
            }
        }
        f.finish(
            self.diags,
            &[
                "max_head",
                "max_uri",
                "max_headers",
                "max_body",
                "max_connections",
                "echo_body",
            ],
        );
        limits
    }

    fn positive_duration(&mut self, node: &Node, what: &str, slot: &mut Duration) {
        if let Some(d) = self.duration(node, what) {
            if d.is_zero() {
                self.value_error(node.span, format!("`{what}` must be more than 0"));
            } else {
                *slot = d;
            }
        }
    }

    fn static_settings(
        &mut self,
        node: Option<&Node>,
        section: &str,
        parent: &StaticSettings,
        top_level: bool,
    ) -> StaticSettings {
        let mut s = parent.clone();
        let Some(node) = node else {
            return s;
        };
        let mut f = Fields::new(self.diags, node, section);
        if let Some(n) = f.take("index") {
            let what = format!("{section}.index");
            let names = self.strings(n, &what);
            let mut index = Vec::new();
            for (name, n) in names {
                if name.is_empty()
                    || name.contains(['/', '\\', '\0'])
                    || name == "."
                    || name == ".."
                {
                    self.value_error(
                        n.span,
                        format!("`{name}` is not a file name (no `/`, not `.` or `..`)"),
                    );
                } else {
                    index.push(name.to_owned());
                }
            }
            s.index = index;
        }
        if let Some(n) = f.take("spa") {
            s.spa = self.bool(n, &format!("{section}.spa")).or(s.spa);
        }
        if let Some(n) = f.take("listing") {
            s.listing = self
                .bool(n, &format!("{section}.listing"))
                .unwrap_or(s.listing);
        }
        if let Some(n) = f.take("cache") {
            let sub = format!("{section}.cache");
            let mut c = Fields::new(self.diags, n, &sub);
            for (key, slot) in [
                ("html", &mut s.cache.html),
                ("fingerprinted", &mut s.cache.fingerprinted),
                ("default", &mut s.cache.default),
            ] {
                let Some(n) = c.take(key) else { continue };
                let Some(v) = self.string(n, &format!("{sub}.{key}")) else {
                    continue;
                };
                if v.bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
                {
                    *slot = v.trim().to_owned();
                } else {
                    self.value_error(
                        n.span,
                        format!("`{sub}.{key}` must be printable ASCII (a header value)"),
                    );
                }
            }
            c.finish(self.diags, &["html", "fingerprinted", "default"]);
        }
        if let Some(n) = f.take("compress") {
            s.compress = self
                .bool(n, &format!("{section}.compress"))
                .unwrap_or(s.compress);
        }
        for (key, slot, max) in [
            ("compress_min", &mut s.compress_min, 1u64 << 30),
            ("memory_file_max", &mut s.memory_file_max, 1 << 30),
        ] {
            if let Some(n) = f.take(key)
                && let Some(v) = self.size(n, &format!("{section}.{key}"), 0, max, true)
            {
                *slot = v;
            }
        }
        if let Some((k, n)) = f.take_entry("memory_total_max") {
            if top_level {
                if let Some(v) =
                    self.size(n, &format!("{section}.memory_total_max"), 0, 1 << 40, true)
                {
                    s.memory_total_max = v;
                }
            } else {
                self.value_error(
                    k.span,
                    "`static.memory_total_max` can only be set at the top level (the cache is shared by every rule)",
                );
            }
        }
        if let Some(n) = f.take("revalidate") {
            let what = format!("{section}.revalidate");
            if let Some(d) = self.duration(n, &what) {
                s.revalidate = d;
            }
        }
        f.finish(
            self.diags,
            &[
                "index",
                "spa",
                "listing",
                "cache",
                "compress",
                "compress_min",
                "memory_file_max",
                "memory_total_max",
                "revalidate",
            ],
        );
        s
    }

    /// A size: a number of bytes or (with `units`) a string such as `64KiB`, within
    /// `min..=max`.
    fn size(&mut self, n: &Node, what: &str, min: u64, max: u64, units: bool) -> Option<u64> {
        let value = match &n.kind {
            Kind::Int(i) => u64::try_from(*i).map_err(|_| format!("`{what}` cannot be negative")),
            Kind::Str(s) if units => crate::size::parse(s),
            _ => {
                self.type_error(n, what, "a number or a size such as `64KiB`");
                return None;
            }
        };
        match value {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.value_error(
                    n.span,
                    format!("`{what}` must be from {min} to {max}, found {v}"),
                );
                None
            }
            Err(e) => {
                self.value_error(n.span, e);
                None
            }
        }
    }

    fn proxy_settings(
        &mut self,
        node: Option<&Node>,
        top_level: bool,
        parent: &ProxySettings,
    ) -> ProxySettings {
        let section = "proxy";
        let mut p = parent.clone();
        let Some(node) = node else {
            return p;
        };
        let mut f = Fields::new(self.diags, node, section);
        if let Some(n) = f.take("timeouts") {
            let sub = format!("{section}.timeouts");
            let mut t = Fields::new(self.diags, n, &sub);
            for (key, slot) in [
                ("connect", &mut p.timeouts.connect),
                ("read", &mut p.timeouts.read),
                ("write", &mut p.timeouts.write),
            ] {
                if let Some(n) = t.take(key) {
                    self.positive_duration(n, &format!("{sub}.{key}"), slot);
                }
            }
            if let Some(n) = t.take("total") {
                if n.as_str() == Some("off") {
                    p.timeouts.total = None;
                } else if let Some(d) = self.duration(n, &format!("{sub}.total")) {
                    p.timeouts.total = (!d.is_zero()).then_some(d);
                }
            }
            t.finish(self.diags, &["connect", "read", "write", "total"]);
        }
        if let Some(n) = f.take("host")
            && let Some(v) = self.string(n, &format!("{section}.host"))
        {
            p.host = match v {
                "upstream" => HostHeader::Upstream,
                "client" => HostHeader::Client,
                v if !v.is_empty() && v.bytes().all(is_host_byte) => {
                    HostHeader::Fixed(v.to_owned())
                }
                _ => {
                    self.value_error(
                        n.span,
                        "`proxy.host` must be `upstream`, `client` or a host name (with an optional port)",
                    );
                    p.host
                }
            };
        }
        if let Some(n) = f.take("via") {
            p.via = self.bool(n, &format!("{section}.via")).unwrap_or(p.via);
        }
        for (key, slot) in [
            ("max_idle", &mut p.max_idle),
            ("max_conns", &mut p.max_conns),
        ] {
            if let Some(n) = f.take(key)
                && let Some(v) = self.size(n, &format!("{section}.{key}"), 0, 1 << 20, false)
            {
                *slot = v as usize;
            }
        }
        for (key, slot) in [
            ("idle_timeout", &mut p.idle_timeout),
            ("dns_ttl", &mut p.dns_ttl),
        ] {
            if let Some(n) = f.take(key) {
                self.positive_duration(n, &format!("{section}.{key}"), slot);
            }
        }
        // `upstreams` is read by `upstreams()` at the top level; in a group it is an error.
        if let Some((k, _)) = f.take_entry("upstreams")
            && !top_level
        {
            self.value_error(
                k.span,
                "`proxy.upstreams` can only be defined at the top level",
            );
        }
        f.finish(
            self.diags,
            &[
                "timeouts",
                "upstreams",
                "host",
                "via",
                "max_idle",
                "max_conns",
                "idle_timeout",
                "dns_ttl",
            ],
        );
        p
    }

    fn upstreams(&mut self, proxy: Option<&Node>) -> Vec<Upstream> {
        let Some(Kind::Map(entries)) = proxy.map(|n| &n.kind) else {
            return Vec::new();
        };
        let Some((_, node)) = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("upstreams"))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut pools = Fields::new(self.diags, node, "proxy.upstreams");
        for (k, v) in pools.unique_entries() {
            let Some(name) = k.as_str() else { continue };
            // Host names are case-insensitive, and the DSL lower-cases proxy hosts.
            let name = name.to_ascii_lowercase();
            if out.iter().any(|u: &Upstream| u.name == name) {
                self.value_error(
                    k.span,
                    format!("pool `{name}` is defined twice (names ignore case)"),
                );
                continue;
            }
            let name = name.as_str();
            if !is_pool_name(name) {
                self.value_error(
                    k.span,
                    format!("`{name}` is not a valid pool name (letters, digits, `-`, `_`, `.`)"),
                );
                continue;
            }
            let what = format!("proxy.upstreams.{name}");
            let mut f = Fields::new(self.diags, v, &what);
            let mut targets = Vec::new();
            match f.take("targets") {
                Some(n) => {
                    for (text, n) in self.strings(n, &format!("{what}.targets")) {
                        match parse_target(text) {
                            Ok((host, port)) => targets.push(Target {
                                host,
                                port,
                                span: n.span,
                            }),
                            Err(e) => self.value_error(n.span, e),
                        }
                    }
                }
                None => self.value_error(k.span, format!("`{what}` needs `targets`")),
            }
            f.finish(self.diags, &["targets"]);
            out.push(Upstream {
                name: name.to_owned(),
                targets,
                span: k.span,
            });
        }
        out
    }

    fn groups(&mut self, node: &Node, parent: &Scope) {
        let Kind::Seq(items) = &node.kind else {
            if !matches!(node.kind, Kind::Null) {
                self.type_error(node, "groups", "a list of groups");
            }
            return;
        };
        for group in items {
            let mut f = Fields::new(self.diags, group, "group");
            let mut prefix = parent.prefix.clone();
            let mut label = parent.label.clone();
            let mut prefix_ok = true;
            if let Some(n) = f.take("prefix") {
                match self.string(n, "prefix").map(|t| (t, parse_prefix(t))) {
                    Some((text, Ok(segments))) => {
                        prefix.extend(segments);
                        let mut l = label.unwrap_or_default();
                        l.push_str(text.trim_end_matches('/'));
                        label = Some(l);
                    }
                    Some((_, Err(e))) => {
                        self.diags.push(dsl_diagnostic(codes::GROUP_PREFIX, n, &e));
                        prefix_ok = false;
                    }
                    None => prefix_ok = false,
                }
            }
            let static_settings = match f.take("static") {
                Some(n) => Arc::new(self.static_settings(
                    Some(n),
                    "static",
                    &parent.static_settings,
                    false,
                )),
                None => parent.static_settings.clone(),
            };
            let proxy = match f.take("proxy") {
                Some(n) => Arc::new(self.proxy_settings(Some(n), false, &parent.proxy)),
                None => parent.proxy.clone(),
            };
            let plugins = self.plugins(f.take("plugins"), &parent.plugins, label.as_deref());
            let scope = Scope {
                prefix,
                label,
                static_settings,
                proxy,
                plugins,
            };
            if prefix_ok {
                self.routes_and_groups(&mut f, &scope);
            } else {
                // Without its prefix the group's rules would be checked against the wrong
                // paths (false conflicts): leave them out until the prefix is fixed.
                f.take_entry("routes");
                f.take_entry("groups");
            }
            f.finish(
                self.diags,
                &["prefix", "routes", "groups", "static", "proxy", "plugins"],
            );
        }
    }

    fn routes(&mut self, node: &Node, scope: &Scope) {
        if matches!(node.kind, Kind::Null) {
            return;
        }
        let mut f = Fields::new(self.diags, node, "routes");
        for (k, v) in f.unique_entries() {
            let Some(key_text) = k.as_str() else {
                self.type_error(k, "a route key", "a string `[METHOD ...] /path`");
                continue;
            };
            let head = dsl::parse_head(key_text)
                .map_err(|e| self.diags.push(dsl_diagnostic(codes::ROUTE_HEAD, k, &e)))
                .ok();
            // SPA by default for a rule whose own path (before a group prefix) is the root.
            let own_path_is_root = head
                .as_ref()
                .is_some_and(|h| h.path.segments.is_empty() && h.path.tail != Tail::Exact);
            let head = head.and_then(|head| self.join_prefix(head, &scope.prefix, k));
            let int_text;
            let action_text = match &v.kind {
                Kind::Str(s) => Some(s.as_str()),
                Kind::Null => Some(""),
                Kind::Int(i) => {
                    int_text = i.to_string();
                    Some(int_text.as_str())
                }
                _ => {
                    self.type_error(v, key_text, "an action string");
                    None
                }
            };
            let action = action_text.and_then(|t| match dsl::parse_action(t) {
                Ok(action) => Some(action),
                // An absent value has no position of its own: point at the key.
                Err(e) if matches!(v.kind, Kind::Null) => {
                    let why = e.message.trim_start_matches("empty action: ");
                    let msg = format!("`{key_text}` has no action: {why}");
                    self.diags
                        .push(Diagnostic::error(codes::ROUTE_ACTION, k.span, msg));
                    None
                }
                Err(e) => {
                    self.diags.push(dsl_diagnostic(codes::ROUTE_ACTION, v, &e));
                    None
                }
            });
            let static_root = match &action {
                Some(Action::Static(dir)) => self.static_root(dir, v),
                _ => None,
            };
            if let (Some(head), Some(action)) = (head, action) {
                if matches!(action, Action::Static(_)) && static_root.is_none() {
                    continue;
                }
                let spa = matches!(action, Action::Static(_))
                    && scope.static_settings.spa.unwrap_or(own_path_is_root);
                self.routes.push(Route {
                    head,
                    action,
                    key_text: key_text.to_owned(),
                    key: k.span,
                    value: v.span,
                    group: scope.label.clone(),
                    static_root,
                    static_settings: scope.static_settings.clone(),
                    spa,
                    proxy: scope.proxy.clone(),
                    plugins: scope.plugins.clone(),
                });
            }
        }
    }

    fn join_prefix(&mut self, mut head: Head, prefix: &[Segment], key: &Node) -> Option<Head> {
        if prefix.is_empty() {
            return Some(head);
        }
        let mut segments = prefix.to_vec();
        segments.append(&mut head.path.segments);
        let mut names: Vec<&str> = Vec::new();
        for s in &segments {
            if let Segment::Param(p) = s {
                if names.contains(&p.as_str()) {
                    self.diags.push(Diagnostic::error(
                        codes::ROUTE_HEAD,
                        key.span,
                        format!("parameter `:{p}` is already used by the group prefix"),
                    ));
                    return None;
                }
                names.push(p);
            }
        }
        if segments.len() > dsl::MAX_SEGMENTS || names.len() > dsl::MAX_PARAMS {
            self.diags.push(Diagnostic::error(
                codes::ROUTE_HEAD,
                key.span,
                "with the group prefix, this path has too many segments or parameters",
            ));
            return None;
        }
        head.path = PathPattern {
            segments,
            tail: head.path.tail,
        };
        Some(head)
    }

    fn static_root(&mut self, dir: &str, value: &Node) -> Option<PathBuf> {
        let path = Path::new(dir);
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        };
        let problem = match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => return Some(resolved),
            Ok(_) => "is not a directory",
            Err(_) => "does not exist",
        };
        let mut d = Diagnostic::error(
            codes::STATIC_DIR,
            value.span,
            format!("static directory `{dir}` {problem}"),
        );
        if !path.is_absolute() {
            d = d.help(format!(
                "relative directories are resolved against the config file's directory: {}",
                resolved.display()
            ));
        }
        self.diags.push(d);
        None
    }
}

/// A DSL error inside a key or value, pointed at the exact characters when possible.
fn dsl_diagnostic(code: &'static str, node: &Node, e: &DslError) -> Diagnostic {
    Diagnostic::error(code, node.sub_span(e.offset, e.len), e.message.clone())
}
