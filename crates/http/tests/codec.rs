//! The sans-I/O codec: heads and chunked bodies, whole and split at every byte.

use anygate_http::h1::chunked::{
    ChunkedDecoder, chunk_size_line, encode_chunk, encode_end, valid_trailers,
};
use anygate_http::h1::parse::{Framing, Head, Parse, Version, is_host, parse};
use anygate_http::{ErrorKind, Limits};
use proptest::prelude::*;

fn head(raw: &[u8]) -> (Parse, Head) {
    let mut h = Head::default();
    let p = parse(raw, &Limits::default(), &mut h);
    (p, h)
}

const CORPUS: [&[u8]; 6] = [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
    b"PUT /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    b"GET http://h.example/x/y?z HTTP/1.1\r\nHost: h.example\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
];

#[test]
fn every_prefix_of_a_valid_head_is_partial_and_the_whole_is_complete() {
    for raw in CORPUS {
        for cut in 0..raw.len() {
            assert_eq!(
                head(&raw[..cut]).0,
                Parse::Partial,
                "{:?} cut at {cut}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(head(raw).0, Parse::Complete(raw.len()));
    }
}

#[test]
fn underscored_field_names_are_dropped_unless_allowed() {
    let raw =
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nX_A: 1\r\nX-B: 2\r\n\r\n";
    let (p, h) = head(raw);
    assert_eq!(p, Parse::Complete(raw.len()));
    let names: Vec<&[u8]> = h.fields().iter().map(|f| f.name.get(raw)).collect();
    assert_eq!(names, [&b"Host"[..], b"X-B"]);
    assert_eq!(
        h.framing,
        Framing::None,
        "an underscored name is not the framing"
    );
    let allow = Limits {
        allow_underscores: true,
        ..Limits::default()
    };
    let mut h = Head::default();
    assert_eq!(parse(raw, &allow, &mut h), Parse::Complete(raw.len()));
    assert_eq!(h.fields().len(), 4);
    assert_eq!(h.framing, Framing::None);
}

#[test]
fn parsed_fields() {
    let raw = CORPUS[1];
    let (_, h) = head(raw);
    assert_eq!(h.method.get(raw), b"GET");
    assert_eq!(h.path.get(raw), b"/a/b");
    assert_eq!(h.query.unwrap().get(raw), b"x=1&y=2");
    assert_eq!(h.fields().len(), 3);
    assert_eq!(
        (h.version, h.keep_alive, h.framing),
        (Version::H11, true, Framing::None)
    );
    let raw = CORPUS[3];
    let (_, h) = head(raw);
    assert_eq!((h.framing, h.expect_continue), (Framing::Chunked, true));
    let raw = CORPUS[4];
    let (_, h) = head(raw);
    assert_eq!(
        (h.path.get(raw), h.query.unwrap().get(raw)),
        (&b"/x/y"[..], &b"z"[..])
    );
    let (_, h) = head(CORPUS[5]);
    assert_eq!((h.version, h.keep_alive), (Version::H10, true));
    let (_, h) = head(b"GET / HTTP/1.0\r\n\r\n");
    assert!(!h.keep_alive);
    let (_, h) = head(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: foo, CLOSE\r\n\r\n");
    assert!(!h.keep_alive);
    let (_, h) =
        head(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.framing, Framing::None);
}

#[test]
fn invalid_heads() {
    let cases: [(&[u8], ErrorKind); 9] = [
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ErrorKind::BadFraming,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            ErrorKind::BadFraming,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
            ErrorKind::BadFraming,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n",
            ErrorKind::BadRequest,
        ),
        (b"GET / HTTP/1.1\r\n\r\n", ErrorKind::BadHost),
        (b"GET / HTTP/3\r\n\r\n", ErrorKind::VersionNotSupported),
        (b"G@T / HTTP/1.1\r\n\r\n", ErrorKind::BadRequest),
        (b"GET / HTTP/1.1\r\nX : y\r\n\r\n", ErrorKind::BadRequest),
        (b"\x00GET / HTTP/1.1\r\n\r\n", ErrorKind::BadRequest),
    ];
    for (raw, kind) in cases {
        assert_eq!(
            head(raw).0,
            Parse::Invalid(kind),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn regression_endless_empty_lines_before_the_request_line() {
    // Each one made the head "maybe complete": parsed again on every read.
    let (p, _) = head(b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(matches!(p, Parse::Complete(_)), "{p:?}");
    for raw in [
        &b"\r\n\r\n\r\n"[..],
        b"\n\n\n\n\n",
        b"\r\n\r\n\r\nGET / HTTP/1.1\r\n",
    ] {
        assert_eq!(
            head(raw).0,
            Parse::Invalid(ErrorKind::BadRequest),
            "{raw:?}"
        );
    }
    assert_eq!(head(b"\r\n\r\n").0, Parse::Partial);
}

#[test]
fn host_syntax() {
    for good in [
        "a.example",
        "A.Example:8080",
        "127.0.0.1",
        "127.0.0.1:1",
        "[::1]",
        "[2001:db8::1]:443",
        "a_b.example",
        "xn--bcher-kva.example",
        "%41.example",
        "a.example:",
        "",
    ] {
        assert!(is_host(good.as_bytes()), "{good:?}");
    }
    for bad in [
        "a b/#@x",
        "user@a.example",
        "a.example/x",
        "a.example?x",
        "a.example#x",
        "a.example:99999",
        "a.example:123456",
        "a.example:8o",
        "a.example:80:80",
        "[::1",
        "[zz]",
        "[::1]x",
        "::1",
        "%4",
        "%zz.example",
        "a\\b",
        "a\"b",
    ] {
        assert!(!is_host(bad.as_bytes()), "{bad:?}");
    }
}

#[test]
fn an_absolute_form_authority_is_the_host() {
    let raw = b"GET http://A.example:8080/x?y HTTP/1.1\r\nHost: a.example:8080\r\n\r\n";
    let (p, h) = head(raw);
    assert_eq!(p, Parse::Complete(raw.len()));
    assert_eq!(h.host.unwrap().get(raw), b"A.example:8080");
    assert_eq!(h.path.get(raw), b"/x");
    // HTTP/1.0 needs no Host: the authority is the host.
    let raw = b"GET http://a.example/ HTTP/1.0\r\n\r\n";
    let (p, h) = head(raw);
    assert_eq!(p, Parse::Complete(raw.len()));
    assert_eq!(h.host.unwrap().get(raw), b"a.example");
    let raw = b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n";
    assert_eq!(head(raw).1.host.unwrap().get(raw), b"b.example");
    for bad in [
        &b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n"[..],
        b"GET http://a.example:81/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET http://user@a.example/x HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
        b"GET http://a%zz/x HTTP/1.1\r\nHost: a%zz\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET http://:80/x HTTP/1.1\r\nHost: :80\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b/#@x\r\n\r\n",
    ] {
        assert_eq!(
            head(bad).0,
            Parse::Invalid(ErrorKind::BadHost),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn trailer_sections_are_checked_as_fields() {
    for good in [
        &b""[..],
        b"x-sum: 42\r\n",
        b"a: 1\r\nb:\t2 3\r\n",
        b"c:\r\n",
    ] {
        assert!(valid_trailers(good), "{:?}", String::from_utf8_lossy(good));
    }
    for bad in [
        &b"x: a\0b\r\n"[..],
        b"no colon\r\n",
        b"bad name: 1\r\n",
        b": 1\r\n",
        b"x: 1",
        b"x: \x07\r\n",
        b"x-sum: 1\r\nContent-Length: 5\r\n",
        b"set-cookie: a=b\r\n",
        b"Host: elsewhere\r\n",
    ] {
        assert!(!valid_trailers(bad), "{:?}", String::from_utf8_lossy(bad));
    }
    // The decoder says where they are, across any split.
    let body = b"3\r\nabc\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\n";
    for step in 1..body.len() {
        let mut d = ChunkedDecoder::new();
        let (mut at, mut trailers) = (0, Vec::new());
        while !d.is_done() {
            let end = (at + step).min(body.len());
            let r = d.decode(&body[at..end]).unwrap();
            trailers.extend_from_slice(&body[at + r.trailer.start..at + r.trailer.end]);
            at += r.consumed;
        }
        assert_eq!(trailers, b"x-a: 1\r\nx-b: 2\r\n", "step {step}");
    }
}

fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), ()> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut consumed_total = 0;
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        while !pending.is_empty() && !d.is_done() {
            let r = d.decode(&pending).map_err(|_| ())?;
            out.extend_from_slice(&pending[r.data.clone()]);
            pending.drain(..r.consumed);
            consumed_total += r.consumed;
            if r.consumed == 0 {
                break;
            }
        }
    }
    Ok((out, d.is_done(), consumed_total))
}

#[test]
fn chunked_bodies_decode_the_same_at_every_split() {
    let body = b"5\r\nhello\r\n1;name=\"v\"\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\nNEXT";
    let expected = b"hello 0123456789".to_vec();
    let body_len = body.len() - 4;
    for step in 1..body.len() {
        let (out, done, consumed) = decode(body, step).unwrap();
        assert_eq!((out, done), (expected.clone(), true), "step {step}");
        assert!(consumed <= body_len + step, "stops at the end of the body");
    }
    // Stopping exactly at the end leaves the next request untouched.
    let (_, _, consumed) = decode(body, body.len()).unwrap();
    assert_eq!(consumed, body_len);
}

#[test]
fn bad_chunked_bodies() {
    for bad in [
        &b"x\r\n"[..],
        b"5\nhello\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloX\r\n",
        b"fffffffffffffffff\r\n",
        b"0\r\nTrailer\n\r\n",
        b"0\r\n\n",
        b";x\r\n",
    ] {
        assert!(
            decode(bad, bad.len()).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn chunk_size_lines_are_lower_hex() {
    let mut out = [0u8; 18];
    for (len, line) in [
        (0, "0\r\n"),
        (10, "a\r\n"),
        (4096, "1000\r\n"),
        (0xabcdef, "abcdef\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        let n = chunk_size_line(len, &mut out);
        assert_eq!(&out[..n], line.as_bytes());
    }
}

#[test]
fn encoder_round_trips() {
    let mut wire = Vec::new();
    for part in [&b"hello"[..], b"", b" world", &[7u8; 300]] {
        encode_chunk(part, &mut wire);
    }
    encode_end(&mut wire);
    let (out, done, _) = decode(&wire, 7).unwrap();
    let mut expected = b"hello world".to_vec();
    expected.extend_from_slice(&[7u8; 300]);
    assert_eq!((out, done), (expected, true));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn host_validation_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = is_host(&bytes);
    }

    #[test]
    fn the_head_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut h = Head::default();
        let _ = parse(&bytes, &Limits { max_head: 512, ..Limits::default() }, &mut h);
    }

    #[test]
    fn chunked_decoding_does_not_depend_on_the_split(
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        noise in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'a'), Just(b';')], 0..20),
        step in 1usize..32,
    ) {
        let mut wire = Vec::new();
        for p in &parts {
            encode_chunk(p, &mut wire);
        }
        encode_end(&mut wire);
        let expected: Vec<u8> = parts.concat();
        let (out, done, _) = decode(&wire, step).unwrap();
        prop_assert_eq!((out, done), (expected, true));
        // Arbitrary bytes: same verdict whole or split.
        let mut junk = wire.clone();
        junk.splice(0..0, noise.iter().copied());
        prop_assert_eq!(decode(&junk, junk.len()), decode(&junk, step));
    }
}
