//! `headers`: add, set and remove request and response fields; the `security` preset.
//!
//! ```yaml
//! - kind: headers
//!   args:
//!     request:  { set: { X-Env: prod }, add: { X-Via: gw }, remove: [X-Debug] }
//!     response: { set: { Cache-Control: no-store }, remove: [Server, X-Powered-By] }
//!     preset: security            # HSTS (over TLS only), CSP, X-Frame-Options, ...
//!     security: { csp: "default-src 'self'", frame_options: false }   # overrides
//! ```
//!
//! Request edits are applied in `pre` (what the action forwards or shows); response edits
//! in `post`, on every response head of the rule, in the order remove → set → add. The
//! preset's fields fill in: a field the response already has (the application's own CSP,
//! say) is left as it is, and an explicit `response.set` wins over both. Framing and
//! hop-by-hop fields (`Content-Length`, `Transfer-Encoding`, `Connection`, `Host`, …) are
//! refused at load: the server owns them.

use anygate_config::PluginSpec;
use anygate_config::args::Args;
use anygate_config::node::Node;
use anygate_http::message::{Fields, is_field_value, is_token};
use anygate_http::server::Ctx;
use anygate_http::{Exchange, Request};

use crate::Built;

/// Fields the server writes itself, or that describe one hop: no filter may touch them.
const OWNED: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "date",
    "x-request-id",
];

/// A field name (lowercase) and its value.
type Field = (Box<[u8]>, Box<[u8]>);

/// One side's edits, applied remove → set → add.
#[derive(Debug, Default)]
struct Edits {
    remove: Vec<Box<[u8]>>,
    set: Vec<Field>,
    add: Vec<Field>,
}

impl Edits {
    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    fn summary(&self, side: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        let names = |v: &[Field]| {
            v.iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.remove.is_empty() {
            let r: Vec<_> = self
                .remove
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            parts.push(format!("-{}", r.join(",")));
        }
        if !self.set.is_empty() {
            parts.push(format!("={}", names(&self.set)));
        }
        if !self.add.is_empty() {
            parts.push(format!("+{}", names(&self.add)));
        }
        Some(format!("{side} {}", parts.join(" ")))
    }
}

/// The `security` preset, each field overridable (`false` leaves it out).
#[derive(Debug, Default)]
struct Security {
    /// `Strict-Transport-Security`, sent only on responses to requests that came over TLS
    /// (RFC 6797 §7.2: a browser ignores it over plain HTTP).
    hsts: Option<Box<[u8]>>,
    /// The rest, on every response.
    always: Vec<(&'static [u8], Box<[u8]>)>,
}

/// The preset's values: those of Helmet (the Express security middleware) where it has
/// one, which the web has tested for years.
const PRESET: [(&str, &[u8], &str); 6] = [
    (
        "hsts",
        b"strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "csp",
        b"content-security-policy",
        "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; \
         form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; \
         object-src 'none'; script-src 'self'; script-src-attr 'none'; \
         style-src 'self' https: 'unsafe-inline'",
    ),
    ("frame_options", b"x-frame-options", "SAMEORIGIN"),
    ("content_type_options", b"x-content-type-options", "nosniff"),
    (
        "referrer_policy",
        b"referrer-policy",
        "strict-origin-when-cross-origin",
    ),
    (
        "permissions_policy",
        b"permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

/// A compiled `headers` filter.
#[derive(Debug)]
pub struct Headers {
    request: Edits,
    response: Edits,
    security: Option<Security>,
}

impl Headers {
    pub(crate) fn build(spec: &PluginSpec) -> Built<Self> {
        let mut args = Args::new(spec.args.as_ref(), spec.span, "`headers` args");
        let request = side(&mut args, "request");
        let response = side(&mut args, "response");
        let preset = args.string("preset");
        let overrides = args.map("security");
        let mut security = None;
        match preset {
            Some(("security", _)) => {
                let mut sec = Security::default();
                let mut over = overrides;
                for (key, name, default) in PRESET {
                    let value = match over.as_mut().and_then(|o| o.take(key)) {
                        None => Some(default.as_bytes().into()),
                        Some(n) => preset_value(&mut args, key, n),
                    };
                    match (key, value) {
                        (_, None) => {}
                        ("hsts", Some(v)) => sec.hsts = Some(v),
                        (_, Some(v)) => sec.always.push((name, v)),
                    }
                }
                if let Some(o) = over {
                    let known: Vec<&str> = PRESET.iter().map(|p| p.0).collect();
                    args.absorb(o, &known);
                }
                security = Some(sec);
            }
            Some((other, node)) => {
                args.error_help(
                    node.span,
                    format!("unknown preset `{other}`"),
                    "the preset is `security`",
                );
            }
            None => {
                if let Some(o) = overrides {
                    args.error_help(
                        o.span(),
                        "`security` overrides need `preset: security`",
                        "add `preset: security`",
                    );
                }
            }
        }
        if request.is_empty() && response.is_empty() && security.is_none() && !args.failed() {
            let span = args.span();
            args.error_help(
                span,
                "`headers` does nothing",
                "give `request`, `response` or `preset: security`",
            );
        }
        args.finish(&["request", "response", "preset", "security"])?;
        Ok(Self {
            request,
            response,
            security,
        })
    }

    pub(crate) fn pre(&self, _req: &Request<'_>, ex: &mut Exchange<'_>) {
        let e = &self.request;
        for name in &e.remove {
            ex.remove_request_field(name);
        }
        for (name, value) in &e.set {
            ex.set_request_field(name, value);
        }
        for (name, value) in &e.add {
            ex.add_request_field(name, value);
        }
    }

    pub(crate) fn post(&self, ctx: &Ctx, fields: &mut Fields) {
        let e = &self.response;
        for name in &e.remove {
            fields.remove(name);
        }
        for (name, value) in &e.set {
            fields.set(name, value);
        }
        for (name, value) in &e.add {
            fields.append(name, value);
        }
        if let Some(sec) = &self.security {
            for (name, value) in &sec.always {
                if !fields.contains(name) {
                    fields.append(name, value);
                }
            }
            if let Some(hsts) = &sec.hsts
                && ctx.tls
                && !fields.contains(b"strict-transport-security")
            {
                fields.append(b"strict-transport-security", hsts);
            }
        }
    }

    pub(crate) fn summary(&self) -> String {
        let mut parts: Vec<String> = [
            self.request.summary("request"),
            self.response.summary("response"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(sec) = &self.security {
            let n = sec.always.len() + usize::from(sec.hsts.is_some());
            parts.push(format!("preset security ({n} fields)"));
        }
        parts.join("; ")
    }
}

/// An override of the preset: a string, or `false` to leave the field out.
fn preset_value(args: &mut Args<'_>, key: &str, node: &Node) -> Option<Box<[u8]>> {
    use anygate_config::Kind;
    match &node.kind {
        Kind::Bool(false) => None,
        Kind::Str(s) if is_field_value(s.as_bytes()) && !s.is_empty() => Some(s.as_bytes().into()),
        _ => {
            args.error(
                node.span,
                format!("`security.{key}` must be a field value (a string) or false"),
            );
            None
        }
    }
}

/// Reads `request` or `response`: `set` and `add` maps, `remove` a list of names.
fn side(args: &mut Args<'_>, key: &str) -> Edits {
    let Some(mut a) = args.map(key) else {
        return Edits::default();
    };
    let mut e = Edits::default();
    for (name, node) in a.strings("remove") {
        if let Some(n) = checked_name(&mut a, name, node) {
            e.remove.push(n);
        }
    }
    for (which, list) in [("set", &mut e.set), ("add", &mut e.add)] {
        for (name, name_node, value, value_node) in a.string_map(which) {
            let Some(n) = checked_name(&mut a, name, name_node) else {
                continue;
            };
            if !is_field_value(value.as_bytes()) {
                a.error(
                    value_node.span,
                    format!("the value of `{name}` holds a control character (CR, LF or NUL)"),
                );
                continue;
            }
            list.push((n, value.as_bytes().into()));
        }
    }
    args.absorb(a, &["set", "add", "remove"]);
    e
}

fn checked_name(args: &mut Args<'_>, name: &str, node: &Node) -> Option<Box<[u8]>> {
    if !is_token(name.as_bytes()) || name.is_empty() {
        args.error(node.span, format!("`{name}` is not a valid field name"));
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if OWNED.contains(&lower.as_str()) {
        args.error_help(
            node.span,
            format!("`{name}` cannot be changed by a filter"),
            "the server writes the framing and hop-by-hop fields itself",
        );
        return None;
    }
    Some(lower.into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Headers {
        let text =
            format!("plugins: [ {{ kind: headers, args: {yaml} }} ]\nroutes: {{ \"/\": OK }}\n");
        let config = anygate_config::load_str(
            "t.yml",
            &text,
            anygate_config::Format::Yaml,
            std::path::Path::new("."),
            &[],
        )
        .unwrap();
        Headers::build(&config.plugins[0]).unwrap()
    }

    #[test]
    fn the_security_preset_sends_hsts_only_over_tls() {
        let h = build("{ preset: security, security: { hsts: \"max-age=60\" } }");
        let mut ctx = Ctx::new();
        let mut plain = Fields::new();
        h.post(&ctx, &mut plain);
        assert_eq!(plain.get(b"strict-transport-security"), None);
        assert_eq!(plain.get(b"x-content-type-options"), Some(&b"nosniff"[..]));
        ctx.tls = true;
        let mut tls = Fields::new();
        h.post(&ctx, &mut tls);
        assert_eq!(
            tls.get(b"strict-transport-security"),
            Some(&b"max-age=60"[..])
        );
        // An upstream's own value is kept.
        let mut own = Fields::new();
        own.append(b"strict-transport-security", b"max-age=1");
        h.post(&ctx, &mut own);
        assert_eq!(own.get_all(b"strict-transport-security").count(), 1);
        assert_eq!(
            own.get(b"strict-transport-security"),
            Some(&b"max-age=1"[..])
        );
    }
}
