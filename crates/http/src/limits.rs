//! Limits and timeouts of the HTTP server (SPEC §9 defaults).

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
    /// HTTP/2 (`server.h2.*`).
    pub h2: Http2,
}

/// HTTP/2 settings (`server.h2.*`; SPEC §9). The SETTINGS values are sent to every client;
/// the reset limits bound what a misbehaving one can make the server do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2 {
    /// Offer `h2` by ALPN on TLS listeners.
    pub enabled: bool,
    /// Accept HTTP/2 with prior knowledge (the client starts with the connection preface)
    /// on plain listeners (`server.h2c`).
    pub h2c: bool,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: what a client may send on one stream before the
    /// server reads it.
    pub initial_stream_window: u32,
    /// The connection's receive window (all streams together).
    pub initial_connection_window: u32,
    /// `SETTINGS_MAX_FRAME_SIZE` (16 384 ..= 16 777 215).
    pub max_frame_size: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, decoded (an HPACK bomb stops here); 0: `max_head`.
    pub max_header_list_size: u32,
    /// Bytes buffered per stream for a client that does not read (above it the stream
    /// waits).
    pub max_send_buffer_size: usize,
    /// Streams the client reset before the server accepted them that are remembered
    /// (rapid reset, CVE-2023-44487): past it the connection is closed with
    /// `ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because of a client's error before it closes the
    /// connection (MadeYouReset).
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2 {
    fn default() -> Self {
        Self {
            enabled: true,
            h2c: false,
            max_concurrent_streams: 128,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_header_list_size: 0,
            max_send_buffer_size: 256 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
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
            h2: Http2::default(),
        }
    }
}
