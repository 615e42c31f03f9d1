//! `admin`: the admin listener (metrics, health, readiness, routes, reload).

use super::*;

/// `admin`: present when the admin listener is on (and metrics are recorded).
#[derive(Clone, Debug)]
pub struct Admin {
    /// `admin.listen` (default `127.0.0.1:9901`).
    pub listen: Listen,
    /// The bearer token `POST /reload` requires (`admin.token`, or the first line of
    /// `admin.token_file`); without one, `/reload` is refused.
    pub token: Option<String>,
    /// Where the section is.
    pub span: Span,
}

/// The admin listener's default address: loopback only.
pub const ADMIN_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);

impl Decoder<'_> {
    pub(super) fn admin(&mut self, node: &Node) -> Admin {
        let mut admin = Admin {
            listen: Listen {
                addr: ADMIN_DEFAULT,
                span: None,
            },
            token: None,
            span: node.span,
        };
        if matches!(node.kind, Kind::Null) {
            return admin;
        }
        let mut f = Fields::new(self.diags, node, "admin");
        if let Some(n) = f.take("listen")
            && let Some(s) = self.string(n, "admin.listen")
        {
            match parse_listen(s) {
                Ok(addr) => {
                    admin.listen = Listen {
                        addr,
                        span: Some(n.span),
                    }
                }
                Err(e) => self.value_error(n.span, e),
            }
        }
        let token = f.take("token");
        let token_file = f.take("token_file");
        if let (Some(_), Some(file)) = (token, token_file) {
            self.value_error(
                file.span,
                "give `admin.token` or `admin.token_file`, not both",
            );
        } else if let Some(n) = token
            && let Some(s) = self.string(n, "admin.token")
        {
            admin.token = self.token(s, n.span);
        } else if let Some(n) = token_file
            && let Some(s) = self.string(n, "admin.token_file")
        {
            let path = self.base_dir.join(s);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    admin.token = self.token(text.lines().next().unwrap_or("").trim(), n.span);
                }
                Err(e) => self.value_error(
                    n.span,
                    format!("cannot read `admin.token_file` {}: {e}", path.display()),
                ),
            }
        }
        f.finish(self.diags, &["listen", "token", "token_file"]);
        admin
    }

    fn token(&mut self, s: &str, span: Span) -> Option<String> {
        if s.len() < 16 || s.bytes().any(|b| !b.is_ascii_graphic()) {
            self.value_error(
                span,
                "the admin token must be at least 16 visible ASCII characters (no spaces)",
            );
            return None;
        }
        Some(s.to_owned())
    }
}
