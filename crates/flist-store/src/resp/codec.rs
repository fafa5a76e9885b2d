//! A small RESP2 codec: command encoding and incremental, zero-copy reply decoding.

use bytes::{Bytes, BytesMut};

/// Largest bulk string accepted from a server (0-db values are at most 8 MiB; Redis 512 MB).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Largest array accepted from a server.
const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting accepted (SCAN replies nest 3 levels).
const MAX_DEPTH: usize = 8;
/// Longest status/error/integer line.
const MAX_LINE: usize = 64 * 1024;

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+...`
    Status(Bytes),
    /// `-...`
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n ...` or nil (`$-1`).
    Bulk(Option<Bytes>),
    /// `*n ...` or nil (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A short description for protocol error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Reply::Status(s) => format!("status {:?}", String::from_utf8_lossy(s)),
            Reply::Error(e) => format!("error {e:?}"),
            Reply::Int(n) => format!("integer {n}"),
            Reply::Bulk(None) => "nil".into(),
            Reply::Bulk(Some(b)) => format!("bulk string of {} bytes", b.len()),
            Reply::Array(None) => "nil array".into(),
            Reply::Array(Some(a)) => format!("array of {} items", a.len()),
        }
    }
}

/// Appends a whole command (an array of bulk strings) to `out`.
#[cfg(test)]
pub(crate) fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        encode_arg_header(a.len(), out);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `$len\r\n`.
pub(crate) fn encode_arg_header(len: usize, out: &mut Vec<u8>) {
    out.push(b'$');
    out.extend_from_slice(itoa(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `*n\r\n`.
pub(crate) fn encode_array_header(n: usize, out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn itoa(n: usize) -> String {
    n.to_string()
}

/// Outcome of scanning a buffer for one reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A whole reply of this many bytes is at the start of the buffer.
    Complete(usize),
    /// More bytes are needed; at least this many in total, when known.
    Incomplete(usize),
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    let limit = hay.len().min(MAX_LINE + 2);
    hay[..limit]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_int(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(line)))
}

/// Scans for a complete reply at `buf[pos..]`; returns its end or what is missing.
fn scan_at(buf: &[u8], pos: usize, depth: usize) -> Result<Result<usize, usize>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deeply".into());
    }
    let Some(&tag) = buf.get(pos) else {
        return Ok(Err(pos + 1));
    };
    let Some(eol) = find_crlf(buf, pos + 1) else {
        if buf.len() - pos > MAX_LINE + 2 {
            return Err("reply line too long".into());
        }
        return Ok(Err(buf.len() + 1));
    };
    let line = &buf[pos + 1..eol];
    let after = eol + 2;
    match tag {
        b'+' | b'-' => Ok(Ok(after)),
        b':' => parse_int(line).map(|_| Ok(after)),
        b'$' => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Ok(after));
            }
            let n = usize::try_from(n).map_err(|_| format!("bad bulk length {n}"))?;
            if n > MAX_BULK {
                return Err(format!("bulk string of {n} bytes is too large"));
            }
            let end = after + n + 2;
            if buf.len() < end {
                return Ok(Err(end));
            }
            if &buf[after + n..end] != b"\r\n" {
                return Err("bulk string not terminated by CRLF".into());
            }
            Ok(Ok(end))
        }
        b'*' => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Ok(after));
            }
            let n = usize::try_from(n).map_err(|_| format!("bad array length {n}"))?;
            if n > MAX_ARRAY {
                return Err(format!("array of {n} items is too large"));
            }
            let mut p = after;
            for _ in 0..n {
                match scan_at(buf, p, depth + 1)? {
                    Ok(end) => p = end,
                    Err(need) => return Ok(Err(need)),
                }
            }
            Ok(Ok(p))
        }
        other => Err(format!("unknown reply type byte 0x{other:02x}")),
    }
}

/// Scans `buf` for one complete reply.
pub(crate) fn scan(buf: &[u8]) -> Result<Scan, String> {
    Ok(match scan_at(buf, 0, 0)? {
        Ok(n) => Scan::Complete(n),
        Err(need) => Scan::Incomplete(need),
    })
}

/// Decodes a reply known (by [`scan`]) to be complete at `frame[pos..]`.
fn decode_at(frame: &Bytes, pos: usize) -> Result<(Reply, usize), String> {
    let tag = *frame.get(pos).ok_or("truncated reply")?;
    let eol = find_crlf(frame, pos + 1).ok_or("truncated reply")?;
    let line = &frame[pos + 1..eol];
    let after = eol + 2;
    Ok(match tag {
        b'+' => (Reply::Status(frame.slice(pos + 1..eol)), after),
        b'-' => (
            Reply::Error(String::from_utf8_lossy(line).into_owned()),
            after,
        ),
        b':' => (Reply::Int(parse_int(line)?), after),
        b'$' => {
            let n = parse_int(line)?;
            if n < 0 {
                (Reply::Bulk(None), after)
            } else {
                let n = usize::try_from(n).map_err(|_| "bad bulk length")?;
                (
                    Reply::Bulk(Some(frame.slice(after..after + n))),
                    after + n + 2,
                )
            }
        }
        b'*' => {
            let n = parse_int(line)?;
            if n < 0 {
                (Reply::Array(None), after)
            } else {
                let n = usize::try_from(n).map_err(|_| "bad array length")?;
                let mut items = Vec::with_capacity(n.min(1024));
                let mut p = after;
                for _ in 0..n {
                    let (r, next) = decode_at(frame, p)?;
                    items.push(r);
                    p = next;
                }
                (Reply::Array(Some(items)), p)
            }
        }
        other => return Err(format!("unknown reply type byte 0x{other:02x}")),
    })
}

/// Takes one complete reply off the front of `buf`, if there is one.
pub(crate) fn take_reply(buf: &mut BytesMut) -> Result<Result<Reply, usize>, String> {
    match scan(buf)? {
        Scan::Incomplete(need) => Ok(Err(need)),
        Scan::Complete(n) => {
            let frame = buf.split_to(n).freeze();
            let (reply, end) = decode_at(&frame, 0)?;
            debug_assert_eq!(end, n);
            Ok(Ok(reply))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Reply> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Ok(r) = take_reply(&mut buf).unwrap() {
            out.push(r);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn decodes_every_type() {
        let r =
            all(b"+OK\r\n-ERR x\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nk\r\n$-1\r\n*-1\r\n");
        assert_eq!(
            r,
            vec![
                Reply::Status(Bytes::from_static(b"OK")),
                Reply::Error("ERR x".into()),
                Reply::Int(42),
                Reply::Bulk(Some(Bytes::from_static(b"a\r\n"))),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(Bytes::from_static(b"k"))),
                    Reply::Bulk(None)
                ])),
                Reply::Array(None),
            ]
        );
    }

    #[test]
    fn incremental_input() {
        let whole = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(take_reply(&mut buf).unwrap().is_err(), "cut {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert!(take_reply(&mut buf).unwrap().is_ok(), "cut {cut}");
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b"$-5\r\n",
            b"$abc\r\n",
            b"$3\r\nabcXY",
            b"*-3\r\n",
            b"$99999999999999\r\n",
            b"*99999999999\r\n",
            b":1.5\r\n",
        ] {
            assert!(take_reply(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
        let deep = b"*1\r\n".repeat(50);
        assert!(take_reply(&mut BytesMut::from(&deep[..])).is_err());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k\x00", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$2\r\nk\x00\r\n$0\r\n\r\n");
    }
}
