//! Entry points for the fuzz targets under `fuzz/` and their stable regression tests; not
//! part of the API.

use bytes::BytesMut;

use crate::resp::codec::{take_reply, Reply};

/// What decoding a byte stream gave: the replies, then whether it ended in a protocol error
/// (else it stopped wanting more bytes).
type Outcome = (Vec<Reply>, bool);

/// Decodes `data` fed in pieces of the sizes `pieces` cycles through (all at once when
/// empty), checking that "incomplete" always asks for more than is buffered.
fn decode(data: &[u8], pieces: &[usize]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    loop {
        loop {
            match take_reply(&mut buf) {
                Err(_) => return (out, true),
                Ok(Ok(r)) => out.push(r),
                Ok(Err(need)) => {
                    assert!(
                        need > buf.len(),
                        "incomplete reply asks for {need} bytes with {} buffered",
                        buf.len()
                    );
                    break;
                }
            }
        }
        if fed == data.len() {
            return (out, false);
        }
        let n = match pieces.get(i % pieces.len().max(1)) {
            Some(&p) => p.clamp(1, data.len() - fed),
            None => data.len() - fed,
        };
        i += 1;
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
    }
}

fn encode(r: &Reply, out: &mut Vec<u8>) {
    match r {
        Reply::Status(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
        }
        Reply::Error(e) => {
            out.push(b'-');
            out.extend_from_slice(e.as_bytes());
        }
        Reply::Int(n) => out.extend_from_slice(format!(":{n}").as_bytes()),
        Reply::Bulk(None) => out.extend_from_slice(b"$-1"),
        Reply::Bulk(Some(b)) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
        }
        Reply::Array(None) => out.extend_from_slice(b"*-1"),
        Reply::Array(Some(items)) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for i in items {
                encode(i, out);
            }
            return;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Fuzz target body for the RESP reply decoder (what a chunk store server sends): any bytes
/// decode without panicking; feeding them in pieces (sizes from the first byte) gives the
/// same replies and the same end as feeding them at once; "incomplete" always asks for more
/// than is buffered; every decoded reply, re-encoded canonically, decodes to itself.
pub fn resp_replies(data: &[u8]) {
    let whole = decode(data, &[]);
    let step = usize::from(data.first().copied().unwrap_or(1) % 17) + 1;
    let pieces = [step, 1, step * 3 + 5, 2];
    let split = decode(data, &pieces);
    assert_eq!(whole, split, "decoding depends on how the bytes arrive");
    let mut canonical = Vec::new();
    for r in &whole.0 {
        encode(r, &mut canonical);
    }
    let again = decode(&canonical, &[]);
    assert_eq!(
        again,
        (whole.0, false),
        "a re-encoded reply decodes differently"
    );
}

// ----- the read-only 0-db endpoint -------------------------------------------------------

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::resp::codec::{encode_arg_header, encode_array_header, Request, RequestReader};
use crate::resp::server::{ServerOptions, ZdbEndpoint};
use crate::{RequestLimits, SetOutcome, Store, StoreError};

/// Limits small enough for a fuzzer to reach them.
fn fuzz_limits() -> RequestLimits {
    RequestLimits {
        max_args: 16,
        max_kept_arg: 64,
        max_arg: 4096,
        max_inline: 256,
    }
}

/// Reads `data` fed in pieces of the sizes `pieces` cycles through (all at once when empty):
/// the requests, then whether it ended in a protocol error. Checks that what is left
/// buffered while waiting never exceeds the reader's bound.
fn read_requests(data: &[u8], pieces: &[usize], limits: RequestLimits) -> (Vec<Request>, bool) {
    let mut reader = RequestReader::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    loop {
        loop {
            match reader.next(&mut buf) {
                Err(_) => return (out, true),
                Ok(Some(r)) => out.push(r),
                Ok(None) => {
                    assert!(
                        buf.len() <= limits.max_buffered(),
                        "{} bytes left buffered, the bound is {}",
                        buf.len(),
                        limits.max_buffered()
                    );
                    break;
                }
            }
        }
        if fed == data.len() {
            return (out, false);
        }
        let n = match pieces.get(i % pieces.len().max(1)) {
            Some(&p) => p.clamp(1, data.len() - fed),
            None => data.len() - fed,
        };
        i += 1;
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
    }
}

/// A request as a client library would send it.
fn encode_request(r: &Request, out: &mut Vec<u8>) {
    encode_array_header(r.args.len(), out);
    for a in &r.args {
        encode_arg_header(a.len(), out);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// An in-memory store holding a few fixed keys.
#[derive(Debug)]
struct MemStore(HashMap<Vec<u8>, Bytes>);

impl std::fmt::Display for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mem://fuzz")
    }
}

#[async_trait]
impl Store for MemStore {
    async fn set(&self, _: &[u8], _: Bytes) -> Result<SetOutcome, StoreError> {
        panic!("the read-only endpoint wrote to its store");
    }
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        Ok(keys.iter().map(|k| self.0.get(k).cloned()).collect())
    }
    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        Ok(keys.iter().map(|k| self.0.contains_key(k)).collect())
    }
    async fn set_many(&self, _: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        panic!("the read-only endpoint wrote to its store");
    }
}

/// Replies the endpoint should give to what `data` holds: one per non-empty request up to
/// and including a `QUIT`, plus one for a protocol error.
fn expected_replies(requests: &[Request], fault: bool) -> usize {
    let mut n = 0;
    for r in requests {
        let Some(name) = r.args.first() else { continue };
        n += 1;
        if name.eq_ignore_ascii_case(b"QUIT") {
            return n;
        }
    }
    n + usize::from(fault)
}

/// Fuzz target body for the read-only 0-db endpoint's protocol reader: any bytes read
/// without panicking; in pieces (sizes from the first byte) they give the same requests and
/// the same end as at once, never leaving more buffered than the bound; requests re-encoded
/// as a client library sends them read back the same; and the endpoint itself, served those
/// bytes over an in-memory stream, answers exactly one well-formed reply per request (the
/// client's decoder reads them all) and never writes to its store.
pub fn zdb_requests(data: &[u8]) {
    let limits = fuzz_limits();
    let whole = read_requests(data, &[], limits);
    let step = usize::from(data.first().copied().unwrap_or(1) % 17) + 1;
    let split = read_requests(data, &[step, 1, step * 3 + 5, 2], limits);
    assert_eq!(whole, split, "reading depends on how the bytes arrive");
    let kept: Vec<Request> = whole
        .0
        .iter()
        .filter(|r| r.dropped.is_none() && !r.args.is_empty())
        .cloned()
        .collect();
    let mut canonical = Vec::new();
    for r in &kept {
        encode_request(r, &mut canonical);
    }
    assert_eq!(
        read_requests(&canonical, &[], limits),
        (kept, false),
        "a re-encoded request reads differently"
    );

    let expected = expected_replies(&whole.0, whole.1);
    let store = MemStore(HashMap::from([
        (b"k".to_vec(), Bytes::from_static(b"value")),
        (vec![0u8; 16], Bytes::from(vec![7u8; 300])),
    ]));
    let opts = ServerOptions {
        limits,
        ..ServerOptions::default()
    };
    let endpoint = ZdbEndpoint::new(Arc::new(store), opts);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let answer = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(4096);
        let serving = endpoint.serve_connection(server);
        let talking = async move {
            let (mut rd, mut wr) = tokio::io::split(client);
            let send = async move {
                let _ = wr.write_all(data).await;
                let _ = wr.shutdown().await;
            };
            let mut answer = Vec::new();
            let recv = rd.read_to_end(&mut answer);
            let ((), got) = tokio::join!(send, recv);
            got.map(|_| answer)
        };
        let ((), answer) = tokio::join!(serving, talking);
        answer
    });
    let Ok(answer) = answer else {
        panic!("reading the endpoint's answer failed");
    };
    let (replies, bad) = decode(&answer, &[]);
    assert!(!bad, "the endpoint wrote a malformed reply: {answer:?}");
    assert_eq!(
        replies.len(),
        expected,
        "{} replies to {expected} requests: {answer:?}",
        replies.len()
    );
    assert_eq!(
        endpoint
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
