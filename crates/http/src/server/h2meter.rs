//! Control-frame floods over HTTP/2: the frames a client sends are counted as they pass on
//! their way to `h2`, and the ones that cost the server work without carrying a request
//! spend a budget the connection earns by being used.
//!
//! `h2` answers every PING and SETTINGS, applies every WINDOW_UPDATE and PRIORITY, and
//! skips empty DATA frames and frames of unknown types, without a limit: a client can keep a
//! core busy with a few kilobytes a second of them (CVE-2019-9512 ping flood, -9515 settings
//! flood, -9518 empty frames flood). What a connection spends and earns:
//!
//! - Spends 1: PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, CONTINUATION, GOAWAY,
//!   an empty DATA frame that does not end its stream (or one whose payload is only
//!   padding: any padded DATA frame of at most [`TINY_PADDED`] bytes), a frame of an unknown
//!   type.
//! - Earns: [`START`] at the start; [`PER_STREAM`] for each stream the server accepted (a
//!   HEADERS frame refused past `max_concurrent_streams` earns nothing: [`Flood::accepted`]);
//!   1 for each [`BYTES_PER_TOKEN`] bytes the server wrote (a client reading a large body
//!   sends a WINDOW_UPDATE per piece), and 1 for each write of at least [`WRITE_OF_NOTE`]
//!   bytes (a gRPC stream of small messages, each answered by the client's BDP PING; a
//!   PONG alone is shorter); [`PER_SECOND`] each second; never more than [`CAP`] banked.
//!
//! Past the budget the meter stops reading and says so; the driver closes the connection
//! with GOAWAY `ENHANCE_YOUR_CALM` (counted as `anygate_http2_flood_closes_total{reason=
//! "control"}`). What a real client does (browsers, curl, gRPC's keepalive and BDP pings,
//! a download through a 1 KiB window) stays far below it.
//!
//! The scan keeps 9 header bytes and a count of payload bytes to skip: it costs a few
//! instructions per frame and nothing per payload byte.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use anygate_runtime::time;
use anygate_runtime::transport::Transport;

/// The budget a connection starts with.
pub(crate) const START: i64 = 1_000;
/// Earned by each stream the server accepted.
pub(crate) const PER_STREAM: i64 = 16;
/// A padded DATA frame this short carries (almost) nothing.
pub(crate) const TINY_PADDED: usize = 256;
/// A write at least this long earns a token (a PONG or a SETTINGS ack is shorter).
pub(crate) const WRITE_OF_NOTE: usize = 64;
/// Bytes written for one token.
pub(crate) const BYTES_PER_TOKEN: usize = 128;
/// Earned each second.
pub(crate) const PER_SECOND: i64 = 100;
/// The most a connection banks.
pub(crate) const CAP: i64 = 100_000;

const PREFACE_LEN: usize = 24;

/// What the meter and the driver tell each other.
#[derive(Debug, Default)]
pub(crate) struct Flood {
    flooded: AtomicBool,
    /// Streams the driver accepted, not yet credited.
    accepted: AtomicU32,
}

impl Flood {
    /// Whether the client spent past its budget.
    pub(crate) fn is_flooded(&self) -> bool {
        self.flooded.load(Ordering::Relaxed)
    }

    /// The driver accepted a stream: it earns [`PER_STREAM`].
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

/// The client's byte stream, counted frame by frame (see the module docs).
pub(crate) struct Meter<T> {
    inner: T,
    /// Preface bytes still to pass (the client's connection preface is not a frame).
    preface: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
    tokens: i64,
    /// Written bytes not yet turned into tokens.
    written: usize,
    /// Writes of note not yet turned into tokens.
    writes: i64,
    refilled: Instant,
    flood: Arc<Flood>,
}

impl<T> Meter<T> {
    /// Meters `inner`, whose first bytes (from the client) are the connection preface.
    pub(crate) fn new(inner: T) -> (Self, Arc<Flood>) {
        let flood = Arc::new(Flood::default());
        let meter = Self {
            inner,
            preface: PREFACE_LEN,
            header: [0; 9],
            have: 0,
            skip: 0,
            tokens: START,
            written: 0,
            writes: 0,
            refilled: time::now(),
            flood: flood.clone(),
        };
        (meter, flood)
    }

    /// The transport itself (for the lingering close).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Counts the frames in bytes just read.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.skip = len;
                self.frame(h[3], h[4], len);
            }
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, len: usize) {
        const END_STREAM: u8 = 0x1;
        const PADDED: u8 = 0x8;
        let cost = match kind {
            // DATA: an empty one that does not end its stream carries nothing, nor does a
            // short padded one (its payload may be all padding).
            0 => i64::from(
                (len == 0 && flags & END_STREAM == 0)
                    || (flags & PADDED != 0 && len <= TINY_PADDED),
            ),
            // HEADERS: a request (credited once the server accepts its stream).
            1 => 0,
            // PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE,
            // CONTINUATION, and types h2 skips.
            _ => 1,
        };
        if cost == 0 {
            return;
        }
        self.tokens -= cost;
        if self.tokens < 0 {
            self.refill();
        }
        if self.tokens < 0 {
            self.flood.flooded.store(true, Ordering::Relaxed);
        }
    }

    /// Adds what time and writes earned.
    fn refill(&mut self) {
        let now = time::now();
        let secs =
            now.saturating_duration_since(self.refilled).as_millis() as i64 * PER_SECOND / 1000;
        if secs > 0 {
            self.refilled = now;
        }
        let streams = i64::from(self.flood.accepted.swap(0, Ordering::Relaxed));
        let earned =
            secs + (self.written / BYTES_PER_TOKEN) as i64 + self.writes + streams * PER_STREAM;
        self.written %= BYTES_PER_TOKEN;
        self.writes = 0;
        self.tokens = (self.tokens + earned).min(CAP);
    }

    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            self.written = self.written.saturating_add(*n);
            self.writes += i64::from(*n >= WRITE_OF_NOTE);
        }
    }
}

impl<T: Transport> Transport for Meter<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.flood.is_flooded() {
            // Nothing more reaches h2; the driver closes the connection.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let r = self.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.scan(&buf[..n]);
            if self.flood.is_flooded() {
                cx.waker().wake_by_ref();
            }
        }
        r
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_writev(cx, bufs);
        self.wrote(&r);
        r
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// A meter whose clock earns nothing while the test runs.
    fn meter() -> (Meter<()>, Arc<Flood>) {
        let (mut m, flood) = Meter::new(());
        m.refilled = time::now() + std::time::Duration::from_secs(3600);
        (m, flood)
    }

    #[test]
    fn frames_split_anywhere_across_reads_are_counted_once_each() {
        let (mut m, flood) = meter();
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..10 {
            wire.extend(frame(6, 0, &[0; 8]));
            wire.extend(frame(0, 0, &[7; 300]));
        }
        for piece in wire.chunks(7) {
            m.scan(piece);
        }
        assert_eq!(m.tokens, START - 10);
        assert!(!flood.is_flooded());
    }

    #[test]
    fn a_ping_flood_runs_out_and_requests_earn_budget() {
        let (mut m, flood) = meter();
        m.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let ping = frame(6, 0, &[0; 8]);
        for _ in 0..START - 1 {
            m.scan(&ping);
        }
        assert!(!flood.is_flooded());
        // A request the server accepted earns more pings; its HEADERS alone earn nothing.
        m.scan(&frame(1, 0x5, b"\x82\x86\x84\x01\x01a"));
        flood.accepted();
        for _ in 0..PER_STREAM {
            m.scan(&ping);
        }
        assert!(!flood.is_flooded());
        m.scan(&ping);
        m.scan(&ping);
        assert!(flood.is_flooded());
    }

    #[test]
    fn empty_data_frames_cost_but_ones_that_end_a_stream_or_carry_bytes_do_not() {
        let (mut m, _) = meter();
        m.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        m.scan(&frame(0, 0x1, b""));
        m.scan(&frame(0, 0, b"x"));
        assert_eq!(m.tokens, START);
        m.scan(&frame(0, 0, b""));
        m.scan(&frame(0xfa, 0, b"unknown"));
        // Padding only (pad length 0, no data), and a GOAWAY.
        m.scan(&frame(0, 0x8, b"\0"));
        m.scan(&frame(7, 0, &[0; 8]));
        assert_eq!(m.tokens, START - 4);
    }

    proptest::proptest! {
        /// Any bytes, split anywhere: no panic, and the same count as read in one piece.
        #[test]
        fn any_bytes_split_anywhere_are_counted_as_in_one_read(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..16),
        ) {
            let (mut whole, _) = meter();
            whole.scan(&bytes);
            let (mut split, _) = meter();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                split.scan(&bytes[at..c]);
                at = c;
            }
            proptest::prop_assert_eq!(whole.tokens, split.tokens);
            proptest::prop_assert_eq!(whole.skip, split.skip);
        }
    }

    #[test]
    fn bytes_written_buy_window_updates() {
        let (mut m, flood) = meter();
        m.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let update = frame(8, 0, &[0, 0, 4, 0]);
        for _ in 0..START {
            m.scan(&update);
        }
        assert!(!flood.is_flooded());
        // 10 tokens for the bytes, 1 for the write itself.
        m.wrote(&Poll::Ready(Ok(BYTES_PER_TOKEN * 10)));
        for _ in 0..11 {
            m.scan(&update);
        }
        assert!(!flood.is_flooded());
        m.scan(&update);
        assert!(flood.is_flooded());
    }
}
