//! `anygate-pipeline`: one request, from the router to the end of its response.
//!
//! # The request path
//!
//! ```text
//! Service::call ─► normalize the path ─► Router::lookup ─┬─ Found ──► chain.pre ─► Action::respond
//!                                                        ├─ 405 / 404 / bad path ─► global chain.pre ─► error
//!   (every response head, before it is encoded) ─► chain.post (HeadHook)
//! Service::finish (body read or dropped) ─► chain.observe(ctx)
//! ```
//!
//! - [`App`] is one configuration compiled: the router, one [`Action`] and one filter
//!   [`Chain`] per rule, and the global chain for requests no rule answers.
//! - [`Live`] is the application being served, replaced whole by a reload (`ArcSwap`).
//!   Each connection reads it through an `arc_swap::Cache`: one relaxed load per request
//!   while it is unchanged, no reference count touched. When the connection goes idle, and
//!   when a reload wakes it there, it refreshes the cache, which lets go of a replaced
//!   configuration: an idle keep-alive connection never pins an old one.
//! - The observe phase runs with the chain the request used, handed from `call` to
//!   `finish` (only when the chain is not empty), so a reload in between changes nothing.
//!
//! # Invariants
//! - An empty chain costs nothing: no hook is installed, no filter called. A chain whose
//!   filters do not observe (`headers`, `ip`, …) reads no clock for the request and has no
//!   `observe` phase.
//! - The context ([`anygate_http::server::Ctx`]) carries the rule's id and the action kind
//!   from here; the driver adds sizes and timing, the proxy its upstream and attempts.
//!
//! - A CORS preflight to a path whose rules do not take `OPTIONS` is routed by the method
//!   it asks about (`Access-Control-Request-Method`), and answered by that rule's `cors`
//!   filter; without one it is the 405 it always was.
//!
//! # Non-goals
//! Host routing (a later issue), the built-in filters (`anygate-plugins`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

mod build;
mod client;
pub mod metrics;
mod tls;
mod trace;

use std::sync::Arc;

use anygate_actions::{Action, Matched};
use anygate_config::{Config, Failure};
use anygate_http::server::Ctx;
use anygate_http::{ErrorKind, Exchange, Request, Service};
use anygate_plugins::{Chain, Flow, Registry};
use anygate_router::path::normalize;
use anygate_router::{Lookup, Router};
use arc_swap::{ArcSwap, Cache};

#[derive(Debug)]
struct Entry {
    action: Action,
    /// `GET /api/*`, for error bodies.
    label: Box<str>,
    chain: Arc<Chain>,
    /// `require_client_cert` of a group above.
    require_client_cert: bool,
    /// Where its requests are counted, when metrics are on.
    metric: Metric,
    /// Its error pages, when they are not the top level's.
    pages: Option<Arc<anygate_http::server::ErrorPages>>,
    /// A group's `max_body` (or its profile's).
    max_body: Option<u64>,
}

/// A rule's metric slots (`anygate_obs::metrics`).
#[derive(Clone, Copy, Debug, Default)]
struct Metric {
    route: u32,
    /// The upstream's slot, for a proxy rule.
    upstream: Option<u32>,
    /// Whether the request is counted (`admin` configured); the slots also name the rule
    /// in a trace's spans.
    record: bool,
}

/// What [`Service::finish`] does once the request is over, decided while it was handled.
#[derive(Debug, Default)]
struct After {
    /// The chain whose `observe` phase runs.
    chain: Option<Arc<Chain>>,
    /// The slots the request is counted in (metrics on).
    metric: Option<Metric>,
}

/// One configuration, ready to serve.
#[derive(Debug)]
pub struct App {
    router: Router<usize>,
    entries: Vec<Entry>,
    global: Arc<Chain>,
    /// `server.trusted_proxies`.
    trusted: Box<[anygate_config::cidr::Cidr]>,
    /// `server.trailing_slash`.
    trailing_slash: anygate_config::TrailingSlash,
    /// The top level's error pages (none configured: `None`).
    pages: Option<Arc<anygate_http::server::ErrorPages>>,
    /// What TLS asks of every request (an HTTPS redirect, SNI and Host agreeing), when
    /// there are TLS listeners.
    tls: Option<Box<tls::Gate>>,
    /// Operator warnings found while building.
    warnings: Vec<String>,
    /// Requests are counted (`admin`) or traced (`tracing`): the slot of requests no rule
    /// answers.
    metrics: Option<u32>,
    /// `tracing.sample`, when requests are traced.
    tracing: Option<f64>,
    /// Requests are counted (`admin` configured).
    record: bool,
    /// The pools and targets the proxy rules share (their health is reported from here).
    upstreams: Arc<anygate_actions::Upstreams>,
}

impl App {
    /// Answers ACME HTTP-01 challenges on the plain listeners from `managed` (before
    /// any route, filter or redirect). Only with TLS listeners, as `acme` requires.
    pub fn with_acme(mut self, managed: Arc<anygate_tls::Managed>) -> Self {
        if let Some(gate) = &mut self.tls {
            gate.with_acme(managed);
        }
        self
    }

    /// Compiles a validated configuration: its actions, and its filter chains with the
    /// kinds `registry` knows (an unknown kind or bad `args` fails, with positions).
    pub fn new(config: Config, registry: &Registry) -> Result<Self, Failure> {
        let chains = match anygate_plugins::compile(&config, registry) {
            Ok(c) => c,
            Err(diagnostics) => {
                return Err(Failure {
                    sources: config.sources,
                    diagnostics,
                });
            }
        };
        let (actions, upstreams) = match build::actions(&config) {
            Ok(a) => a,
            Err(diagnostics) => {
                return Err(Failure {
                    sources: config.sources,
                    diagnostics,
                });
            }
        };
        let record = config.admin.is_some();
        let tracing = config.tracing.as_ref().map(|t| t.sample);
        let metrics = record || tracing.is_some();
        let slots = if metrics {
            metric_slots(&config, &actions, record)
        } else {
            vec![Metric::default(); actions.len()]
        };
        let mut pages = Pages::default();
        let top_pages = pages.get(&config.errors);
        let entries = config
            .routes
            .iter()
            .zip(actions)
            .zip(chains.routes)
            .zip(slots)
            .map(|(((r, mut action), chain), metric)| {
                // A fixed rule whose `post` phase depends on nothing but TLS gets its final
                // head encoded once, here.
                if let Action::Fixed(f) = &mut action
                    && chain.edits_heads()
                {
                    f.apply_post(|fields, tls, status| {
                        chain.apply_static_post(fields, tls, status)
                    });
                }
                if let Action::Proxy(p) = &mut action
                    && metric.record
                    && let Some(slot) = metric.upstream
                {
                    p.count_under(slot);
                }
                let own = pages.get(&r.errors);
                let same = match (&own, &top_pages) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (a, b) => a.is_none() && b.is_none(),
                };
                Entry {
                    action,
                    label: r.label().into(),
                    chain,
                    require_client_cert: r.require_client_cert,
                    metric,
                    pages: if same { None } else { own },
                    max_body: r.max_body,
                }
            })
            .collect();
        let warnings = config
            .upstreams
            .iter()
            .filter(|u| u.tls.as_ref().is_some_and(|t| t.insecure_skip_verify))
            .map(|u| {
                format!(
                    "WARNING: pool `{}` has `tls.insecure_skip_verify: true`: its certificates \
                     are not verified, and anyone on the path to it can impersonate it",
                    u.name
                )
            })
            .collect();
        Ok(Self {
            router: config.router,
            entries,
            global: chains.global,
            trusted: config.server.trusted_proxies.into(),
            trailing_slash: config.server.trailing_slash,
            pages: top_pages,
            tls: config.tls.as_ref().map(|t| Box::new(tls::Gate::new(t))),
            warnings,
            metrics: metrics.then(anygate_obs::metrics::unmatched_slot),
            tracing,
            record,
            upstreams,
        })
    }

    /// Every pool's targets and their state now (health, ejection, breaker).
    pub fn upstream_states(&self) -> Vec<anygate_actions::proxy::PoolStates> {
        self.upstreams.states()
    }

    /// Checks what compiling `config` would check beyond the configuration itself (a
    /// pool's TLS files, https:// rules against pools), without keeping anything: what
    /// `anygate check` runs.
    pub fn validate(config: &Config) -> Result<(), Vec<anygate_config::Diagnostic>> {
        build::actions(config).map(drop)
    }

    /// What the operator should know about this configuration: rules that answer 501 in
    /// this build, static manifests that could not be read.
    pub fn notices(&self) -> Vec<String> {
        let rules = self.entries.iter().filter_map(|e| match &e.action {
            Action::Static(s) => s.warning().map(|w| format!("rule `{}`: {w}", e.label)),
            _ => None,
        });
        self.warnings.iter().cloned().chain(rules).collect()
    }

    /// The filter chain of rule `route` (its index in the configuration), or the global
    /// one for `None`.
    pub fn chain(&self, route: Option<usize>) -> &Chain {
        route
            .and_then(|i| self.entries.get(i))
            .map_or(&self.global, |e| &e.chain)
    }

    /// The rules, in configuration order: label, action kind, filter chain (what the admin
    /// listener's `/routes` shows).
    pub fn rules(&self) -> impl Iterator<Item = (&str, &'static str, &Chain)> {
        self.entries
            .iter()
            .map(|e| (&*e.label, e.action.kind(), &*e.chain))
    }

    /// The chain for requests no rule answers.
    pub fn global_chain(&self) -> &Chain {
        &self.global
    }

    /// Answers one request: route, `pre`, action (the chain's `post` runs on the head).
    /// Leaves in `after` what is to run when the request is over.
    async fn handle(
        &self,
        req: &Request<'_>,
        ex: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
        after: &mut After,
    ) {
        if let Some(unmatched) = self.metrics {
            let ctx = ex.ctx_mut();
            ctx.start = Some(anygate_runtime::time::precise_now());
            if let Some(sample) = self.tracing {
                let id = trace::begin(req, sample);
                ctx.trace = Some(id);
                if id.sampled {
                    ctx.marks = Some(Box::default());
                }
            }
            after.metric = Some(Metric {
                route: unmatched,
                upstream: None,
                record: self.record,
            });
        }
        let observe = &mut after.chain;
        client::note(req, &self.trusted, ex.ctx_mut());
        if let Some(pages) = &self.pages {
            ex.set_error_pages(pages.clone(), wants_html(req));
        }
        // An HTTPS redirect or a 421: the global chain edits its head and logs it.
        if let Some(gate) = &self.tls
            && gate.answer(req, ex, |ex| {
                if !self.global.is_empty() {
                    install(&self.global, ex, observe);
                }
            })
        {
            return;
        }
        let Ok(path) = normalize(req.path()) else {
            if self.unrouted(req, ex, observe).await == Flow::Continue {
                ex.error(ErrorKind::BadPath, None);
            }
            return;
        };
        // `/a/` that only a shorter prefix (or nothing) takes, while `/a` has an exact rule.
        // Decided before the lookup the request keeps, so that under `strict` (the default)
        // that lookup is built once, in place.
        let mut path: &[u8] = &path;
        if self.trailing_slash != anygate_config::TrailingSlash::Strict
            && let Some(alt) = self.slashless(req, path)
        {
            if self.trailing_slash == anygate_config::TrailingSlash::Redirect {
                if !self.global.is_empty() {
                    install(&self.global, ex, observe);
                }
                return tls::permanent_redirect(req, ex, alt.to_vec());
            }
            path = alt;
        }
        let found = self.lookup(req, req.method(), path);
        // Phases are timed for sampled traces only: an unsampled one that fails is
        // exported with its request and action spans, without reading the clock for every
        // phase of the 99 % that succeed.
        if let Some(m) = &mut ex.ctx_mut().marks {
            m.routed = Some(anygate_runtime::time::precise_now());
        }
        match found {
            Lookup::Found(m) => {
                let id = m.rule.value;
                let Some(entry) = self.entries.get(id) else {
                    return ex.error(ErrorKind::Internal, None);
                };
                ex.ctx_mut().route = u32::try_from(id).ok();
                if self.metrics.is_some() {
                    after.metric = Some(entry.metric);
                }
                if let Some(pages) = &entry.pages {
                    ex.set_error_pages(pages.clone(), wants_html(req));
                }
                if entry.require_client_cert && req.tls().is_none_or(|t| t.client_subject.is_none())
                {
                    // Refused before the rule's `pre` phase, logged by its chain.
                    if !entry.chain.is_empty() {
                        install(&entry.chain, ex, observe);
                    }
                    return ex.error(ErrorKind::ClientCertRequired, Some(&entry.label));
                }
                if !entry.chain.is_empty() {
                    install(&entry.chain, ex, observe);
                    let flow = if entry.chain.waits() {
                        entry.chain.pre(req, ex).await
                    } else {
                        entry.chain.pre_now(req, ex)
                    };
                    if let Some(m) = &mut ex.ctx_mut().marks {
                        m.pre_end = Some(anygate_runtime::time::precise_now());
                    }
                    if flow == Flow::Answered {
                        return;
                    }
                }
                if let Some(limit) = entry.max_body
                    && !ex.limit_body(limit)
                {
                    return ex.error(ErrorKind::BodyTooLarge, Some(&entry.label));
                }
                ex.ctx_mut().action = Some(entry.action.kind());
                let matched = Matched {
                    path,
                    params: &m.params,
                    label: &entry.label,
                };
                entry.action.respond(req, &matched, ex, buf).await;
            }
            Lookup::MethodNotAllowed(mask) => {
                // A CORS preflight is routed by the method it asks about: `OPTIONS` to a
                // path with only a `GET` rule is that rule's preflight.
                if let Some((id, entry)) = self.preflight_rule(req, path) {
                    ex.ctx_mut().route = u32::try_from(id).ok();
                    if self.metrics.is_some() {
                        after.metric = Some(entry.metric);
                    }
                    install(&entry.chain, ex, observe);
                    entry.chain.preflight(req, ex);
                    return;
                }
                if self.unrouted(req, ex, observe).await == Flow::Continue {
                    let allow = self.router.allow_header(mask);
                    ex.error_with(
                        ErrorKind::MethodNotAllowed,
                        None,
                        &[(b"allow", allow.as_bytes())],
                    );
                }
            }
            Lookup::NotFound => {
                if self.unrouted(req, ex, observe).await == Flow::Continue {
                    ex.error(ErrorKind::NotFound, None);
                }
            }
        }
    }

    /// For a `path` ending in `/`: the path without the slash, when that finds an exact
    /// rule and `path` itself finds nothing, a 405, or a prefix rule shorter than the path
    /// (an explicit `/a/` rule keeps `/a/`).
    fn slashless<'p>(&self, req: &Request<'_>, path: &'p [u8]) -> Option<&'p [u8]> {
        let alt = path.strip_suffix(b"/").filter(|a| !a.is_empty())?;
        if let Lookup::Found(m) = self.lookup(req, req.method(), path) {
            let segments = alt.iter().filter(|&&b| b == b'/').count();
            if m.rule.head.path.segments.len() >= segments {
                return None;
            }
        }
        match self.lookup(req, req.method(), alt) {
            Lookup::Found(m) if m.rule.head.path.tail == anygate_router::dsl::Tail::Exact => {
                Some(alt)
            }
            _ => None,
        }
    }

    /// The rule for `method` and the normalised `path`, with the request's host when some
    /// rule names one (a table without hosts never looks at it).
    #[inline(always)]
    fn lookup<'r, 'p>(
        &'r self,
        req: &Request<'_>,
        method: &[u8],
        path: &'p [u8],
    ) -> Lookup<'r, 'p, usize> {
        if !self.router.has_hosts() {
            return self.router.lookup(method, path);
        }
        let host = req.host().and_then(anygate_router::RequestHost::parse);
        let default_port = if req.tls().is_some() { 443 } else { 80 };
        self.router
            .lookup_host(method, host.as_ref().map(|h| h.key(default_port)), path)
    }

    /// For a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// to a path whose rules do not take `OPTIONS`: the rule the asked-for method reaches
    /// (or, when none does, the first rule of the path), if its chain has a `cors` filter.
    fn preflight_rule(&self, req: &Request<'_>, path: &[u8]) -> Option<(usize, &Entry)> {
        if req.method() != b"OPTIONS" || req.header(b"origin").is_none() {
            return None;
        }
        let method = req.header(b"access-control-request-method")?.trim_ascii();
        let id = match self.lookup(req, method, path) {
            Lookup::Found(m) => m.rule.value,
            // The method asked about has no rule here: the policy of a rule that the path
            // does have still answers (the actual request would then be a 405).
            Lookup::MethodNotAllowed(mask) => {
                let names = self.router.methods().names(mask);
                let Lookup::Found(m) = self.lookup(req, names.first()?.as_bytes(), path) else {
                    return None;
                };
                m.rule.value
            }
            Lookup::NotFound => return None,
        };
        let entry = self.entries.get(id)?;
        entry.chain.has_cors().then_some((id, entry))
    }

    /// The global chain, for a request no rule answers.
    async fn unrouted(
        &self,
        req: &Request<'_>,
        ex: &mut Exchange<'_>,
        observe: &mut Option<Arc<Chain>>,
    ) -> Flow {
        if self.global.is_empty() {
            return Flow::Continue;
        }
        install(&self.global, ex, observe);
        if self.global.waits() {
            self.global.pre(req, ex).await
        } else {
            self.global.pre_now(req, ex)
        }
    }
}

/// Whether the client asked for HTML (`Accept` names `text/html`): it then gets an HTML
/// error page where one is configured.
fn wants_html(req: &Request<'_>) -> bool {
    req.header(b"accept")
        .is_some_and(anygate_http::server::accepts_html)
}

/// The configuration's error pages as the HTTP layer holds them, one per distinct scope.
#[derive(Default)]
struct Pages(
    Vec<(
        Arc<anygate_config::ErrorPages>,
        Arc<anygate_http::server::ErrorPages>,
    )>,
);

impl Pages {
    fn get(
        &mut self,
        spec: &Arc<anygate_config::ErrorPages>,
    ) -> Option<Arc<anygate_http::server::ErrorPages>> {
        use anygate_http::server::{ErrorPages, Page, StatusMatch};
        if spec.is_empty() {
            return None;
        }
        if let Some((_, p)) = self.0.iter().find(|(s, _)| Arc::ptr_eq(s, spec)) {
            return Some(p.clone());
        }
        let entries = spec
            .pages
            .iter()
            .map(|p| {
                let m = match p.status {
                    anygate_config::ErrorStatus::Exact(s) => StatusMatch::Exact(s),
                    anygate_config::ErrorStatus::Class(c) => StatusMatch::Class(c),
                };
                let page = Page {
                    content_type: p.content_type.into(),
                    body: p.body.as_ref().into(),
                };
                (m, page)
            })
            .collect();
        let built = Arc::new(ErrorPages::new(entries, spec.intercept_upstream));
        self.0.push((spec.clone(), built.clone()));
        Some(built)
    }
}

/// Installs a non-empty `chain` for this request: its `post` phase on every response head
/// (when a filter has one) and, only when one of its filters observes, the request's timing and its `observe` phase
/// (a chain of header or limit filters reads no clock and holds no second reference).
fn install(chain: &Arc<Chain>, ex: &mut Exchange<'_>, observe: &mut Option<Arc<Chain>>) {
    if chain.edits_heads() {
        ex.set_head_hook(chain.clone());
    }
    if chain.observes() {
        let ctx = ex.ctx_mut();
        if ctx.start.is_none() {
            ctx.start = Some(anygate_runtime::time::precise_now());
        }
        *observe = Some(chain.clone());
    }
}

/// The application currently served, replaced whole by a reload.
#[derive(Debug)]
pub struct Live {
    current: Arc<ArcSwap<App>>,
}

impl Live {
    /// Serves `app`.
    pub fn new(app: App) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(app)),
        }
    }

    /// Replaces the application: requests that started keep the old one, the next ones get
    /// the new one. Idle connections let go of the old one when woken (see
    /// `anygate_http::Drain::reconfigured`).
    pub fn swap(&self, app: App) {
        self.current.store(Arc::new(app));
    }

    /// The application now.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }
}

/// Each rule's metric slots: its label with its action, and its upstream's name.
fn metric_slots(config: &Config, actions: &[Action], record: bool) -> Vec<Metric> {
    let keys: Vec<(Box<str>, &'static str)> = config
        .routes
        .iter()
        .zip(actions)
        .map(|(r, a)| (r.label().into(), a.kind()))
        .collect();
    let routes = anygate_obs::metrics::route_slots(&keys);
    let names: Vec<Option<Box<str>>> = config
        .routes
        .iter()
        .map(|r| match &r.action {
            anygate_router::dsl::Action::Proxy(t) => Some(metrics::upstream_name(config, t)),
            _ => None,
        })
        .collect();
    let present: Vec<Box<str>> = names.iter().flatten().cloned().collect();
    let mut upstream_slots = anygate_obs::metrics::upstream_slots(&present).into_iter();
    routes
        .into_iter()
        .zip(names)
        .map(|(route, name)| Metric {
            route,
            upstream: name.and_then(|_| upstream_slots.next()),
            record,
        })
        .collect()
}

/// Counts and traces a finished request (out of line: the untimed path stays small).
#[inline(never)]
fn observed(m: Metric, req: &Request<'_>, ctx: &Ctx) {
    if m.record {
        metrics::record(m, req, ctx);
    }
    trace::finish(m, req, ctx);
}

/// A connection's view of [`Live`].
pub struct ConnState {
    /// The application, as last seen by this connection.
    app: Cache<Arc<ArcSwap<App>>, Arc<App>>,
    /// What runs when the request is over.
    after: After,
    /// The echo action's body prefix, kept between requests.
    body_buf: Vec<u8>,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Service for Live {
    type Conn = ConnState;

    fn connect(&self) -> ConnState {
        ConnState {
            app: Cache::new(self.current.clone()),
            after: After::default(),
            body_buf: Vec::new(),
        }
    }

    fn call<'a, 'b: 'a>(
        &'a self,
        conn: &'a mut ConnState,
        req: &'a Request<'b>,
        ex: &'a mut Exchange<'b>,
    ) -> impl Future<Output = ()> + Send + 'a {
        let ConnState {
            app,
            after,
            body_buf,
        } = conn;
        app.load().handle(req, ex, body_buf, after)
    }

    #[inline]
    fn finish(&self, conn: &mut ConnState, req: &Request<'_>, ctx: &Ctx) {
        if let Some(chain) = conn.after.chain.take() {
            chain.observe(req, ctx);
        }
        if let Some(m) = conn.after.metric.take() {
            observed(m, req, ctx);
        }
    }

    #[cold]
    fn rejected(&self, conn: &mut ConnState, req: &Request<'_>, ctx: &Ctx) {
        // The global chain logs it, and it counts as a request no rule answered.
        let app = conn.app.load();
        if app.global.observes() {
            app.global.observe(req, ctx);
        }
        if let Some(route) = app.metrics
            && app.record
        {
            let m = Metric {
                route,
                upstream: None,
                record: true,
            };
            metrics::record(m, req, ctx);
        }
    }

    fn idle(&self, conn: &mut ConnState) {
        // A reload since the last request: this drops the old configuration.
        conn.app.load();
    }

    fn uncapped_peer(&self, peer: std::net::IpAddr) -> bool {
        let app = self.current.load();
        !app.trusted.is_empty() && app.trusted.iter().any(|c| c.contains(peer))
    }
}
