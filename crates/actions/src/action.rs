//! One enum for every action, with one `respond` signature over the exchange: the pipeline
//! dispatches with a `match`, never through a trait object.

use anygate_http::{ErrorKind, Exchange, Request};
use anygate_router::Params;

use crate::{Echo, Fixed, Proxy, Static};

/// What a matched rule does.
#[derive(Debug)]
pub enum Action {
    /// A response fixed at load time.
    Fixed(Fixed),
    /// The request, described as JSON.
    Echo(Echo),
    /// Files from a directory.
    Static(Box<Static>),
    /// The request relayed to an upstream.
    Proxy(Box<Proxy>),
    /// An action this build does not have (`https://` upstreams): 501.
    Unavailable,
}

/// What the router found for a request, as the action needs it.
#[derive(Debug)]
pub struct Matched<'m, 'r, 'p> {
    /// The normalised request path.
    pub path: &'m [u8],
    /// The rule's `:name` params and splat.
    pub params: &'m Params<'r, 'p>,
    /// The rule, as `GET /api/*`, for error bodies.
    pub label: &'m str,
}

impl Action {
    /// `fixed`, `echo`, `static`, `proxy` or `unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Fixed(_) => "fixed",
            Self::Echo(_) => "echo",
            Self::Static(_) => "static",
            Self::Proxy(_) => "proxy",
            Self::Unavailable => "unavailable",
        }
    }

    /// Answers `req`. `buf` is a buffer the connection keeps between requests.
    pub async fn respond(
        &self,
        req: &Request<'_>,
        m: &Matched<'_, '_, '_>,
        ex: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
    ) {
        match self {
            Self::Fixed(f) => f.respond(ex),
            Self::Echo(e) => {
                e.respond(req, m.path, m.params.iter(), m.params.splat(), ex, buf)
                    .await;
            }
            Self::Static(s) => s.respond(req, m.path, m.params.splat(), ex, buf),
            Self::Proxy(p) => {
                // Boxed: the proxy's state machine is large, and inline it would grow
                // every connection's task, idle ones included (one allocation per proxied
                // request instead; measured by the idle-10k bench).
                Box::pin(p.respond(req, m.path, m.params.splat(), ex, buf)).await;
            }
            Self::Unavailable => ex.error(ErrorKind::NotImplemented, Some(m.label)),
        }
    }
}
