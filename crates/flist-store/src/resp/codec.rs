//! A small RESP2 codec: command encoding and incremental, zero-copy reply decoding (the
//! client side), and the other direction for the read-only 0-db endpoint
//! ([`super::server`]): an incremental request reader that never buffers more than its
//! limits allow, and reply encoding.

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

// ----- the server side: requests in, replies out ----------------------------------------

/// Appends `+<text>\r\n`.
pub(crate) fn encode_status(text: &str, out: &mut Vec<u8>) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `-<text>\r\n` (CR and LF in `text` become spaces: an error is one line).
pub(crate) fn encode_error(text: &str, out: &mut Vec<u8>) {
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Appends `:<n>\r\n`.
pub(crate) fn encode_int(n: i64, out: &mut Vec<u8>) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a nil bulk string, `$-1\r\n`.
pub(crate) fn encode_nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends a whole bulk string.
pub(crate) fn encode_bulk(data: &[u8], out: &mut Vec<u8>) {
    encode_arg_header(data.len(), out);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Limits of a `RequestReader`: what one client may make the server hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most arguments in one command, its name included (`MGET` takes at most 1023 keys on
    /// 0-db, so 1024).
    pub max_args: usize,
    /// Longest argument kept in memory. Longer ones (a `SET` value) are read and dropped
    /// as they arrive, never buffered; the command then only learns their size.
    pub max_kept_arg: usize,
    /// Longest argument accepted at all (0-db's largest value, 8 MiB); a longer bulk
    /// length is a protocol error.
    pub max_arg: usize,
    /// Longest inline command line (`PING\r\n`, as typed into `nc`).
    pub max_inline: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_args: 1024,
            max_kept_arg: 4096,
            max_arg: 8 << 20,
            max_inline: 64 * 1024,
        }
    }
}

impl RequestLimits {
    /// Most bytes a `RequestReader` leaves in its buffer while waiting for the rest of a
    /// request: a partial inline line or a partial kept argument.
    pub fn max_buffered(&self) -> usize {
        self.max_inline
            .max(self.max_kept_arg + 2)
            .max(HEADER_MAX + 2)
    }
}

/// Longest `*<n>` / `$<n>` header line of a request.
const HEADER_MAX: usize = 32;

/// One command read from a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The arguments, the command name first; an argument longer than
    /// [`RequestLimits::max_kept_arg`] is empty here (see `dropped`). Empty for an empty
    /// command (`*0`, a blank inline line), which gets no reply.
    pub args: Vec<Bytes>,
    /// The size of the largest argument that was too long to keep, if any.
    pub dropped: Option<usize>,
}

/// Where a [`RequestReader`] is within a request.
#[derive(Debug, Default)]
enum ReadState {
    /// Between requests.
    #[default]
    Idle,
    /// In an array command, `left` arguments to go; `skip` bytes (the rest of an argument
    /// too long to keep, then its CRLF, which is checked) are being dropped.
    Args {
        left: usize,
        req: Request,
        skip: usize,
    },
}

/// Reads client commands incrementally: `*<n>\r\n` arrays of `$<len>\r\n<bytes>\r\n`
/// bulk strings, or inline lines (`PING\r\n`) as Redis accepts them. It consumes what it
/// has understood from the buffer it is given and leaves at most
/// [`RequestLimits::max_buffered`] bytes in it; arguments too long to keep are counted and
/// dropped as they arrive. A protocol error (bad type byte, bad or huge length, missing
/// CRLF, too many arguments, an inline line too long) is final: the connection is to be
/// closed after answering it.
#[derive(Debug, Default)]
pub struct RequestReader {
    limits: RequestLimits,
    state: ReadState,
}

impl RequestReader {
    /// A reader with these limits.
    pub fn new(limits: RequestLimits) -> Self {
        RequestReader {
            limits,
            state: ReadState::Idle,
        }
    }

    /// Whether a request has begun and is not complete (or bytes of one wait in `buf`).
    pub fn in_request(&self, buf: &[u8]) -> bool {
        !matches!(self.state, ReadState::Idle) || !buf.is_empty()
    }

    /// The next complete request at the front of `buf` (consumed), `None` when more bytes
    /// are needed (what could be used was consumed), or a protocol error.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, String> {
        loop {
            match std::mem::take(&mut self.state) {
                ReadState::Idle => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        return self.inline(buf);
                    }
                    let Some(line) = self.header(buf)? else {
                        return Ok(None);
                    };
                    let n = parse_int(&line)?;
                    if n <= 0 {
                        return Ok(Some(Request::default())); // `*0`, `*-1`: nothing to do
                    }
                    let n = usize::try_from(n).map_err(|_| format!("bad array length {n}"))?;
                    if n > self.limits.max_args {
                        return Err(format!(
                            "too many arguments ({n}, at most {})",
                            self.limits.max_args
                        ));
                    }
                    self.state = ReadState::Args {
                        left: n,
                        req: Request {
                            args: Vec::with_capacity(n.min(64)),
                            dropped: None,
                        },
                        skip: 0,
                    };
                }
                ReadState::Args {
                    left,
                    mut req,
                    skip,
                } => {
                    if skip > 0 {
                        // Drop what is there of the long argument; its CRLF is checked once
                        // in view.
                        let body = skip.saturating_sub(2);
                        let n = buf.len().min(body);
                        let _ = buf.split_to(n);
                        let skip = skip - n;
                        if skip > 2 || buf.len() < 2 {
                            self.state = ReadState::Args { left, req, skip };
                            return Ok(None);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err("bulk string not terminated by CRLF".into());
                        }
                        let _ = buf.split_to(2);
                        self.state = ReadState::Args {
                            left: left - 1,
                            req,
                            skip: 0,
                        };
                        continue;
                    }
                    if left == 0 {
                        return Ok(Some(req));
                    }
                    let Some(&tag) = buf.first() else {
                        self.state = ReadState::Args { left, req, skip };
                        return Ok(None);
                    };
                    if tag != b'$' {
                        return Err(format!("expected '$', got byte 0x{tag:02x}"));
                    }
                    let Some(eol) = find_crlf(&buf[..buf.len().min(HEADER_MAX + 2)], 1) else {
                        if buf.len() >= HEADER_MAX + 2 {
                            return Err("bulk length line too long".into());
                        }
                        self.state = ReadState::Args { left, req, skip };
                        return Ok(None);
                    };
                    let n = parse_int(&buf[1..eol])?;
                    let n = usize::try_from(n).map_err(|_| format!("bad bulk length {n}"))?;
                    if n > self.limits.max_arg {
                        return Err(format!(
                            "bulk length {n} is too large (at most {})",
                            self.limits.max_arg
                        ));
                    }
                    if n > self.limits.max_kept_arg {
                        let _ = buf.split_to(eol + 2);
                        req.dropped = Some(req.dropped.map_or(n, |d| d.max(n)));
                        req.args.push(Bytes::new());
                        self.state = ReadState::Args {
                            left,
                            req,
                            skip: n + 2,
                        };
                        continue;
                    }
                    let end = eol + 2 + n + 2;
                    if buf.len() < end {
                        self.state = ReadState::Args { left, req, skip };
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err("bulk string not terminated by CRLF".into());
                    }
                    let mut frame = buf.split_to(end);
                    let _ = frame.split_to(eol + 2);
                    frame.truncate(n);
                    req.args.push(frame.freeze());
                    self.state = ReadState::Args {
                        left: left - 1,
                        req,
                        skip: 0,
                    };
                }
            }
        }
    }

    /// A `*<n>` header line, consumed, or `None` while incomplete.
    fn header(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, String> {
        match find_crlf(&buf[..buf.len().min(HEADER_MAX + 2)], 1) {
            Some(eol) => {
                let line = buf[1..eol].to_vec();
                let _ = buf.split_to(eol + 2);
                Ok(Some(line))
            }
            None if buf.len() >= HEADER_MAX + 2 => Err("array length line too long".into()),
            None => Ok(None),
        }
    }

    /// An inline command: one line, arguments separated by spaces or tabs.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, String> {
        let limit = buf.len().min(self.limits.max_inline + 1);
        let Some(eol) = buf[..limit].iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_inline {
                return Err(format!(
                    "inline command longer than {} bytes",
                    self.limits.max_inline
                ));
            }
            return Ok(None);
        };
        let line = buf.split_to(eol + 1).freeze();
        let end = if eol > 0 && line[eol - 1] == b'\r' {
            eol - 1
        } else {
            eol
        };
        let text = line.slice(..end);
        let mut args = Vec::new();
        let mut start = None;
        for (i, &b) in text.iter().enumerate() {
            let sep = b == b' ' || b == b'\t';
            match (sep, start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    args.push(text.slice(s..i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            args.push(text.slice(s..));
        }
        if args.len() > self.limits.max_args {
            return Err(format!(
                "too many arguments ({}, at most {})",
                args.len(),
                self.limits.max_args
            ));
        }
        // The same rule as for bulk strings: a long argument is only counted.
        let mut dropped = None;
        for a in &mut args {
            if a.len() > self.limits.max_kept_arg {
                dropped = Some(dropped.map_or(a.len(), |d: usize| d.max(a.len())));
                *a = Bytes::new();
            }
        }
        Ok(Some(Request { args, dropped }))
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

    fn requests(input: &[u8]) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
        let mut r = RequestReader::new(RequestLimits {
            max_args: 4,
            max_kept_arg: 8,
            max_arg: 100,
            max_inline: 32,
        });
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match r.next(&mut buf) {
                Ok(Some(req)) => out.push(req.args.iter().map(|a| a.to_vec()).collect()),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn reads_requests_arrays_and_inline() {
        let (r, e) = requests(b"*2\r\n$3\r\nGET\r\n$2\r\nk\x00\r\nPING\r\n  select  ns \n*0\r\n");
        assert_eq!(e, None);
        assert_eq!(
            r,
            vec![
                vec![b"GET".to_vec(), b"k\x00".to_vec()],
                vec![b"PING".to_vec()],
                vec![b"select".to_vec(), b"ns".to_vec()],
                vec![],
            ]
        );
    }

    #[test]
    fn long_arguments_are_dropped_not_kept() {
        let mut r = RequestReader::new(RequestLimits {
            max_args: 4,
            max_kept_arg: 8,
            max_arg: 100,
            max_inline: 32,
        });
        let whole = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50\r\n01234567890123456789012345678901234567890123456789\r\n";
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in whole {
            buf.extend_from_slice(&[*b]);
            if let Some(req) = r.next(&mut buf).unwrap() {
                got = Some(req);
            }
            assert!(buf.len() <= 10, "{} bytes buffered", buf.len());
        }
        let req = got.unwrap();
        assert_eq!(req.dropped, Some(50));
        assert_eq!(req.args.len(), 3);
        assert_eq!(req.args[0].as_ref(), b"SET");
    }

    #[test]
    fn malformed_requests_are_errors() {
        for (bad, why) in [
            (&b"*1\r\n$99999999999\r\n"[..], "too large"),
            (b"*1\r\n:5\r\n", "expected '$'"),
            (b"*1\r\n$-3\r\n", "bad bulk length"),
            (b"*9\r\n", "too many arguments"),
            (b"*1\r\n$3\r\nGETXX", "CRLF"),
            (b"*1\r\n$20\r\n01234567890123456789XX", "CRLF"),
            (b"*1x\r\n", "bad integer"),
            (&[b'*'; 40][..], "too long"),
            (&[b'A'; 40][..], "inline command longer"),
        ] {
            let (_, e) = requests(bad);
            let e = e.unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        // Truncated: no error, no request, waiting for more.
        assert_eq!(requests(b"*2\r\n$3\r\nGET\r\n$5\r\nab"), (vec![], None));
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k\x00", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$2\r\nk\x00\r\n$0\r\n\r\n");
    }
}
