//! `anygate-config`: the configuration model (SPEC §4), loaded from YAML, JSON or TOML with
//! the position of every value, `ANYGATE__…` environment overrides, and full validation
//! (route DSL, conflicts, static directories) before anything is served.
//!
//! # Design
//!
//! Loading is three steps, each keeping positions:
//!
//! 1. **Parse** the file into a format-neutral [`Node`] tree where every value knows its byte
//!    span ([`yaml`] through `yaml-rust2`'s event parser, [`json`] by a small parser of our
//!    own, [`toml`] through `toml`'s spanned `DeTable`). `serde_yaml` and its forks cannot
//!    report where a *valid* value is, and every DSL error must say `file:line:column`; see
//!    `docs/CONFIG.md`.
//! 2. **Override** values from `ANYGATE__SECTION__KEY` variables ([`env`]); each variable is a
//!    source of its own, so its errors are positioned too.
//! 3. **Decode** the tree into the typed [`Config`] ([`model`]), collecting every error rather
//!    than stopping at the first, then build the [`Router`] and look for rules that can never
//!    match ([`analysis`]).
//!
//! # Invariants
//!
//! - A [`Config`] is fully valid: its router is built, every static directory existed at load
//!   time, every value is in range. Anything wrong is a [`Diagnostic`] with a code and, where
//!   there is one, a span.
//! - No panics on any input (the loader is fuzzed).
//! - Route order is the order written, groups flattened in place.
//!
//! # Non-goals
//!
//! Includes, templating and variables inside the file; environment overrides cover the
//! deployment-time needs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod analysis;
pub mod args;
pub mod cidr;
pub mod codes;
pub mod duration;
pub mod env;
mod fields;
mod json;
pub mod model;
pub mod node;
pub mod size;
pub mod source;
mod toml;
mod values;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anygate_router::{BuildError, Router};

pub use model::{
    ADMIN_DEFAULT, Acme, AcmeChallenge, Admin, CacheControl, CircuitBreaker, ClientAuth,
    ClientAuthMode, ErrorPage, ErrorPages, ErrorStatus, HealthCheck, HealthKind, HostHeader,
    LETS_ENCRYPT, LETS_ENCRYPT_STAGING, Listen, LogFormat, OtlpEndpoint, OutlierDetection,
    PluginSpec, ProxySettings, Retries, RetryOn, Route, Server, ServerH2, ServerLimits,
    ServerTimeouts, StaticSettings, Target, Timeouts, Tls, TlsCertificate, TlsHost, TlsProfile,
    Tracing, TrailingSlash, Upstream, UpstreamProtocol, UpstreamTls, Workers, acme_name_problem,
};
pub use node::{Kind, Node};
pub use source::{Diagnostic, Severity, SourceId, Sources, Span};

/// The file formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.yml`, `.yaml`.
    Yaml,
    /// `.json`.
    Json,
    /// `.toml`.
    Toml,
}

impl Format {
    /// The format for a path's extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "yml" | "yaml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The texts it was read from, for rendering positions.
    pub sources: Sources,
    /// `server`.
    pub server: Server,
    /// Top-level `static` settings.
    pub static_settings: Arc<StaticSettings>,
    /// Top-level `proxy` settings.
    pub proxy: Arc<ProxySettings>,
    /// `proxy.upstreams`.
    pub upstreams: Vec<Upstream>,
    /// Every rule, groups flattened, in declaration order.
    pub routes: Vec<Route>,
    /// The compiled table; each rule's value is its index in `routes`.
    pub router: Router<usize>,
    /// Warnings (shadowed and overlapping rules).
    pub warnings: Vec<Diagnostic>,
    /// Every `plugins` entry, global and in groups, in declaration order.
    pub plugins: Vec<PluginSpec>,
    /// The global chain (for requests no rule matches): indexes into `plugins`.
    pub global_plugins: Arc<[usize]>,
    /// `tls`, when there are TLS listeners.
    pub tls: Option<Tls>,
    /// `acme`, when certificates are obtained automatically.
    pub acme: Option<Acme>,
    /// `admin`, when the admin listener is on.
    pub admin: Option<Admin>,
    /// `tracing`, when requests are traced.
    pub tracing: Option<Tracing>,
    /// The top level's `errors`: the pages of requests no rule answers.
    pub errors: Arc<ErrorPages>,
    /// The groups' security profiles and what each expanded to.
    pub profiles: Vec<model::ProfileUse>,
}

impl Config {
    /// The names `acme` obtains certificates for: `acme.domains` as written, or else
    /// every exact host the routes name that a CA can issue for and that no name in
    /// `certified` (the configured certificates' names, `*.` wildcards included) serves.
    /// Empty without `acme`.
    pub fn acme_domains(&self, certified: &[String]) -> Vec<String> {
        let Some(acme) = &self.acme else {
            return Vec::new();
        };
        if let Some(domains) = &acme.domains {
            return domains.iter().map(|(d, _)| d.clone()).collect();
        }
        let served = |name: &str| {
            certified.iter().any(|c| match c.strip_prefix("*.") {
                Some(suffix) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => c == name,
            })
        };
        let mut names: Vec<String> = Vec::new();
        for route in &self.routes {
            for h in &route.head.hosts {
                if h.kind == anygate_router::HostKind::Exact
                    && acme_name_problem(&h.name).is_none()
                    && !served(&h.name)
                    && !names.contains(&h.name)
                {
                    names.push(h.name.clone());
                }
            }
        }
        names
    }

    /// The upstream pool named `name`, if one is defined.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

/// Why a configuration was rejected: every error (and warning) found, with the sources
/// needed to render them.
#[derive(Debug)]
pub struct Failure {
    /// The texts, for positions.
    pub sources: Sources,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Failure {
    /// The diagnostics that are errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            f.write_str(&d.render(&self.sources))?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// The `ANYGATE__…` variables of this process (those that are valid UTF-8).
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(env::PREFIX))
        .collect()
}

/// Loads and validates the file at `path`, with `env` overrides applied.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Config, Failure> {
    let name = path.display().to_string();
    let io_failure = |message: String| {
        let mut sources = Sources::default();
        let src = sources.add(name.clone(), "");
        Failure {
            diagnostics: vec![Diagnostic {
                span: None,
                ..Diagnostic::error(codes::IO, Span::new(src, 0, 0), message)
            }],
            sources,
        }
    };
    let Some(format) = Format::from_path(path) else {
        return Err(io_failure(format!(
            "cannot tell the format of `{name}`: use a .yml, .yaml, .json or .toml file"
        )));
    };
    let bytes =
        std::fs::read(path).map_err(|e| io_failure(format!("cannot read `{name}`: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let mut sources = Sources::default();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = sources.add(name, text);
            return Err(Failure {
                diagnostics: vec![Diagnostic::error(
                    codes::SYNTAX,
                    Span::new(src, at, at + 1),
                    "the file is not valid UTF-8",
                )],
                sources,
            });
        }
    };
    // `a.yml` has the parent `""`, which joins to paths relative to the working directory.
    let base_dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    load_str(&name, &text, format, &base_dir, env)
}

/// Loads and validates `text` as if read from a file called `name` in `base_dir`.
pub fn load_str(
    name: &str,
    text: &str,
    format: Format,
    base_dir: &Path,
    env: &[(String, String)],
) -> Result<Config, Failure> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sources = Sources::default();
    let src = sources.add(name, text);
    let parsed = match format {
        Format::Yaml => yaml::parse(src, 0, text),
        Format::Json => json::parse(src, text),
        Format::Toml => toml::parse(src, text),
    };
    let mut root = match parsed {
        Ok(root) => root,
        Err(d) => {
            return Err(Failure {
                sources,
                diagnostics: vec![d],
            });
        }
    };
    let mut diags = Vec::new();
    env::apply(&mut root, &mut sources, env, &mut diags);
    let model = model::decode(&root, base_dir, &mut diags);
    let built = Router::build(
        model
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.head.clone(), i)),
    );
    match built {
        Ok(router) if diags.is_empty() => Ok(Config {
            warnings: analysis::warnings(&router, &model.routes),
            sources,
            server: model.server,
            static_settings: model.static_settings,
            proxy: model.proxy,
            upstreams: model.upstreams,
            routes: model.routes,
            router,
            plugins: model.plugins,
            global_plugins: model.global_plugins,
            tls: model.tls,
            acme: model.acme,
            admin: model.admin,
            tracing: model.tracing,
            errors: model.errors,
            profiles: model.profiles,
        }),
        built => {
            if let Err(errors) = built {
                diags.extend(errors.iter().map(|e| build_diagnostic(e, &model.routes)));
            }
            diags.sort_by_key(|d| d.span.map(|s| s.sort_key()));
            Err(Failure {
                sources,
                diagnostics: diags,
            })
        }
    }
}

fn build_diagnostic(e: &BuildError, routes: &[Route]) -> Diagnostic {
    match *e {
        BuildError::Conflict { rule, with } => Diagnostic::error(
            codes::ROUTE_CONFLICT,
            routes[rule].key,
            format!(
                "`{}` conflicts with an earlier rule: same methods and same path shape",
                routes[rule].label()
            ),
        )
        .note(
            routes[with].key,
            format!("the earlier rule `{}`", routes[with].label()),
        )
        .help("remove one of them, or give them different methods"),
        BuildError::TooManyMethods { rule } => Diagnostic::error(
            codes::ROUTE_HEAD,
            routes[rule].key,
            "more than 64 different methods in the route table",
        ),
        ref other => Diagnostic {
            severity: Severity::Error,
            code: codes::ROUTE_HEAD,
            message: other.to_string(),
            span: None,
            notes: Vec::new(),
            help: None,
        },
    }
}
