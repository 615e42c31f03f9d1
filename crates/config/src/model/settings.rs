//! `static` and `proxy` settings (groups override them field by field) and `proxy.upstreams`.

use super::*;

impl Decoder<'_> {
    pub(super) fn static_settings(
        &mut self,
        node: Option<&Node>,
        section: &str,
        parent: &StaticSettings,
        top_level: bool,
    ) -> StaticSettings {
        let mut s = parent.clone();
        let Some(node) = node else {
            return s;
        };
        let mut f = Fields::new(self.diags, node, section);
        if let Some(n) = f.take("index") {
            let what = format!("{section}.index");
            let names = self.strings(n, &what);
            let mut index = Vec::new();
            for (name, n) in names {
                if name.is_empty()
                    || name.contains(['/', '\\', '\0'])
                    || name == "."
                    || name == ".."
                {
                    self.value_error(
                        n.span,
                        format!("`{name}` is not a file name (no `/`, not `.` or `..`)"),
                    );
                } else {
                    index.push(name.to_owned());
                }
            }
            s.index = index;
        }
        if let Some(n) = f.take("spa") {
            s.spa = self.bool(n, &format!("{section}.spa")).or(s.spa);
        }
        if let Some(n) = f.take("listing") {
            s.listing = self
                .bool(n, &format!("{section}.listing"))
                .unwrap_or(s.listing);
        }
        if let Some(n) = f.take("cache") {
            let sub = format!("{section}.cache");
            let mut c = Fields::new(self.diags, n, &sub);
            for (key, slot) in [
                ("html", &mut s.cache.html),
                ("fingerprinted", &mut s.cache.fingerprinted),
                ("default", &mut s.cache.default),
            ] {
                let Some(n) = c.take(key) else { continue };
                let Some(v) = self.string(n, &format!("{sub}.{key}")) else {
                    continue;
                };
                if v.bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
                {
                    *slot = v.trim().to_owned();
                } else {
                    self.value_error(
                        n.span,
                        format!("`{sub}.{key}` must be printable ASCII (a header value)"),
                    );
                }
            }
            c.finish(self.diags, &["html", "fingerprinted", "default"]);
        }
        if let Some(n) = f.take("compress") {
            s.compress = self
                .bool(n, &format!("{section}.compress"))
                .unwrap_or(s.compress);
        }
        for (key, slot, max) in [
            ("compress_min", &mut s.compress_min, 1u64 << 30),
            ("memory_file_max", &mut s.memory_file_max, 1 << 30),
        ] {
            if let Some(n) = f.take(key)
                && let Some(v) = self.size(n, &format!("{section}.{key}"), 0, max, true)
            {
                *slot = v;
            }
        }
        if let Some((k, n)) = f.take_entry("memory_total_max") {
            if top_level {
                if let Some(v) =
                    self.size(n, &format!("{section}.memory_total_max"), 0, 1 << 40, true)
                {
                    s.memory_total_max = v;
                }
            } else {
                self.value_error(
                    k.span,
                    "`static.memory_total_max` can only be set at the top level (the cache is shared by every rule)",
                );
            }
        }
        if let Some(n) = f.take("revalidate") {
            let what = format!("{section}.revalidate");
            if let Some(d) = self.duration(n, &what) {
                s.revalidate = d;
            }
        }
        f.finish(
            self.diags,
            &[
                "index",
                "spa",
                "listing",
                "cache",
                "compress",
                "compress_min",
                "memory_file_max",
                "memory_total_max",
                "revalidate",
            ],
        );
        s
    }

    pub(super) fn proxy_settings(
        &mut self,
        node: Option<&Node>,
        top_level: bool,
        parent: &ProxySettings,
    ) -> ProxySettings {
        let section = "proxy";
        let mut p = parent.clone();
        let Some(node) = node else {
            return p;
        };
        let mut f = Fields::new(self.diags, node, section);
        if let Some(n) = f.take("timeouts") {
            let sub = format!("{section}.timeouts");
            let mut t = Fields::new(self.diags, n, &sub);
            for (key, slot) in [
                ("connect", &mut p.timeouts.connect),
                ("read", &mut p.timeouts.read),
                ("write", &mut p.timeouts.write),
            ] {
                if let Some(n) = t.take(key) {
                    self.positive_duration(n, &format!("{sub}.{key}"), slot);
                }
            }
            if let Some(n) = t.take("total") {
                if n.as_str() == Some("off") {
                    p.timeouts.total = None;
                } else if let Some(d) = self.duration(n, &format!("{sub}.total")) {
                    p.timeouts.total = (!d.is_zero()).then_some(d);
                }
            }
            t.finish(self.diags, &["connect", "read", "write", "total"]);
        }
        if let Some(n) = f.take("host")
            && let Some(v) = self.string(n, &format!("{section}.host"))
        {
            p.host = match v {
                "upstream" => HostHeader::Upstream,
                "client" => HostHeader::Client,
                v if !v.is_empty() && v.bytes().all(is_host_byte) => {
                    HostHeader::Fixed(v.to_owned())
                }
                _ => {
                    self.value_error(
                        n.span,
                        "`proxy.host` must be `upstream`, `client` or a host name (with an optional port)",
                    );
                    p.host
                }
            };
        }
        if let Some(n) = f.take("via") {
            p.via = self.bool(n, &format!("{section}.via")).unwrap_or(p.via);
        }
        if let Some(n) = f.take("allow_encoded_traversal") {
            p.allow_encoded_traversal = self
                .bool(n, &format!("{section}.allow_encoded_traversal"))
                .unwrap_or(p.allow_encoded_traversal);
        }
        if let Some(n) = f.take("client_cert_header")
            && let Some(v) = self.string(n, &format!("{section}.client_cert_header"))
        {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                p.client_cert_header = Some(v.to_ascii_lowercase());
            } else {
                self.value_error(
                    n.span,
                    "`proxy.client_cert_header` must be a header name (letters, digits, `-`)",
                );
            }
        }
        for (key, slot) in [
            ("max_idle", &mut p.max_idle),
            ("max_conns", &mut p.max_conns),
        ] {
            if let Some(n) = f.take(key)
                && let Some(v) = self.size(n, &format!("{section}.{key}"), 0, 1 << 20, false)
            {
                *slot = v as usize;
            }
        }
        for (key, slot) in [
            ("idle_timeout", &mut p.idle_timeout),
            ("dns_ttl", &mut p.dns_ttl),
        ] {
            if let Some(n) = f.take(key) {
                self.positive_duration(n, &format!("{section}.{key}"), slot);
            }
        }
        if let Some(n) = f.take("retries") {
            self.retries(n, top_level, &mut p.retries);
        }
        if let Some(n) = f.take("retry_body_limit")
            && let Some(v) = self.size(n, "proxy.retry_body_limit", 0, 1 << 30, true)
        {
            p.retry_body_limit = v;
        }
        // `upstreams` is read by `upstreams()` at the top level; in a group it is an error.
        if let Some((k, _)) = f.take_entry("upstreams")
            && !top_level
        {
            self.value_error(
                k.span,
                "`proxy.upstreams` can only be defined at the top level",
            );
        }
        f.finish(
            self.diags,
            &[
                "timeouts",
                "upstreams",
                "host",
                "via",
                "allow_encoded_traversal",
                "client_cert_header",
                "retries",
                "retry_body_limit",
                "max_idle",
                "max_conns",
                "idle_timeout",
                "dns_ttl",
            ],
        );
        p
    }

    pub(super) fn upstreams(&mut self, proxy: Option<&Node>) -> Vec<Upstream> {
        let Some(Kind::Map(entries)) = proxy.map(|n| &n.kind) else {
            return Vec::new();
        };
        let Some((_, node)) = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("upstreams"))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut pools = Fields::new(self.diags, node, "proxy.upstreams");
        for (k, v) in pools.unique_entries() {
            let Some(name) = k.as_str() else { continue };
            // Host names are case-insensitive, and the DSL lower-cases proxy hosts.
            let name = name.to_ascii_lowercase();
            if out.iter().any(|u: &Upstream| u.name == name) {
                self.value_error(
                    k.span,
                    format!("pool `{name}` is defined twice (names ignore case)"),
                );
                continue;
            }
            let name = name.as_str();
            if !is_pool_name(name) {
                self.value_error(
                    k.span,
                    format!("`{name}` is not a valid pool name (letters, digits, `-`, `_`, `.`)"),
                );
                continue;
            }
            let what = format!("proxy.upstreams.{name}");
            let mut f = Fields::new(self.diags, v, &what);
            let mut targets = Vec::new();
            match f.take("targets") {
                Some(n) => self.targets(n, &what, &mut targets),
                None => self.value_error(k.span, format!("`{what}` needs `targets`")),
            }
            let tls = f
                .take("tls")
                .map(|n| self.upstream_tls(n, &format!("{what}.tls")));
            let balance_node = f.take("balance");
            let hash_key_node = f.take("hash_key");
            let balance = self.balance(balance_node, hash_key_node, &what);
            if balance == Balance::RoundRobin
                && let Some(t) = targets.iter().find(|t| t.weight != 1)
            {
                self.value_error(
                    t.span,
                    format!("`{what}`: weights need `balance: weighted` (or least_conn, random, hash); round_robin takes each target in turn"),
                );
            }
            let mut slow_start = Duration::ZERO;
            if let Some(n) = f.take("slow_start")
                && let Some(d) = self.duration(n, &format!("{what}.slow_start"))
            {
                if matches!(balance, Balance::Hash(_)) && !d.is_zero() {
                    self.value_error(
                        n.span,
                        format!("`{what}.slow_start` cannot be used with `balance: hash` (it would move keys between targets)"),
                    );
                } else {
                    slow_start = d;
                }
            }
            let protocol = match f
                .take("protocol")
                .and_then(|n| self.string(n, &format!("{what}.protocol")).map(|s| (s, n)))
            {
                None | Some(("h1", _)) => UpstreamProtocol::H1,
                Some(("h2", _)) => UpstreamProtocol::H2,
                Some(("auto", _)) => UpstreamProtocol::Auto,
                Some((other, n)) => {
                    self.value_error(
                        n.span,
                        format!("`{what}.protocol` is h1, h2 or auto, not `{other}`"),
                    );
                    UpstreamProtocol::H1
                }
            };
            let health = f
                .take("health")
                .and_then(|n| self.health(n, &format!("{what}.health")));
            let outlier = f
                .take("outlier")
                .and_then(|n| self.outlier(n, &format!("{what}.outlier")));
            let breaker = f
                .take("breaker")
                .and_then(|n| self.breaker(n, &format!("{what}.breaker")));
            if !targets.is_empty() && targets.iter().all(|t| t.backup) {
                self.value_error(
                    k.span,
                    format!("`{what}` needs a target that is not `backup`"),
                );
            }
            f.finish(
                self.diags,
                &[
                    "targets",
                    "tls",
                    "balance",
                    "hash_key",
                    "slow_start",
                    "protocol",
                    "health",
                    "outlier",
                    "breaker",
                ],
            );
            out.push(Upstream {
                name: name.to_owned(),
                targets,
                tls,
                balance,
                slow_start,
                protocol,
                health,
                outlier,
                breaker,
                span: k.span,
            });
        }
        out
    }

    /// `targets`: `"host:port"` strings or `{ addr: "host:port", weight: N }` maps.
    fn targets(&mut self, n: &Node, what: &str, out: &mut Vec<Target>) {
        let items: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            let mut backup = false;
            let (text, weight) = match &item.kind {
                Kind::Str(s) => ((s.as_str(), item), 1),
                Kind::Map(_) => {
                    let mut t = Fields::new(self.diags, item, &format!("{what}.targets"));
                    let addr = t.take("addr");
                    let weight = t.take("weight");
                    if let Some(b) = t.take("backup") {
                        backup = self
                            .bool(b, &format!("{what}.targets.backup"))
                            .unwrap_or(false);
                    }
                    t.finish(self.diags, &["addr", "weight", "backup"]);
                    let Some(addr) = addr else {
                        self.value_error(item.span, format!("a target of `{what}` needs `addr`"));
                        continue;
                    };
                    let Some(text) = self.string(addr, &format!("{what}.targets.addr")) else {
                        continue;
                    };
                    let weight = match weight.map(|w| &w.kind) {
                        None => 1,
                        Some(Kind::Int(i)) if (1..=i64::from(MAX_WEIGHT)).contains(i) => {
                            u32::try_from(*i).unwrap_or(1)
                        }
                        Some(_) => {
                            let w = weight.map_or(item.span, |w| w.span);
                            self.value_error(
                                w,
                                format!("`weight` is a whole number from 1 to {MAX_WEIGHT}"),
                            );
                            continue;
                        }
                    };
                    ((text, addr), weight)
                }
                _ => {
                    self.type_error(
                        item,
                        &format!("{what}.targets"),
                        "\"host:port\" or { addr, weight, backup }",
                    );
                    continue;
                }
            };
            match parse_target(text.0) {
                Ok((host, port)) => out.push(Target {
                    host,
                    port,
                    weight,
                    backup,
                    span: text.1.span,
                }),
                Err(e) => self.value_error(text.1.span, e),
            }
        }
    }

    /// `balance` and `hash_key`.
    fn balance(&mut self, balance: Option<&Node>, hash_key: Option<&Node>, what: &str) -> Balance {
        let name = balance.and_then(|n| self.string(n, &format!("{what}.balance")).map(|s| (s, n)));
        let b = match name {
            None | Some(("round_robin", _)) => Balance::RoundRobin,
            Some(("weighted", _)) => Balance::Weighted,
            Some(("least_conn", _)) => Balance::LeastConn,
            Some(("random", _)) => Balance::Random,
            Some(("hash", _)) => Balance::Hash(HashKey::ClientIp),
            Some((other, n)) => {
                self.value_error(
                    n.span,
                    format!("`{what}.balance` is round_robin, weighted, least_conn, random or hash, not `{other}`"),
                );
                Balance::RoundRobin
            }
        };
        let Some(k) = hash_key else { return b };
        let Some(text) = self.string(k, &format!("{what}.hash_key")) else {
            return b;
        };
        let key = match text.split_once(':') {
            None if text == "client_ip" => HashKey::ClientIp,
            None if text == "path" => HashKey::Path,
            Some(("header", name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(&c)) =>
            {
                HashKey::Header(name.to_ascii_lowercase())
            }
            Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ', ',']) => {
                HashKey::Cookie(name.to_owned())
            }
            _ => {
                self.value_error(
                    k.span,
                    format!("`{what}.hash_key` is client_ip, path, header:NAME or cookie:NAME, not `{text}`"),
                );
                return b;
            }
        };
        match b {
            Balance::Hash(_) => Balance::Hash(key),
            other => {
                self.value_error(k.span, format!("`{what}.hash_key` needs `balance: hash`"));
                other
            }
        }
    }
}

impl Decoder<'_> {
    /// `proxy.retries`.
    fn retries(&mut self, n: &Node, top_level: bool, r: &mut Retries) {
        let what = "proxy.retries";
        let mut f = Fields::new(self.diags, n, what);
        if let Some(n) = f.take("attempts") {
            match n.kind {
                Kind::Int(i) if (1..=10).contains(&i) => r.attempts = i as u32,
                _ => self.value_error(
                    n.span,
                    "`proxy.retries.attempts` is a whole number from 1 (no retries) to 10",
                ),
            }
        }
        if let Some(n) = f.take("on") {
            let items: Vec<&Node> = match &n.kind {
                Kind::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            let mut on = Vec::new();
            for item in items {
                let text = match &item.kind {
                    Kind::Int(i) => i.to_string(),
                    Kind::Str(s) => s.clone(),
                    _ => {
                        self.type_error(item, "proxy.retries.on", "a list of conditions");
                        continue;
                    }
                };
                let cond = match text.as_str() {
                    "connect_failure" => RetryOn::ConnectFailure,
                    "reset" => RetryOn::Reset,
                    "timeout" => RetryOn::Timeout,
                    "502" => RetryOn::Status(502),
                    "503" => RetryOn::Status(503),
                    "504" => RetryOn::Status(504),
                    other => {
                        self.value_error(
                            item.span,
                            format!("`proxy.retries.on` takes connect_failure, reset, timeout, 502, 503 and 504, not `{other}`"),
                        );
                        continue;
                    }
                };
                if !on.contains(&cond) {
                    on.push(cond);
                }
            }
            r.on = on;
        }
        for key in ["budget", "min_retries_per_s"] {
            let Some((k, n)) = f.take_entry(key) else {
                continue;
            };
            if !top_level {
                self.value_error(
                    k.span,
                    format!("`proxy.retries.{key}` can only be set at the top level (each pool has one budget)"),
                );
                continue;
            }
            if key == "budget" {
                if let Some(x) = self.fraction(n, "proxy.retries.budget") {
                    r.budget_per_mille = (x * 1000.0).round() as u32;
                }
            } else {
                match n.kind {
                    Kind::Int(i) if (0..=10_000).contains(&i) => r.min_retries_per_s = i as u32,
                    _ => self.value_error(
                        n.span,
                        "`proxy.retries.min_retries_per_s` is a whole number from 0 to 10000",
                    ),
                }
            }
        }
        if let Some(n) = f.take("backoff")
            && let Some(text) = self.string(n, "proxy.retries.backoff")
        {
            let parsed = text.split_once("..").and_then(|(a, b)| {
                let a = crate::duration::parse(a.trim()).ok()?;
                let b = crate::duration::parse(b.trim()).ok()?;
                (a <= b && !b.is_zero()).then_some((a, b))
            });
            match parsed {
                Some(v) => r.backoff = v,
                None => self.value_error(
                    n.span,
                    "`proxy.retries.backoff` is `FIRST..MAX` (durations, FIRST no more than MAX), such as `25ms..1s`",
                ),
            }
        }
        if let Some(n) = f.take("non_idempotent") {
            r.non_idempotent = self
                .bool(n, "proxy.retries.non_idempotent")
                .unwrap_or(r.non_idempotent);
        }
        f.finish(
            self.diags,
            &[
                "attempts",
                "on",
                "budget",
                "min_retries_per_s",
                "backoff",
                "non_idempotent",
            ],
        );
    }

    /// A share from 0 to 1: a number, or a percentage such as `"20%"`.
    fn fraction(&mut self, n: &Node, what: &str) -> Option<f64> {
        let x = match &n.kind {
            Kind::Int(i) => *i as f64,
            Kind::Float(x) => *x,
            Kind::Str(s) => match s.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(p)) => p / 100.0,
                _ => f64::NAN,
            },
            _ => f64::NAN,
        };
        if (0.0..=1.0).contains(&x) {
            Some(x)
        } else {
            self.value_error(
                n.span,
                format!("`{what}` is a share from 0 to 1, or a percentage such as `20%`"),
            );
            None
        }
    }

    /// A whole number within `min..=max`.
    fn whole(&mut self, n: &Node, what: &str, min: i64, max: i64) -> Option<u32> {
        match n.kind {
            Kind::Int(i) if (min..=max).contains(&i) => u32::try_from(i).ok(),
            _ => {
                self.value_error(
                    n.span,
                    format!("`{what}` is a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    /// `health`.
    fn health(&mut self, n: &Node, what: &str) -> Option<HealthCheck> {
        let mut h = HealthCheck {
            kind: HealthKind::Http,
            path: "/".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            expect: vec![(200, 399)],
            fall: 3,
            rise: 2,
        };
        let mut f = Fields::new(self.diags, n, what);
        if let Some(n) = f.take("type")
            && let Some(t) = self.string(n, &format!("{what}.type"))
        {
            h.kind = match t {
                "http" => HealthKind::Http,
                "tcp" => HealthKind::Tcp,
                "websocket" => HealthKind::WebSocket,
                other => {
                    self.value_error(
                        n.span,
                        format!("`{what}.type` is http, tcp or websocket, not `{other}`"),
                    );
                    HealthKind::Http
                }
            };
        }
        if let Some(n) = f.take("path")
            && let Some(p) = self.string(n, &format!("{what}.path"))
        {
            if h.kind == HealthKind::Tcp {
                self.value_error(
                    n.span,
                    format!("`{what}.path` means nothing to a tcp check"),
                );
            } else if p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic()) {
                h.path = p.to_owned();
            } else {
                self.value_error(
                    n.span,
                    format!(
                        "`{what}.path` must start with `/` and hold no spaces or control characters"
                    ),
                );
            }
        }
        for (key, slot) in [("interval", &mut h.interval), ("timeout", &mut h.timeout)] {
            if let Some(n) = f.take(key) {
                self.positive_duration(n, &format!("{what}.{key}"), slot);
            }
        }
        if let Some(n) = f.take("expect") {
            if h.kind != HealthKind::Http {
                self.value_error(n.span, format!("`{what}.expect` is for http checks"));
            } else if let Some(ranges) = self.statuses(n, &format!("{what}.expect")) {
                h.expect = ranges;
            }
        }
        for (key, slot) in [("fall", &mut h.fall), ("rise", &mut h.rise)] {
            if let Some(n) = f.take(key)
                && let Some(v) = self.whole(n, &format!("{what}.{key}"), 1, 100)
            {
                *slot = v;
            }
        }
        f.finish(
            self.diags,
            &[
                "type", "path", "interval", "timeout", "expect", "fall", "rise",
            ],
        );
        Some(h)
    }

    /// Statuses: `200`, `"200-399"`, or a list of them.
    fn statuses(&mut self, n: &Node, what: &str) -> Option<Vec<(u16, u16)>> {
        let items: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        let mut out = Vec::new();
        for item in items {
            let range = match &item.kind {
                Kind::Int(i) => u16::try_from(*i).ok().map(|s| (s, s)),
                Kind::Str(s) => match s.split_once('-') {
                    Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
                    None => s.trim().parse().ok().map(|s: u16| (s, s)),
                },
                _ => None,
            };
            match range {
                Some((a, b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => {
                    out.push((a, b));
                }
                _ => {
                    self.value_error(
                        item.span,
                        format!(
                            "`{what}` takes statuses (100 to 599) and ranges such as `200-399`"
                        ),
                    );
                    return None;
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// `outlier`.
    fn outlier(&mut self, n: &Node, what: &str) -> Option<OutlierDetection> {
        let mut o = OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejected_percent: 50,
        };
        let mut f = Fields::new(self.diags, n, what);
        if let Some(n) = f.take("consecutive_failures")
            && let Some(v) = self.whole(n, &format!("{what}.consecutive_failures"), 1, 1000)
        {
            o.consecutive_failures = v;
        }
        if let Some(n) = f.take("base_ejection") {
            self.positive_duration(n, &format!("{what}.base_ejection"), &mut o.base_ejection);
        }
        if let Some(n) = f.take("max_ejected_percent")
            && let Some(v) = self.whole(n, &format!("{what}.max_ejected_percent"), 0, 100)
        {
            o.max_ejected_percent = v;
        }
        f.finish(
            self.diags,
            &[
                "consecutive_failures",
                "base_ejection",
                "max_ejected_percent",
            ],
        );
        Some(o)
    }

    /// `breaker`.
    fn breaker(&mut self, n: &Node, what: &str) -> Option<CircuitBreaker> {
        let mut b = CircuitBreaker {
            failure_ratio_per_mille: 500,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(15),
            max_pending: 0,
        };
        let mut f = Fields::new(self.diags, n, what);
        if let Some(n) = f.take("failure_ratio")
            && let Some(x) = self.fraction(n, &format!("{what}.failure_ratio"))
        {
            if x == 0.0 {
                self.value_error(
                    n.span,
                    format!("`{what}.failure_ratio` must be more than 0"),
                );
            } else {
                b.failure_ratio_per_mille = ((x * 1000.0).round() as u32).max(1);
            }
        }
        if let Some(n) = f.take("min_requests")
            && let Some(v) = self.whole(n, &format!("{what}.min_requests"), 1, 1_000_000)
        {
            b.min_requests = v;
        }
        for (key, slot) in [("window", &mut b.window), ("open_for", &mut b.open_for)] {
            if let Some(n) = f.take(key) {
                self.positive_duration(n, &format!("{what}.{key}"), slot);
            }
        }
        if let Some(n) = f.take("max_pending")
            && let Some(v) = self.whole(n, &format!("{what}.max_pending"), 0, 1 << 20)
        {
            b.max_pending = v;
        }
        f.finish(
            self.diags,
            &[
                "failure_ratio",
                "min_requests",
                "window",
                "open_for",
                "max_pending",
            ],
        );
        Some(b)
    }
}

/// The largest `weight` of a target.
pub const MAX_WEIGHT: u32 = 1000;
