//! Compression detection and the decompression thread.
//!
//! The input is decoded on its own thread into 1 MiB buffers passed through a bounded
//! channel to the archive parser, which reads them through [`StreamReader`]. Decompressed
//! bytes are counted as they are produced and the stream stops with
//! [`LimitKind::ExpandedSize`] as soon as the limit is crossed: headers are never trusted.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{ConvertError, LimitKind};
use crate::options::{Counters, Limits};

/// Compression of an input stream, detected from its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (possibly several concatenated members).
    Gzip,
    /// Zstandard.
    Zstd,
    /// xz.
    Xz,
    /// bzip2.
    Bzip2,
    /// Not compressed.
    None,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::None => "none",
        }
    }
}

/// Counts bytes read from the raw input.
struct CountingReader<'a, R> {
    inner: R,
    counters: &'a Counters,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

const BUF: usize = 1 << 20;

type Msg = Result<Vec<u8>, ConvertError>;

/// Reads `input`, detects its compression and streams decompressed buffers to `tx` until
/// the end, an error, the limit, or the receiver going away. Runs on its own thread.
pub(crate) fn decompress_into(
    input: &mut (dyn Read + Send),
    limits: &Limits,
    counters: &Counters,
    tx: Sender<Msg>,
    pool: Receiver<Vec<u8>>,
    detected: &std::sync::OnceLock<Compression>,
) {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Err(ConvertError::Input(e)));
                return;
            }
        }
    }
    let format = Compression::detect(&head[..got]);
    let _ = detected.set(format);
    // The head is counted when the decoder reads it back from the cursor.
    let raw = CountingReader {
        inner: io::Cursor::new(head[..got].to_vec()).chain(input),
        counters,
    };
    let raw = io::BufReader::with_capacity(256 << 10, raw);
    let mut decoder: Box<dyn Read + '_> = match format {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(raw) {
            Ok(d) => Box::new(d),
            Err(e) => {
                let _ = tx.send(Err(decode_err(format, counters, &e)));
                return;
            }
        },
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(raw)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(raw)),
        Compression::None => Box::new(raw),
    };
    let mut total = 0u64;
    loop {
        let mut buf = pool.try_recv().unwrap_or_else(|_| vec![0u8; BUF]);
        buf.resize(BUF, 0);
        let mut filled = 0;
        let mut eof = false;
        while filled < buf.len() {
            match decoder.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if filled > 0 {
                        buf.truncate(filled);
                        total += filled as u64;
                        counters.bytes_expanded.store(total, Ordering::Relaxed);
                        if tx.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    let err = if format == Compression::None {
                        ConvertError::Input(e)
                    } else {
                        decode_err(format, counters, &e)
                    };
                    let _ = tx.send(Err(err));
                    return;
                }
            }
        }
        buf.truncate(filled);
        total += filled as u64;
        counters.bytes_expanded.store(total, Ordering::Relaxed);
        if total > limits.max_expanded_bytes {
            let _ = tx.send(Err(ConvertError::Limit {
                what: LimitKind::ExpandedSize,
                value: total,
                limit: limits.max_expanded_bytes,
                entry: None,
            }));
            return;
        }
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

fn decode_err(format: Compression, counters: &Counters, e: &io::Error) -> ConvertError {
    let offset = counters.bytes_read.load(Ordering::Relaxed);
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ConvertError::Truncated {
            offset: counters.bytes_expanded.load(Ordering::Relaxed),
            entry: None,
            reason: format!(
                "{} stream ends early (compressed byte {offset}): {e}",
                format.name()
            ),
        }
    } else {
        ConvertError::Decompress {
            format: format.name(),
            offset,
            reason: e.to_string(),
        }
    }
}

/// State shared between the parser's reader and the parse loop.
#[derive(Default)]
pub(crate) struct ReadState {
    /// Uncompressed bytes consumed by the parser.
    pub pos: Cell<u64>,
    /// True while the parse loop itself reads member data.
    pub user_read: Cell<bool>,
    /// Bytes the archive library consumed on its own since the last member (headers,
    /// extension records, skipped data).
    pub gap: Cell<u64>,
    /// Largest gap allowed.
    pub max_gap: Cell<u64>,
    /// The typed error behind an `io::Error` this reader returned.
    pub error: RefCell<Option<ConvertError>>,
    /// Zero bytes at the end of what the archive library read on its own since the parse
    /// loop last read member data (the end-of-archive zero block, and padding).
    pub tail_zeros: Cell<u64>,
}

/// The parser's view of the decompressed stream.
pub(crate) struct StreamReader {
    rx: Receiver<Msg>,
    pool: Sender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    done: bool,
    pub(crate) state: Rc<ReadState>,
}

impl StreamReader {
    pub(crate) fn new(rx: Receiver<Msg>, pool: Sender<Vec<u8>>, max_gap: u64) -> Self {
        let state = Rc::new(ReadState::default());
        state.max_gap.set(max_gap);
        StreamReader {
            rx,
            pool,
            cur: Vec::new(),
            at: 0,
            done: false,
            state,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.at >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    let old = std::mem::replace(&mut self.cur, b);
                    let _ = self.pool.try_send(old);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    let msg = e.to_string();
                    *self.state.error.borrow_mut() = Some(e);
                    return Err(io::Error::other(msg));
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let mut n = buf.len().min(self.cur.len() - self.at);
        let st = &self.state;
        if !st.user_read.get() {
            let room = st.max_gap.get().saturating_sub(st.gap.get());
            if room == 0 {
                let e = ConvertError::Limit {
                    what: LimitKind::HeaderSize,
                    value: st.gap.get() + 1,
                    limit: st.max_gap.get(),
                    entry: None,
                };
                let msg = e.to_string();
                *st.error.borrow_mut() = Some(e);
                return Err(io::Error::other(msg));
            }
            n = n.min(room.min(usize::MAX as u64) as usize);
            st.gap.set(st.gap.get() + n as u64);
        }
        let bytes = &self.cur[self.at..self.at + n];
        if st.user_read.get() {
            st.tail_zeros.set(0);
        } else {
            let z = bytes.iter().rev().take_while(|b| **b == 0).count();
            st.tail_zeros.set(if z == n {
                st.tail_zeros.get() + n as u64
            } else {
                z as u64
            });
        }
        buf[..n].copy_from_slice(bytes);
        self.at += n;
        st.pos.set(st.pos.get() + n as u64);
        Ok(n)
    }
}

/// The ends of a decompression thread's channels: data out, data in, and the buffer pool.
pub(crate) type Channels = (
    Sender<Msg>,
    Receiver<Msg>,
    Sender<Vec<u8>>,
    Receiver<Vec<u8>>,
);

/// Channels for one decompression thread.
pub(crate) fn channels() -> Channels {
    let (tx, rx) = bounded::<Msg>(4);
    let (ptx, prx) = bounded::<Vec<u8>>(6);
    (tx, rx, ptx, prx)
}
