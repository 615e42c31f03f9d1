//! Security profiles: `profile: static_site | public_api | admin_panel` on a group sets safe
//! defaults in one word. Each default is a filter put in front of the group's own (a
//! `rate_limit`, a `headers` preset), a body size cap and listings off; a key or filter
//! kind the group sets itself wins. `admin_panel` also demands what cannot be defaulted: an
//! `ip` allow list, and a client certificate or an `auth` filter.

use super::*;

/// A profile's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Public pages and assets.
    StaticSite,
    /// An API for programs.
    PublicApi,
    /// An operator's back office.
    AdminPanel,
}

impl Profile {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "static_site" => Profile::StaticSite,
            "public_api" => Profile::PublicApi,
            "admin_panel" => Profile::AdminPanel,
            _ => return None,
        })
    }

    /// Its name as written.
    pub fn name(self) -> &'static str {
        match self {
            Profile::StaticSite => "static_site",
            Profile::PublicApi => "public_api",
            Profile::AdminPanel => "admin_panel",
        }
    }

    /// `rate_limit` per client address: (rate per second, burst).
    pub fn rate(self) -> (u32, u32) {
        match self {
            Profile::StaticSite => (200, 400),
            Profile::PublicApi => (20, 40),
            Profile::AdminPanel => (5, 20),
        }
    }

    /// The request body cap, bytes.
    pub fn max_body(self) -> u64 {
        match self {
            Profile::StaticSite => 64 << 10,
            Profile::PublicApi => 1 << 20,
            Profile::AdminPanel => 8 << 20,
        }
    }

    /// `headers` overrides of the security preset.
    fn security(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::StaticSite => &[],
            Profile::PublicApi => &[
                ("csp", "default-src 'none'; frame-ancestors 'none'"),
                ("frame_options", "DENY"),
            ],
            Profile::AdminPanel => &[("frame_options", "DENY")],
        }
    }
}

/// What a profile set on a group, for `anygate check`.
#[derive(Clone, Debug)]
pub struct ProfileUse {
    /// The profile.
    pub profile: Profile,
    /// The group's label (its prefix), if it has one.
    pub group: Option<String>,
    /// Where `profile:` is written.
    pub span: Span,
    /// What it expanded to, one item per setting (`rate_limit 20/s, burst 40, per ip`),
    /// and what the group's own settings kept (`headers: the group's own`).
    pub expanded: Vec<String>,
}

/// The group's parts a profile looks at before filling in.
pub(super) struct GroupParts<'n> {
    pub profile: &'n Node,
    /// The group's own `plugins` list.
    pub plugins: Option<&'n Node>,
    /// Whether the group's own `static` sets `listing`.
    pub sets_listing: bool,
    /// Whether the group sets `max_body`.
    pub sets_max_body: bool,
}

fn text(s: &str, span: Span) -> Node {
    Node::new(Kind::Str(s.to_owned()), span)
}

fn map(entries: Vec<(&str, Node)>, span: Span) -> Node {
    Node::new(
        Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| (text(k, span), v))
                .collect(),
        ),
        span,
    )
}

impl Decoder<'_> {
    /// Reads `profile`; pushes its filters (those the group's own `plugins` do not name)
    /// after `parent`'s chain. Returns the profile, the chain so far, and what it set.
    pub(super) fn profile(
        &mut self,
        parts: &GroupParts<'_>,
        parent: &Arc<[usize]>,
        label: Option<&str>,
    ) -> Option<(Profile, Arc<[usize]>, ProfileUse)> {
        let name = self.string(parts.profile, "profile")?;
        let Some(profile) = Profile::parse(name) else {
            self.value_error(
                parts.profile.span,
                format!("unknown profile `{name}`: `static_site`, `public_api` or `admin_panel`"),
            );
            return None;
        };
        let own: Vec<&str> = match parts.plugins.map(|n| &n.kind) {
            Some(Kind::Seq(items)) => items
                .iter()
                .filter_map(|i| match &i.kind {
                    Kind::Map(entries) => entries
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("kind"))
                        .and_then(|(_, v)| v.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let span = parts.profile.span;
        let mut chain: Vec<usize> = parent.to_vec();
        let mut expanded = Vec::new();
        let (rate, burst) = profile.rate();
        if own.contains(&"rate_limit") {
            expanded.push("rate_limit: the group's own".to_owned());
        } else {
            let args = map(
                vec![
                    ("rate", Node::new(Kind::Int(i64::from(rate)), span)),
                    ("burst", Node::new(Kind::Int(i64::from(burst)), span)),
                    ("scope", text("ip", span)),
                ],
                span,
            );
            chain.push(self.push_profile_plugin("rate_limit", args, span, label));
            expanded.push(format!(
                "rate_limit {rate}/s, burst {burst}, per client address"
            ));
        }
        if own.contains(&"headers") {
            expanded.push("headers: the group's own".to_owned());
        } else {
            let mut entries = vec![("preset", text("security", span))];
            let overrides = profile.security();
            if !overrides.is_empty() {
                let security = overrides.iter().map(|(k, v)| (*k, text(v, span))).collect();
                entries.push(("security", map(security, span)));
            }
            chain.push(self.push_profile_plugin("headers", map(entries, span), span, label));
            let extra: Vec<String> = overrides.iter().map(|(k, v)| format!("{k} {v}")).collect();
            expanded.push(if extra.is_empty() {
                "headers preset security".to_owned()
            } else {
                format!("headers preset security, with {}", extra.join("; "))
            });
        }
        expanded.push(if parts.sets_max_body {
            "max_body: the group's own".to_owned()
        } else {
            format!("max_body {}", crate::size::display(profile.max_body()))
        });
        expanded.push(if parts.sets_listing {
            "static.listing: the group's own".to_owned()
        } else {
            "static.listing off".to_owned()
        });
        expanded.push("cors: none (add a `cors` filter with your origins)".to_owned());
        if profile == Profile::AdminPanel {
            expanded
                .push("requires an `ip` allow list and a client certificate or `auth`".to_owned());
        }
        Some((
            profile,
            chain.into(),
            ProfileUse {
                profile,
                group: label.map(str::to_owned),
                span,
                expanded,
            },
        ))
    }

    fn push_profile_plugin(
        &mut self,
        kind: &str,
        args: Node,
        span: Span,
        label: Option<&str>,
    ) -> usize {
        self.plugins.push(PluginSpec {
            kind: kind.to_owned(),
            kind_span: span,
            args: Some(args),
            span,
            group: label.map(str::to_owned),
            base_dir: self.base_dir.to_path_buf(),
        });
        self.plugins.len() - 1
    }

    /// `admin_panel`'s demands, on the group's final chain.
    pub(super) fn check_admin_panel(&mut self, span: Span, chain: &[usize], client_cert: bool) {
        let has = |kind: &str, key: Option<&str>| {
            chain.iter().any(|&i| {
                let p = &self.plugins[i];
                p.kind == kind
                    && key.is_none_or(|k| match p.args.as_ref().map(|a| &a.kind) {
                        Some(Kind::Map(entries)) => {
                            entries.iter().any(|(n, _)| n.as_str() == Some(k))
                        }
                        _ => false,
                    })
            })
        };
        let ip = has("ip", Some("allow"));
        let auth = client_cert || has("auth", None);
        let mut missing = Vec::new();
        if !ip {
            missing.push("an `ip` filter with an `allow` list");
        }
        if !auth {
            missing.push("`require_client_cert: true` or an `auth` filter");
        }
        if !missing.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    codes::VALUE,
                    span,
                    format!("profile `admin_panel` needs {}", missing.join(" and ")),
                )
                .help(
                    "add to the group's plugins, for example \
                     `- { kind: ip, args: { allow: [\"10.0.0.0/8\"] } }` and \
                     `- { kind: auth, args: { bearer: { tokens_file: admin.tokens } } }`",
                ),
            );
        }
    }
}
