//! The strict CBOR subset of PROTOCOL.md §2: integers (−2⁶³ … 2⁶⁴−1), byte and
//! text strings, arrays, text-keyed maps, false/true/null. Definite lengths in
//! shortest form only; no tags, floats or undefined; unique map keys; nesting
//! at most 16. The peer is untrusted: decoding never panics and rejects
//! anything outside the subset.

use std::fmt::Write as _;

/// The nesting limit: the outermost item has depth 0.
pub const MAX_DEPTH: usize = 16;

/// One value of the subset. Maps keep their keys in encoding order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Bool(bool),
    Null,
}

/// Why a body is not in the subset, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborError {
    pub message: &'static str,
    pub offset: usize,
}

impl std::fmt::Display for CborError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl Value {
    /// The value of `key` in a map (None for a non-map or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Like `get`, but a `null` counts as absent (PROTOCOL.md: `?` fields).
    pub fn opt(&self, key: &str) -> Option<&Value> {
        match self.get(key) {
            Some(Value::Null) | None => None,
            some => some,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.as_int().and_then(|i| u64::try_from(i).ok())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Text or bytes, as bytes (paths, argv, env).
    pub fn as_os_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Text(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Text when the bytes are valid UTF-8, else bytes.
    pub fn os_string(bytes: &[u8]) -> Value {
        match std::str::from_utf8(bytes) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(_) => Value::Bytes(bytes.to_vec()),
        }
    }
}

/// Builds a map: `map(&[("t", "ok".into())])`.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
macro_rules! from_int {
    ($($t:ty)*) => { $(impl From<$t> for Value { fn from(i: $t) -> Value { Value::Int(i as i128) } })* };
}
from_int!(u8 u16 u32 u64 usize i32 i64);

// ---------------------------------------------------------------- encoding

fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg < 0x100 {
        out.push(m | 24);
        out.push(arg as u8);
    } else if arg < 0x10000 {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg < 0x1_0000_0000 {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Encodes in shortest form, map keys in their order. Integers outside the
/// subset's range are clamped (the agent never produces them).
pub fn encode_into(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int(i) => {
            if *i >= 0 {
                head(out, 0, (*i).min(u64::MAX as i128) as u64)
            } else {
                head(out, 1, (-1 - (*i).max(i64::MIN as i128)) as u64)
            }
        }
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                encode_into(out, item);
            }
        }
        Value::Map(entries) => {
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                head(out, 3, k.len() as u64);
                out.extend_from_slice(k.as_bytes());
                encode_into(out, v);
            }
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
}

#[cfg_attr(not(test), allow(dead_code))]
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, value);
    out
}

// ---------------------------------------------------------------- decoding

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, message: &'static str, offset: usize) -> Result<T, CborError> {
        Err(CborError { message, offset })
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        match self.buf.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => self.fail("truncated CBOR", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if n > self.buf.len() - self.pos {
            return self.fail("truncated CBOR", self.pos);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a head: (major, additional info, argument), checked shortest.
    fn head(&mut self) -> Result<(u8, u8, u64, usize), CborError> {
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == 7 {
            return Ok((major, info, info as u64, at));
        }
        let arg = match info {
            0..=23 => info as u64,
            24 => {
                let v = self.byte()? as u64;
                if v < 24 {
                    return self.fail("integer not in shortest form", at);
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u16::from_be_bytes([b[0], b[1]]) as u64;
                if v < 0x100 {
                    return self.fail("integer not in shortest form", at);
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
                if v < 0x10000 {
                    return self.fail("integer not in shortest form", at);
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if v < 0x1_0000_0000 {
                    return self.fail("integer not in shortest form", at);
                }
                v
            }
            31 => return self.fail("indefinite length is not allowed", at),
            _ => return self.fail("reserved additional information", at),
        };
        Ok((major, info, arg, at))
    }

    /// A length that must fit in the rest of the body.
    fn length(&self, arg: u64, at: usize) -> Result<usize, CborError> {
        if arg > (self.buf.len() - self.pos) as u64 {
            return self.fail("length exceeds the body", at);
        }
        Ok(arg as usize)
    }

    fn text(&mut self, arg: u64, at: usize) -> Result<String, CborError> {
        let n = self.length(arg, at)?;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => self.fail("text string is not valid UTF-8", at),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return self.fail("nesting too deep", self.pos);
        }
        let (major, _info, arg, at) = self.head()?;
        match major {
            0 => Ok(Value::Int(arg as i128)),
            1 => {
                if arg > i64::MAX as u64 {
                    return self.fail("negative integer below -2^63", at);
                }
                Ok(Value::Int(-1 - arg as i128))
            }
            2 => {
                let n = self.length(arg, at)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => Ok(Value::Text(self.text(arg, at)?)),
            4 => {
                // Every item takes at least one byte: this bounds the allocation.
                let n = self.length(arg, at)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let n = self.length(arg, at)?;
                let mut entries: Vec<(String, Value)> = Vec::with_capacity(n);
                for _ in 0..n {
                    let (kmajor, _, karg, kat) = self.head()?;
                    if kmajor != 3 {
                        return self.fail("map key is not a text string", kat);
                    }
                    let key = self.text(karg, kat)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return self.fail("duplicate map key", kat);
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                Ok(Value::Map(entries))
            }
            6 => self.fail("tags are not allowed", at),
            _ => match arg {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                _ => self.fail(
                    "only false, true and null are allowed among simple values and floats",
                    at,
                ),
            },
        }
    }
}

/// Decodes exactly one item; trailing bytes are an error.
pub fn decode(buf: &[u8]) -> Result<Value, CborError> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.value(0)?;
    if r.pos != buf.len() {
        return r.fail("trailing bytes after the CBOR item", r.pos);
    }
    Ok(v)
}

// ---------------------------------------------------------------- diagnostic notation

#[cfg_attr(not(test), allow(dead_code))]
fn diag_text(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg_attr(not(test), allow(dead_code))]
fn diag_into(out: &mut String, v: &Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bytes(b) => {
            out.push_str("h'");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\'');
        }
        Value::Text(s) => diag_text(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                diag_into(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                diag_text(out, k);
                out.push_str(": ");
                diag_into(out, item);
            }
            out.push('}');
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// RFC 8949 diagnostic notation in the spelling of golden/frames.txt.
#[cfg_attr(not(test), allow(dead_code))]
pub fn diagnostic(v: &Value) -> String {
    let mut out = String::new();
    diag_into(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn integers_round_trip() {
        for i in [
            0i128,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX as i128,
            1 << 32,
            u64::MAX as i128,
            -1,
            -24,
            -25,
            -256,
            -257,
            i64::MIN as i128,
        ] {
            let e = encode(&Value::Int(i));
            assert_eq!(decode(&e), Ok(Value::Int(i)), "{i}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "18",
            "1817",
            "5a7fffffff",
            "9f",
            "bf",
            "f7",
            "f8ff",
            "fa00000000",
            "c0",
            "a1",
            "a10100",
            "62c328",
            "1c",
            "3bffffffffffffffff",
            "a16174",
        ] {
            assert!(decode(&hex(bad)).is_err(), "{bad}");
        }
        // depth: 16 nested arrays are fine, 17 are not
        let ok = format!("{}00", "81".repeat(16));
        assert!(decode(&hex(&ok)).is_ok());
        let deep = format!("{}00", "81".repeat(17));
        assert!(decode(&hex(&deep)).is_err());
        // huge declared array length must not allocate
        assert!(decode(&hex("9b00000001ffffffff")).is_err());
    }

    #[test]
    fn diag_escapes() {
        let v = Value::Text("a\"\\\u{7f}\n\u{1}é".into());
        assert_eq!(diagnostic(&v), "\"a\\\"\\\\\\u007f\\u000a\\u0001é\"");
    }
}
