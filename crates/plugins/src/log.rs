//! `log`: the access log (SPEC §8), one line per request.
//!
//! ```yaml
//! - kind: log
//!   args:
//!     format: json              # json (default) | text
//!     to: stdout                # stdout (default) | stderr | a file path | a list of them
//!     sample: 0.1               # keep this share of lines (default 1); errors always kept
//!     headers: [x-tenant]       # request fields to add, secret ones masked
//! ```
//!
//! The line is formatted on the worker into a recycled buffer and handed to the log
//! writer thread (`anygate_obs::log`); a full queue drops it and counts it, so a slow disk
//! or a stalled pipe never slows a request. Secrets are masked (query parameters, and any
//! logged field whose name looks secret: `anygate_obs::redact`). `sample` keeps a random
//! share of the lines but never drops an error: a status of 500 or above, or any error
//! response the gateway produced itself (a 404 of no rule, a 429, a 401, …).
//! Relative file paths are resolved against the configuration file's directory.

use std::path::PathBuf;

use anygate_config::PluginSpec;
use anygate_config::args::Args;
use anygate_http::Request;
use anygate_http::server::Ctx;
use anygate_obs::access::{self, Format, Record};
use anygate_obs::log::{Dest, Target};

use crate::Built;

/// A compiled `log` filter.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    dest: Dest,
    targets: Vec<Target>,
    /// Keep a line when a random u32 is below this (`u32::MAX` = all).
    keep_below: u64,
    headers: Box<[Box<[u8]>]>,
}

/// A uniform draw in `0..2^32` for sampling (the per-thread generator of the traces).
fn random_u32() -> u64 {
    anygate_obs::trace::random_u64() >> 32
}

impl AccessLog {
    pub(crate) fn build(spec: &PluginSpec) -> Built<Self> {
        let mut args = Args::new(spec.args.as_ref(), spec.span, "`log` args");
        let format = match args.string("format") {
            None | Some(("json", _)) => Format::Json,
            Some(("text", _)) => Format::Text,
            Some((_, n)) => {
                args.error_help(n.span, "unknown `format`", "`json` or `text`");
                Format::Json
            }
        };
        let mut targets = Vec::new();
        for (to, n) in args.strings("to") {
            let t = match to {
                "stdout" => Target::Stdout,
                "stderr" => Target::Stderr,
                "" => {
                    args.error_help(n.span, "empty `to`", "`stdout`, `stderr` or a file path");
                    continue;
                }
                path => Target::File(spec.base_dir.join(PathBuf::from(path))),
            };
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        if targets.is_empty() {
            targets.push(Target::Stdout);
        }
        let sample = args.number("sample", 0.0, 1.0).map_or(1.0, |(s, _)| s);
        let headers = args
            .strings("headers")
            .into_iter()
            .map(|(h, _)| h.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        args.finish(&["format", "to", "sample", "headers"])?;
        Ok(Self {
            format,
            dest: anygate_obs::log::destination(&targets),
            targets,
            keep_below: (sample * 4_294_967_296.0) as u64,
            headers,
        })
    }

    pub(crate) fn summary(&self) -> String {
        let to: Vec<String> = self
            .targets
            .iter()
            .map(|t| match t {
                Target::Stdout => "stdout".to_owned(),
                Target::Stderr => "stderr".to_owned(),
                Target::File(p) => p.display().to_string(),
            })
            .collect();
        let format = match self.format {
            Format::Json => "json",
            Format::Text => "text",
        };
        let mut s = format!("{format} to {}", to.join(", "));
        if self.keep_below < 1 << 32 {
            s.push_str(&format!(
                ", sample {:.3} (errors always)",
                self.keep_below as f64 / 4_294_967_296.0
            ));
        }
        s
    }

    /// Writes the request's line (unless sampled out).
    pub(crate) fn observe(&self, req: &Request<'_>, ctx: &Ctx, route: Option<&str>) {
        let error = ctx.status >= 500 || ctx.error.is_some();
        if !error && self.keep_below < 1 << 32 && random_u32() >= self.keep_below {
            return;
        }
        let tls = req.tls().map(|t| access::Tls {
            version: t.version,
            cipher: t.cipher,
            sni: t.server_name.as_deref(),
            resumed: t.resumed,
        });
        // A traced request's own ids; otherwise the caller's trace, if it sent one.
        let (trace_id, span_id) = match ctx.trace {
            Some(t) => (Some(t.trace_id), Some(t.span_id)),
            None => (
                req.header(b"traceparent")
                    .and_then(anygate_obs::trace::parse_traceparent)
                    .map(|p| p.trace_id),
                None,
            ),
        };
        let headers = |f: &mut access::FieldSink<'_>| {
            for name in self.headers.iter() {
                for (n, v) in req.headers() {
                    if n.eq_ignore_ascii_case(name) {
                        f(name, v);
                    }
                }
            }
        };
        let record = Record {
            ts: anygate_obs::time::wall(ctx.end.unwrap_or_else(anygate_runtime::time::precise_now)),
            trace_id,
            span_id,
            route,
            action: ctx.action,
            method: req.method(),
            host: req.host(),
            path: req.path(),
            query: req.query(),
            status: ctx.status,
            duration: ctx
                .start
                .zip(ctx.end)
                .map(|(s, e)| e.saturating_duration_since(s)),
            bytes_rx: ctx.bytes_in,
            bytes_tx: ctx.bytes_out,
            client_ip: ctx.client.or_else(|| req.peer().map(|p| p.ip())),
            user_agent: req.header(b"user-agent"),
            upstream: ctx.upstream,
            attempt: ctx.attempt,
            code: ctx.error.map(|e| e.code()),
            tls,
            spa_fallback: ctx.static_kinds & anygate_obs::metrics::static_kind::SPA_FALLBACK != 0,
            headers: &headers,
        };
        anygate_obs::log::line(self.dest, |buf| access::write(buf, self.format, &record));
    }
}
