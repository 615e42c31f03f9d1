#!/usr/bin/env python3
"""RFC 9113 server conformance, after h2spec's sections, against an h2c (prior knowledge)
listener: each case crafts frames by hand on a fresh connection and checks the server's
answer (a connection error: GOAWAY with a code, or the connection closed; a stream error:
RST_STREAM with a code; or a normal answer). h2spec itself cannot be built here (no Go
module proxy); the standard library is all this needs.

    tests/h2_conformance.py 127.0.0.1:8080 [--verbose]

Prints one line per case that is not a pass, and `N/M passed, K known deviations, F
failed`; exits 1 if any case failed. A known deviation is where the `h2` crate (0.4.20)
answers differently from the RFC in a way listed with the case (it closes the connection
with PROTOCOL_ERROR where the RFC names FRAME_SIZE_ERROR, COMPRESSION_ERROR,
FLOW_CONTROL_ERROR or STREAM_CLOSED; it accepts a PING before the client's SETTINGS): the
connection still ends, so none of them lets a peer do more than it should. Bounded: every
read times out after 5 s.
"""
import socket
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
         9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, kind, flags, stream & 0x7FFFFFFF) + payload


def literal(index, value):
    """A header field as a literal without indexing, its name from the static table."""
    v = value.encode()
    return bytes([index]) + bytes([len(v)]) + v


def literal_new(name, value):
    """A header field as a literal without indexing, with a new name."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


# GET / (static indices: 2 :method GET, 6 :scheme http, 4 :path /) and :authority.
GET = b"\x82\x86\x84" + literal(1, "localhost")
POST = b"\x83\x86\x84" + literal(1, "localhost")


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), 5)
        self.s.settimeout(5)
        self.buf = b""
        self.closed = False

    def send(self, *frames):
        try:
            self.s.sendall(b"".join(frames))
        except OSError:
            self.closed = True

    def start(self, settings=b""):
        """The preface, our SETTINGS, and the server's SETTINGS acknowledged."""
        self.send(PREFACE, frame(SETTINGS, 0, 0, settings))
        while True:
            f = self.next()
            if f is None:
                raise RuntimeError("closed during the handshake")
            if f[0] == SETTINGS and not f[1] & ACK:
                self.send(frame(SETTINGS, ACK, 0))
                return

    def next(self):
        """The next frame (type, flags, stream, payload); None when the connection closed."""
        while True:
            if len(self.buf) >= 9:
                n = (self.buf[0] << 16) | (self.buf[1] << 8) | self.buf[2]
                if len(self.buf) >= 9 + n:
                    head, self.buf = self.buf[:9 + n], self.buf[9 + n:]
                    stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
                    return head[3], head[4], stream, head[9:]
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                raise RuntimeError("no answer within 5 s")
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk

    def outcome(self, stream=None):
        """What the server did: ("goaway", code), ("closed", None), ("rst", code) on
        `stream`, ("headers", status) on `stream`, or ("ping", payload)."""
        while True:
            f = self.next()
            if f is None:
                return ("closed", None)
            kind, flags, sid, payload = f
            if kind == GOAWAY:
                return ("goaway", struct.unpack(">I", payload[4:8])[0])
            if kind == RST_STREAM and (stream is None or sid == stream):
                return ("rst", struct.unpack(">I", payload[:4])[0])
            if kind == HEADERS and sid == stream:
                return ("headers", payload)
            if kind == PING and flags & ACK:
                return ("ping", payload)

    def close(self):
        self.s.close()


def connection_error(code):
    """Accepts GOAWAY with `code`, or a close right away."""
    return lambda o: o == ("goaway", code) or o[0] == "closed"


def stream_error(code):
    """Accepts RST_STREAM with `code`, or the connection error with it."""
    return lambda o: o in (("rst", code), ("goaway", code)) or o[0] == "closed"


def pinged(o):
    return o == ("ping", b"h2spec!!")


CASES = []


def case(section, name, expect, known=None):
    """A case: `expect` says what RFC 9113 asks for; `known` is what the h2 crate (0.4.20)
    answers instead where it differs (another error code for a connection it does close,
    or a leniency): such a case counts as a known deviation, not a failure, as long as the
    answer is exactly that one (a change either way shows)."""
    def register(f):
        CASES.append((section, name, f, expect, known))
        return f
    return register


# --- 3.4 / 3.5 Connection preface ------------------------------------------------------

@case("3.5", "an invalid connection preface", connection_error(PROTOCOL_ERROR))
def _(c):
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", frame(SETTINGS, 0, 0))
    return None


@case("3.5", "the preface followed by a frame other than SETTINGS", connection_error(PROTOCOL_ERROR),
      known=("ping", b"h2spec!!"))
def _(c):
    c.send(PREFACE, frame(PING, 0, 0, b"h2spec!!"))
    return None


# --- 4.1 / 4.2 Frame format and size ---------------------------------------------------

@case("4.1", "a frame of an unknown type is ignored", pinged)
def _(c):
    c.start()
    c.send(frame(0x16, 0, 0, b"ignored"), frame(PING, 0, 0, b"h2spec!!"))


@case("4.1", "unknown flags are ignored", pinged)
def _(c):
    c.start()
    c.send(frame(PING, 0x16, 0, b"h2spec!!"))


@case("4.2", "DATA larger than SETTINGS_MAX_FRAME_SIZE", stream_error(FRAME_SIZE_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST), frame(DATA, 0, 1, b"x" * 16385))
    return 1


@case("4.2", "HEADERS larger than SETTINGS_MAX_FRAME_SIZE", connection_error(FRAME_SIZE_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + b"\x00" * 16400))
    return 1


# --- 4.3 Header compression --------------------------------------------------------------

@case("4.3", "a header block that cannot be decoded", connection_error(COMPRESSION_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\x0f"))
    return 1


@case("4.3", "a field from an index beyond the tables", connection_error(COMPRESSION_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + b"\xfe"))
    return 1


# --- 5.1 Stream states ----------------------------------------------------------------

@case("5.1", "DATA on an idle stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(DATA, END_STREAM, 1, b"x"))


@case("5.1", "RST_STREAM on an idle stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))


@case("5.1", "WINDOW_UPDATE on an idle stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))


@case("5.1", "DATA on a half-closed (remote) stream", stream_error(STREAM_CLOSED),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    # A POST that waits for its body: END_STREAM on HEADERS closes our side, then DATA.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, POST), frame(DATA, 0, 1, b"late"))
    return 1


@case("5.1.1", "a stream id from the client that is even", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 2, GET))


@case("5.1.1", "a stream id lower than one used before", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, GET), frame(HEADERS, END_HEADERS | END_STREAM, 3, GET))


@case("5.1.2", "more streams than SETTINGS_MAX_CONCURRENT_STREAMS", stream_error(REFUSED_STREAM))
def _(c):
    c.start()
    # POSTs whose bodies never come stay open; the 129th is refused.
    c.send(*[frame(HEADERS, END_HEADERS, 2 * i + 1, POST) for i in range(129)])
    return 257


# --- 6.1 DATA ---------------------------------------------------------------------------

@case("6.1", "DATA on stream 0", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(DATA, 0, 0, b"x"))


@case("6.1", "DATA whose padding is as long as the frame", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST), frame(DATA, PADDED, 1, b"\x05abcd"))


# --- 6.2 HEADERS ------------------------------------------------------------------------

@case("6.2", "HEADERS on stream 0", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 0, GET))


@case("6.2", "HEADERS without END_HEADERS followed by another frame", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_STREAM, 1, GET), frame(PING, 0, 0, b"h2spec!!"))


@case("6.2", "HEADERS whose padding is as long as the frame", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, bytes([len(GET) + 1]) + GET))


# --- 6.3 PRIORITY -----------------------------------------------------------------------

@case("6.3", "PRIORITY on stream 0", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"))


@case("6.3", "PRIORITY of a length other than 5", stream_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x03"))
    return 1


# --- 6.4 RST_STREAM ---------------------------------------------------------------------

@case("6.4", "RST_STREAM on stream 0", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)))


@case("6.4", "RST_STREAM of a length other than 4", connection_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST), frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00"))


# --- 6.5 SETTINGS -----------------------------------------------------------------------

@case("6.5", "SETTINGS with ACK and a payload", connection_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00"))


@case("6.5", "SETTINGS on a stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 1))


@case("6.5", "SETTINGS of a length not a multiple of 6", connection_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 0, b"\x00\x01\x00\x00\x10"))


@case("6.5.2", "SETTINGS_ENABLE_PUSH other than 0 or 1", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 2, 2)))


@case("6.5.2", "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1", connection_error(FLOW_CONTROL_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 31)))


@case("6.5.2", "SETTINGS_MAX_FRAME_SIZE below 16384", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 16383)))


@case("6.5.3", "SETTINGS are acknowledged", lambda o: o == ("settings-ack", None))
def _(c):
    c.start()
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)))
    while True:
        f = c.next()
        if f is None:
            return ("closed", None)
        if f[0] == SETTINGS and f[1] & ACK:
            return ("settings-ack", None)


# --- 6.7 PING ---------------------------------------------------------------------------

@case("6.7", "PING is answered with the same payload", pinged)
def _(c):
    c.start()
    c.send(frame(PING, 0, 0, b"h2spec!!"))


@case("6.7", "PING on a stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(PING, 0, 1, b"h2spec!!"))


@case("6.7", "PING of a length other than 8", connection_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(PING, 0, 0, b"short"))


# --- 6.8 GOAWAY -------------------------------------------------------------------------

@case("6.8", "GOAWAY on a stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))


# --- 6.9 WINDOW_UPDATE and flow control ------------------------------------------------

@case("6.9", "WINDOW_UPDATE of 0 on the connection", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))


@case("6.9", "WINDOW_UPDATE of 0 on a stream", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)))
    return 1


@case("6.9", "WINDOW_UPDATE of a length other than 4", connection_error(FRAME_SIZE_ERROR),
      known=("goaway", PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))


@case("6.9.1", "a connection window above 2^31-1", connection_error(FLOW_CONTROL_ERROR))
def _(c):
    c.start()
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))


@case("6.9.1", "a stream window above 2^31-1", stream_error(FLOW_CONTROL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))
    return 1


# --- 6.10 CONTINUATION ------------------------------------------------------------------

@case("6.10", "CONTINUATION without HEADERS before it", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(CONTINUATION, END_HEADERS, 1, GET))


@case("6.10", "a header block split across HEADERS and CONTINUATION is answered",
      lambda o: o[0] == "headers")
def _(c):
    c.start()
    c.send(frame(HEADERS, END_STREAM, 1, GET[:3]), frame(CONTINUATION, END_HEADERS, 1, GET[3:]))
    return 1


@case("6.10", "CONTINUATION on another stream", connection_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_STREAM, 1, GET[:3]), frame(CONTINUATION, END_HEADERS, 3, GET[3:]))


# --- 8.1 / 8.2 / 8.3 HTTP message exchanges --------------------------------------------

@case("8.1", "a GET is answered 200", lambda o: o[0] == "headers")
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET))
    return 1


@case("8.1.1", "a content-length that the DATA does not match", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, POST + literal(28, "10")), frame(DATA, END_STREAM, 1, b"short"))
    return 1


@case("8.2", "a field name with upper case", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + literal_new("X-Upper", "1")))
    return 1


@case("8.2.2", "a connection-specific field", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + literal_new("connection", "keep-alive")))
    return 1


@case("8.2.2", "TE other than trailers", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + literal_new("te", "gzip")))
    return 1


@case("8.3", "a request without :method", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x86\x84" + literal(1, "localhost")))
    return 1


@case("8.3", "a pseudo-header after a regular field", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86" + literal_new("x-a", "1") + b"\x84"))
    return 1


@case("8.3", "an unknown pseudo-header", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET + literal_new(":bogus", "1")))
    return 1


@case("8.3.1", "an empty :path", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86" + literal(4, "") + literal(1, "localhost")))
    return 1


@case("8.3", "a duplicated :method", stream_error(PROTOCOL_ERROR))
def _(c):
    c.start()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x82\x86\x84" + literal(1, "localhost")))
    return 1


def main():
    addr = sys.argv[1]
    verbose = "--verbose" in sys.argv
    passed = deviations = 0
    for section, name, f, expect, known in CASES:
        c = Conn(addr)
        try:
            r = f(c)
            if isinstance(r, tuple):
                o = r
            else:
                o = c.outcome(r)
        except RuntimeError as e:
            o = ("error", str(e))
        finally:
            c.close()
        ok = expect(o)
        deviation = not ok and known is not None and o == known
        passed += ok
        deviations += deviation
        if verbose or not ok:
            shown = (o[0], CODES.get(o[1], o[1])) if o[0] in ("goaway", "rst") else o[:1]
            label = "ok  " if ok else ("h2  " if deviation else "FAIL")
            print(f"{label} {section:6} {name}: {shown}")
    failed = len(CASES) - passed - deviations
    print(f"{passed}/{len(CASES)} passed, {deviations} known deviations of the h2 crate "
          f"(marked h2), {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
