//! When to load chunks ahead of a reader, and how far.
//!
//! A [`ReadAhead`] watches the reads of the open files. A read that starts a file or lands
//! near where the file's reads have got to is sequential (the kernel sends a file's reads
//! from several threads, so they arrive slightly out of order); each sequential read doubles
//! the file's window, from `initial` up to `max` chunks, and a jump elsewhere shrinks it back.
//! The chunks ahead of the read, up to the window, are returned once each: what was already
//! asked for is not asked again. The loading itself is [`crate::ChunkSource::prefetch`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

/// How far (in bytes) from the furthest point read a read still counts as sequential.
const SLACK: u64 = 4 << 20;

#[derive(Debug, Default)]
struct File {
    /// The furthest byte read.
    end: u64,
    /// Window in chunks.
    window: usize,
    /// Chunks up to this index (exclusive) have been asked for.
    requested: usize,
}

/// Per-file read positions and read-ahead windows, in chunks.
#[derive(Debug)]
pub struct ReadAhead {
    initial: usize,
    max: usize,
    files: Mutex<HashMap<u64, File>>,
}

impl ReadAhead {
    /// Windows of `initial` chunks growing to `max` (`max` 0: never load ahead).
    pub fn new(initial: usize, max: usize) -> Self {
        ReadAhead {
            initial: initial.min(max),
            max,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Records a read of bytes `offset..end` of file `file` covering chunks
    /// `first..=last` of its `chunks`; returns the chunks to load now (the ones after
    /// `first` the read needs, plus the window when the read is sequential), never the
    /// same chunk twice while the reads stay sequential.
    pub fn on_read(
        &self,
        file: u64,
        offset: u64,
        end: u64,
        first: usize,
        last: usize,
        chunks: usize,
    ) -> Range<usize> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let f = files.entry(file).or_default();
        let fresh = f.end == 0 && f.window == 0;
        let sequential = if fresh {
            offset == 0
        } else {
            offset <= f.end + SLACK && offset + SLACK >= f.end
        };
        let want = if sequential {
            f.window = if fresh || f.window == 0 {
                self.initial
            } else {
                (f.window * 2).min(self.max)
            };
            f.end = f.end.max(end);
            (last + 1 + f.window).min(chunks)
        } else {
            f.window = 0;
            f.end = end;
            f.requested = first + 1;
            last + 1
        };
        let from = (first + 1).max(f.requested);
        f.requested = f.requested.max(want);
        if want > from {
            from..want
        } else {
            from..from
        }
    }

    /// Forgets a file's position (it was closed).
    pub fn forget(&self, file: u64) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&file);
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sequential_reads_widen_the_window_and_ask_once() {
        let ra = ReadAhead::new(2, 8);
        // from the start: sequential, the initial window
        assert_eq!(ra.on_read(7, 0, 100, 0, 0, 100), 1..3);
        // continuing: the window doubles; only what was not asked yet
        assert_eq!(ra.on_read(7, 100, MIB / 2, 0, 0, 100), 3..5);
        assert_eq!(ra.on_read(7, MIB / 2, MIB, 1, 1, 100), 5..10);
        // capped at 8 chunks ahead
        assert_eq!(ra.on_read(7, MIB, 3 * MIB / 2, 2, 2, 100), 10..11);
        // slightly out of order (another kernel thread): still sequential, nothing new
        assert_eq!(ra.on_read(7, MIB / 2, MIB, 1, 1, 100), 11..11);
        // a jump: only the chunks the read covers, and the window starts over
        assert_eq!(ra.on_read(7, 40 * MIB, 41 * MIB, 80, 81, 100), 81..82);
        assert_eq!(ra.on_read(7, 41 * MIB, 42 * MIB, 82, 83, 100), 83..86);
        // bounded by the file
        assert_eq!(ra.on_read(8, 0, 10, 0, 0, 2), 1..2);
        // another file keeps its own position: not from the start, not sequential
        assert_eq!(ra.on_read(9, 500, 600, 0, 0, 10), 1..1);
        // forgotten: starts over
        ra.forget(7);
        assert_eq!(ra.on_read(7, 0, 100, 0, 0, 100), 1..3);
    }

    #[test]
    fn no_read_ahead() {
        let ra = ReadAhead::new(4, 0);
        assert_eq!(ra.on_read(1, 0, 100, 0, 0, 10), 1..1);
        // a read over three chunks still loads the two after the first in parallel
        assert_eq!(ra.on_read(1, 100, 3 * MIB / 2, 0, 2, 10), 1..3);
    }
}
