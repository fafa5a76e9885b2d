//! Builders for test tar archives written byte by byte, including the hostile ones the `tar`
//! crate's builder refuses to write (`..` members, absolute paths, bad checksums, huge
//! declared sizes), and cheap gzip bombs.

use std::io::Write;

/// A tar archive assembled by hand, ustar headers with GNU long names when needed.
#[derive(Default, Clone)]
pub struct RawTar {
    buf: Vec<u8>,
}

/// Fills a numeric field: octal (NUL-terminated) when it fits, else GNU base-256.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if digits < 22 && v >= 1u64 << (3 * digits) {
        field.fill(0);
        field[0] = 0x80;
        let be = v.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&be);
        return;
    }
    let s = format!("{v:0width$o}\0", width = digits);
    field.copy_from_slice(&s.as_bytes()[s.len() - field.len()..]);
}

/// One 512-byte header: name (≤ 100 bytes), type, size, mode, link name, owner 0:0, mtime.
pub fn header(
    name: &[u8],
    typeflag: u8,
    size: u64,
    mode: u32,
    link: &[u8],
    mtime: u64,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

/// Recomputes a header's checksum.
pub fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

fn pad(buf: &mut Vec<u8>) {
    let rem = buf.len() % 512;
    if rem != 0 {
        buf.resize(buf.len() + 512 - rem, 0);
    }
}

impl RawTar {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a raw header block.
    pub fn raw_header(&mut self, h: &[u8; 512]) -> &mut Self {
        self.buf.extend_from_slice(h);
        self
    }

    /// Appends raw bytes (data), padded to a block.
    pub fn raw_data(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn long(&mut self, kind: u8, value: &[u8]) {
        let mut v = value.to_vec();
        v.push(0);
        let h = header(b"././@LongLink", kind, v.len() as u64, 0o644, b"", 0);
        self.buf.extend_from_slice(&h);
        self.raw_data(&v);
    }

    /// Appends a member with any name and link length (GNU long name/link records).
    pub fn entry(
        &mut self,
        name: &[u8],
        typeflag: u8,
        mode: u32,
        link: &[u8],
        data: &[u8],
    ) -> &mut Self {
        if name.len() > 100 {
            self.long(b'L', name);
        }
        if link.len() > 100 {
            self.long(b'K', link);
        }
        let h = header(name, typeflag, data.len() as u64, mode, link, 1_600_000_000);
        self.buf.extend_from_slice(&h);
        if !data.is_empty() {
            self.raw_data(data);
        }
        self
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', 0o644, b"", data)
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'5', 0o755, b"", b"")
    }

    /// A symlink.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'2', 0o777, target.as_bytes(), b"")
    }

    /// A hard link.
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'1', 0o644, target.as_bytes(), b"")
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&self) -> Vec<u8> {
        let mut v = self.buf.clone();
        v.resize(v.len() + 1024, 0);
        v
    }

    /// The archive without an end marker (as written so far).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// gzip of `data` at the default level.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// A gzip bomb: concatenated gzip members expanding to a tar of `entries` members, each a
/// regular file of `each` bytes of zeros (`each` a multiple of 64 MiB). Built from one
/// compressed 64 MiB block of zeros, so it costs little to make however big it expands.
pub fn gzip_bomb(entries: u32, each: u64) -> Vec<u8> {
    const BLOCK: u64 = 64 << 20;
    assert!(
        each.is_multiple_of(BLOCK),
        "size must be a multiple of 64 MiB"
    );
    let zeros = gzip(&vec![0u8; BLOCK as usize]);
    let mut out = Vec::new();
    for i in 0..entries {
        let h = header(
            format!("zeros-{i}").as_bytes(),
            b'0',
            each,
            0o644,
            b"",
            1_600_000_000,
        );
        out.extend_from_slice(&gzip(&h));
        for _ in 0..each / BLOCK {
            out.extend_from_slice(&zeros);
        }
    }
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}
