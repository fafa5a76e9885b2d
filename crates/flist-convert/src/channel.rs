//! [`ChannelReader`]: a blocking [`Read`] over byte chunks sent from async code, so an async
//! body (an HTTP upload, a registry download) can feed the blocking converter with bounded
//! memory (the channel's capacity).

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Reads the chunks received on a channel, in order; an `Err` item is returned as a read
/// error, and the end of the channel is the end of the stream. Must be read from a thread
/// where blocking is allowed (not an async task).
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    /// A reader over what is sent to `rx`'s sender.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunks_then_errors_and_ends() {
        let (tx, rx) = mpsc::channel(4);
        let feeder = std::thread::spawn(move || {
            for part in [&b"hel"[..], b"", b"lo"] {
                let _ = tx.blocking_send(Ok(Bytes::from_static(part)));
            }
        });
        let mut out = String::new();
        let r = ChannelReader::new(rx).read_to_string(&mut out);
        let _ = feeder.join();
        assert_eq!((r.ok(), out.as_str()), (Some(5), "hello"));

        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(io::Error::other("upload cut")));
        let err = ChannelReader::new(rx).read(&mut [0u8; 4]);
        assert!(err.is_err_and(|e| e.to_string() == "upload cut"));
    }
}
