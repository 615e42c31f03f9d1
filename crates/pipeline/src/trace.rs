//! Tracing a request: its W3C trace context when it starts, its spans when it is over.
//!
//! A request is traced when the configuration has `tracing`: it joins the caller's trace
//! (a valid `traceparent`) or starts one whose id is the request's id (32 hex digits,
//! what `X-Request-Id` then says), gets a `server.request` span id, and is sampled by the
//! caller's flag or, for a trace started here, by a draw against `tracing.sample`. When it
//! is over its spans are built from the marks the pipeline, the driver and the proxy left
//! in the context, and handed to the exporter if it was sampled or failed (a 5xx):
//! server failures are always kept. A 4xx is the client's error (OpenTelemetry leaves a
//! server span's status unset for it) and follows the sampling, so a flood of 404s or 429s
//! cannot push every request into the exporter. Phases are timed only for sampled
//! traces (each mark is a clock read); an unsampled request that fails is exported with
//! its `server.request` and `action.*` spans only.
//!
//! ```text
//! server.request ─┬─ router.match
//!                 ├─ filters.pre
//!                 ├─ action.<kind> ─┬─ upstream.connect
//!                 │                 └─ upstream.request   (its id is the upstream's parent)
//!                 └─ filters.post
//! ```

use std::time::{Instant, SystemTime};

use anygate_http::server::{Ctx, TraceCtx};
use anygate_http::{ErrorKind, Request};
use anygate_obs::otlp::{self, Attr, Kind, Span, Trace};
use anygate_obs::trace::{new_span_id, parse_traceparent, trace_id_from_hex, unit_draw};

use crate::Metric;

/// The trace context of a request that starts now.
pub(crate) fn begin(req: &Request<'_>, sample: f64) -> TraceCtx {
    let parent = req.header(b"traceparent").and_then(parse_traceparent);
    let trace_id = parent
        .map(|p| p.trace_id)
        .or_else(|| trace_id_from_hex(req.request_id()))
        .unwrap_or_else(|| {
            let (a, b) = (new_span_id(), new_span_id());
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&a);
            id[8..].copy_from_slice(&b);
            id
        });
    TraceCtx {
        trace_id,
        span_id: new_span_id(),
        parent: parent.map(|p| p.span_id),
        sampled: match parent {
            Some(p) => p.flags & 1 == 1,
            None => sample >= 1.0 || (sample > 0.0 && unit_draw() < sample),
        },
    }
}

/// Builds the spans of a finished traced request and exports them when it was sampled or
/// failed.
pub(crate) fn finish(m: Metric, req: &Request<'_>, ctx: &Ctx) {
    let Some(t) = ctx.trace else {
        return;
    };
    let failed = ctx.status >= 500;
    if !t.sampled && !failed {
        return;
    }
    let Some(start) = ctx.start else {
        return;
    };
    let end = ctx.end.unwrap_or_else(anygate_runtime::time::precise_now);
    let wall_end = otlp::unix_ns(SystemTime::now());
    let at = |i: Instant| {
        let back = u64::try_from(end.saturating_duration_since(i).as_nanos()).unwrap_or(0);
        wall_end.saturating_sub(back)
    };
    let (route, action) = anygate_obs::metrics::route_key(m.route).unwrap_or_default();
    let text = |b: &[u8]| Attr::Str(String::from_utf8_lossy(b).into());
    let mut attrs = vec![
        ("http.request.method", text(req.method())),
        ("url.path", text(req.path())),
        (
            "http.response.status_code",
            Attr::Int(i64::from(ctx.status)),
        ),
    ];
    if !route.is_empty() && &*route != "unmatched" {
        attrs.push(("http.route", Attr::Str(route.clone())));
    }
    if let Some(host) = req.host() {
        attrs.push(("server.address", text(host)));
    }
    if let Some(ip) = ctx.client {
        attrs.push(("client.address", Attr::Str(ip.to_string().into())));
    }
    if let Some(e) = ctx.error {
        attrs.push(("anygate.error_code", Attr::Str(e.code().into())));
    }
    let mut spans = Vec::with_capacity(7);
    let internal = |name: &'static str, from: Instant, to: Instant| Span {
        name,
        span_id: new_span_id(),
        parent: Some(t.span_id),
        kind: Kind::Internal,
        start_ns: at(from),
        end_ns: at(to),
        attrs: Vec::new(),
        error: false,
    };
    spans.push(Span {
        name: "server.request",
        span_id: t.span_id,
        parent: t.parent,
        kind: Kind::Server,
        start_ns: at(start),
        end_ns: at(end),
        attrs,
        error: ctx.status >= 500,
    });
    let marks = ctx.marks.as_deref().copied().unwrap_or_default();
    if let Some(routed) = marks.routed {
        spans.push(internal("router.match", start, routed));
    }
    if let (Some(routed), Some(pre_end)) = (marks.routed, marks.pre_end) {
        spans.push(internal("filters.pre", routed, pre_end));
    }
    if let Some(kind) = ctx.action.filter(|_| !action.is_empty()) {
        let from = marks.pre_end.or(marks.routed).unwrap_or(start);
        let name = match kind {
            "fixed" => "action.fixed",
            "echo" => "action.echo",
            "static" => "action.static",
            "proxy" => "action.proxy",
            "unavailable" => "action.unavailable",
            _ => "action",
        };
        let mut span = internal(name, from, end);
        span.error = ctx.error.is_some_and(ErrorKind::is_upstream);
        let action_id = span.span_id;
        spans.push(span);
        if let Some((from, to)) = marks.connect {
            let mut c = internal("upstream.connect", from, to);
            c.parent = Some(action_id);
            c.error = marks.upstream.is_none() && ctx.error.is_some_and(ErrorKind::is_upstream);
            spans.push(c);
        }
        if let Some((id, from, to)) = marks.upstream {
            let mut attrs = Vec::new();
            if let Some(up) = ctx.upstream {
                attrs.push(("server.address", Attr::Str(up.ip().to_string().into())));
                attrs.push(("server.port", Attr::Int(i64::from(up.port()))));
            }
            attrs.push(("anygate.attempt", Attr::Int(i64::from(ctx.attempt))));
            spans.push(Span {
                name: "upstream.request",
                span_id: id,
                parent: Some(action_id),
                kind: Kind::Client,
                start_ns: at(from),
                end_ns: at(to),
                attrs,
                error: ctx.error.is_some_and(ErrorKind::is_upstream),
            });
        }
    }
    if let Some((from, to)) = marks.post {
        spans.push(internal("filters.post", from, to));
    }
    otlp::submit(Trace {
        trace_id: t.trace_id,
        spans,
    });
}
