//! Tar archives to trees, as GNU tar would extract them: ustar, GNU and PAX long names and
//! attributes, hard links, symlinks, fifos and devices, GNU sparse files (old GNU format
//! expanded by the `tar` crate; PAX 0.0, 0.1 and 1.0 formats expanded here), later members
//! replacing earlier ones, implicit parent directories.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flist_format::tree::DEFAULT_DIR_SIZE;
use flist_format::{Kind, Meta, SpecialKind};

use crate::builder::{clamp_id, clamp_time, normalise_path, NameCache, TreeBuilder};
use crate::decompress::{self, Compression, ReadState, StreamReader};
use crate::error::{ConvertError, LimitKind, Result};
use crate::options::{check_cancel, warn, ConvertOptions, Counters};
use crate::pipeline::{ChunkSender, Holes};

/// Whether a plain (uncompressed) tar stream must end with its end-of-archive marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TarEnd {
    /// Two zero blocks are required: a plain tar cut at a member boundary is otherwise
    /// indistinguishable from a shorter archive (compressed streams have their own
    /// trailers, checked by their decoders).
    Required,
    /// The caller verifies the stream's completeness by other means (an image layer's
    /// digest).
    Optional,
}

/// Zeros of sparse holes read through without their map (see [`fill_budget`]): a fixed
/// allowance ...
const SPARSE_FILL_BASE: u64 = 1 << 30;
/// ... plus this many bytes per input byte read.
const SPARSE_FILL_PER_BYTE: u64 = 1024;

/// How many bytes of sparse holes may be produced by reading zeros, after `read` input
/// bytes: old GNU sparse members give their holes only through the archive library, which
/// makes them by writing zeros, so a 128-byte archive claiming a 60 GiB hole before its
/// last byte would cost a minute of CPU. Holes whose map is known and that end a file are
/// never read; PAX sparse holes never are.
fn fill_budget(read: u64) -> u64 {
    SPARSE_FILL_BASE.saturating_add(read.saturating_mul(SPARSE_FILL_PER_BYTE))
}

/// PAX records of one member, in order.
#[derive(Default, Clone)]
struct Pax(Vec<(String, Vec<u8>)>);

impl Pax {
    fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn parse(data: &[u8]) -> io::Result<Pax> {
        let mut out = Vec::new();
        for rec in tar::PaxExtensions::new(data) {
            let rec = rec?;
            let key = String::from_utf8_lossy(rec.key_bytes()).into_owned();
            out.push((key, rec.value_bytes().to_vec()));
        }
        Ok(Pax(out))
    }
}

/// Context for error messages: where the parser is.
struct Ctx<'a> {
    state: &'a ReadState,
    entry: Option<String>,
}

impl Ctx<'_> {
    fn corrupt(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Corrupt {
            offset: self.state.pos.get(),
            entry: self.entry.clone(),
            reason: tar_reason(&reason.into()),
        }
    }

    fn truncated(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Truncated {
            offset: self.state.pos.get(),
            entry: self.entry.clone(),
            reason: reason.into(),
        }
    }

    /// Turns an I/O error seen while parsing into the typed error behind it (a
    /// decompression failure or a limit) or a truncation/corruption error.
    fn map_io(&self, e: io::Error) -> ConvertError {
        if let Some(mut typed) = self.state.error.borrow_mut().take() {
            if let ConvertError::Limit { entry, .. } | ConvertError::Truncated { entry, .. } =
                &mut typed
            {
                if entry.is_none() {
                    entry.clone_from(&self.entry);
                }
            }
            return typed;
        }
        let msg = e.to_string();
        if e.kind() == io::ErrorKind::UnexpectedEof
            || msg.contains("failed to read entire block")
            || msg.contains("unexpected EOF")
            || msg.contains("failed to read extension")
        {
            self.truncated(msg)
        } else if self.entry.is_none() && self.state.pos.get() <= 512 {
            // The very first header: the stream is no tar archive at all.
            self.corrupt("no tar header at the start: not a tar archive")
        } else {
            self.corrupt(msg)
        }
    }
}

/// The tar reader's messages quote the header bytes they could not parse (the content of
/// a file that is no archive): keep which field failed, never its bytes.
fn tar_reason(msg: &str) -> String {
    let Some(i) = msg.find("numeric field") else {
        return msg.to_string();
    };
    let field = msg
        .rfind(" when getting ")
        .and_then(|j| msg[j + " when getting ".len()..].split(" for ").next())
        .filter(|f| f.len() <= 16 && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' '));
    match field {
        Some(f) => format!("{}the {f} field of a tar header is not a number", &msg[..i]),
        None => format!(
            "{}a numeric field of a tar header is not a number",
            &msg[..i]
        ),
    }
}

/// Reads a tar stream (compressed or not) into `builder`, sending file contents to the
/// pipeline.
pub(crate) fn read_archive(
    input: &mut (dyn Read + Send),
    opts: &ConvertOptions,
    counters: &Counters,
    sender: &mut ChunkSender<'_>,
    builder: &mut TreeBuilder,
    end: TarEnd,
) -> Result<()> {
    let (tx, rx, ptx, prx) = decompress::channels();
    let format = std::sync::OnceLock::new();
    std::thread::scope(|s| {
        let limits = &opts.limits;
        let detected = &format;
        let spawned = std::thread::Builder::new()
            .name("flist-decompress".into())
            .spawn_scoped(s, move || {
                decompress::decompress_into(input, limits, counters, tx, prx, detected)
            });
        if let Err(e) = spawned {
            return Err(ConvertError::Internal(format!(
                "spawning the decompression thread: {e}"
            )));
        }
        let reader = StreamReader::new(rx, ptx, opts.limits.max_header_bytes);
        // The reader (and with it the channel) is dropped when parse returns, which stops
        // the decompression thread early on errors.
        let end = match end {
            TarEnd::Required => Some(&format),
            TarEnd::Optional => None,
        };
        parse(reader, opts, counters, sender, builder, end)
    })
}

/// The parse loop; with `end`, a plain (uncompressed, as `end` says once detected) stream
/// must close with two zero blocks.
fn parse(
    reader: StreamReader,
    opts: &ConvertOptions,
    counters: &Counters,
    sender: &mut ChunkSender<'_>,
    b: &mut TreeBuilder,
    end: Option<&std::sync::OnceLock<Compression>>,
) -> Result<()> {
    let state = reader.state.clone();
    let mut ctx = Ctx {
        state: &state,
        entry: None,
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(|e| ctx.map_io(e))?;
    let mut globals = Pax::default();
    let mut content_total = 0u64;
    let mut count = 0u64;
    let mut last_progress = Instant::now();
    let limits = &opts.limits;
    let mut names = NameCache::new(opts.owner_names);
    // Zeros of sparse holes produced by reading (old GNU sparse members).
    let mut filled = 0u64;

    loop {
        check_cancel(&opts.cancel)?;
        state.user_read.set(false);
        let mut entry = match entries.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(ctx.map_io(e)),
        };
        state.gap.set(0);
        state.user_read.set(true);
        count += 1;
        counters.entries.store(count, Ordering::Relaxed);
        if count > limits.max_entries {
            return Err(ConvertError::Limit {
                what: LimitKind::Entries,
                value: count,
                limit: limits.max_entries,
                entry: ctx.entry.clone(),
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        ctx.entry = Some(String::from_utf8_lossy(&raw_path).into_owned());
        let etype = entry.header().entry_type().as_byte();

        if etype == b'g' {
            let mut data = Vec::new();
            (&mut entry)
                .take(limits.max_header_bytes + 1)
                .read_to_end(&mut data)
                .map_err(|e| ctx.map_io(e))?;
            if data.len() as u64 > limits.max_header_bytes {
                return Err(ConvertError::Limit {
                    what: LimitKind::HeaderSize,
                    value: data.len() as u64,
                    limit: limits.max_header_bytes,
                    entry: ctx.entry.clone(),
                });
            }
            let g =
                Pax::parse(&data).map_err(|e| ctx.corrupt(format!("global PAX header: {e}")))?;
            globals.0.extend(g.0);
            continue;
        }

        let local = match entry.pax_extensions() {
            Ok(Some(p)) => {
                let mut out = Vec::new();
                for rec in p {
                    let rec = rec.map_err(|e| ctx.corrupt(format!("PAX record: {e}")))?;
                    out.push((
                        String::from_utf8_lossy(rec.key_bytes()).into_owned(),
                        rec.value_bytes().to_vec(),
                    ));
                }
                Pax(out)
            }
            Ok(None) => Pax::default(),
            Err(e) => return Err(ctx.map_io(e)),
        };
        let pax_get = |k: &str| local.get(k).or_else(|| globals.get(k));

        // PAX sparse files carry their real name in GNU.sparse.name.
        let sparse = pax_sparse(&local).map_err(|r| ctx.corrupt(r))?;
        let name_bytes = match local.get("GNU.sparse.name") {
            Some(n) if sparse.is_some() => n.to_vec(),
            _ => raw_path.clone(),
        };
        ctx.entry = Some(String::from_utf8_lossy(&name_bytes).into_owned());
        let comps = normalise_path(&name_bytes, opts.path_policy, limits, &mut b.warnings)?;

        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| ctx.corrupt(format!("mode: {e}")))?
            & 0o7777;
        let uid = clamp_id(
            header.uid().map_err(|e| ctx.corrupt(format!("uid: {e}")))?,
            &mut b.warnings,
        );
        let gid = clamp_id(
            header.gid().map_err(|e| ctx.corrupt(format!("gid: {e}")))?,
            &mut b.warnings,
        );
        let uname = pax_get("uname")
            .map(<[u8]>::to_vec)
            .or_else(|| header.username_bytes().map(<[u8]>::to_vec))
            .and_then(|n| String::from_utf8(n).ok())
            .filter(|n| !n.is_empty() && !n.contains('\0'))
            .unwrap_or_else(|| names.user(uid));
        let gname = pax_get("gname")
            .map(<[u8]>::to_vec)
            .or_else(|| header.groupname_bytes().map(<[u8]>::to_vec))
            .and_then(|n| String::from_utf8(n).ok())
            .filter(|n| !n.is_empty() && !n.contains('\0'))
            .unwrap_or_else(|| names.group(gid));
        let mtime = match pax_get("mtime") {
            Some(v) => {
                let (secs, frac) =
                    parse_pax_time(v).ok_or_else(|| ctx.corrupt("PAX mtime is not a number"))?;
                if frac {
                    b.warnings.add(warn::SUBSECOND);
                }
                clamp_time(secs, &mut b.warnings)
            }
            None => clamp_time(
                header
                    .mtime()
                    .map_err(|e| ctx.corrupt(format!("mtime: {e}")))? as i128,
                &mut b.warnings,
            ),
        };
        if local.0.iter().chain(globals.0.iter()).any(|(k, _)| {
            k.starts_with("SCHILY.xattr.")
                || k.starts_with("LIBARCHIVE.xattr.")
                || k.starts_with("SCHILY.acl.")
        }) {
            b.warnings.add(warn::XATTRS);
        }
        let meta = Meta {
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            ctime: mtime,
        };
        let display = comps.join("/");

        let is_dir_name = raw_path.last() == Some(&b'/');
        match etype {
            b'0' | b'\0' | b'7' if is_dir_name && sparse.is_none() => {
                // Old archives mark directories with a trailing '/' on a regular type.
                drain(&mut entry, &ctx)?;
                b.place(
                    &comps,
                    meta,
                    Kind::Dir {
                        children: Default::default(),
                        size: DEFAULT_DIR_SIZE,
                    },
                )?;
            }
            b'5' | b'D' => {
                drain(&mut entry, &ctx)?;
                b.place(
                    &comps,
                    meta,
                    Kind::Dir {
                        children: Default::default(),
                        size: DEFAULT_DIR_SIZE,
                    },
                )?;
            }
            b'2' => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8(target).map_err(|e| ConvertError::NonUtf8Name {
                    path: format!("{display} -> {}", String::from_utf8_lossy(e.as_bytes())),
                    hex: hex::encode(e.as_bytes()),
                })?;
                if target.contains('\0') {
                    return Err(ConvertError::InvalidPath { path: display });
                }
                drain(&mut entry, &ctx)?;
                b.place(&comps, meta, Kind::Symlink { target })?;
            }
            b'1' => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let tcomps = normalise_path(&target, opts.path_policy, limits, &mut b.warnings)?;
                drain(&mut entry, &ctx)?;
                b.place_hard_link(&comps, &tcomps)?;
            }
            b'3' | b'4' => {
                let h = entry.header();
                let major = h
                    .device_major()
                    .map_err(|e| ctx.corrupt(format!("device major: {e}")))?
                    .unwrap_or(0);
                let minor = h
                    .device_minor()
                    .map_err(|e| ctx.corrupt(format!("device minor: {e}")))?
                    .unwrap_or(0);
                let kind = if etype == b'3' {
                    SpecialKind::Chardev
                } else {
                    SpecialKind::Block
                };
                drain(&mut entry, &ctx)?;
                b.place(
                    &comps,
                    meta,
                    Kind::Special {
                        kind,
                        rdev: Some((major, minor)),
                    },
                )?;
            }
            b'6' => {
                drain(&mut entry, &ctx)?;
                b.place(
                    &comps,
                    meta,
                    Kind::Special {
                        kind: SpecialKind::Fifo,
                        rdev: None,
                    },
                )?;
            }
            b'V' | b'M' | b'N' | b'x' | b'L' | b'K' => {
                drain(&mut entry, &ctx)?;
                b.warnings.add(warn::SKIPPED);
            }
            _ => {
                let regular = matches!(etype, b'0' | b'\0' | b'7' | b'S');
                if !regular {
                    // GNU tar extracts unknown types as regular files (never sparse).
                    b.warnings.add(warn::UNKNOWN_AS_FILE);
                }
                let segments = sparse.as_ref().filter(|_| regular);
                let size = segments.map_or_else(|| entry.size(), |sp| sp.real_size);
                if content_total.saturating_add(size) > limits.max_expanded_bytes {
                    return Err(ConvertError::Limit {
                        what: LimitKind::ExpandedSize,
                        value: content_total.saturating_add(size),
                        limit: limits.max_expanded_bytes,
                        entry: Some(display),
                    });
                }
                content_total += size;
                let added = match segments {
                    Some(sp) => {
                        let mut r = SparseReader::new(&mut entry, sp, &ctx)?;
                        sender.add_sparse(&mut r, size)
                    }
                    None if etype == b'S' => {
                        let mut r = GnuSparse::new(&mut entry, size)?;
                        filled = filled.saturating_add(r.fill);
                        let read = counters.bytes_read.load(Ordering::Relaxed);
                        if filled > fill_budget(read) {
                            return Err(ConvertError::Limit {
                                what: LimitKind::SparseExpansion,
                                value: filled,
                                limit: fill_budget(read),
                                entry: Some(display),
                            });
                        }
                        sender.add_sparse(&mut r, size)
                    }
                    None => sender.add_file(&mut entry, size),
                };
                let (file, got) = added.map_err(|e| e.into_convert(|e| ctx.map_io(e)))?;
                if got < size {
                    return Err(
                        ctx.truncated(format!("member data ends after {got} of {size} bytes"))
                    );
                }
                b.place_file(&comps, meta, size, file)?;
            }
        }
        if let Some(p) = &opts.progress {
            if last_progress.elapsed() >= Duration::from_millis(200) {
                last_progress = Instant::now();
                p.progress(&counters.report());
            }
        }
    }
    // Read the stream to its end, as `tar xz` lets gzip do: a truncated or corrupt
    // compressed stream after the end-of-archive marker is still an error. Trailing bytes
    // count against the expanded-size limit.
    ctx.entry = None;
    // Zeros the archive library read on its own up to here: the zero block that ended the
    // iteration (and the padding before it), none when the stream simply stopped.
    let tail = state.tail_zeros.get();
    state.user_read.set(true);
    let mut rest = archive.into_inner();
    let mut lead = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let mut in_lead = true;
    loop {
        let n = rest.read(&mut buf).map_err(|e| ctx.map_io(e))?;
        if n == 0 {
            break;
        }
        if in_lead {
            let z = buf[..n].iter().take_while(|b| **b == 0).count();
            lead += z as u64;
            in_lead = z == n;
        }
    }
    let plain = end.is_some_and(|f| f.get().is_none_or(|c| *c == Compression::None));
    // (a zero-byte stream is an empty archive: nothing was cut from it)
    let empty = state.pos.get() == 0;
    if plain && !empty && tail.saturating_add(lead) < 1024 {
        return Err(ctx.truncated(
            "the tar stream ends without its end-of-archive marker (two zero blocks): \
             the archive is incomplete",
        ));
    }
    Ok(())
}

/// Reads and discards the data of a member whose data is not content.
fn drain(entry: &mut impl Read, ctx: &Ctx<'_>) -> Result<()> {
    io::copy(entry, &mut io::sink()).map_err(|e| ctx.map_io(e))?;
    Ok(())
}

/// Parses a PAX time (`[-]secs[.frac]`); returns the seconds and whether a non-zero
/// fraction was present.
fn parse_pax_time(v: &[u8]) -> Option<(i128, bool)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if !frac.bytes().all(|c| c.is_ascii_digit()) || int.len() > 30 {
        return None;
    }
    let secs: i128 = if int == "-" || int.is_empty() {
        0
    } else {
        int.parse().ok()?
    };
    let has_frac = frac.bytes().any(|c| c != b'0');
    // -1.5 means 1.5 s before the epoch: the whole second below is -2.
    let secs = if has_frac && int.starts_with('-') {
        secs - 1
    } else {
        secs
    };
    Some((secs, has_frac))
}

/// A PAX-format sparse file: data segments and expanded size.
struct SparseInfo {
    real_size: u64,
    /// `(offset, length)` of data segments; `None` when the map is at the start of the
    /// member data (format 1.0).
    segments: Option<Vec<(u64, u64)>>,
}

fn num(v: &[u8], what: &str) -> std::result::Result<u64, String> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("PAX sparse {what} is not a number"))
}

/// Recognises the PAX sparse formats 0.0, 0.1 and 1.0.
fn pax_sparse(pax: &Pax) -> std::result::Result<Option<SparseInfo>, String> {
    let major = pax.get("GNU.sparse.major");
    if major.is_some() {
        let major = num(major.unwrap_or_default(), "major")?;
        let minor = num(pax.get("GNU.sparse.minor").unwrap_or(b"0"), "minor")?;
        if (major, minor) != (1, 0) {
            return Err(format!("unsupported PAX sparse format {major}.{minor}"));
        }
        let real = pax
            .get("GNU.sparse.realsize")
            .ok_or_else(|| "PAX sparse 1.0 without GNU.sparse.realsize".to_string())?;
        return Ok(Some(SparseInfo {
            real_size: num(real, "realsize")?,
            segments: None,
        }));
    }
    if let Some(map) = pax.get("GNU.sparse.map") {
        let real = num(
            pax.get("GNU.sparse.size")
                .ok_or("PAX sparse 0.1 without GNU.sparse.size")?,
            "size",
        )?;
        let text =
            std::str::from_utf8(map).map_err(|_| "PAX sparse map is not text".to_string())?;
        let nums: Vec<u64> = if text.trim().is_empty() {
            Vec::new()
        } else {
            text.split(',')
                .map(|n| num(n.as_bytes(), "map entry"))
                .collect::<std::result::Result<_, _>>()?
        };
        if !nums.len().is_multiple_of(2) {
            return Err("PAX sparse map has an odd number of values".into());
        }
        let segs = nums.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        return Ok(Some(SparseInfo {
            real_size: real,
            segments: Some(segs),
        }));
    }
    if pax.get("GNU.sparse.offset").is_some() {
        let real = num(
            pax.get("GNU.sparse.size")
                .ok_or("PAX sparse 0.0 without GNU.sparse.size")?,
            "size",
        )?;
        let mut segs = Vec::new();
        let mut off = None;
        for (k, v) in &pax.0 {
            match k.as_str() {
                "GNU.sparse.offset" => off = Some(num(v, "offset")?),
                "GNU.sparse.numbytes" => {
                    let o = off.take().ok_or("PAX sparse numbytes without offset")?;
                    segs.push((o, num(v, "numbytes")?));
                }
                _ => {}
            }
        }
        return Ok(Some(SparseInfo {
            real_size: real,
            segments: Some(segs),
        }));
    }
    Ok(None)
}

/// Most segments accepted in one sparse map.
const MAX_SEGMENTS: usize = 1 << 20;

/// Expands a PAX sparse member: zeros for holes, member data for segments.
struct SparseReader<'e, R: Read> {
    inner: &'e mut R,
    segs: Vec<(u64, u64)>,
    idx: usize,
    pos: u64,
    real: u64,
}

impl<'e, R: Read> SparseReader<'e, R> {
    fn new(inner: &'e mut R, info: &SparseInfo, ctx: &Ctx<'_>) -> Result<Self> {
        let segs = match &info.segments {
            Some(s) => s.clone(),
            None => read_map_1_0(inner, ctx)?,
        };
        if segs.len() > MAX_SEGMENTS {
            return Err(ctx.corrupt(format!("sparse map has {} segments", segs.len())));
        }
        let mut end = 0u64;
        for &(off, len) in &segs {
            let stop = off
                .checked_add(len)
                .ok_or_else(|| ctx.corrupt("sparse segment overflows"))?;
            if off < end || stop > info.real_size {
                return Err(
                    ctx.corrupt("sparse segments overlap, are out of order or exceed the size")
                );
            }
            end = stop;
        }
        Ok(SparseReader {
            inner,
            segs,
            idx: 0,
            pos: 0,
            real: info.real_size,
        })
    }
}

/// Reads the format 1.0 map at the start of the data: decimal lines (count, then offset
/// and length pairs), padded to 512 bytes.
fn read_map_1_0(r: &mut impl Read, ctx: &Ctx<'_>) -> Result<Vec<(u64, u64)>> {
    let mut consumed = 0u64;
    let mut line = || -> Result<u64> {
        let mut digits = Vec::new();
        loop {
            let mut b = [0u8; 1];
            let n = r.read(&mut b).map_err(|e| ctx.map_io(e))?;
            if n == 0 {
                return Err(ctx.truncated("sparse map ends early"));
            }
            consumed += 1;
            if b[0] == b'\n' {
                break;
            }
            if !b[0].is_ascii_digit() || digits.len() >= 20 {
                return Err(ctx.corrupt("sparse map is not decimal lines"));
            }
            digits.push(b[0]);
        }
        num(&digits, "map entry").map_err(|e| ctx.corrupt(e))
    };
    let count = line()?;
    if count > MAX_SEGMENTS as u64 {
        return Err(ctx.corrupt(format!("sparse map has {count} segments")));
    }
    let mut segs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = line()?;
        let len = line()?;
        segs.push((off, len));
    }
    let pad = (512 - consumed % 512) % 512;
    let skipped = io::copy(&mut r.take(pad), &mut io::sink()).map_err(|e| ctx.map_io(e))?;
    if skipped < pad {
        return Err(ctx.truncated("sparse map padding ends early"));
    }
    Ok(segs)
}

impl<R: Read> Holes for SparseReader<'_, R> {
    fn hole_ahead(&self) -> u64 {
        for &(off, len) in self.segs.iter().skip(self.idx) {
            if self.pos < off {
                return off - self.pos;
            }
            if self.pos < off + len {
                return 0;
            }
        }
        self.real.saturating_sub(self.pos)
    }

    fn skip_hole(&mut self, n: u64) -> io::Result<()> {
        // The member data holds the segments only: a hole is skipped without reading.
        self.pos = self.pos.saturating_add(n).min(self.real);
        Ok(())
    }
}

/// An old GNU sparse member (type `S`), whose holes the archive library expands by
/// producing zeros: with the map of the header (up to four segments), holes are known; a
/// hole that ends the file is never read, one before data is read through (`fill` bytes,
/// bounded by [`fill_budget`]). When the map continues in extension headers (which the
/// library consumes), nothing is known and every hole is read through.
struct GnuSparse<'e, R: Read> {
    inner: &'e mut R,
    /// Known data segments `(offset, length)` (empty when the map is not known).
    segs: Vec<(u64, u64)>,
    /// End of the last non-empty data segment: nothing past it is read.
    data_end: u64,
    pos: u64,
    real: u64,
    /// Hole bytes that will be produced by reading zeros.
    fill: u64,
}

impl<'e, 'a, T: Read + 'a> GnuSparse<'e, tar::Entry<'a, T>> {
    fn new(entry: &'e mut tar::Entry<'a, T>, real: u64) -> Result<Self> {
        let stored = entry.header().entry_size().unwrap_or(0);
        let mut segs = Vec::new();
        let mut known = false;
        if let Some(gnu) = entry.header().as_gnu() {
            if !gnu.is_extended() {
                known = true;
                for s in gnu.sparse.iter().filter(|s| !s.is_empty()) {
                    match (s.offset(), s.length()) {
                        (Ok(o), Ok(l)) => segs.push((o, l)),
                        _ => known = false,
                    }
                }
            }
        }
        if !known {
            // Every hole is read through.
            return Ok(GnuSparse {
                inner: entry,
                segs: Vec::new(),
                data_end: real,
                pos: 0,
                real,
                fill: real.saturating_sub(stored),
            });
        }
        let data_end = segs
            .iter()
            .filter(|(_, l)| *l > 0)
            .map(|(o, l)| o.saturating_add(*l))
            .max()
            .unwrap_or(0)
            .min(real);
        let data_in: u64 = segs.iter().map(|(_, l)| *l).sum();
        Ok(GnuSparse {
            inner: entry,
            segs,
            data_end,
            pos: 0,
            real,
            fill: data_end.saturating_sub(data_in),
        })
    }
}

impl<R: Read> Read for GnuSparse<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.real || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.data_end {
            // The trailing hole: zeros, without asking the library for them.
            let n = buf
                .len()
                .min((self.real - self.pos).min(usize::MAX as u64) as usize);
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        let want = buf
            .len()
            .min((self.data_end - self.pos).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Holes for GnuSparse<'_, R> {
    fn hole_ahead(&self) -> u64 {
        if self.pos >= self.data_end {
            return self.real.saturating_sub(self.pos);
        }
        for &(off, len) in &self.segs {
            if self.pos < off {
                return off - self.pos;
            }
            if self.pos < off.saturating_add(len) {
                return 0;
            }
        }
        0
    }

    fn skip_hole(&mut self, n: u64) -> io::Result<()> {
        if self.pos >= self.data_end {
            self.pos = self.pos.saturating_add(n).min(self.real);
            return Ok(());
        }
        // Data follows: the library must go through the hole's zeros to reach it.
        let got = io::copy(&mut (&mut *self.inner).take(n), &mut io::sink())?;
        self.pos += got;
        if got < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sparse member ends inside a hole",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for SparseReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.real || buf.is_empty() {
                return Ok(0);
            }
            let (hole_end, data_end) = match self.segs.get(self.idx) {
                Some(&(off, len)) => (off, off + len),
                None => (self.real, self.real),
            };
            if self.pos < hole_end {
                let n = buf
                    .len()
                    .min((hole_end - self.pos).min(usize::MAX as u64) as usize);
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos < data_end {
                let want = buf
                    .len()
                    .min((data_end - self.pos).min(usize::MAX as u64) as usize);
                let n = self.inner.read(&mut buf[..want])?;
                self.pos += n as u64;
                return Ok(n);
            }
            self.idx += 1;
        }
    }
}
