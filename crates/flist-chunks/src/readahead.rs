//! When to load chunks ahead of a reader.
//!
//! A [`ReadAhead`] watches the reads of the open files: a read that starts a file or
//! continues where the previous read of the same file ended is sequential, and the next
//! `window` chunks after it are worth loading now ([`crate::ChunkSource::prefetch`]). The
//! policy lives here, apart from the file system, so it can grow (a window that widens
//! with sequential access, a recorded prefetch list) without touching the readers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

/// Per-file read positions and the read-ahead window, in chunks.
#[derive(Debug)]
pub struct ReadAhead {
    window: usize,
    next_offset: Mutex<HashMap<u64, u64>>,
}

impl ReadAhead {
    /// Loads `window` chunks ahead of sequential reads (0: never).
    pub fn new(window: usize) -> Self {
        ReadAhead {
            window,
            next_offset: Mutex::new(HashMap::new()),
        }
    }

    /// Records a read of bytes `offset..end` of file `file` covering chunks
    /// `first..=last` of its `chunks`; returns the chunks to load ahead (the ones after
    /// `first` the read needs, plus the window when the read is sequential).
    pub fn on_read(
        &self,
        file: u64,
        offset: u64,
        end: u64,
        first: usize,
        last: usize,
        chunks: usize,
    ) -> Range<usize> {
        let sequential = {
            let mut next = self.next_offset.lock().unwrap_or_else(|p| p.into_inner());
            let seq = offset == 0 || next.get(&file) == Some(&offset);
            next.insert(file, end);
            seq
        };
        let ahead_end = if sequential {
            (last + 1 + self.window).min(chunks)
        } else {
            last + 1
        };
        if ahead_end > first + 1 {
            first + 1..ahead_end
        } else {
            first + 1..first + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;

    #[test]
    fn sequential_reads_load_the_window_ahead() {
        let ra = ReadAhead::new(4);
        // from the start: sequential
        assert_eq!(ra.on_read(7, 0, 100, 0, 0, 10), 1..5);
        // continuing: sequential
        assert_eq!(ra.on_read(7, 100, 600_000, 0, 1, 10), 1..6);
        // a jump: only the chunks the read covers
        assert_eq!(ra.on_read(7, 3 << 20, (3 << 20) + 10, 6, 6, 10), 7..7);
        // near the end: bounded by the file
        assert_eq!(ra.on_read(8, 0, 10, 8, 8, 10), 9..10);
        // another file keeps its own position
        assert_eq!(ra.on_read(9, 500, 600, 0, 0, 10), 1..1);
    }
}
