//! Routes the first frame of a stream (a request) by its `t`.

use crate::cbor::{self, Value};
use crate::conn::{self, Conn};
use crate::proto::{self, FLAG_END};
use crate::{exec, fsops, setup};

/// Protocol versions this agent speaks.
pub const VERSIONS: &[u64] = &[1];

pub fn request(c: &'static Conn, id: u32, flags: u8, body: Value) {
    let t = match &body {
        Value::Map(entries) => match entries.first() {
            Some((k, Value::Text(t))) if k == "t" => Some(t.clone()),
            _ => None,
        },
        _ => None,
    };
    let Some(t) = t else {
        return reject(
            c,
            id,
            "EPROTO",
            71,
            "a message is a map whose first key is \"t\" (text)",
        );
    };
    match t.as_str() {
        "hello" => hello(c, id, &body),
        "ping" => {
            c.send_unregistered(id, FLAG_END, &cbor::map(vec![("t", "pong".into())]));
        }
        "setup" => setup::request(c, id, body),
        "shutdown" => {
            c.send_unregistered(id, FLAG_END, &conn::ok());
            std::thread::spawn(setup::shutdown);
        }
        "exec" => exec::request(c, id, flags, body),
        "fs.read" => fsops::read_request(c, id, body),
        "fs.write" => fsops::write_request(c, id, flags, body),
        "fs.list" | "fs.stat" | "fs.mkdir" | "fs.remove" | "fs.rename" | "fs.copy" => {
            conn::spawn_oneshot(c, id, move || fsops::simple(&t, &body));
        }
        other => reject(
            c,
            id,
            "EBADMSG",
            74,
            &format!("unknown request type {other:?}"),
        ),
    }
}

fn reject(c: &Conn, id: u32, code: &str, errno: i32, message: &str) {
    c.send_unregistered(id, FLAG_END, &proto::error_body(code, errno, message, None));
}

fn hello(c: &Conn, id: u32, body: &Value) {
    let Some(versions) = body.get("versions").and_then(|v| v.as_array()) else {
        return reject(c, id, "EPROTO", 71, "hello needs versions: [int, ...]");
    };
    let best = versions
        .iter()
        .filter_map(|v| v.as_u64())
        .filter(|v| VERSIONS.contains(v))
        .max();
    match best {
        Some(v) => {
            let reply = cbor::map(vec![
                ("t", "hello".into()),
                ("version", v.into()),
                ("agent", crate::VERSION.into()),
            ]);
            c.send_unregistered(id, FLAG_END, &reply);
        }
        None => reject(
            c,
            id,
            "EPROTONOSUPPORT",
            93,
            &format!("no common protocol version; the agent supports {VERSIONS:?}"),
        ),
    }
}
