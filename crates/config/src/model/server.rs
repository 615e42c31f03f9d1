//! `server`: listeners, workers, limits and timeouts.

use super::*;

impl Decoder<'_> {
    pub(super) fn server(&mut self, node: Option<&Node>) -> Server {
        let mut server = Server {
            listen: vec![Listen {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
                span: None,
            }],
            workers: Workers::Auto,
            limits: ServerLimits::default(),
            timeouts: ServerTimeouts::default(),
            shutdown_timeout: Duration::from_secs(30),
            allow_underscores_in_headers: false,
            log_format: LogFormat::Text,
            trailing_slash: TrailingSlash::Strict,
            trusted_proxies: Vec::new(),
            user: None,
            group: None,
            allow_root: false,
            watch: false,
            no_plain_listener: None,
            h2c: false,
            h2: ServerH2::default(),
        };
        let Some(node) = node else {
            return server;
        };
        let mut f = Fields::new(self.diags, node, "server");
        if let Some(n) = f.take("limits") {
            server.limits = self.server_limits(n);
        }
        if let Some(n) = f.take("timeouts") {
            let mut t = Fields::new(self.diags, n, "server.timeouts");
            let timeouts = &mut server.timeouts;
            for (key, slot) in [
                ("head", &mut timeouts.head),
                ("idle", &mut timeouts.idle),
                ("body", &mut timeouts.body),
                ("body_grace", &mut timeouts.body_grace),
                ("send_grace", &mut timeouts.send_grace),
            ] {
                if let Some(n) = t.take(key) {
                    self.positive_duration(n, &format!("server.timeouts.{key}"), slot);
                }
            }
            t.finish(
                self.diags,
                &["head", "idle", "body", "body_grace", "send_grace"],
            );
        }
        if let Some(n) = f.take("allow_underscores_in_headers")
            && let Some(b) = self.bool(n, "server.allow_underscores_in_headers")
        {
            server.allow_underscores_in_headers = b;
        }
        if let Some(n) = f.take("trusted_proxies") {
            for (text, n) in self.strings(n, "server.trusted_proxies") {
                match crate::cidr::Cidr::parse(text) {
                    Ok(c) => server.trusted_proxies.push(c),
                    Err(e) => self.value_error(n.span, e),
                }
            }
        }
        if let Some(n) = f.take("log_format")
            && let Some(s) = self.string(n, "server.log_format")
        {
            match s {
                "text" => server.log_format = LogFormat::Text,
                "json" => server.log_format = LogFormat::Json,
                _ => self.value_error(n.span, "`server.log_format` is `text` or `json`"),
            }
        }
        if let Some(n) = f.take("trailing_slash")
            && let Some(s) = self.string(n, "server.trailing_slash")
        {
            match s {
                "strict" => server.trailing_slash = TrailingSlash::Strict,
                "redirect" => server.trailing_slash = TrailingSlash::Redirect,
                "ignore" => server.trailing_slash = TrailingSlash::Ignore,
                _ => self.value_error(
                    n.span,
                    "`server.trailing_slash` is `strict`, `redirect` or `ignore`",
                ),
            }
        }
        for (key, slot) in [("user", &mut server.user), ("group", &mut server.group)] {
            if let Some(n) = f.take(key)
                && let Some(s) = self.string(n, &format!("server.{key}"))
            {
                if s.is_empty() || s.contains(['\0', ':', '/']) {
                    self.value_error(n.span, format!("`server.{key}` is a name or a number"));
                } else {
                    *slot = Some((s.to_owned(), n.span));
                }
            }
        }
        if let Some(n) = f.take("h2") {
            server.h2 = self.server_h2(n);
        }
        for (key, slot) in [
            ("allow_root", &mut server.allow_root),
            ("watch", &mut server.watch),
            ("h2c", &mut server.h2c),
        ] {
            if let Some(n) = f.take(key)
                && let Some(b) = self.bool(n, &format!("server.{key}"))
            {
                *slot = b;
            }
        }
        if let Some(n) = f.take("shutdown_timeout") {
            self.positive_duration(n, "server.shutdown_timeout", &mut server.shutdown_timeout);
        }
        if let Some(n) = f.take("listen") {
            // `[]`: no plain listener (a TLS-only gateway; checked against `tls` later).
            server.listen = match &n.kind {
                Kind::Seq(items) if items.is_empty() => {
                    server.no_plain_listener = Some(n.span);
                    Vec::new()
                }
                _ => self.listen_list(n, "server.listen"),
            };
        }
        if let Some(n) = f.take("workers") {
            match &n.kind {
                Kind::Str(s) if s == "auto" => server.workers = Workers::Auto,
                Kind::Int(i) if (1..=1024).contains(i) => {
                    server.workers = Workers::Count(usize::try_from(*i).unwrap_or(1));
                }
                Kind::Int(_) => self.value_error(n.span, "`server.workers` must be 1 to 1024"),
                _ => self.type_error(n, "server.workers", "a number or \"auto\""),
            }
        }
        f.finish(
            self.diags,
            &[
                "listen",
                "workers",
                "limits",
                "timeouts",
                "shutdown_timeout",
                "allow_underscores_in_headers",
                "trusted_proxies",
                "log_format",
                "trailing_slash",
                "user",
                "group",
                "allow_root",
                "watch",
                "h2c",
                "h2",
            ],
        );
        server
    }

    /// `server.h2`.
    fn server_h2(&mut self, node: &Node) -> ServerH2 {
        let mut h2 = ServerH2::default();
        let mut f = Fields::new(self.diags, node, "server.h2");
        if let Some(n) = f.take("enabled")
            && let Some(b) = self.bool(n, "server.h2.enabled")
        {
            h2.enabled = b;
        }
        // (key, slot, smallest, largest, with size units)
        let window = u64::from(u32::MAX >> 1);
        let table: [(&str, &mut u64, u64, u64, bool); 8] = [
            (
                "max_concurrent_streams",
                &mut h2.max_concurrent_streams,
                1,
                1 << 16,
                false,
            ),
            (
                "initial_stream_window",
                &mut h2.initial_stream_window,
                1 << 10,
                window,
                true,
            ),
            (
                "initial_connection_window",
                &mut h2.initial_connection_window,
                65_535,
                window,
                true,
            ),
            (
                "max_frame_size",
                &mut h2.max_frame_size,
                16_384,
                16_777_215,
                true,
            ),
            (
                "max_header_list_size",
                &mut h2.max_header_list_size,
                0,
                1 << 24,
                true,
            ),
            (
                "max_send_buffer_size",
                &mut h2.max_send_buffer_size,
                1 << 10,
                1 << 30,
                true,
            ),
            (
                "max_pending_accept_reset_streams",
                &mut h2.max_pending_accept_reset_streams,
                1,
                1 << 20,
                false,
            ),
            (
                "max_local_error_reset_streams",
                &mut h2.max_local_error_reset_streams,
                1,
                1 << 20,
                false,
            ),
        ];
        let mut keys = vec!["enabled"];
        for (key, slot, min, max, units) in table {
            keys.push(key);
            let Some(n) = f.take(key) else { continue };
            if let Some(v) = self.size(n, &format!("server.h2.{key}"), min, max, units) {
                *slot = v;
            }
        }
        f.finish(self.diags, &keys);
        h2
    }

    /// One address or a list, each given once.
    pub(super) fn listen_list(&mut self, n: &Node, what: &str) -> Vec<Listen> {
        let mut seen: HashMap<SocketAddr, Span> = HashMap::new();
        let mut listen = Vec::new();
        for (text, n) in self.strings(n, what) {
            match parse_listen(text) {
                Ok(addr) => {
                    if let Some(&first) = seen.get(&addr) {
                        self.diags.push(
                            Diagnostic::error(
                                codes::VALUE,
                                n.span,
                                format!("`{addr}` is listed twice"),
                            )
                            .note(first, "first listed here"),
                        );
                    } else {
                        seen.insert(addr, n.span);
                        listen.push(Listen {
                            addr,
                            span: Some(n.span),
                        });
                    }
                }
                Err(e) => self.value_error(n.span, e),
            }
        }
        if matches!(&n.kind, Kind::Seq(items) if items.is_empty()) {
            self.value_error(n.span, format!("`{what}` needs at least one address"));
        }
        listen
    }

    pub(super) fn server_limits(&mut self, node: &Node) -> ServerLimits {
        let mut limits = ServerLimits::default();
        let mut f = Fields::new(self.diags, node, "server.limits");
        // (key, slot, smallest, largest)
        let table: [(&str, &mut u64, u64, u64); 10] = [
            ("max_head", &mut limits.max_head, 1024, 1 << 24),
            ("max_uri", &mut limits.max_uri, 64, 1 << 24),
            ("max_headers", &mut limits.max_headers, 1, 128),
            ("max_body", &mut limits.max_body, 0, u64::MAX),
            (
                "max_connections",
                &mut limits.max_connections,
                1,
                10_000_000,
            ),
            (
                "max_connections_per_ip",
                &mut limits.max_connections_per_ip,
                0,
                10_000_000,
            ),
            ("head_memory", &mut limits.head_memory, 0, 1 << 40),
            ("echo_body", &mut limits.echo_body, 0, 1 << 30),
            (
                "min_body_rate",
                &mut limits.min_body_rate,
                0,
                u64::from(u32::MAX),
            ),
            (
                "min_send_rate",
                &mut limits.min_send_rate,
                0,
                u64::from(u32::MAX),
            ),
        ];
        for (key, slot, min, max) in table {
            let Some(n) = f.take(key) else { continue };
            let units = !matches!(
                key,
                "max_headers" | "max_connections" | "max_connections_per_ip"
            );
            if let Some(v) = self.size(n, &format!("server.limits.{key}"), min, max, units) {
                *slot = v;
            }
        }
        f.finish(
            self.diags,
            &[
                "max_head",
                "max_uri",
                "max_headers",
                "max_body",
                "max_connections",
                "max_connections_per_ip",
                "head_memory",
                "echo_body",
                "min_body_rate",
                "min_send_rate",
            ],
        );
        limits
    }

    pub(super) fn positive_duration(&mut self, node: &Node, what: &str, slot: &mut Duration) {
        if let Some(d) = self.duration(node, what) {
            if d.is_zero() {
                self.value_error(node.span, format!("`{what}` must be more than 0"));
            } else {
                *slot = d;
            }
        }
    }
}
