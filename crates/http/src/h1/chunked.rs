//! The chunked transfer coding (RFC 9112 §7.1), decoded and encoded.
//!
//! The decoder is an explicit state machine fed any split of the input: it returns how many
//! bytes it consumed and where the next run of body data is, without copying. It is strict:
//! CRLF everywhere (a bare LF is an error), hex sizes of at most 15 digits, chunk extensions
//! and trailer fields skipped but bounded.

use std::ops::Range;

/// Longest chunk extension accepted on one size line.
const MAX_EXTENSION: usize = 4096;
/// Most bytes of trailer fields accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// A malformed chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` so far.
    Size { digits: u8 },
    /// Whitespace after the size (`len` bytes of it): only more whitespace, `;` or CR may
    /// follow.
    SizeWs { len: usize },
    /// After `;`: extension bytes until CR.
    Extension { len: usize },
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting the LF that ends a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used (framing and data).
    pub consumed: usize,
    /// Where body data is in the input (empty when there is none in this call).
    pub data: Range<usize>,
    /// Where trailer field lines (each with its CRLF) are in the input: the trailer section
    /// as far as this call read it (empty when there is none). A relay collects them across
    /// calls, checks them, and writes them again.
    pub trailer: Range<usize>,
}

/// A chunked-body decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes left in the current chunk (or the size being read).
    remaining: u64,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            remaining: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`. Stops after the first run of data (so the caller
    /// can use it before the next call), at the end of the input, or when the body is done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        let mut i = 0;
        let mut trailer = 0..0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(ChunkError);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(ChunkError),
                    None if b == b';' => self.state = State::Extension { len: 1 },
                    None if b == b' ' || b == b'\t' => self.state = State::SizeWs { len: 1 },
                    None if b == b'\r' => self.state = State::SizeLf,
                    None => return Err(ChunkError),
                },
                // `5 6` or `5 junk` must not read as size 5: after whitespace (BWS) only an
                // extension or the end of the line.
                State::SizeWs { len } => match b {
                    _ if len >= MAX_EXTENSION => return Err(ChunkError),
                    b' ' | b'\t' => self.state = State::SizeWs { len: len + 1 },
                    b';' => self.state = State::Extension { len: 1 },
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkError),
                },
                // Extension names, values and quoted strings are visible ASCII and
                // whitespace; control bytes are refused.
                State::Extension { len } => match b {
                    b'\r' => self.state = State::SizeLf,
                    _ if len >= MAX_EXTENSION => return Err(ChunkError),
                    // Visible ASCII, whitespace, and obs-text (allowed in quoted strings).
                    b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff => {
                        self.state = State::Extension { len: len + 1 };
                    }
                    _ => return Err(ChunkError),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = avail.min(self.remaining) as usize;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + n,
                        data: i..i + n,
                        trailer: 0..0,
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.count_trailer()?;
                    self.state = match b {
                        b'\r' => State::EndLf,
                        b'\n' => return Err(ChunkError),
                        _ => {
                            extend(&mut trailer, i);
                            State::Trailer
                        }
                    };
                }
                State::Trailer => {
                    self.count_trailer()?;
                    extend(&mut trailer, i);
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(ChunkError),
                        _ => {}
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    extend(&mut trailer, i);
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Done;
                    return Ok(Decoded {
                        consumed: i + 1,
                        data: 0..0,
                        trailer,
                    });
                }
                State::Done => {
                    return Ok(Decoded {
                        consumed: i,
                        data: 0..0,
                        trailer,
                    });
                }
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: 0..0,
            trailer,
        })
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(ChunkError);
        }
        Ok(())
    }
}

/// Grows `range` (empty: not started) to take in byte `i` (trailer bytes are contiguous).
fn extend(range: &mut Range<usize>, i: usize) {
    if range.start == range.end {
        *range = i..i + 1;
    } else {
        range.end = i + 1;
    }
}

/// Fields that must not come as trailers (RFC 9110 §6.5.1: framing, routing, connection
/// control, authentication, and what describes the content): a recipient that merged them
/// into the head would let the body's sender change them after the fact.
const NOT_TRAILERS: [&[u8]; 14] = [
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"upgrade",
    b"authorization",
    b"set-cookie",
    b"content-encoding",
    b"content-type",
    b"content-range",
    b"location",
];

/// Whether `lines` (trailer field lines, each ending in CRLF) are all well-formed fields
/// that may come as trailers: a token, `:`, a value of visible characters, spaces and
/// tabs, and none of the fields RFC 9110 keeps out of trailers (`Content-Length`, `Host`,
/// `Set-Cookie`, ...). A relay drops a trailer section that is not.
pub fn valid_trailers(lines: &[u8]) -> bool {
    let Some(body) = lines.strip_suffix(b"\r\n") else {
        return lines.is_empty();
    };
    body.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        crate::message::is_token(name)
            && !NOT_TRAILERS.iter().any(|n| name.eq_ignore_ascii_case(n))
            && value
                .iter()
                .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes the size line of a chunk of `len` bytes (`HEX\r\n`, lower-case hex) into `out`;
/// returns its length.
pub fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let d = &digits[i..];
    out[..d.len()].copy_from_slice(d);
    out[d.len()..d.len() + 2].copy_from_slice(b"\r\n");
    d.len() + 2
}

/// Appends `data` as one chunk (nothing for empty data: an empty chunk would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut line = [0u8; 18];
    let n = chunk_size_line(data.len(), &mut line);
    out.extend_from_slice(&line[..n]);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section.
pub fn encode_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}
