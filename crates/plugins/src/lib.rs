//! `anygate-plugins`: the filter contract of SPEC §7, and the compilation of each rule's
//! filter chain from the configuration.
//!
//! # The contract
//!
//! A filter has three phases, each optional:
//!
//! ```text
//!            ┌──────────── pre ────────────┐      ┌──── post ────┐    ┌─ observe ─┐
//! request ─► │ global → group → nested     │ ─► action ─► head ─► │ nested → … → global │ ─► encode … end ─► │ every filter │
//!            └─ any may answer: Flow::Answered ┘      └──────────────┘    └───────────┘
//! ```
//!
//! - `pre` runs before the action, in chain order (global, then each enclosing group's, in
//!   declaration order). It may answer the request itself (write a response into the
//!   exchange and return [`Flow::Answered`]): the action and the rest of `pre` are skipped.
//! - `post` runs on every response head of the rule (an early answer from `pre` and error
//!   responses included), right before the head is encoded, in reverse chain order (the
//!   outermost filter sees the final head, like middleware layers). It may edit the head's
//!   fields and sees the request's context so far (route, status, timing); the status
//!   itself stays (the body is framed for it).
//! - `observe` runs once the request is over, in chain order, with the final context
//!   (sizes, status, error code): access logs and metrics.
//!
//! # Design
//!
//! - [`Filter`] is an enum: the built-in kinds (with the plugins issue) are variants with
//!   typed configurations, dispatched by `match`. [`Filter::Custom`] holds filters defined
//!   outside this crate ([`Hooks`], a trait object): the tests' filters today, Wasm modules
//!   later. An empty chain is never called: the pipeline skips it (no allocation, no
//!   dynamic dispatch).
//! - [`Registry`] maps a `kind` to a constructor; [`compile`] turns every `plugins` entry
//!   of a configuration into one filter (shared by every rule whose chain names it) and
//!   each rule's chain into a [`Chain`], reporting an unknown kind or bad `args` with the
//!   entry's `file:line:column`.
//!
//! # The built-in kinds
//!
//! [`headers`](headers) (request and response fields, the `security` preset),
//! [`cors`](cors) (preflights answered first, before any other filter),
//! [`ip`](ip) (allow/deny ranges on the client address),
//! [`rate_limit`](rate_limit) (GCRA token buckets shared by every worker without a lock),
//! [`auth`](auth) (API keys, bearer tokens, JWT, Basic, forward-auth),
//! [`log`](log) (the access log, through `anygate_obs`). Each reads its `args` with
//! [`anygate_config::args::Args`], so a mistake is reported at its `file:line:column`.
//!
//! # Non-goals
//!
//! Only
//! `auth`'s `pre` phase may wait (a Basic password verified on a side thread, a
//! forward-auth subrequest); the others are synchronous.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod auth;
mod basic;
pub mod cors;
mod forward;
pub mod headers;
pub mod ip;
mod jwt;
pub mod log;
pub mod rate_limit;
mod shared;

/// The parsers of client input the filters use, for the fuzz targets and property tests.
pub mod wire {
    pub use crate::auth::{bearer_token, query_value};
    pub use crate::basic::credentials as basic_credentials;
    pub use crate::cors::origin_matches;
}

use std::fmt;
use std::sync::Arc;

use anygate_config::{Config, Diagnostic, PluginSpec, codes};
use anygate_http::message::Fields;
use anygate_http::server::{Ctx, HeadHook};
use anygate_http::{Exchange, Request};

/// What `pre` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next filter, then the action.
    Continue,
    /// The filter wrote a response: stop here.
    Answered,
}

/// The phases of a filter defined outside this crate. Each has a default that does
/// nothing.
pub trait Hooks: Send + Sync + fmt::Debug {
    /// Before the action; may answer the request.
    fn pre(&self, _req: &Request<'_>, _ex: &mut Exchange<'_>) -> Flow {
        Flow::Continue
    }

    /// Before a response head is encoded; may edit its fields (the status is
    /// `ctx.status`, and stays).
    fn post(&self, _ctx: &Ctx, _fields: &mut Fields) {}

    /// Once the request is over, with its head.
    fn observe(&self, _req: &Request<'_>, _ctx: &Ctx) {}
}

/// A built-in filter, or the problems of its `args`.
pub(crate) type Built<T> = Result<T, Vec<Diagnostic>>;

/// One compiled filter.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Filter {
    /// `headers`.
    Headers(Arc<headers::Headers>),
    /// `cors`.
    Cors(Arc<cors::Cors>),
    /// `ip`.
    Ip(Arc<ip::IpRules>),
    /// `rate_limit`.
    RateLimit(Arc<rate_limit::RateLimit>),
    /// `auth`.
    Auth(Arc<auth::Auth>),
    /// `log`.
    Log(Arc<log::AccessLog>),
    /// A filter defined outside this crate, with the kind it was registered under.
    Custom(Box<str>, Arc<dyn Hooks>),
}

impl Filter {
    /// The `kind` it was configured with.
    pub fn kind(&self) -> &str {
        match self {
            Self::Headers(_) => "headers",
            Self::Cors(_) => "cors",
            Self::Ip(_) => "ip",
            Self::RateLimit(_) => "rate_limit",
            Self::Auth(_) => "auth",
            Self::Log(_) => "log",
            Self::Custom(kind, _) => kind,
        }
    }

    /// What it does, in one line (`check` and `explain` print it).
    pub fn summary(&self) -> String {
        match self {
            Self::Headers(f) => f.summary(),
            Self::Cors(f) => f.summary(),
            Self::Ip(f) => f.summary(),
            Self::RateLimit(f) => f.summary(),
            Self::Auth(f) => f.summary(),
            Self::Log(f) => f.summary(),
            Self::Custom(..) => "defined by this build".to_owned(),
        }
    }

    fn pre(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        match self {
            Self::Headers(f) => {
                f.pre(req, ex);
                Flow::Continue
            }
            Self::Cors(f) => f.pre(req, ex),
            Self::Ip(f) => f.pre(ex),
            Self::RateLimit(f) => f.pre(req, ex),
            // A filter that may wait is awaited by the chain instead (`Chain::pre`).
            Self::Auth(f) => f.pre_now(req, ex),
            Self::Log(_) => Flow::Continue,
            Self::Custom(_, f) => f.pre(req, ex),
        }
    }

    fn post(&self, ctx: &Ctx, fields: &mut Fields) {
        match self {
            Self::Headers(f) => f.post(ctx, fields),
            Self::Cors(_) | Self::Ip(_) | Self::RateLimit(_) | Self::Auth(_) | Self::Log(_) => {}
            Self::Custom(_, f) => f.post(ctx, fields),
        }
    }

    fn observe(&self, req: &Request<'_>, ctx: &Ctx, route: Option<&str>) {
        match self {
            Self::Log(f) => f.observe(req, ctx, route),
            Self::Custom(_, f) => f.observe(req, ctx),
            _ => {}
        }
    }
}

/// The filters of one rule, in chain order.
#[derive(Debug, Default)]
pub struct Chain {
    filters: Box<[Filter]>,
    /// The first `cors` filter: it answers preflights before any other filter runs.
    cors: Option<Arc<cors::Cors>>,
    /// Whether a filter has an `observe` phase (then the request is timed).
    observes: bool,
    /// Whether a filter has a `post` phase (then the chain is the head hook).
    edits_heads: bool,
    /// Whether `pre` may wait (see [`Chain::waits`]).
    waits: bool,
    /// The rule's label (`GET /api/*`), for the access log; `None` for the global chain.
    label: Option<Box<str>>,
}

impl Chain {
    /// Whether the chain has no filter (the pipeline then skips it entirely).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters, in chain order.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// Whether a filter of the chain has an `observe` phase: only then is the request
    /// timed and `observe` run.
    pub fn observes(&self) -> bool {
        self.observes
    }

    /// Whether a filter of the chain has a `post` phase: only then is it installed as the
    /// response head hook (a `fixed` rule otherwise keeps its pre-encoded head).
    pub fn edits_heads(&self) -> bool {
        self.edits_heads
    }

    /// Runs the `post` phase on `fields` as it would run for a response of `status` over
    /// plain HTTP or TLS, when that is all it depends on (every filter with a `post` phase
    /// is a `headers` filter); `false`, and `fields` untouched, otherwise. Lets a `fixed`
    /// rule encode its final head once at load.
    pub fn apply_static_post(&self, fields: &mut Fields, tls: bool, status: u16) -> bool {
        if self.filters.iter().any(|f| matches!(f, Filter::Custom(..))) {
            return false;
        }
        let mut ctx = Ctx::new();
        ctx.tls = tls;
        ctx.status = status;
        for f in self.filters.iter().rev() {
            f.post(&ctx, fields);
        }
        true
    }

    /// Whether the chain answers CORS preflights.
    pub fn has_cors(&self) -> bool {
        self.cors.is_some()
    }

    /// Answers `req` if it is a CORS preflight and the chain has a `cors` filter.
    pub fn preflight(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        match &self.cors {
            Some(c) if cors::is_preflight(req) => {
                c.preflight(req, ex);
                Flow::Answered
            }
            _ => Flow::Continue,
        }
    }

    /// Whether `pre` may wait (an `auth` filter with Basic or forward-auth): only then must
    /// the pipeline await [`Chain::pre`]; otherwise [`Chain::pre_now`] decides at once.
    pub fn waits(&self) -> bool {
        self.waits
    }

    /// [`Chain::pre`] for a chain that never waits (see [`Chain::waits`]): the same phase,
    /// without a future.
    pub fn pre_now(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        debug_assert!(!self.waits);
        if self.cors_first(req, ex) == Flow::Answered {
            return Flow::Answered;
        }
        for f in self.filters.iter() {
            if self.is_first_cors(f) {
                continue;
            }
            if f.pre(req, ex) == Flow::Answered {
                return Flow::Answered;
            }
        }
        Flow::Continue
    }

    /// The chain's first `cors` filter, before all the others: it answers a preflight
    /// (which carries no credentials, so `auth` must not see it), refuses a foreign origin,
    /// and puts its fields on whatever response follows.
    fn cors_first(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        match &self.cors {
            Some(c) if cors::is_preflight(req) => {
                c.preflight(req, ex);
                Flow::Answered
            }
            Some(c) => c.pre(req, ex),
            None => Flow::Continue,
        }
    }

    fn is_first_cors(&self, f: &Filter) -> bool {
        matches!((f, &self.cors), (Filter::Cors(this), Some(first)) if Arc::ptr_eq(this, first))
    }

    /// Runs `pre` in chain order until a filter answers. The chain's first `cors` filter
    /// runs before all the others: it answers a preflight (which carries no credentials,
    /// so `auth` must not see it), refuses a foreign origin, and puts its fields on
    /// whatever response follows (a 401 of `auth` included, which a browser can then read).
    pub async fn pre(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        if self.cors_first(req, ex) == Flow::Answered {
            return Flow::Answered;
        }
        for f in self.filters.iter() {
            if self.is_first_cors(f) {
                continue;
            }
            let flow = match f {
                // The one phase that may wait (a password verified off the worker, a
                // forward-auth subrequest).
                Filter::Auth(a) if a.waits() => a.pre(req, ex).await,
                _ => f.pre(req, ex),
            };
            if flow == Flow::Answered {
                return Flow::Answered;
            }
        }
        Flow::Continue
    }

    /// Runs `observe` in chain order.
    pub fn observe(&self, req: &Request<'_>, ctx: &Ctx) {
        for f in self.filters.iter() {
            f.observe(req, ctx, self.label.as_deref());
        }
    }
}

impl HeadHook for Chain {
    /// `post`, in reverse chain order.
    fn on_head(&self, ctx: &Ctx, fields: &mut Fields) {
        for f in self.filters.iter().rev() {
            f.post(ctx, fields);
        }
    }
}

/// Builds a filter from its `plugins` entry, or says what is wrong with its `args`.
pub type Constructor = Box<dyn Fn(&PluginSpec) -> Result<Filter, String> + Send + Sync>;

/// Builds a built-in kind.
type BuiltinFn = fn(&PluginSpec) -> Result<Filter, Vec<Diagnostic>>;

/// How a kind is built.
enum Build {
    Builtin(BuiltinFn),
    Custom(Constructor),
}

/// The kinds a build knows.
#[derive(Default)]
pub struct Registry {
    kinds: Vec<(Box<str>, Build)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

impl Registry {
    /// The built-in kinds.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        let kinds: [(&str, BuiltinFn); 6] = [
            ("headers", |s| {
                headers::Headers::build(s).map(|f| Filter::Headers(Arc::new(f)))
            }),
            ("cors", |s| {
                cors::Cors::build(s).map(|f| Filter::Cors(Arc::new(f)))
            }),
            ("ip", |s| {
                ip::IpRules::build(s).map(|f| Filter::Ip(Arc::new(f)))
            }),
            ("rate_limit", |s| {
                rate_limit::RateLimit::build(s).map(|f| Filter::RateLimit(Arc::new(f)))
            }),
            ("auth", |s| {
                auth::Auth::build(s).map(|f| Filter::Auth(Arc::new(f)))
            }),
            ("log", |s| {
                log::AccessLog::build(s).map(|f| Filter::Log(Arc::new(f)))
            }),
        ];
        for (kind, build) in kinds {
            r.kinds.push((kind.into(), Build::Builtin(build)));
        }
        r
    }

    /// Adds (or replaces) `kind`.
    pub fn register(&mut self, kind: &str, constructor: Constructor) {
        self.kinds.retain(|(k, _)| &**k != kind);
        self.kinds.push((kind.into(), Build::Custom(constructor)));
    }

    /// Adds a kind whose filter is always `hooks`, whatever its `args`.
    pub fn register_hooks(&mut self, kind: &str, hooks: Arc<dyn Hooks>) {
        let name: Box<str> = kind.into();
        self.register(
            kind,
            Box::new(move |_| Ok(Filter::Custom(name.clone(), hooks.clone()))),
        );
    }

    /// The kinds, in registration order.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.iter().map(|(k, _)| &**k)
    }

    /// Compiles one `plugins` entry.
    pub fn compile(&self, spec: &PluginSpec) -> Result<Filter, Vec<Diagnostic>> {
        let Some((_, build)) = self.kinds.iter().find(|(k, _)| **k == *spec.kind) else {
            let known: Vec<&str> = self.kinds().collect();
            let help = if known.is_empty() {
                "this version has no plugin kinds yet; remove the entry".to_owned()
            } else {
                format!("known kinds: {}", known.join(", "))
            };
            return Err(vec![
                Diagnostic::error(
                    codes::PLUGIN_KIND,
                    spec.kind_span,
                    format!("unknown plugin kind `{}`", spec.kind),
                )
                .help(help),
            ]);
        };
        match build {
            Build::Builtin(f) => f(spec),
            Build::Custom(f) => f(spec).map_err(|why| {
                let span = spec.args.as_ref().map_or(spec.span, |a| a.span);
                vec![Diagnostic::error(
                    codes::PLUGIN_ARGS,
                    span,
                    format!("`{}`: {why}", spec.kind),
                )]
            }),
        }
    }
}

/// Every chain of a configuration.
#[derive(Debug)]
pub struct Chains {
    /// Per rule, in the order of `Config::routes`.
    pub routes: Vec<Arc<Chain>>,
    /// For requests no rule matches (404, 405, an invalid path).
    pub global: Arc<Chain>,
}

/// Compiles every `plugins` entry of `config` once, then each rule's chain. Every error is
/// reported, each with its position.
pub fn compile(config: &Config, registry: &Registry) -> Result<Chains, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let filters: Vec<Option<Filter>> = config
        .plugins
        .iter()
        .map(|spec| registry.compile(spec).map_err(|e| errors.extend(e)).ok())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let chain = |indexes: &[usize], label: Option<Box<str>>| -> Arc<Chain> {
        let filters: Box<[Filter]> = indexes
            .iter()
            .filter_map(|&i| filters.get(i).cloned().flatten())
            .collect();
        let cors = filters.iter().find_map(|f| match f {
            Filter::Cors(c) => Some(c.clone()),
            _ => None,
        });
        let observes = filters
            .iter()
            .any(|f| matches!(f, Filter::Custom(..) | Filter::Log(_)));
        let edits_heads = filters
            .iter()
            .any(|f| matches!(f, Filter::Custom(..) | Filter::Headers(_)));
        let waits = filters
            .iter()
            .any(|f| matches!(f, Filter::Auth(a) if a.waits()));
        Arc::new(Chain {
            filters,
            cors,
            observes,
            edits_heads,
            waits,
            label,
        })
    };
    Ok(Chains {
        routes: config
            .routes
            .iter()
            .map(|r| chain(&r.plugins, Some(r.label().into())))
            .collect(),
        global: chain(&config.global_plugins, None),
    })
}
