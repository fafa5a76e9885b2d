//! Integration with `flist-convert`: running its converters with our progress reporting,
//! and grafting a converted tree into a session.

use flist_format::merge::copy_subtree;
use flist_format::{NodeId, Tree};

use crate::response::Progress;

/// Runs a conversion on a scoped thread, forwarding its progress reports to `progress`
/// from the calling thread (the converter wants a `'static` callback).
pub fn with_progress<T: Send>(
    message: &str,
    progress: &dyn Progress,
    opts: flist_convert::ConvertOptions,
    work: impl FnOnce(flist_convert::ConvertOptions) -> T + Send,
) -> T {
    with_progress_of(message, progress, Measure::Expanded(0), opts, work)
}

/// What a conversion's progress is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Input bytes read (compressed archive bytes) of this total (an archive file's size).
    Read(u64),
    /// Content bytes of this total (0: unknown), e.g. a directory's file sizes.
    Expanded(u64),
}

/// What a conversion of `source` reports its progress against: the archive file's size, a
/// directory's content size, or nothing known (standard input).
pub fn measure_of(source: &flist_convert::Source<'_>) -> Measure {
    match source {
        flist_convert::Source::Archive { len: Some(n), .. } => Measure::Read(*n),
        flist_convert::Source::Archive { len: None, .. } => Measure::Expanded(0),
        flist_convert::Source::Dir(p) => Measure::Expanded(dir_content_size(p)),
    }
}

/// The total size of the regular files under `dir` (not following symlinks; unreadable
/// parts are skipped): the total a directory pack reports progress against.
pub fn dir_content_size(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                total = total.saturating_add(e.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    total
}

/// [`with_progress`] with bytes measured as `measure` says (for bars with an ETA).
pub fn with_progress_of<T: Send>(
    message: &str,
    progress: &dyn Progress,
    measure: Measure,
    mut opts: flist_convert::ConvertOptions,
    work: impl FnOnce(flist_convert::ConvertOptions) -> T + Send,
) -> T {
    forward_progress(message, progress, measure, move |p| {
        opts.progress = Some(p);
        work(opts)
    })
}

/// Runs a re-encoding ([`flist_convert::reencode()`]) with its progress (plaintext bytes of
/// `total`) forwarded to `progress`.
pub fn with_reencode_progress<T: Send>(
    progress: &dyn Progress,
    total: u64,
    mut opts: flist_convert::ReencodeOptions,
    work: impl FnOnce(flist_convert::ReencodeOptions) -> T + Send,
) -> T {
    forward_progress("converting", progress, Measure::Expanded(total), move |p| {
        opts.progress = Some(p);
        work(opts)
    })
}

/// Runs `work` on a scoped thread with a progress callback whose reports are forwarded to
/// `progress` from the calling thread (converters want a `'static` callback).
fn forward_progress<T: Send>(
    message: &str,
    progress: &dyn Progress,
    measure: Measure,
    work: impl FnOnce(std::sync::Arc<dyn flist_convert::Progress>) -> T + Send,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel::<flist_convert::ProgressReport>();
    let tx = std::sync::Mutex::new(tx);
    let callback: std::sync::Arc<dyn flist_convert::Progress> =
        std::sync::Arc::new(move |r: &flist_convert::ProgressReport| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(*r);
            }
        });
    std::thread::scope(|s| {
        let handle = s.spawn(move || work(callback));
        // ends when the worker drops the callback (and with it the sender)
        for r in rx {
            let chunks = r.chunks_new + r.chunks_reused;
            match measure {
                Measure::Read(total) => progress.transfer(message, r.bytes_read, total, chunks),
                Measure::Expanded(total) => {
                    progress.transfer(message, r.bytes_expanded, total, chunks)
                }
            }
        }
        progress.finish(message);
        match handle.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Puts the children of `src`'s root under directory `dst_dir` of `dst`: an existing
/// entry is replaced, except that a directory over a directory takes the new metadata and
/// merges the contents (what extracting a directory over another does).
pub fn graft(dst: &mut Tree, dst_dir: NodeId, src: &Tree) {
    let mut stack: Vec<(NodeId, NodeId)> = vec![(dst_dir, Tree::ROOT)];
    while let Some((ddir, sdir)) = stack.pop() {
        let kids: Vec<(String, NodeId)> = src
            .children(sdir)
            .map(|(n, id)| (n.to_string(), id))
            .collect();
        for (name, sid) in kids {
            let snode = src.node(sid);
            match dst.child(ddir, &name) {
                Some(did) if dst.node(did).kind.is_dir() && snode.kind.is_dir() => {
                    let d = dst.node_mut(did);
                    d.meta = snode.meta.clone();
                    if let (
                        flist_format::Kind::Dir { size: ds, .. },
                        flist_format::Kind::Dir { size: ss, .. },
                    ) = (&mut d.kind, &snode.kind)
                    {
                        *ds = *ss;
                    }
                    stack.push((did, sid));
                }
                Some(did) => {
                    dst.remove(did);
                    copy_subtree(dst, ddir, &name, src, sid);
                }
                None => copy_subtree(dst, ddir, &name, src, sid),
            }
        }
    }
}
