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
    /// `server.allow_underscores_in_headers` (default false): request fields whose names
    /// contain `_` are dropped unless this is set (nginx's `underscores_in_headers off`), since
    /// CGI-style backends read `X_Forwarded_For` as `X-Forwarded-For`.
    pub allow_underscores_in_headers: bool,
    /// `server.log_format` (default text): the server's own log on stderr, as
    /// `anygate: message` lines or as JSON objects.
    pub log_format: LogFormat,
    /// `server.trusted_proxies` (default none): peers whose `X-Forwarded-*`, `Forwarded` and
    /// `X-Real-IP` fields are believed. From any other peer those fields are removed and
    /// written again from the connection; see docs/PROXY.md.
    pub trusted_proxies: Vec<crate::cidr::Cidr>,
    /// `server.user`: started as root, `serve` binds its listeners and then runs as this
    /// user (a name or a numeric id), for good. Ignored, with a warning, when not root.
    pub user: Option<(String, Span)>,
    /// `server.group` (default the user's primary group).
    pub group: Option<(String, Span)>,
    /// `server.allow_root` (default false): let `serve` keep running as root when no
    /// `server.user` is set; without it, it refuses to start as root.
    pub allow_root: bool,
    /// `server.watch` (default false): reload when the configuration file, or a file it
    /// names (certificates, `*_file` arguments of filters), changes.
    pub watch: bool,
    /// `server.trailing_slash` (default strict): what `/a/` gets when only `/a` has a rule.
    pub trailing_slash: TrailingSlash,
    /// Where `server.listen: []` (no plain listener: a TLS-only gateway) is written.
    pub no_plain_listener: Option<Span>,
    /// `server.h2c` (default false): HTTP/2 with prior knowledge on the plain listeners
    /// (a client that starts with the HTTP/2 preface); HTTP/1.1 is still served there.
    pub h2c: bool,
    /// `server.h2`: HTTP/2 settings and limits.
    pub h2: ServerH2,
}

/// `server.h2` (docs/HTTP.md, "HTTP/2").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerH2 {
    /// Offer `h2` by ALPN on TLS listeners (default true).
    pub enabled: bool,
    /// Streams open at once per connection (default 128).
    pub max_concurrent_streams: u64,
    /// What a client may send on one stream before it is read (default 256 KiB).
    pub initial_stream_window: u64,
    /// The same for all streams of a connection together (default 1 MiB).
    pub initial_connection_window: u64,
    /// Largest frame the server accepts (default 16 KiB; 16 KiB to 16 MiB - 1).
    pub max_frame_size: u64,
    /// Decoded request header list, bytes (default 0: `server.limits.max_head`).
    pub max_header_list_size: u64,
    /// Response bytes buffered per stream for a client that does not read (default 256 KiB).
    pub max_send_buffer_size: u64,
    /// Streams reset by the client before they were accepted, remembered at once (rapid
    /// reset; default 20): past it the connection is closed.
    pub max_pending_accept_reset_streams: u64,
    /// Streams the server resets for a client's errors before it closes the connection
    /// (default 1024).
    pub max_local_error_reset_streams: u64,
}

impl Default for ServerH2 {
    fn default() -> Self {
        Self {
            enabled: true,
            max_concurrent_streams: 128,
            initial_stream_window: 256 << 10,
            initial_connection_window: 1 << 20,
            max_frame_size: 16 << 10,
            max_header_list_size: 0,
            max_send_buffer_size: 256 << 10,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

/// `server.trailing_slash`: for a request path ending in `/` that only a shorter prefix
/// rule (or no rule) takes, while an exact rule has the path without the slash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrailingSlash {
    /// The path is matched as sent (`/a/` is not `/a`).
    #[default]
    Strict,
    /// `308` to the path without the slash (the query kept).
    Redirect,
    /// The exact rule answers, as if the slash were not there.
    Ignore,
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
    /// Open connections from one client address (default 256; 0 = no cap; 503 above).
    pub max_connections_per_ip: u64,
    /// Bytes input buffers may grow by for heads over 8 KiB, all connections together
    /// (default 64 MiB; 0 = no bound; 503 above).
    pub head_memory: u64,
    /// Bytes of the request body an echo response shows (default 64 KiB).
    pub echo_body: u64,
    /// The slowest average rate a request body may arrive at, bytes per second, once
    /// `server.timeouts.body_grace` has passed (default 512; 0 = no minimum; 408 below).
    pub min_body_rate: u64,
    /// The slowest average rate a streamed or file response may be written at, bytes per
    /// second, once `server.timeouts.send_grace` has passed (default 512; 0 = no minimum).
    pub min_send_rate: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_head: 64 << 10,
            max_uri: 8 << 10,
            max_headers: 100,
            max_body: 1 << 30,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            head_memory: 64 << 20,
            echo_body: 64 << 10,
            min_body_rate: 512,
            min_send_rate: 512,
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
    /// How long a request body may take before `server.limits.min_body_rate` counts
    /// (default 10s).
    pub body_grace: Duration,
    /// How long a response may take before `server.limits.min_send_rate` counts (default
    /// 10s).
    pub send_grace: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(60),
            body_grace: Duration::from_secs(10),
            send_grace: Duration::from_secs(10),
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

/// `server.log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `anygate: message`.
    #[default]
    Text,
    /// `{"ts":…,"level":…,"msg":…}`.
    Json,
}

/// How many worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// One per available CPU (the default).
    Auto,
    /// Exactly this many.
    Count(usize),
}

impl Workers {
    /// How many threads that is on this machine (`Auto`: the CPUs this process may use,
    /// its affinity mask and cgroup quota counted; at least 1).
    pub fn count(self) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Auto => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        }
    }
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
    /// `proxy.allow_encoded_traversal` (default false): a path whose segments would hold
    /// `..` once `%2F` and `%5C` are decoded (`/public/..%2Fadmin`) is refused with a 400
    /// unless this is set.
    pub allow_encoded_traversal: bool,
    /// `proxy.client_cert_header` (default none): a header that carries the verified TLS
    /// client certificate's subject upstream. The client's own value of it is always
    /// removed, so an upstream can trust it.
    pub client_cert_header: Option<String>,
    /// `proxy.retries`.
    pub retries: Retries,
    /// `proxy.retry_body_limit` (default 64 KiB): a request body with a length up to this
    /// is kept so that a retry can send it again; a larger or chunked one is streamed, and
    /// its request is retried only if none of it was read.
    pub retry_body_limit: u64,
}

/// `proxy.retries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retries {
    /// `attempts` (default 2; 1 turns retries off): attempts in all, the first included.
    pub attempts: u32,
    /// `on` (default `[connect_failure]`): the failures retried.
    pub on: Vec<RetryOn>,
    /// `budget` (default 20%), per mille: retries allowed per request over a 10 s window,
    /// per pool (top level only).
    pub budget_per_mille: u32,
    /// `min_retries_per_s` (default 3): retries always allowed per second (top level only).
    pub min_retries_per_s: u32,
    /// `backoff` (default `25ms..1s`): the first pause, doubled per retry up to the second.
    pub backoff: (Duration, Duration),
    /// `non_idempotent` (default false): retry `POST`, `PATCH` and other methods that are
    /// not idempotent too.
    pub non_idempotent: bool,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: 2,
            on: vec![RetryOn::ConnectFailure],
            budget_per_mille: 200,
            min_retries_per_s: 3,
            backoff: (Duration::from_millis(25), Duration::from_secs(1)),
            non_idempotent: false,
        }
    }
}

impl std::fmt::Display for RetryOn {
    /// As the configuration spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConnectFailure => f.write_str("connect_failure"),
            Self::Reset => f.write_str("reset"),
            Self::Timeout => f.write_str("timeout"),
            Self::Status(s) => write!(f, "{s}"),
        }
    }
}

/// One condition of `proxy.retries.on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOn {
    /// `connect_failure`: no connection could be opened (nothing was sent).
    ConnectFailure,
    /// `reset`: the connection broke before the response head.
    Reset,
    /// `timeout`: no response head within `proxy.timeouts.read` (or a connect timeout).
    Timeout,
    /// `502`, `503` or `504`: the upstream answered so.
    Status(u16),
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
            allow_encoded_traversal: false,
            client_cert_header: None,
            retries: Retries::default(),
            retry_body_limit: 64 * 1024,
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
    /// The whole exchange (default 1h; `off` for none): on by default so that nothing a
    /// client or an upstream does holds an upstream connection for ever.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            total: Some(Duration::from_secs(3600)),
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
    /// `tls`: the pool speaks TLS to its targets (its rules must say `https://`).
    pub tls: Option<UpstreamTls>,
    /// `balance` (default round robin), with `hash_key` for `hash`.
    pub balance: Balance,
    /// `slow_start` (default 0: off): a target that comes back (up again, or its ejection
    /// over) takes a share of its traffic growing from 10 % to all of it over this long.
    pub slow_start: Duration,
    /// `protocol` (default `h1`): what the pool speaks to its targets.
    pub protocol: UpstreamProtocol,
    /// `health`: active checks.
    pub health: Option<HealthCheck>,
    /// `outlier`: passive health (ejection after failures in a row).
    pub outlier: Option<OutlierDetection>,
    /// `breaker`: the circuit breakers of the pool and of each target.
    pub breaker: Option<CircuitBreaker>,
    /// Where the pool is defined.
    pub span: Span,
}

/// `proxy.upstreams.NAME.health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// `type`: `http` (default), `tcp` or `websocket`.
    pub kind: HealthKind,
    /// `path` (default `/`): what `http` and `websocket` checks request.
    pub path: String,
    /// `interval` (default 2s).
    pub interval: Duration,
    /// `timeout` (default 1s).
    pub timeout: Duration,
    /// `expect` (default `200-399`): the statuses an `http` check accepts, as ranges.
    pub expect: Vec<(u16, u16)>,
    /// `fall` (default 3): failed checks in a row that take a target down.
    pub fall: u32,
    /// `rise` (default 2): passed checks in a row that bring it back.
    pub rise: u32,
}

/// `health.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthKind {
    /// `GET path`, the status in `expect`.
    Http,
    /// A TCP connect (and TLS handshake if the pool has `tls`).
    Tcp,
    /// A WebSocket opening handshake to `path` (101 with the right accept key).
    WebSocket,
}

/// `proxy.upstreams.NAME.outlier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive_failures` (default 5).
    pub consecutive_failures: u32,
    /// `base_ejection` (default 30s): the first ejection's length (then twice, three
    /// times as long... up to ten times, while the target keeps failing).
    pub base_ejection: Duration,
    /// `max_ejected_percent` (default 50).
    pub max_ejected_percent: u32,
}

/// `proxy.upstreams.NAME.breaker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// `failure_ratio` (default 0.5), per mille.
    pub failure_ratio_per_mille: u32,
    /// `min_requests` (default 20) in the window before it may open.
    pub min_requests: u32,
    /// `window` (default 10s).
    pub window: Duration,
    /// `open_for` (default 15s).
    pub open_for: Duration,
    /// `max_pending` (default 0: unbounded): requests in flight per target.
    pub max_pending: u32,
}

/// `proxy.upstreams.NAME.protocol`: the HTTP version a pool speaks to its targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    H1,
    /// HTTP/2: with prior knowledge (h2c) over plain TCP, by ALPN `h2` over TLS; requests
    /// share a few multiplexed connections.
    H2,
    /// Over TLS, whatever the target picks by ALPN (`h2` or `http/1.1`); HTTP/1.1 over
    /// plain TCP.
    Auto,
}

/// `proxy.upstreams.NAME.balance`: how a request picks a target of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    /// `round_robin` (default): each target in turn; weights are not allowed.
    RoundRobin,
    /// `weighted`: smooth weighted round robin (nginx's), exact over every cycle.
    Weighted,
    /// `least_conn`: the target with the fewest requests in flight for its weight.
    LeastConn,
    /// `random`: two targets drawn at random (by weight), the less loaded one taken.
    Random,
    /// `hash`: consistent hashing of `hash_key`, so that a key keeps its target (sticky
    /// sessions) and a target joining or leaving moves few keys.
    Hash(HashKey),
}

impl std::fmt::Display for Balance {
    /// For `check`'s route table: the strategy's name (`hash` with its key: `hash of
    /// cookie:session`), the default as `round robin`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RoundRobin => f.write_str("round robin"),
            Self::Weighted => f.write_str("weighted"),
            Self::LeastConn => f.write_str("least_conn"),
            Self::Random => f.write_str("random"),
            Self::Hash(HashKey::ClientIp) => f.write_str("hash of client_ip"),
            Self::Hash(HashKey::Path) => f.write_str("hash of path"),
            Self::Hash(HashKey::Header(h)) => write!(f, "hash of header:{h}"),
            Self::Hash(HashKey::Cookie(c)) => write!(f, "hash of cookie:{c}"),
        }
    }
}

/// `proxy.upstreams.NAME.hash_key`: what `balance: hash` hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// `client_ip` (default): the client's address (after `server.trusted_proxies`).
    ClientIp,
    /// `header:NAME`: that request field's value (lower-cased name).
    Header(String),
    /// `cookie:NAME`: that cookie's value.
    Cookie(String),
    /// `path`: the request path (without the query).
    Path,
}

/// One upstream target.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `weight` (1 to 1000, default 1): its share for `weighted`, `least_conn`, `random`
    /// and `hash`.
    pub weight: u32,
    /// `backup` (default false): used only when every primary target is down.
    pub backup: bool,
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
    /// A group above says `require_client_cert: true`: requests without a verified TLS
    /// client certificate get 403 `AG-SEC-6004`.
    pub require_client_cert: bool,
    /// The error pages in effect: the rule's own over its groups' over the top level's.
    pub errors: Arc<ErrorPages>,
    /// A group's `max_body` (or its profile's): requests with a larger body get 413.
    pub max_body: Option<u64>,
}

impl Route {
    /// `GET POST /api/:id`, `* /v1/` or `GET api.example.com/v1/`: the rule's methods,
    /// hosts and full path, canonical.
    pub fn label(&self) -> String {
        format!("{} {}", self.methods_label(), self.head.target_display())
    }

    /// `GET POST`, or `*` for every method.
    pub fn methods_label(&self) -> String {
        match &self.head.methods {
            dsl::Methods::Any => "*".to_owned(),
            dsl::Methods::Named(m) => m.join(" "),
        }
    }
}

mod acme;
mod admin;
mod errors;
mod plugins;
mod profiles;
mod routes;
mod server;
mod settings;
mod tls;
mod tracing;

pub use self::acme::{Acme, AcmeChallenge, LETS_ENCRYPT, LETS_ENCRYPT_STAGING, acme_name_problem};
pub use self::admin::{ADMIN_DEFAULT, Admin};
pub use self::errors::{ErrorPage, ErrorPages, ErrorStatus, MAX_ERROR_PAGE};
pub use self::plugins::PluginSpec;
pub use self::profiles::{Profile, ProfileUse};
pub use self::routes::static_root_readable;
pub use self::settings::MAX_WEIGHT;
pub use self::tls::{
    ClientAuth, ClientAuthMode, Tls, TlsCertificate, TlsHost, TlsProfile, UpstreamTls,
};
pub use self::tracing::{OtlpEndpoint, Tracing};

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
    pub tls: Option<Tls>,
    pub acme: Option<Acme>,
    pub admin: Option<Admin>,
    pub tracing: Option<Tracing>,
    pub errors: Arc<ErrorPages>,
    pub profiles: Vec<ProfileUse>,
}

/// Decodes the root node. Problems go to `diags`; the model is partial when there are any.
pub(crate) fn decode(root: &Node, base_dir: &Path, diags: &mut Vec<Diagnostic>) -> Model {
    let mut d = Decoder {
        diags,
        base_dir,
        routes: Vec::new(),
        plugins: Vec::new(),
        profiles: Vec::new(),
    };
    let mut f = Fields::new(d.diags, root, "the configuration");
    let server = d.server(f.take("server"));
    let static_settings =
        Arc::new(d.static_settings(f.take("static"), "static", &StaticSettings::default(), true));
    let proxy_node = f.take("proxy");
    let proxy = Arc::new(d.proxy_settings(proxy_node, true, &ProxySettings::default()));
    let upstreams = d.upstreams(proxy_node);
    let global_plugins = d.plugins(f.take("plugins"), &Arc::from([]), None);
    let acme = f.take_entry("acme").map(|(k, v)| d.acme(k, v));
    let tls = f
        .take_entry("tls")
        .map(|(k, v)| d.tls(k, v, acme.is_some()));
    if let (Some(span), None) = (server.no_plain_listener, &tls) {
        d.diags.push(Diagnostic::error(
            codes::VALUE,
            span,
            "`server.listen: []` leaves no listener: that needs a `tls` section",
        ));
    }
    if let (Some(a), None) = (&acme, &tls) {
        d.diags.push(Diagnostic::error(
            codes::VALUE,
            a.span,
            "`acme` needs a `tls` section: its listeners serve the certificates",
        ));
    }
    let admin = f.take("admin").map(|n| d.admin(n));
    let tracing = f.take("tracing").map(|n| d.tracing(n));
    let errors = d.error_pages(f.take("errors"), &Arc::default());
    if let Some(admin) = &admin {
        let public = server
            .listen
            .iter()
            .chain(tls.iter().flat_map(|t| t.listen.iter()));
        for l in public {
            let same = l.addr.port() == admin.listen.addr.port()
                && (l.addr.ip() == admin.listen.addr.ip()
                    || l.addr.ip().is_unspecified()
                    || admin.listen.addr.ip().is_unspecified());
            if same && l.addr.port() != 0 {
                let mut diag = Diagnostic::error(
                    codes::VALUE,
                    admin.listen.span.unwrap_or(admin.span),
                    format!(
                        "the admin listener `{}` overlaps a public listener: it must have a port of its own",
                        admin.listen.addr
                    ),
                );
                if let Some(span) = l.span {
                    diag = diag.note(span, "the public listener");
                }
                d.diags.push(diag);
            }
        }
    }
    if let Some(tls) = &tls {
        for l in &tls.listen {
            // Port 0 picks a free port for each: never the same one.
            if let Some(other) = server
                .listen
                .iter()
                .find(|s| s.addr == l.addr && l.addr.port() != 0)
            {
                let mut diag = Diagnostic::error(
                    codes::VALUE,
                    l.span.unwrap_or(tls.span),
                    format!("`{}` is both a plain and a TLS listener", l.addr),
                );
                if let Some(span) = other.span {
                    diag = diag.note(span, "the plain listener");
                }
                d.diags.push(diag);
            }
        }
    }
    let scope = Scope {
        prefix: Vec::new(),
        hosts: Vec::new(),
        label: None,
        static_settings: static_settings.clone(),
        proxy: proxy.clone(),
        plugins: global_plugins.clone(),
        require_client_cert: false,
        errors: errors.clone(),
        max_body: None,
    };
    d.routes_and_groups(&mut f, &scope);
    f.finish(
        d.diags,
        &[
            "server", "routes", "groups", "static", "proxy", "plugins", "tls", "acme", "admin",
            "tracing", "errors",
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
        tls,
        acme,
        admin,
        tracing,
        errors,
        profiles: std::mem::take(&mut d.profiles),
    }
}

/// What a group passes to the routes inside it.
struct Scope {
    prefix: Vec<Segment>,
    /// A group's `host`: the hosts its rules are for (empty: every host).
    hosts: Vec<dsl::HostPattern>,
    label: Option<String>,
    static_settings: Arc<StaticSettings>,
    proxy: Arc<ProxySettings>,
    /// The chain so far (global, then enclosing groups).
    plugins: Arc<[usize]>,
    /// A group on the way demands a verified client certificate.
    require_client_cert: bool,
    /// The error pages so far.
    errors: Arc<ErrorPages>,
    /// The innermost `max_body` so far.
    max_body: Option<u64>,
}

struct Decoder<'a> {
    diags: &'a mut Vec<Diagnostic>,
    base_dir: &'a Path,
    routes: Vec<Route>,
    plugins: Vec<PluginSpec>,
    profiles: Vec<ProfileUse>,
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

    /// `path` as written in the config: absolute as it is, relative against the config
    /// file's directory.
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// An error about the file or directory `written` (resolved to `resolved`), with the
    /// hint of where a relative one was looked for; `what` is "files" or "directories".
    fn path_error(
        &mut self,
        code: &'static str,
        span: Span,
        message: String,
        written: &Path,
        resolved: &Path,
        what: &str,
    ) {
        let mut d = Diagnostic::error(code, span, message);
        if !written.is_absolute() {
            d = d.help(format!(
                "relative {what} are resolved against the config file's directory: {}",
                resolved.display()
            ));
        }
        self.diags.push(d);
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
}
