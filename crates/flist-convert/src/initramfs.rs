//! Which kernel modules an initramfs carries, read from an flist without downloading more
//! than needed: the cpio headers are parsed as the file streams from the store, the file
//! data of an uncompressed archive is skipped without fetching the chunks it spans, and the
//! scan stops as soon as every wanted module is found.
//!
//! An initramfs is one or more cpio archives (`newc`), each possibly compressed (gzip, zstd,
//! xz, bzip2, lz4), concatenated: Debian's starts with uncompressed early archives
//! (microcode) and ends with one compressed archive holding `/usr/lib/modules/<version>/`.
//! A module counts when its file (`9p.ko`, `9p.ko.xz`, ...) is in the archive or when the
//! archive's `modules.builtin` lists it as built into the kernel.

use std::collections::BTreeSet;
use std::io::{self, Read};

use flist_format::codec::CHUNK_SIZE;
use flist_format::{Block, Kind, NodeId, Tree};
use flist_store::BlockingStore;

/// The modules a VM whose root file system is shared over virtio-9p needs: the file
/// system, the protocol, its virtio transport and the virtio PCI bus it sits on.
pub const NINEP_MODULES: [&str; 4] = ["9p", "9pnet", "9pnet_virtio", "virtio_pci"];
/// Chunks fetched per store request while streaming.
const BATCH: usize = 8;
/// Largest decompressed stream scanned (a bound against compression bombs).
const MAX_SCANNED: u64 = 4 << 30;
/// Largest `modules.builtin` read.
const MAX_BUILTIN: u64 = 1 << 20;
/// Longest cpio member name accepted.
const MAX_NAME: u64 = 4096;

/// What [`scan`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleScan {
    /// The wanted modules present as files or listed as built in.
    pub found: BTreeSet<String>,
    /// True when the archive holds any kernel module or a `modules.builtin`.
    pub has_modules: bool,
    /// Bytes of the file read from the store (whole chunks).
    pub fetched_bytes: u64,
}

impl ModuleScan {
    /// The wanted modules that were not found, in the order given.
    pub fn missing<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .filter(|m| !self.found.contains(**m))
            .copied()
            .collect()
    }
}

/// A regular file of an flist read from its chunks in order; [`ChunkStream::skip`] passes
/// over whole chunks without fetching them (chunks of the 0-flist codec, all 512 KiB but
/// the last; other codecs' blocks are read to be skipped).
pub struct ChunkStream<'a> {
    store: &'a BlockingStore,
    blocks: &'a [Block],
    /// Index of the next block not fetched yet.
    next: usize,
    /// Decoded chunks fetched ahead, in order, ending before `next`.
    ahead: std::collections::VecDeque<Vec<u8>>,
    /// The chunk being read and the offset in it.
    current: Vec<u8>,
    offset: usize,
    /// Bytes still to pass over.
    pending_skip: u64,
    /// All chunks but the last have [`CHUNK_SIZE`] bytes.
    fixed: bool,
    fetched: u64,
}

impl<'a> ChunkStream<'a> {
    /// A stream over regular file `id` of `tree`.
    pub fn new(tree: &'a Tree, id: NodeId, store: &'a BlockingStore) -> Result<Self, String> {
        let Kind::File { blocks, .. } = &tree.node(id).kind else {
            return Err("not a regular file".into());
        };
        Ok(ChunkStream {
            store,
            blocks,
            next: 0,
            ahead: Default::default(),
            current: Vec::new(),
            offset: 0,
            pending_skip: 0,
            fixed: blocks.iter().all(|b| matches!(b, Block::Flist { .. })),
            fetched: 0,
        })
    }

    /// Bytes fetched from the store so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// Makes the next chunk current; false at the end of the file.
    fn advance(&mut self) -> io::Result<bool> {
        if self.ahead.is_empty() {
            if self.next >= self.blocks.len() {
                return Ok(false);
            }
            let end = (self.next + BATCH).min(self.blocks.len());
            let batch = &self.blocks[self.next..end];
            let (plains, stored) =
                flist_chunks::read_batch(self.store, batch).map_err(|e| match e {
                    flist_chunks::ChunkError::Codec(e) => io::Error::other(e.to_string()),
                    e => io::Error::other(format!("reading its chunks: {e}")),
                })?;
            self.fetched += stored;
            self.ahead.extend(plains);
            self.next = end;
        }
        self.current = self.ahead.pop_front().unwrap_or_default();
        self.offset = 0;
        Ok(true)
    }

    /// Moves `n` bytes forward; chunks passed over entirely are never fetched.
    pub fn skip(&mut self, n: u64) {
        self.pending_skip = self.pending_skip.saturating_add(n);
    }
}

impl Read for ChunkStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = (self.current.len() - self.offset) as u64;
            if self.pending_skip > 0 && left > 0 {
                let k = self.pending_skip.min(left);
                self.offset += k as usize;
                self.pending_skip -= k;
                continue;
            }
            if left > 0 {
                let n = buf.len().min(left as usize);
                buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            if self.fixed && self.pending_skip >= CHUNK_SIZE as u64 {
                let whole = self.pending_skip / CHUNK_SIZE as u64;
                let mut passed = 0;
                while passed < whole && self.ahead.pop_front().is_some() {
                    passed += 1;
                }
                let rest = ((whole - passed) as usize).min(self.blocks.len() - self.next);
                self.next += rest;
                self.pending_skip -= (passed + rest as u64) * CHUNK_SIZE as u64;
                if self.next >= self.blocks.len() && self.ahead.is_empty() {
                    self.pending_skip = 0;
                    return Ok(0);
                }
            }
            if !self.advance()? {
                return Ok(0);
            }
        }
    }
}

/// A byte source whose data can be skipped (cheaply when uncompressed).
trait Source: Read {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl Source for ChunkStream<'_> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        ChunkStream::skip(self, n);
        Ok(())
    }
}

/// A decompressed stream: skipping means reading.
struct Decoded<R>(R);

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Source for Decoded<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Scans initramfs file `id` of `tree` for the `wanted` modules.
pub fn scan_file(
    tree: &Tree,
    id: NodeId,
    store: &BlockingStore,
    wanted: &[&str],
) -> Result<ModuleScan, String> {
    let mut stream = ChunkStream::new(tree, id, store)?;
    let mut found = ModuleScan::default();
    let r = scan_segments(&mut stream, wanted, &mut found, false);
    found.fetched_bytes = stream.fetched();
    r.map(|()| found)
}

/// Scans an initramfs given as a reader (a local file, a test's bytes).
pub fn scan(reader: impl Read, wanted: &[&str]) -> Result<ModuleScan, String> {
    let mut found = ModuleScan::default();
    let mut src = Decoded(reader);
    scan_segments(&mut src, wanted, &mut found, false)?;
    Ok(found)
}

fn done(found: &ModuleScan, wanted: &[&str]) -> bool {
    wanted.iter().all(|m| found.found.contains(*m))
}

/// The next segment's 6 magic bytes, after the zeros archives are padded with (to 4-byte,
/// often 512-byte, boundaries); `None` at the end (or trailing bytes shorter than a header).
fn next_magic<S: Source>(src: &mut S) -> Result<Option<[u8; 6]>, String> {
    let mut magic = [0u8; 6];
    loop {
        let mut word = [0u8; 4];
        match read_full(src, &mut word) {
            Ok(4) => {}
            Ok(_) => return Ok(None),
            Err(e) => return Err(format!("reading the initramfs: {e}")),
        }
        if word != [0; 4] {
            magic[..4].copy_from_slice(&word);
            break;
        }
    }
    read_exact(src, &mut magic[4..])?;
    Ok(Some(magic))
}

/// A decompressor for a stream starting with `magic` (gzip, zstd, xz, bzip2, lz4 frame or
/// the kernel's legacy lz4), reading `input` (which includes the magic); its name too.
pub(crate) fn decoder<'a>(
    magic: &[u8],
    input: impl Read + 'a,
) -> Option<(&'static str, Box<dyn Read + 'a>)> {
    Some(if magic.starts_with(&[0x1f, 0x8b]) {
        ("gzip", Box::new(flate2::read::MultiGzDecoder::new(input)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            "zstd",
            Box::new(zstd::stream::read::Decoder::new(input).ok()?),
        )
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        (
            "xz",
            Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
        )
    } else if magic.starts_with(b"BZh") {
        ("bzip2", Box::new(bzip2::read::MultiBzDecoder::new(input)))
    } else if magic.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        ("lz4", Box::new(lz4_flex::frame::FrameDecoder::new(input)))
    } else if magic.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        ("lz4", Box::new(LegacyLz4::new(input)))
    } else {
        return None;
    })
}

/// Archives one after another; a compressed one is scanned to its end (its archives with
/// `inner` set: no compression inside compression) and ends the scan.
fn scan_segments<S: Source>(
    src: &mut S,
    wanted: &[&str],
    found: &mut ModuleScan,
    inner: bool,
) -> Result<(), String> {
    while !done(found, wanted) {
        let Some(magic) = next_magic(src)? else {
            return Ok(());
        };
        if magic.starts_with(b"0707") {
            scan_archive(src, &magic, wanted, found)?;
            continue;
        }
        if inner {
            return Err("the decompressed initramfs is not a cpio archive".into());
        }
        let rest = io::Cursor::new(magic.to_vec()).chain(&mut *src);
        let Some((_, compressed)) = decoder(&magic, rest) else {
            return Err(format!(
                "unknown data in the initramfs (starting with {:02x?})",
                &magic[..4]
            ));
        };
        let mut decoded = Decoded(compressed.take(MAX_SCANNED));
        return scan_segments(&mut decoded, wanted, found, true);
    }
    Ok(())
}

fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_exact(src: &mut impl Read, buf: &mut [u8]) -> Result<(), String> {
    match read_full(src, buf) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err("the initramfs ends inside a cpio header".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

/// One `newc` archive whose 6 magic bytes were read; returns after its trailer.
fn scan_archive<S: Source>(
    src: &mut S,
    magic: &[u8; 6],
    wanted: &[&str],
    found: &mut ModuleScan,
) -> Result<(), String> {
    let mut magic = *magic;
    loop {
        if &magic != b"070701" && &magic != b"070702" {
            return Err(format!(
                "an unsupported cpio format in the initramfs (magic {:?}): only newc is read",
                String::from_utf8_lossy(&magic)
            ));
        }
        let mut fields = [0u8; 104];
        read_exact(src, &mut fields)?;
        let field = |i: usize| -> Result<u64, String> {
            let s = std::str::from_utf8(&fields[i * 8..i * 8 + 8])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            s.ok_or_else(|| "a damaged cpio header in the initramfs".to_string())
        };
        let mode = field(1)?;
        let filesize = field(6)?;
        let namesize = field(11)?;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(format!(
                "a cpio member name of {namesize} bytes in the initramfs"
            ));
        }
        let mut name = vec![0u8; namesize as usize];
        read_exact(src, &mut name)?;
        // header (110) + name, padded to 4
        src.skip(pad4(110 + namesize)).map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(());
        }
        let is_file = mode & 0o170000 == 0o100000;
        let base = name.rsplit('/').next().unwrap_or(&name);
        let in_modules = name.contains("lib/modules/");
        let mut consumed = 0;
        if in_modules && is_file {
            if let Some(module) = module_name(base) {
                found.has_modules = true;
                if wanted.contains(&module.as_str()) {
                    found.found.insert(module);
                }
            } else if base == "modules.builtin" {
                found.has_modules = true;
                let mut text = Vec::new();
                (&mut *src)
                    .take(filesize.min(MAX_BUILTIN))
                    .read_to_end(&mut text)
                    .map_err(|e| e.to_string())?;
                consumed = text.len() as u64;
                builtin_modules(&text, wanted, &mut found.found);
            }
        }
        src.skip(filesize - consumed + pad4(filesize))
            .map_err(|e| format!("the initramfs ends inside {name}: {e}"))?;
        read_exact(src, &mut magic)?;
    }
}

/// `9pnet_virtio` for `9pnet_virtio.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`; `None` otherwise.
fn module_name(base: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))?;
    // modprobe treats '-' and '_' alike
    Some(stem.replace('-', "_"))
}

/// Adds the wanted modules a `modules.builtin` text lists (`kernel/fs/9p/9p.ko` lines).
pub fn builtin_modules(text: &[u8], wanted: &[&str], found: &mut BTreeSet<String>) {
    for line in String::from_utf8_lossy(text).lines() {
        let base = line.trim().rsplit('/').next().unwrap_or("");
        if let Some(m) = module_name(base) {
            if wanted.contains(&m.as_str()) {
                found.insert(m);
            }
        }
    }
}

/// The kernel's legacy LZ4 format (`lz4 -l`): blocks of `[u32 LE size][block]`, each
/// decompressing to at most 8 MiB.
struct LegacyLz4<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    started: bool,
}

impl<R: Read> LegacyLz4<R> {
    fn new(inner: R) -> Self {
        LegacyLz4 {
            inner,
            out: Vec::new(),
            pos: 0,
            started: false,
        }
    }
}

impl<R: Read> Read for LegacyLz4<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const MAX_BLOCK: usize = 8 << 20;
        while self.pos >= self.out.len() {
            if !self.started {
                let mut m = [0u8; 4];
                self.inner.read_exact(&mut m)?;
                self.started = true;
            }
            let mut len = [0u8; 4];
            if read_full(&mut self.inner, &mut len)? < 4 {
                return Ok(0);
            }
            let size = u32::from_le_bytes(len) as usize;
            if size == 0x184c2102 {
                continue; // another legacy stream's magic
            }
            if size > MAX_BLOCK + MAX_BLOCK / 255 + 16 {
                return Ok(0); // not a block size: the stream ended
            }
            let mut block = vec![0u8; size];
            self.inner.read_exact(&mut block)?;
            self.out.resize(MAX_BLOCK, 0);
            let n = lz4_flex::block::decompress_into(&block, &mut self.out)
                .map_err(|e| io::Error::other(format!("lz4: {e}")))?;
            self.out.truncate(n);
            self.pos = 0;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A newc archive of `(name, mode, data)` members.
    pub fn cpio(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all: Vec<(&str, u32, &[u8])> = members.to_vec();
        all.push(("TRAILER!!!", 0, b""));
        for (ino, (name, mode, data)) in all.iter().enumerate() {
            let fields = [
                ino as u32,
                *mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                0,
                0,
                0,
                name.len() as u32 + 1,
                0,
            ];
            out.extend_from_slice(b"070701");
            for f in fields {
                out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn modules_in_raw_and_compressed_archives() {
        let early = cpio(&[
            ("kernel", 0o40755, b""),
            (
                "kernel/x86/microcode/GenuineIntel.bin",
                0o100644,
                &[7; 1000],
            ),
        ]);
        let main = cpio(&[
            ("init", 0o100755, b"#!/bin/sh\n"),
            (
                "usr/lib/modules/6.1.0-9-amd64/kernel/fs/9p/9p.ko",
                0o100644,
                &[1; 5000],
            ),
            (
                "usr/lib/modules/6.1.0-9-amd64/kernel/net/9p/9pnet.ko.xz",
                0o100644,
                &[2; 33],
            ),
            (
                "usr/lib/modules/6.1.0-9-amd64/modules.builtin",
                0o100644,
                b"kernel/fs/ext4/ext4.ko\nkernel/net/9p/9pnet_virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
            ),
        ]);
        let mut padded_early = early.clone();
        padded_early.resize(early.len().div_ceil(512) * 512, 0);
        for compressed in [
            zstd::encode_all(&main[..], 3).unwrap(),
            {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                gz.write_all(&main).unwrap();
                gz.finish().unwrap()
            },
            {
                let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
                xz.write_all(&main).unwrap();
                xz.finish().unwrap()
            },
            main.clone(),
        ] {
            let mut image = padded_early.clone();
            image.extend_from_slice(&compressed);
            let found = scan(&image[..], &NINEP_MODULES).unwrap();
            assert!(found.has_modules);
            assert!(found.missing(&NINEP_MODULES).is_empty(), "{found:?}");
        }
        let without = cpio(&[
            ("init", 0o100755, b"#!/bin/sh\n"),
            ("lib/modules/6.1/kernel/fs/ext4/ext4.ko", 0o100644, b"x"),
        ]);
        let found = scan(
            &zstd::encode_all(&without[..], 3).unwrap()[..],
            &NINEP_MODULES,
        )
        .unwrap();
        assert!(found.has_modules);
        assert_eq!(found.missing(&NINEP_MODULES), NINEP_MODULES);
        let bare = cpio(&[("init", 0o100755, b"#!/bin/sh\n")]);
        let found = scan(&bare[..], &NINEP_MODULES).unwrap();
        assert!(!found.has_modules && found.found.is_empty());
    }

    #[test]
    fn hostile_archives_are_errors_not_panics() {
        let good = cpio(&[("lib/modules/x/a.ko", 0o100644, &[0; 100])]);
        for cut in [3, 7, 50, 115, 130, good.len() - 3] {
            let _ = scan(&good[..cut], &NINEP_MODULES);
        }
        let mut huge_name = good.clone();
        huge_name[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"FFFFFFFF");
        assert!(scan(&huge_name[..], &NINEP_MODULES)
            .unwrap_err()
            .contains("name of"));
        assert!(scan(&b"hello world, no cpio"[..], &NINEP_MODULES)
            .unwrap_err()
            .contains("unknown data"));
    }
}
