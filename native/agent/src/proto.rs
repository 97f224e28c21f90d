//! Framing of PROTOCOL.md §1: `[u32 len LE][u32 id LE][u8 flags]` + one CBOR body.

use crate::cbor::{self, Value};

/// Largest body of one frame.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest data chunk in one message.
pub const MAX_CHUNK: usize = 3 * 1024 * 1024;
/// Bytes of len + id + flags.
pub const HEADER: usize = 9;
/// Flow-control window per stream direction.
pub const WINDOW: u64 = 8 * 1024 * 1024;
/// Concurrent streams.
pub const MAX_STREAMS: usize = 1024;

pub const FLAG_END: u8 = 0x01;
pub const FLAG_CANCEL: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_END | FLAG_CANCEL;

/// A frame whose header is sound; the body may still be malformed.
#[derive(Debug)]
pub struct Frame {
    pub id: u32,
    pub flags: u8,
    /// None for an empty body.
    pub body: Result<Option<Value>, String>,
}

/// What the reader makes of buffered bytes.
#[derive(Debug)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// `len` outside 5..=5+MAX_BODY: the stream cannot be resynchronised.
    BadLength(u32),
    /// A whole frame of `consumed` bytes.
    Frame(Frame, usize),
}

/// Parses the first frame of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < 4 {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 5 || len as usize > 5 + MAX_BODY {
        return Parsed::BadLength(len);
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let id = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let flags = buf[8];
    let payload = &buf[HEADER..total];
    let body = if flags & !KNOWN_FLAGS != 0 {
        Err(format!("reserved flags 0x{flags:02x}"))
    } else if payload.is_empty() {
        if flags & FLAG_CANCEL != 0 {
            Ok(None)
        } else {
            Err("empty body without CANCEL".to_string())
        }
    } else {
        cbor::decode(payload).map(Some).map_err(|e| e.to_string())
    };
    Parsed::Frame(Frame { id, flags, body }, total)
}

/// Encodes a frame. A body over MAX_BODY is the caller's bug; it is replaced
/// by an error message so the peer never sees an oversized frame.
pub fn encode(id: u32, flags: u8, body: Option<&Value>) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    if let Some(b) = body {
        cbor::encode_into(&mut out, b);
    }
    if out.len() - HEADER > MAX_BODY {
        out.truncate(HEADER);
        let err = error_body("E2BIG", 7, "reply exceeds the frame body limit", None);
        cbor::encode_into(&mut out, &err);
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&id.to_le_bytes());
    out[8] = flags;
    out
}

/// `{t:"error", code, errno, message, kind?}`.
pub fn error_body(code: &str, errno: i32, message: &str, kind: Option<&str>) -> Value {
    let mut entries = vec![
        ("t", Value::from("error")),
        ("code", Value::from(code)),
        ("errno", Value::from(errno.max(0))),
        ("message", Value::from(message)),
    ];
    if let Some(k) = kind {
        entries.push(("kind", Value::from(k)));
    }
    cbor::map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len() % 2 == 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn golden_frames() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../packages/vmm/golden/frames.txt"
        );
        let text = std::fs::read_to_string(path).expect("golden/frames.txt");
        let (mut oks, mut bads) = (0, 0);
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.splitn(2, ' ');
            let kind = parts.next().unwrap();
            let rest = parts.next().unwrap();
            if kind == "ok" {
                // ok NAME ID FLAGS HEX DIAG (DIAG may contain spaces)
                let f: Vec<&str> = rest.splitn(5, ' ').collect();
                let (name, id, flags, hx, diag) = (
                    f[0],
                    f[1].parse::<u32>().unwrap(),
                    f[2].parse::<u8>().unwrap(),
                    f[3],
                    f[4],
                );
                let bytes = hex(hx);
                let Parsed::Frame(frame, used) = parse(&bytes) else {
                    panic!("{name}: not a frame")
                };
                assert_eq!(used, bytes.len(), "{name}");
                assert_eq!(frame.id, id, "{name}");
                assert_eq!(frame.flags, flags, "{name}");
                let body = frame.body.unwrap_or_else(|e| panic!("{name}: {e}"));
                match &body {
                    None => assert_eq!(diag, "-", "{name}"),
                    Some(v) => assert_eq!(cbor::diagnostic(v), diag, "{name}"),
                }
                assert_eq!(to_hex(&encode(id, flags, body.as_ref())), hx, "{name}");
                // parsing in two pieces: the first is incomplete
                assert!(
                    matches!(parse(&bytes[..bytes.len() - 1]), Parsed::Incomplete),
                    "{name}"
                );
                oks += 1;
            } else if kind == "bad" {
                let f: Vec<&str> = rest.splitn(2, ' ').collect();
                let (name, bytes) = (f[0], hex(f[1]));
                match parse(&bytes) {
                    Parsed::Frame(frame, _) => assert!(frame.body.is_err(), "{name} accepted"),
                    Parsed::BadLength(_) => {}
                    Parsed::Incomplete => panic!("{name}: incomplete"),
                }
                bads += 1;
            } else {
                panic!("unknown line {line}");
            }
        }
        assert!(oks >= 20 && bads >= 15, "{oks} ok, {bads} bad");
    }

    #[test]
    fn lengths() {
        let mut b = vec![4, 0, 0, 0, 1, 0, 0, 0];
        assert!(matches!(parse(&b), Parsed::BadLength(4)));
        let big = (5 + MAX_BODY + 1) as u32;
        b[0..4].copy_from_slice(&big.to_le_bytes());
        assert!(matches!(parse(&b), Parsed::BadLength(_)));
        let ok = (5 + MAX_BODY) as u32;
        b[0..4].copy_from_slice(&ok.to_le_bytes());
        assert!(matches!(parse(&b), Parsed::Incomplete));
    }

    #[test]
    fn oversized_reply_becomes_error() {
        let v = cbor::map(vec![
            ("t", "data".into()),
            ("data", Value::Bytes(vec![0; MAX_BODY])),
        ]);
        let f = encode(1, FLAG_END, Some(&v));
        assert!(f.len() < 200);
        let Parsed::Frame(frame, _) = parse(&f) else {
            panic!()
        };
        assert_eq!(
            frame
                .body
                .unwrap()
                .unwrap()
                .get("code")
                .and_then(|c| c.as_str()),
            Some("E2BIG")
        );
    }
}
