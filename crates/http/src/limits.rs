//! Limits and timeouts of the HTTP/1.1 server (SPEC §9 defaults).

use std::time::Duration;

/// Most header fields a request may carry whatever the configuration says (the parser's
/// fixed header table; no allocation per request).
pub const MAX_HEADERS: usize = 128;

/// What the server accepts, and for how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields, in bytes (431 above; 414 when the request line alone
    /// does not fit).
    pub max_head: usize,
    /// Request target length (414 above).
    pub max_uri: usize,
    /// Header fields (431 above), at most [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Request body in bytes (413 above); 0 means no limit.
    pub max_body: u64,
    /// Open connections; past it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// Open connections from one client address (0: no cap); past it, the same.
    pub max_connections_per_ip: usize,
    /// Bytes that input buffers may grow by for heads larger than the first buffer, all
    /// connections together (0: no bound); a head that would need more gets 503. Each
    /// connection holds at most `max_head`, so without it 10 000 slow clients sending large
    /// heads could hold 640 MiB.
    pub head_memory: usize,
    /// From the first byte of a request head to its end (408 after it: slowloris).
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Longest pause between two reads of a request body (408 after it).
    pub body_timeout: Duration,
    /// Whether request fields whose names contain `_` are kept; by default they are dropped
    /// when the head is parsed, so that no action, filter or upstream sees them (nginx's
    /// `underscores_in_headers off`): CGI-style backends map `X_Forwarded_For` and
    /// `X-Forwarded-For` onto the same variable, and `Transfer_Encoding` onto the framing.
    pub allow_underscores: bool,
    /// The slowest a request body may arrive, on average, once its grace has passed; below
    /// it the request gets 408 and the connection closes. Each read must also come within
    /// `body_timeout` of the last.
    pub min_body_rate: MinRate,
    /// The slowest a streamed or file response may be written to the client, on average,
    /// once its grace has passed; below it the connection closes (the response is cut
    /// short). Each write must also make progress within its own timeout.
    pub min_send_rate: MinRate,
}

/// A minimum average transfer rate: after `grace`, at least `bytes_per_sec` on average
/// since the transfer began (Apache's `mod_reqtimeout` `MinRate`: every `bytes_per_sec`
/// bytes received buy one more second). `bytes_per_sec == 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second (0: no minimum).
    pub bytes_per_sec: u32,
    /// Time allowed before the rate counts.
    pub grace: Duration,
}

impl MinRate {
    /// No minimum.
    pub const OFF: Self = Self {
        bytes_per_sec: 0,
        grace: Duration::ZERO,
    };

    /// When a transfer that began at `start` and has moved `bytes` falls below the rate;
    /// `None` when there is no minimum.
    pub fn deadline(&self, start: std::time::Instant, bytes: u64) -> Option<std::time::Instant> {
        if self.bytes_per_sec == 0 {
            return None;
        }
        let earned =
            Duration::from_millis(bytes.saturating_mul(1000) / u64::from(self.bytes_per_sec));
        start.checked_add(self.grace.saturating_add(earned))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 64 * 1024,
            max_uri: 8 * 1024,
            max_headers: 100,
            max_body: 1 << 30,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            head_memory: 64 << 20,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            allow_underscores: false,
            min_body_rate: MinRate {
                bytes_per_sec: 512,
                grace: Duration::from_secs(10),
            },
            min_send_rate: MinRate {
                bytes_per_sec: 512,
                grace: Duration::from_secs(10),
            },
        }
    }
}
