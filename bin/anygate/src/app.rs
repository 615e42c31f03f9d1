//! The application: a validated configuration compiled into a router and one action per rule,
//! and [`Live`], which lets a reload replace it atomically while requests go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anygate_actions::{
    Echo, Fixed, HostMode, Proxy, ProxyOptions, Static, StaticOptions, Upstreams,
};
use anygate_config::Config;
use anygate_http::{ErrorKind, Exchange, Request, Service};
use anygate_router::dsl::{Action, Scheme};
use anygate_router::path::normalize;
use anygate_router::{Lookup, Router};
use arc_swap::ArcSwap;

/// What a matched rule does.
#[derive(Debug)]
enum RouteAction {
    Fixed(Fixed),
    Echo(Echo),
    Static(Box<Static>),
    Proxy(Box<Proxy>),
    /// `https://` upstreams are not in this build yet: 501.
    Unavailable,
}

#[derive(Debug)]
struct Entry {
    action: RouteAction,
    /// `GET /api/*`, for error bodies.
    label: Box<str>,
}

/// One configuration, ready to serve.
#[derive(Debug)]
pub struct App {
    router: Router<usize>,
    entries: Vec<Entry>,
}

impl App {
    /// Compiles the actions of a validated configuration (and takes its router).
    pub fn new(config: Config) -> Self {
        let echo_body = usize::try_from(config.server.limits.echo_body).unwrap_or(usize::MAX);
        let mut upstreams = Upstreams::default();
        for u in &config.upstreams {
            let targets: Vec<(String, u16)> =
                u.targets.iter().map(|t| (t.host.clone(), t.port)).collect();
            upstreams.define(&u.name, &targets, config.proxy.dns_ttl);
        }
        let entries = config
            .routes
            .iter()
            .map(|r| Entry {
                action: match &r.action {
                    Action::Fixed(f) => RouteAction::Fixed(Fixed::new(f)),
                    Action::Echo(status) => RouteAction::Echo(Echo::new(*status, echo_body)),
                    Action::Static(_) => match &r.static_root {
                        Some(root) => RouteAction::Static(Box::new(Static::new(
                            root,
                            static_options(&r.static_settings, r.spa, &config.static_settings),
                            &r.label(),
                        ))),
                        None => RouteAction::Unavailable,
                    },
                    Action::Proxy(t) if t.scheme == Scheme::Http => {
                        RouteAction::Proxy(Box::new(Proxy::new(
                            t,
                            &r.head.path,
                            proxy_options(&r.proxy),
                            &mut upstreams,
                            &r.label(),
                        )))
                    }
                    Action::Proxy(_) => RouteAction::Unavailable,
                },
                label: r.label().into(),
            })
            .collect();
        Self {
            router: config.router,
            entries,
        }
    }

    /// What the operator should know about this configuration: rules that answer 501 in
    /// this build (proxy), static manifests that could not be read.
    pub fn notices(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.action {
                RouteAction::Unavailable => Some(format!(
                    "rule `{}`: https:// upstreams are not in this version; it answers 501",
                    e.label
                )),
                RouteAction::Static(s) => s.warning().map(|w| format!("rule `{}`: {w}", e.label)),
                _ => None,
            })
            .collect()
    }

    async fn handle(&self, req: &Request<'_>, res: &mut Exchange<'_>, body_buf: &mut Vec<u8>) {
        let Ok(path) = normalize(req.path()) else {
            return res.error(ErrorKind::BadPath, None);
        };
        match self.router.lookup(req.method(), &path) {
            Lookup::Found(m) => {
                let entry = &self.entries[m.rule.value];
                match &entry.action {
                    RouteAction::Fixed(f) => f.respond(res),
                    RouteAction::Echo(e) => {
                        e.respond(req, &path, m.params.iter(), m.params.splat(), res, body_buf)
                            .await;
                    }
                    RouteAction::Static(s) => {
                        s.respond(req, &path, m.params.splat(), res, body_buf);
                    }
                    RouteAction::Proxy(p) => {
                        // Boxed: the proxy's state machine is large, and inline it would
                        // grow every connection's task, idle ones included (one allocation
                        // per proxied request instead; measured by the idle-10k bench).
                        Box::pin(p.respond(req, &path, m.params.splat(), res, body_buf)).await;
                    }
                    RouteAction::Unavailable => {
                        res.error(ErrorKind::NotImplemented, Some(&entry.label));
                    }
                }
            }
            Lookup::MethodNotAllowed(mask) => {
                let allow = self.router.allow_header(mask);
                res.error_with(
                    ErrorKind::MethodNotAllowed,
                    None,
                    &[(b"allow", allow.as_bytes())],
                );
            }
            Lookup::NotFound => res.error(ErrorKind::NotFound, None),
        }
    }
}

/// The static action's options for a rule: its settings, with the memory bound taken from
/// the top level (the cache is shared by every rule of a worker).
fn static_options(
    s: &anygate_config::StaticSettings,
    spa: bool,
    top: &anygate_config::StaticSettings,
) -> StaticOptions {
    StaticOptions {
        index: s.index.clone(),
        spa,
        listing: s.listing,
        cache_html: s.cache.html.clone(),
        cache_fingerprinted: s.cache.fingerprinted.clone(),
        cache_default: s.cache.default.clone(),
        compress: s.compress,
        compress_min: s.compress_min,
        memory_file_max: s.memory_file_max,
        memory_total_max: top.memory_total_max,
        revalidate: s.revalidate,
    }
}

/// The proxy action's options for a rule.
fn proxy_options(p: &anygate_config::ProxySettings) -> ProxyOptions {
    ProxyOptions {
        connect_timeout: p.timeouts.connect,
        read_timeout: p.timeouts.read,
        write_timeout: p.timeouts.write,
        total_timeout: p.timeouts.total,
        host: match &p.host {
            anygate_config::HostHeader::Upstream => HostMode::Upstream,
            anygate_config::HostHeader::Client => HostMode::Client,
            anygate_config::HostHeader::Fixed(v) => HostMode::Fixed(v.as_str().into()),
        },
        via: p.via,
        max_idle: p.max_idle,
        max_conns: p.max_conns,
        idle_timeout: p.idle_timeout,
        dns_ttl: p.dns_ttl,
    }
}

/// The application currently served, replaced whole by a reload.
///
/// Connections cache an `Arc<App>` and compare a generation number per request (one atomic
/// load); only after a reload do they fetch the new one.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<App>,
    generation: AtomicU64,
}

impl Live {
    /// Serves `app`.
    pub fn new(app: App) -> Self {
        Self {
            current: ArcSwap::from_pointee(app),
            generation: AtomicU64::new(0),
        }
    }

    /// Replaces the application: requests that started keep the old one, the next ones get
    /// the new one.
    pub fn swap(&self, app: App) {
        self.current.store(Arc::new(app));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The application now.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }
}

/// A connection's view of [`Live`].
#[derive(Debug)]
pub struct ConnState {
    app: Arc<App>,
    generation: u64,
    /// The echo action's body prefix, kept between requests.
    body_buf: Vec<u8>,
}

impl Service for Live {
    type Conn = ConnState;

    fn connect(&self) -> ConnState {
        let generation = self.generation.load(Ordering::Acquire);
        ConnState {
            app: self.current.load_full(),
            generation,
            body_buf: Vec::new(),
        }
    }

    async fn call<'a, 'b: 'a>(
        &'a self,
        conn: &'a mut ConnState,
        req: &'a Request<'b>,
        res: &'a mut Exchange<'b>,
    ) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != conn.generation {
            conn.app = self.current.load_full();
            conn.generation = generation;
        }
        conn.app.handle(req, res, &mut conn.body_buf).await;
    }
}
