//! `tracing`: W3C trace context and span export (OTLP/HTTP JSON).

use super::*;

/// `tracing`: present when requests are traced.
#[derive(Clone, Debug)]
pub struct Tracing {
    /// `tracing.sample` (0 to 1, default 0.01): the share of traces started here (no
    /// sampled `traceparent` from the caller) whose spans are exported. A caller's sampled
    /// flag is followed; a request that fails is exported whatever the draw.
    pub sample: f64,
    /// `tracing.otlp.endpoint`, split: where spans are posted (none: ids are propagated,
    /// nothing is exported).
    pub otlp: Option<OtlpEndpoint>,
    /// `tracing.service_name` (default `anygate`).
    pub service_name: String,
    /// Where the section is.
    pub span: Span,
}

/// An OTLP/HTTP endpoint (`http://host:port/path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// `host:port` (port 80 when the URL names none).
    pub authority: String,
    /// The path (`/v1/traces` when the URL names none).
    pub path: String,
}

/// Splits an OTLP endpoint URL.
fn endpoint(url: &str) -> Result<OtlpEndpoint, String> {
    if url.starts_with("https://") {
        return Err(
            "`https://` OTLP endpoints are not supported yet: export to a collector or agent over `http://` (on the host or the cluster network)"
                .to_owned(),
        );
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("`tracing.otlp.endpoint` is an `http://host:port/path` URL".to_owned());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/traces"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("`tracing.otlp.endpoint` needs a host (and no userinfo)".to_owned());
    }
    if !authority
        .bytes()
        .all(|b| is_host_byte(b) || b == b':' || b == b'[' || b == b']')
    {
        return Err(format!("`{authority}` is not a valid host"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the endpoint's path has spaces or control characters".to_owned());
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty()
    });
    Ok(OtlpEndpoint {
        authority: if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        },
        path: path.to_owned(),
    })
}

impl Decoder<'_> {
    pub(super) fn tracing(&mut self, node: &Node) -> Tracing {
        let mut t = Tracing {
            sample: 0.01,
            otlp: None,
            service_name: "anygate".to_owned(),
            span: node.span,
        };
        if matches!(node.kind, Kind::Null) {
            return t;
        }
        let mut f = Fields::new(self.diags, node, "tracing");
        if let Some(n) = f.take("sample") {
            match n.kind {
                Kind::Int(i) if (0..=1).contains(&i) => t.sample = i as f64,
                Kind::Float(x) if (0.0..=1.0).contains(&x) => t.sample = x,
                Kind::Int(_) | Kind::Float(_) => {
                    self.value_error(n.span, "`tracing.sample` is a share from 0 to 1");
                }
                _ => self.type_error(n, "tracing.sample", "a number from 0 to 1"),
            }
        }
        if let Some(n) = f.take("service_name")
            && let Some(s) = self.string(n, "tracing.service_name")
        {
            t.service_name = s.to_owned();
        }
        if let Some(n) = f.take("otlp") {
            let mut o = Fields::new(self.diags, n, "tracing.otlp");
            if let Some(e) = o.take("endpoint")
                && let Some(url) = self.string(e, "tracing.otlp.endpoint")
            {
                match endpoint(url) {
                    Ok(ep) => t.otlp = Some(ep),
                    Err(why) => self.value_error(e.span, why),
                }
            }
            o.finish(self.diags, &["endpoint"]);
        }
        f.finish(self.diags, &["sample", "service_name", "otlp"]);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints() {
        let e = endpoint("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        let e = endpoint("http://collector").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("collector:80", "/v1/traces")
        );
        let e = endpoint("http://[::1]:4318/x").unwrap();
        assert_eq!(e.authority, "[::1]:4318");
        assert!(
            endpoint("https://c:4318")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(endpoint("http://u:p@c:4318").is_err());
        assert!(endpoint("c:4318").is_err());
        assert!(endpoint("http://c:4318/a b").is_err());
    }
}
