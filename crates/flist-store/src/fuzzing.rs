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
