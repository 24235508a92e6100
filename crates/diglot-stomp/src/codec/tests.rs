//! Codec tests: every sample frame is decoded whole, byte-at-a-time and at random splits, and
//! must give the same result; random bytes must never panic.

use bytes::{Bytes, BytesMut};
use diglot_core::Limits;

use super::*;
use crate::frame::{Command, Frame};
use crate::test_rng::Rng;
use crate::version::Version;

fn limits() -> Limits {
    Limits { max_frame_bytes: 4096, max_headers: 16, max_header_bytes: 256, ..Limits::default() }
}

/// Feeds `input` in chunks of the given sizes (the last chunk takes the rest) and collects
/// everything decoded, stopping at the first error.
fn feed(input: &[u8], version: Version, chunks: &mut dyn FnMut() -> usize) -> (Vec<Decoded>, Option<CodecError>) {
    let mut d = Decoder::new(&limits());
    d.set_version(version);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let n = chunks().max(1).min(input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(x)) => out.push(x),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if pos == input.len() {
            return (out, None);
        }
    }
}

fn whole(input: &[u8], version: Version) -> (Vec<Decoded>, Option<CodecError>) {
    feed(input, version, &mut || usize::MAX)
}

fn frames(decoded: &[Decoded]) -> Vec<&Frame> {
    decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::HeartBeat => None,
        })
        .collect()
}

/// Decodes `input` whole, byte-at-a-time and at random splits; all must agree.
fn decode_every_way(input: &[u8], version: Version) -> (Vec<Decoded>, Option<CodecError>) {
    let reference = whole(input, version);
    let bytewise = feed(input, version, &mut || 1);
    assert_eq!(frames(&bytewise.0), frames(&reference.0), "byte-at-a-time differs for {input:?}");
    assert_eq!(bytewise.1, reference.1, "byte-at-a-time error differs for {input:?}");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20 {
        let split = feed(input, version, &mut || rng.below(7) + 1);
        assert_eq!(frames(&split.0), frames(&reference.0), "random split differs for {input:?}");
        assert_eq!(split.1, reference.1);
    }
    reference
}

fn one(input: &[u8], version: Version) -> Frame {
    let (decoded, err) = decode_every_way(input, version);
    assert_eq!(err, None, "{input:?}");
    let fs = frames(&decoded);
    assert_eq!(fs.len(), 1, "{input:?}");
    fs[0].clone()
}

fn error(input: &[u8], version: Version) -> CodecError {
    match decode_every_way(input, version).1 {
        Some(e) => e,
        None => panic!("expected an error for {input:?}"),
    }
}

#[test]
fn send_with_nul_terminated_body() {
    let f = one(b"SEND\ndestination:/topic/a\n\nhello\0", Version::V1_2);
    assert_eq!(f.command, Command::Send);
    assert_eq!(f.header("destination"), Some("/topic/a"));
    assert_eq!(f.body, Bytes::from_static(b"hello"));
}

#[test]
fn crlf_line_endings() {
    let f = one(b"SEND\r\ndestination:/topic/a\r\nx:y\r\n\r\nbody\0\r\n", Version::V1_2);
    assert_eq!(f.headers, vec![("destination".into(), "/topic/a".into()), ("x".into(), "y".into())]);
    assert_eq!(&f.body[..], b"body");
}

#[test]
fn content_length_body_may_hold_nul() {
    let f = one(b"SEND\ndestination:/topic/a\ncontent-length:5\n\na\0b\0c\0", Version::V1_2);
    assert_eq!(&f.body[..], b"a\0b\0c");
    let f = one(b"SEND\ncontent-length: 0 \n\n\0", Version::V1_0);
    assert!(f.body.is_empty());
}

#[test]
fn repeated_content_length_first_wins() {
    let f = one(b"SEND\ncontent-length:2\ncontent-length:9\n\nab\0", Version::V1_2);
    assert_eq!(&f.body[..], b"ab");
}

#[test]
fn content_length_needs_trailing_nul() {
    assert_eq!(error(b"SEND\ncontent-length:2\n\nabc\0", Version::V1_2), CodecError::MissingNul);
}

#[test]
fn the_receipt_of_a_frame_that_failed_is_known() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\nreceipt:r1\ncontent-length:1\n\nab\0"[..]);
    assert_eq!(d.decode(&mut buf), Err(CodecError::MissingNul));
    assert_eq!(d.partial_receipt(), Some("r1"));
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\nreceipt:r1\n\n\0SE"[..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Decoded::Frame(_)))));
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(d.partial_receipt(), None);
}

/// A fault in a header before the `receipt` header: the receipt is found among the header
/// lines after it, whole lines only, up to the blank line.
#[test]
fn the_receipt_after_a_bad_header_is_found_too() {
    let cases: [(&[u8], Option<&str>); 6] = [
        (b"SEND\ndestination:/topic/a\nfoo:\\t\nreceipt:r\\c2\n\nx\0", Some("r:2")),
        (b"SEND\nfoo:\\t\nx:y\r\nreceipt:r3\r\n\nx\0", Some("r3")),
        // After the blank line it is the body, not a header.
        (b"SEND\nfoo:\\t\n\nreceipt:r4\n\0", None),
        // A line not yet ended may still grow.
        (b"SEND\nfoo:\\t\nreceipt:r5", None),
        // One that does not decode is passed over.
        (b"SEND\nfoo:\\t\nreceipt:\\q\nreceipt:r6\n\n\0", Some("r6")),
        (b"SEND\nfoo:\\t\n\n\0", None),
    ];
    for (input, want) in cases {
        let mut d = Decoder::new(&limits());
        let mut buf = BytesMut::from(input);
        assert!(matches!(d.decode(&mut buf), Err(CodecError::BadEscape(_))), "{input:?}");
        assert_eq!(d.failed_receipt(&buf).as_deref(), want, "{}", String::from_utf8_lossy(input));
    }
    // A fault in the command line: no headers to look in.
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"NOPE\nreceipt:r7\n\n\0"[..]);
    assert!(d.decode(&mut buf).is_err());
    assert_eq!(d.failed_receipt(&buf), None);
}

#[test]
fn bad_content_length() {
    for bad in
        [&b"SEND\ncontent-length:abc\n\n\0"[..], b"SEND\ncontent-length:-1\n\n\0", b"SEND\ncontent-length:\n\n\0"]
    {
        assert!(matches!(error(bad, Version::V1_2), CodecError::BadContentLength(_)), "{bad:?}");
    }
}

#[test]
fn heart_beats_between_frames() {
    let (decoded, err) = decode_every_way(b"\n\r\n\nSEND\n\n\0\n\n\r\nDISCONNECT\n\n\0", Version::V1_2);
    assert_eq!(err, None);
    assert!(matches!(decoded[0], Decoded::HeartBeat));
    assert_eq!(frames(&decoded).len(), 2);
    assert!(decoded.iter().filter(|d| **d == Decoded::HeartBeat).count() >= 2);
}

/// RabbitMQ's parsing suite (`test_newline_after_nul_and_leading_nul`) sends a NUL before a
/// command and after a frame's NUL; both are skipped, like EOLs.
#[test]
fn nul_octets_between_frames_are_skipped() {
    let input = b"\n\0SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0\n\0SEND\ndestination:/topic/a\n\nhi\n\0\0\n";
    let (decoded, err) = decode_every_way(input, Version::V1_0);
    assert_eq!(err, None);
    let fs = frames(&decoded);
    assert_eq!(fs.iter().map(|f| f.command).collect::<Vec<_>>(), vec![Command::Subscribe, Command::Send]);
    assert_eq!(&fs[1].body[..], b"hi\n");
    // A NUL inside a command line is still not a command.
    assert!(matches!(error(b"SE\0ND\n\n\0", Version::V1_2), CodecError::UnknownCommand(_)));
}

#[test]
fn lone_cr_between_frames_is_an_error() {
    assert_eq!(error(b"\rSEND\n\n\0", Version::V1_2), CodecError::BadLineEnding);
}

#[test]
fn several_frames_in_one_buffer() {
    let input = b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SEND\ndestination:/topic/a\n\nx\0ACK\nid:7\n\n\0";
    let (decoded, err) = decode_every_way(input, Version::V1_2);
    assert_eq!(err, None);
    let cmds: Vec<Command> = frames(&decoded).iter().map(|f| f.command).collect();
    assert_eq!(cmds, vec![Command::Subscribe, Command::Send, Command::Ack]);
}

#[test]
fn unescaping_per_version() {
    let input = b"SEND\na\\cb:c\\\\d\\ne\\rf\n\n\0";
    let f = one(input, Version::V1_2);
    assert_eq!(f.headers[0], ("a:b".into(), "c\\d\ne\rf".into()));
    // 1.1 has no \r escape.
    assert!(matches!(error(input, Version::V1_1), CodecError::BadEscape(_)));
    let f = one(b"SEND\na\\cb:c\\\\d\\ne\n\n\0", Version::V1_1);
    assert_eq!(f.headers[0], ("a:b".into(), "c\\d\ne".into()));
    // 1.0 has no escapes at all.
    let f = one(input, Version::V1_0);
    assert_eq!(f.headers[0], ("a\\cb".into(), "c\\\\d\\ne\\rf".into()));
}

#[test]
fn connect_and_connected_are_never_unescaped() {
    let f = one(b"CONNECT\nlogin:a\\b\npasscode:x\\y\n\n\0", Version::V1_2);
    assert_eq!(f.header("login"), Some("a\\b"));
    let f = one(b"CONNECTED\nserver:s\\n\n\n\0", Version::V1_2);
    assert_eq!(f.header("server"), Some("s\\n"));
}

#[test]
fn undefined_escapes_are_fatal() {
    for bad in [&b"SEND\na:b\\t\n\n\0"[..], b"SEND\na:b\\\n\n\0", b"SEND\na\\x:b\n\n\0"] {
        assert!(matches!(error(bad, Version::V1_2), CodecError::BadEscape(_)), "{bad:?}");
    }
}

#[test]
fn header_syntax_errors() {
    assert_eq!(error(b"SEND\nnocolon\n\n\0", Version::V1_2), CodecError::MissingColon);
    assert_eq!(error(b"SEND\n:value\n\n\0", Version::V1_2), CodecError::EmptyHeaderName);
    assert_eq!(error(b"SEND\na:\xff\xfe\n\n\0", Version::V1_2), CodecError::InvalidUtf8);
    assert_eq!(error(b"SEND\n\xc3:x\n\n\0", Version::V1_0), CodecError::InvalidUtf8);
    // An escape must not produce invalid UTF-8 either.
    assert_eq!(error(b"SEND\na:\xc3\\n\n\n\0", Version::V1_2), CodecError::InvalidUtf8);
}

#[test]
fn raw_colon_in_value_and_empty_value_are_kept() {
    let f = one(b"SEND\nurl:http://x\nempty:\n\n\0", Version::V1_2);
    assert_eq!(f.header("url"), Some("http://x"));
    assert_eq!(f.header("empty"), Some(""));
}

#[test]
fn utf8_headers() {
    let f = one("SEND\ndestination:/topic/ü/€ x.y*\n\n\0".as_bytes(), Version::V1_2);
    assert_eq!(f.header("destination"), Some("/topic/ü/€ x.y*"));
}

#[test]
fn unknown_commands() {
    assert!(matches!(error(b"send\n\n\0", Version::V1_2), CodecError::UnknownCommand(_)));
    assert!(matches!(error(b"GET / HTTP/1.1\r\n\r\n", Version::V1_2), CodecError::UnknownCommand(_)));
}

#[test]
fn endless_command_line_is_stopped_early() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"AAAAAAAAAAAA"[..]);
    assert!(d.decode(&mut buf).is_ok());
    buf.extend_from_slice(b"A");
    assert!(matches!(d.decode(&mut buf), Err(CodecError::UnknownCommand(_))));
}

#[test]
fn endless_header_line_is_stopped_at_the_limit() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\nx:"[..]);
    for _ in 0..255 {
        buf.extend_from_slice(b"y");
        assert_eq!(d.decode(&mut buf), Ok(None));
    }
    buf.extend_from_slice(b"y");
    assert_eq!(d.decode(&mut buf), Err(CodecError::HeaderTooLong(256)));
}

#[test]
fn header_line_at_the_limit_passes() {
    let mut line = b"SEND\n".to_vec();
    line.extend_from_slice(b"x:");
    line.extend(std::iter::repeat_n(b'y', 254));
    line.extend_from_slice(b"\r\n\n\0");
    let f = one(&line, Version::V1_2);
    assert_eq!(f.headers[0].1.len(), 254);
    line.insert(8, b'y');
    assert_eq!(error(&line, Version::V1_2), CodecError::HeaderTooLong(256));
}

#[test]
fn too_many_headers() {
    let mut input = b"SEND\n".to_vec();
    for i in 0..16 {
        input.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    input.extend_from_slice(b"\n\0");
    one(&input, Version::V1_2);
    input.splice(5..5, b"extra:v\n".iter().copied());
    assert_eq!(error(&input, Version::V1_2), CodecError::TooManyHeaders(16));
}

#[test]
fn endless_body_is_stopped_at_the_frame_limit() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    let mut fed = 6;
    let err = loop {
        match d.decode(&mut buf) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("no frame expected"),
            Err(e) => break e,
        }
        buf.extend_from_slice(&[b'z'; 64]);
        fed += 64;
        assert!(fed < 8192, "limit not enforced");
    };
    assert_eq!(err, CodecError::FrameTooLarge(4096));
    assert!(fed <= 4096 + 64);
}

#[test]
fn oversized_content_length_is_refused_before_the_body_arrives() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:5000\n\n"[..]);
    assert_eq!(d.decode(&mut buf), Err(CodecError::FrameTooLarge(4096)));
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:99999999999999999999999\n\n"[..]);
    assert!(matches!(d.decode(&mut buf), Err(CodecError::BadContentLength(_))));
}

#[test]
fn frame_exactly_at_the_limit_passes() {
    let head = b"SEND\n\n";
    let mut input = head.to_vec();
    input.extend(std::iter::repeat_n(b'b', 4096 - head.len() - 1));
    input.push(0);
    assert_eq!(one(&input, Version::V1_2).body.len(), 4096 - 7);
    input.insert(7, b'b');
    assert_eq!(error(&input, Version::V1_2), CodecError::FrameTooLarge(4096));
}

#[test]
fn decoder_resumes_without_rescanning() {
    let mut d = Decoder::new(&limits());
    let mut buf = BytesMut::from(&b"SEND\ndestination:/top"[..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    // The command line was consumed into the decoder's state.
    assert_eq!(&buf[..], b"destination:/top");
    buf.extend_from_slice(b"ic/a\n\nxy");
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"z\0SEND");
    match d.decode(&mut buf) {
        Ok(Some(Decoded::Frame(f))) => assert_eq!(&f.body[..], b"xyz"),
        other => panic!("{other:?}"),
    }
    assert_eq!(&buf[..], b"SEND");
}

fn tricky_frame(command: Command) -> Frame {
    Frame::new(command)
        .with_header("destination", "/topic/a:b\\c\nd")
        .with_header("weird:name\\", "ü€ x.y*#+")
        .with_body(Bytes::from_static(b"bin\0ary\n\r"))
}

#[test]
fn encode_decode_round_trip_1_2_and_1_1() {
    for version in [Version::V1_2, Version::V1_1] {
        let mut f = tricky_frame(Command::Message);
        if version == Version::V1_2 {
            f.headers.push(("cr".into(), "a\rb".into()));
        }
        let mut buf = BytesMut::new();
        encode(&f, version, &mut buf);
        let back = one(&buf, version);
        assert_eq!(back.header("destination"), f.header("destination"));
        assert_eq!(back.header("weird:name\\"), Some("ü€ x.y*#+"));
        assert_eq!(back.body, f.body);
        assert_eq!(back.header("content-length"), Some("9"));
        if version == Version::V1_2 {
            assert_eq!(back.header("cr"), Some("a\rb"));
        }
    }
}

#[test]
fn encode_1_0_replaces_what_it_cannot_express() {
    let mut buf = BytesMut::new();
    encode(&tricky_frame(Command::Message), Version::V1_0, &mut buf);
    let back = one(&buf, Version::V1_0);
    assert_eq!(back.header("destination"), Some("/topic/a:b\\c d"));
    assert_eq!(back.header("weird_name\\"), Some("ü€ x.y*#+"));
}

#[test]
fn connected_is_not_escaped() {
    let mut buf = BytesMut::new();
    encode(&Frame::new(Command::Connected).with_header("server", "a:b\\c"), Version::V1_2, &mut buf);
    assert_eq!(&buf[..], b"CONNECTED\nserver:a:b\\c\n\n\0");
}

#[test]
fn message_and_error_always_carry_content_length() {
    let mut buf = BytesMut::new();
    encode(&Frame::new(Command::Message).with_header("content-length", "99"), Version::V1_2, &mut buf);
    assert_eq!(&buf[..], b"MESSAGE\ncontent-length:0\n\n\0");
    buf.clear();
    encode(&Frame::new(Command::Receipt).with_header("receipt-id", "7"), Version::V1_2, &mut buf);
    assert_eq!(&buf[..], b"RECEIPT\nreceipt-id:7\n\n\0");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let alphabet = b"SENDCONTMGBIUAK:\\\n\r\0ncr-lehgt0123456789";
    for _ in 0..3000 {
        let len = rng.below(200);
        let input: Vec<u8> = (0..len)
            .map(|_| if rng.below(4) == 0 { rng.next() as u8 } else { alphabet[rng.below(alphabet.len())] })
            .collect();
        for version in Version::ALL {
            let _ = feed(&input, version, &mut || rng.below(9) + 1);
        }
    }
}

#[test]
fn mutated_valid_frames_never_panic_and_agree_across_splits() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF0);
    let mut seed = BytesMut::new();
    encode(&tricky_frame(Command::Send), Version::V1_2, &mut seed);
    seed.extend_from_slice(b"\nSUBSCRIBE\r\nid:1\r\ndestination:/topic/x\r\n\r\n\0");
    for _ in 0..2000 {
        let mut input = seed.to_vec();
        for _ in 0..rng.below(4) + 1 {
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = rng.next() as u8,
                1 => {
                    input.remove(at);
                }
                _ => input.insert(at, [b'\0', b'\n', b'\r', b':', b'\\'][rng.below(5)]),
            }
        }
        let reference = whole(&input, Version::V1_2);
        let split = feed(&input, Version::V1_2, &mut || rng.below(5) + 1);
        assert_eq!(frames(&split.0), frames(&reference.0), "{input:?}");
        assert_eq!(split.1, reference.1, "{:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn random_valid_frames_round_trip_at_random_splits() {
    let mut rng = Rng(42);
    let chars = ['a', 'b', ':', '\\', '\n', '\r', 'ü', ' ', '/', '#'];
    for _ in 0..300 {
        let version = Version::ALL[rng.below(3)];
        let mut f = Frame::new(Command::Message);
        for _ in 0..rng.below(5) {
            let word = |rng: &mut Rng| -> String {
                let mut s: String = (0..rng.below(6)).map(|_| chars[rng.below(chars.len())]).collect();
                if version != Version::V1_2 || s.is_empty() {
                    s = s.replace(['\r', '\n', ':', '\\'], "_");
                }
                s
            };
            let name = format!("h{}", word(&mut rng));
            let value = word(&mut rng);
            f.headers.push((name.into(), value.into()));
        }
        f.body = (0..rng.below(40)).map(|_| rng.next() as u8).collect::<Vec<u8>>().into();
        let mut buf = BytesMut::new();
        encode(&f, version, &mut buf);
        encode(&f, version, &mut buf);
        let (decoded, err) = feed(&buf, version, &mut || rng.below(11) + 1);
        assert_eq!(err, None);
        let fs = frames(&decoded);
        assert_eq!(fs.len(), 2);
        for back in fs {
            assert_eq!(back.body, f.body);
            assert_eq!(&back.headers[..f.headers.len()], &f.headers[..]);
        }
    }
}

#[test]
fn decimal_headers_have_every_digit_and_no_more() {
    for n in [0u64, 7, 9, 10, 99, 100, 65_535, 999_999_999, 1_000_000_000, u64::MAX] {
        let mut buf = BytesMut::from(&b"x"[..]);
        let mut w = FrameWriter::headers(&mut buf, Command::Message, Version::V1_2);
        w.header_u64("message-id", n);
        assert_eq!(&buf[..], format!("xmessage-id:{n}\n").as_bytes());
    }
}

/// A header list handed back after a frame is reused for the next frame only if it was
/// emptied: the next frame has exactly its own headers either way.
#[test]
fn a_recycled_header_list_carries_nothing_into_the_next_frame() {
    let mut d = Decoder::new(&limits());
    let mut buf =
        BytesMut::from(&b"SEND\ndestination:/topic/a\nx:1\n\nA\0SEND\ndestination:/topic/b\n\nB\0SEND\ny:2\n\nC\0"[..]);
    let next = |d: &mut Decoder, buf: &mut BytesMut| match d.decode(buf) {
        Ok(Some(Decoded::Frame(f))) => f,
        other => panic!("expected a frame, got {other:?}"),
    };
    let mut first = next(&mut d, &mut buf);
    assert_eq!(first.headers.len(), 2);
    first.headers.clear();
    d.recycle(std::mem::take(&mut first.headers));
    let second = next(&mut d, &mut buf);
    assert_eq!(second.headers, vec![("destination".into(), "/topic/b".into())]);
    // Not emptied: not kept, so it cannot leak into the third frame.
    d.recycle(second.headers);
    let third = next(&mut d, &mut buf);
    assert_eq!(third.headers, vec![("y".into(), "2".into())]);
    assert_eq!(third.body, Bytes::from_static(b"C"));
}

/// `find_byte` gives the first occurrence at every position of every length up to 80 (past the
/// 64 bytes searched word by word), with a second occurrence after it and neighbouring byte
/// values around it (a byte one above the sought one is where the word-wise test could see a
/// match that is not there, above a real one).
#[test]
fn find_byte_finds_the_first_occurrence() {
    for byte in [b'\n', b':', 0] {
        for len in 0..=80usize {
            for fill in [b'a', byte.wrapping_add(1), byte.wrapping_sub(1), byte ^ 0x80, 0xFF] {
                let plain = vec![fill; len];
                assert_eq!(find_byte(&plain, byte), None);
                for at in 0..len {
                    for second in [at, (at + 1).min(len - 1), len - 1] {
                        let mut raw = plain.clone();
                        raw[at] = byte;
                        raw[second] = byte;
                        assert_eq!(find_byte(&raw, byte), Some(at), "{raw:?}");
                    }
                }
            }
        }
    }
}
