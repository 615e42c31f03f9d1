//! `routes` and `groups`, flattened in the order written, each rule with its scope's
//! settings and filter chain.

use super::profiles::{self, Profile};
use super::*;

impl Decoder<'_> {
    /// `routes` and `groups` of one map, flattened in the order they are written
    /// (declaration order breaks ties between rules).
    pub(super) fn routes_and_groups(&mut self, f: &mut Fields<'_>, scope: &Scope) {
        let mut parts = [
            (f.take_entry("routes"), true),
            (f.take_entry("groups"), false),
        ];
        parts.sort_by_key(|(e, _)| e.map(|(k, _)| k.span.sort_key()));
        for (entry, is_routes) in parts {
            match (entry, is_routes) {
                (Some((_, v)), true) => self.routes(v, scope),
                (Some((_, v)), false) => self.groups(v, scope),
                (None, _) => {}
            }
        }
    }

    pub(super) fn groups(&mut self, node: &Node, parent: &Scope) {
        let Kind::Seq(items) = &node.kind else {
            if !matches!(node.kind, Kind::Null) {
                self.type_error(node, "groups", "a list of groups");
            }
            return;
        };
        for group in items {
            let mut f = Fields::new(self.diags, group, "group");
            let mut prefix = parent.prefix.clone();
            let mut label = parent.label.clone();
            let mut prefix_ok = true;
            let mut hosts = parent.hosts.clone();
            if let Some(n) = f.take("host") {
                match self.group_hosts(n, parent) {
                    Some(h) => hosts = h,
                    None => prefix_ok = false,
                }
            }
            if let Some(n) = f.take("prefix") {
                match self.string(n, "prefix").map(|t| (t, parse_prefix(t))) {
                    Some((text, Ok(segments))) => {
                        prefix.extend(segments);
                        let mut l = label.unwrap_or_default();
                        l.push_str(text.trim_end_matches('/'));
                        label = Some(l);
                    }
                    Some((_, Err(e))) => {
                        self.diags.push(dsl_diagnostic(codes::GROUP_PREFIX, n, &e));
                        prefix_ok = false;
                    }
                    None => prefix_ok = false,
                }
            }
            let profile_node = f.take("profile");
            let static_node = f.take("static");
            let sets_listing = static_node.is_some_and(|n| match &n.kind {
                Kind::Map(entries) => entries.iter().any(|(k, _)| k.as_str() == Some("listing")),
                _ => false,
            });
            let mut static_settings = match static_node {
                Some(n) => Arc::new(self.static_settings(
                    Some(n),
                    "static",
                    &parent.static_settings,
                    false,
                )),
                None => parent.static_settings.clone(),
            };
            let mut max_body = parent.max_body;
            let max_body_node = f.take("max_body");
            if let Some(n) = max_body_node
                && let Some(v) = self.size(n, "max_body", 0, 1 << 40, true)
            {
                max_body = Some(v);
            }
            let proxy = match f.take("proxy") {
                Some(n) => Arc::new(self.proxy_settings(Some(n), false, &parent.proxy)),
                None => parent.proxy.clone(),
            };
            let plugins_node = f.take("plugins");
            let profile = profile_node.and_then(|n| {
                let parts = profiles::GroupParts {
                    profile: n,
                    plugins: plugins_node,
                    sets_listing,
                    sets_max_body: max_body_node.is_some(),
                };
                self.profile(&parts, &parent.plugins, label.as_deref())
            });
            let base = profile
                .as_ref()
                .map_or_else(|| parent.plugins.clone(), |(_, c, _)| c.clone());
            let plugins = self.plugins(plugins_node, &base, label.as_deref());
            let errors = self.error_pages(f.take("errors"), &parent.errors);
            let mut require_client_cert = parent.require_client_cert;
            if let Some(n) = f.take("require_client_cert")
                && let Some(b) = self.bool(n, "require_client_cert")
            {
                // A group inside one that demands a certificate cannot waive it.
                require_client_cert |= b;
            }
            if let Some((p, _, used)) = profile {
                if max_body_node.is_none() {
                    max_body = Some(p.max_body());
                }
                if !sets_listing && static_settings.listing {
                    let mut s = (*static_settings).clone();
                    s.listing = false;
                    static_settings = Arc::new(s);
                }
                if p == Profile::AdminPanel {
                    self.check_admin_panel(used.span, &plugins, require_client_cert);
                }
                self.profiles.push(used);
            }
            let scope = Scope {
                prefix,
                hosts,
                label,
                static_settings,
                proxy,
                plugins,
                require_client_cert,
                errors,
                max_body,
            };
            if prefix_ok {
                self.routes_and_groups(&mut f, &scope);
            } else {
                // Without its prefix the group's rules would be checked against the wrong
                // paths (false conflicts): leave them out until the prefix is fixed.
                f.take_entry("routes");
                f.take_entry("groups");
            }
            f.finish(
                self.diags,
                &[
                    "prefix",
                    "host",
                    "routes",
                    "groups",
                    "static",
                    "proxy",
                    "plugins",
                    "require_client_cert",
                    "errors",
                    "profile",
                    "max_body",
                ],
            );
        }
    }

    pub(super) fn routes(&mut self, node: &Node, scope: &Scope) {
        if matches!(node.kind, Kind::Null) {
            return;
        }
        let mut f = Fields::new(self.diags, node, "routes");
        for (k, v) in f.unique_entries() {
            let Some(key_text) = k.as_str() else {
                self.type_error(k, "a route key", "a string `[METHOD ...] /path`");
                continue;
            };
            let head = dsl::parse_head(key_text)
                .map_err(|e| self.diags.push(dsl_diagnostic(codes::ROUTE_HEAD, k, &e)))
                .ok();
            // SPA by default for a rule whose own path (before a group prefix) is the root.
            let own_path_is_root = head
                .as_ref()
                .is_some_and(|h| h.path.segments.is_empty() && h.path.tail != Tail::Exact);
            let head = head
                .and_then(|head| self.join_prefix(head, &scope.prefix, k))
                .and_then(|head| self.join_hosts(head, &scope.hosts, k));
            // The long form: `"GET /x": { action: "...", errors: {...} }`.
            let (v, errors) = match &v.kind {
                Kind::Map(_) => {
                    let mut lf = Fields::new(self.diags, v, "a rule");
                    let errors = self.error_pages(lf.take("errors"), &scope.errors);
                    let action = lf.take("action");
                    lf.finish(self.diags, &["action", "errors"]);
                    match action {
                        Some(a) => (a, errors),
                        None => {
                            self.diags.push(Diagnostic::error(
                                codes::ROUTE_ACTION,
                                v.span,
                                format!("`{key_text}` has no `action`"),
                            ));
                            continue;
                        }
                    }
                }
                _ => (v, scope.errors.clone()),
            };
            let int_text;
            let action_text = match &v.kind {
                Kind::Str(s) => Some(s.as_str()),
                Kind::Null => Some(""),
                Kind::Int(i) => {
                    int_text = i.to_string();
                    Some(int_text.as_str())
                }
                _ => {
                    self.type_error(v, key_text, "an action string");
                    None
                }
            };
            let action = action_text.and_then(|t| match dsl::parse_action(t) {
                Ok(Action::Fixed(mut f)) => match classify_body(&mut f, t) {
                    Ok(()) => Some(Action::Fixed(f)),
                    Err(e) => {
                        self.diags.push(dsl_diagnostic(codes::ROUTE_ACTION, v, &e));
                        None
                    }
                },
                Ok(action) => Some(action),
                // An absent value has no position of its own: point at the key.
                Err(e) if matches!(v.kind, Kind::Null) => {
                    let why = e.message.trim_start_matches("empty action: ");
                    let msg = format!("`{key_text}` has no action: {why}");
                    self.diags
                        .push(Diagnostic::error(codes::ROUTE_ACTION, k.span, msg));
                    None
                }
                Err(e) => {
                    self.diags.push(dsl_diagnostic(codes::ROUTE_ACTION, v, &e));
                    None
                }
            });
            let static_root = match &action {
                Some(Action::Static(dir)) => self.static_root(dir, v),
                _ => None,
            };
            if let (Some(head), Some(action)) = (head, action) {
                if matches!(action, Action::Static(_)) && static_root.is_none() {
                    continue;
                }
                let spa = matches!(action, Action::Static(_))
                    && scope.static_settings.spa.unwrap_or(own_path_is_root);
                self.routes.push(Route {
                    head,
                    action,
                    key_text: key_text.to_owned(),
                    key: k.span,
                    value: v.span,
                    group: scope.label.clone(),
                    static_root,
                    static_settings: scope.static_settings.clone(),
                    spa,
                    proxy: scope.proxy.clone(),
                    plugins: scope.plugins.clone(),
                    require_client_cert: scope.require_client_cert,
                    errors,
                    max_body: scope.max_body,
                });
            }
        }
    }

    /// A group's `host`: one name or a list, each `name[:port]`, `*.suffix` or `**.suffix`.
    fn group_hosts(&mut self, node: &Node, parent: &Scope) -> Option<Vec<dsl::HostPattern>> {
        if !parent.hosts.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    codes::GROUP_HOST,
                    node.span,
                    "this group is inside a group with `host`: the hosts are set once",
                )
                .help("move the group out, or give the hosts on the outer group only"),
            );
            return None;
        }
        let items: Vec<&Node> = match &node.kind {
            Kind::Str(_) => vec![node],
            Kind::Seq(items) if !items.is_empty() => items.iter().collect(),
            _ => {
                self.type_error(node, "host", "a host name or a list of them");
                return None;
            }
        };
        let mut out: Vec<dsl::HostPattern> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, "host") else {
                ok = false;
                continue;
            };
            match dsl::parse_host(text, 0) {
                Ok(h) if out.contains(&h) => {
                    self.diags.push(Diagnostic::error(
                        codes::GROUP_HOST,
                        item.span,
                        format!("`{h}` is listed twice"),
                    ));
                    ok = false;
                }
                Ok(h) => out.push(h),
                Err(e) => {
                    self.diags.push(dsl_diagnostic(codes::GROUP_HOST, item, &e));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A rule of a group with `host` is for those hosts; it cannot name one of its own.
    fn join_hosts(
        &mut self,
        mut head: Head,
        hosts: &[dsl::HostPattern],
        key: &Node,
    ) -> Option<Head> {
        if hosts.is_empty() {
            return Some(head);
        }
        if !head.hosts.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    codes::GROUP_HOST,
                    key.span,
                    "this rule names a host inside a group with `host`",
                )
                .help("drop the host from the rule, or move the rule out of the group"),
            );
            return None;
        }
        head.hosts = hosts.to_vec();
        Some(head)
    }

    pub(super) fn join_prefix(
        &mut self,
        mut head: Head,
        prefix: &[Segment],
        key: &Node,
    ) -> Option<Head> {
        if prefix.is_empty() {
            return Some(head);
        }
        let mut segments = prefix.to_vec();
        segments.append(&mut head.path.segments);
        let mut names: Vec<&str> = Vec::new();
        for s in &segments {
            if let Segment::Param(p) = s {
                if names.contains(&p.as_str()) {
                    self.diags.push(Diagnostic::error(
                        codes::ROUTE_HEAD,
                        key.span,
                        format!("parameter `:{p}` is already used by the group prefix"),
                    ));
                    return None;
                }
                names.push(p);
            }
        }
        if segments.len() > dsl::MAX_SEGMENTS || names.len() > dsl::MAX_PARAMS {
            self.diags.push(Diagnostic::error(
                codes::ROUTE_HEAD,
                key.span,
                "with the group prefix, this path has too many segments or parameters",
            ));
            return None;
        }
        head.path = PathPattern {
            segments,
            tail: head.path.tail,
        };
        Some(head)
    }

    pub(super) fn static_root(&mut self, dir: &str, value: &Node) -> Option<PathBuf> {
        let path = Path::new(dir);
        let resolved = self.resolve(path);
        let problem = match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => match static_root_readable(&resolved) {
                Ok(()) => return Some(resolved),
                Err(e) => e,
            },
            Ok(_) => "is not a directory".into(),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                "cannot be reached: permission denied".into()
            }
            Err(_) => "does not exist".into(),
        };
        self.path_error(
            codes::STATIC_DIR,
            value.span,
            format!("static directory `{dir}` {problem}"),
            path,
            &resolved,
            "directories",
        );
        None
    }
}

/// Whether this process may list `dir` and open what is in it (read and search
/// permission): the user `serve` runs as must, or every file would answer 403.
pub fn static_root_readable(dir: &Path) -> Result<(), String> {
    // Listing needs read permission; opening what is inside needs search permission.
    match std::fs::read_dir(dir).and_then(|_| std::fs::metadata(dir.join("."))) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "is not readable by this process (uid {}): permission denied",
            current_uid()
        )),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// The process's user id (no FFI in this crate): `/proc/self`'s owner.
fn current_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.uid().to_string())
}

/// A DSL error inside a key or value, pointed at the exact characters when possible.
fn dsl_diagnostic(code: &'static str, node: &Node, e: &DslError) -> Diagnostic {
    Diagnostic::error(code, node.sub_span(e.offset, e.len), e.message.clone())
}

/// A fixed body that is a valid JSON document is sent as JSON (SPEC §5); one that starts
/// like JSON (`{`, `[`) but does not parse is an error pointing into the body. `action` is
/// the rule's action text (`STATUS BODY`: the body follows the first space).
fn classify_body(f: &mut dsl::Fixed, action: &str) -> Result<(), DslError> {
    if f.body.is_empty() || f.location.is_some() {
        return Ok(());
    }
    let body_at = action.find(' ').map_or(0, |i| i + 1);
    let mut scratch = crate::source::Sources::default();
    let src = scratch.add("body", f.body.as_str());
    match crate::json::parse(src, &f.body) {
        Ok(_) => f.body_type = dsl::BodyType::Json,
        Err(e) if f.body.trim_start().starts_with(['{', '[']) => {
            let at = e
                .span
                .map_or(0, |s| s.start)
                .min(f.body.len().saturating_sub(1));
            let why = e.message.trim_start_matches("invalid JSON: ");
            return Err(DslError::new(
                dsl::Part::Action,
                body_at + at,
                1,
                format!("the body looks like JSON but is not valid JSON: {why}"),
            ));
        }
        Err(_) => {}
    }
    Ok(())
}
