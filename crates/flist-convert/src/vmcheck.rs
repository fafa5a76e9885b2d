//! Is an flist a bootable VM image? `/boot/boot.yaml` names a `kernel` and an `initrd`
//! (absolute paths of regular files in the flist, links followed) and optionally a
//! `cmdline`; the kernel must be a Linux boot image (x86 bzImage, an ELF `vmlinux`, an arm64
//! `Image`, possibly gzip/xz/zstd/lz4/bzip2-compressed), the initrd a cpio archive (possibly
//! compressed). Every problem is reported in words; only the first bytes of the kernel and
//! initrd are read from the store.

use std::io::Read;

use flist_format::codec::CHUNK_SIZE;
use flist_format::{Kind, NodeId, Tree};
use flist_store::BlockingStore;
use serde::Serialize;

/// Where the boot description lives.
pub const BOOT_YAML: &str = "/boot/boot.yaml";
/// Largest `boot.yaml` read.
const MAX_YAML: u64 = 64 * 1024;
/// Bytes of the kernel / initrd looked at (compressed input).
const HEAD: u64 = 2 * CHUNK_SIZE as u64;

/// The outcome of [`check_vm`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmReport {
    /// True when the flist has `/boot/boot.yaml` (it claims to be a VM image).
    pub is_vm: bool,
    /// True when it is a bootable VM image: no problems.
    pub ok: bool,
    /// `kernel` from boot.yaml.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// What the kernel was recognised as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_format: Option<String>,
    /// `initrd` from boot.yaml.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// What the initrd was recognised as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_format: Option<String>,
    /// `cmdline` from boot.yaml.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Each problem, in words.
    pub problems: Vec<String>,
}

#[derive(serde::Deserialize)]
struct BootYaml {
    kernel: Option<serde_yaml_ng::Value>,
    initrd: Option<serde_yaml_ng::Value>,
    cmdline: Option<serde_yaml_ng::Value>,
}

/// Reads bytes of flist files from a store, checking both hashes of every chunk.
pub struct FileReader<'a> {
    tree: &'a Tree,
    store: &'a BlockingStore,
}

impl<'a> FileReader<'a> {
    /// A reader of `tree`'s files from `store`.
    pub fn new(tree: &'a Tree, store: &'a BlockingStore) -> Self {
        FileReader { tree, store }
    }

    /// Up to `len` bytes from the start of regular file `id`.
    pub fn head(&self, id: NodeId, len: u64) -> Result<Vec<u8>, String> {
        let Kind::File { size, blocks } = &self.tree.node(id).kind else {
            return Err("not a regular file".into());
        };
        let want = len.min(*size);
        let n = (want.div_ceil(CHUNK_SIZE as u64) as usize).min(blocks.len());
        let mut out = Vec::with_capacity(want as usize);
        flist_chunks::Pipeline::default()
            .read_ordered(self.store, &blocks[..n], |_, plain| {
                out.extend_from_slice(&plain);
                Ok::<_, flist_chunks::ChunkError>(())
            })
            .map_err(|e| match e {
                flist_chunks::ChunkError::Codec(e) => e.to_string(),
                e => format!("reading its chunks: {e}"),
            })?;
        out.truncate(want as usize);
        Ok(out)
    }
}

fn as_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks `tree` as a VM image, reading `boot.yaml` and the first bytes of the kernel and
/// initrd from `store`.
pub fn check_vm(tree: &Tree, store: &BlockingStore) -> VmReport {
    let mut r = VmReport::default();
    let reader = FileReader::new(tree, store);
    let yaml_id = match tree.resolve(BOOT_YAML) {
        Ok(id) => id,
        Err(_) if tree.lookup(BOOT_YAML).is_none() => {
            r.problems
                .push(format!("{BOOT_YAML} is missing: this is not a VM flist"));
            return r;
        }
        Err(e) => {
            r.is_vm = true;
            r.problems.push(format!("{BOOT_YAML}: {e}"));
            return r;
        }
    };
    r.is_vm = true;
    let text = match &tree.node(yaml_id).kind {
        Kind::File { size, .. } if *size > MAX_YAML => {
            r.problems.push(format!(
                "{BOOT_YAML} is {size} bytes: larger than {MAX_YAML}"
            ));
            return r;
        }
        Kind::File { .. } => match reader.head(yaml_id, MAX_YAML) {
            Ok(b) => b,
            Err(e) => {
                r.problems.push(format!("{BOOT_YAML}: {e}"));
                return r;
            }
        },
        other => {
            r.problems.push(format!(
                "{BOOT_YAML} is a {}, not a regular file",
                other.type_name()
            ));
            return r;
        }
    };
    let boot: BootYaml = match serde_yaml_ng::from_slice(&text) {
        Ok(b) => b,
        Err(e) => {
            r.problems
                .push(format!("{BOOT_YAML} is not valid YAML: {e}"));
            return r;
        }
    };
    r.cmdline = boot.cmdline.as_ref().and_then(as_text);
    if boot.cmdline.is_some() && r.cmdline.is_none() {
        r.problems
            .push(format!("{BOOT_YAML}: cmdline must be a string"));
    }
    for (field, value) in [("kernel", &boot.kernel), ("initrd", &boot.initrd)] {
        let Some(value) = value else {
            r.problems.push(format!("{BOOT_YAML}: {field} is missing"));
            continue;
        };
        let Some(path) = as_text(value) else {
            r.problems
                .push(format!("{BOOT_YAML}: {field} must be a path string"));
            continue;
        };
        if field == "kernel" {
            r.kernel = Some(path.clone());
        } else {
            r.initrd = Some(path.clone());
        }
        if !path.starts_with('/') {
            r.problems.push(format!(
                "{field} {path:?} is a relative path: it must be absolute (e.g. /boot/{})",
                path.trim_start_matches("./")
            ));
            continue;
        }
        let id = match tree.resolve(&path) {
            Ok(id) => id,
            Err(e) => {
                r.problems.push(format!("{field} {path}: {e}"));
                continue;
            }
        };
        let kind = &tree.node(id).kind;
        if !matches!(kind, Kind::File { .. }) {
            r.problems.push(format!(
                "{field} {path} is a {}, not a regular file",
                match kind {
                    Kind::Dir { .. } => "directory",
                    Kind::Special { .. } => "special file",
                    _ => kind.type_name(),
                }
            ));
            continue;
        }
        if kind.size() == 0 {
            r.problems.push(format!("{field} {path} is empty"));
            continue;
        }
        let head = match reader.head(id, HEAD) {
            Ok(h) => h,
            Err(e) => {
                r.problems.push(format!("{field} {path}: {e}"));
                continue;
            }
        };
        let verdict = if field == "kernel" {
            kernel_format(&head)
        } else {
            initrd_format(&head)
        };
        match verdict {
            Ok(fmt) if field == "kernel" => r.kernel_format = Some(fmt),
            Ok(fmt) => {
                r.initrd_format = Some(fmt);
                if let Some(problem) = ninep_problem(tree, id, &path, store) {
                    r.problems.push(problem);
                }
            }
            Err(why) => r.problems.push(format!("{field} {path}: {why}")),
        }
    }
    r.ok = r.problems.is_empty();
    r
}

/// Why the VM could not mount its root file system over virtio-9p, if so: the initramfs
/// `id` (at `path`) must carry the `9p`, `9pnet` and `9pnet_virtio` modules, or they must
/// be built into the kernel (its `modules.builtin`, in the initramfs or in the flist's
/// `/lib/modules/<version>/`). The initramfs is streamed until they are found.
pub fn ninep_problem(tree: &Tree, id: NodeId, path: &str, store: &BlockingStore) -> Option<String> {
    let wanted = &crate::initramfs::NINEP_MODULES;
    let mut scan = match crate::initramfs::scan_file(tree, id, store, wanted) {
        Ok(s) => s,
        Err(e) => return Some(format!("initrd {path}: reading its module list: {e}")),
    };
    if !scan.missing(wanted).is_empty() {
        builtin_in_tree(tree, store, wanted, &mut scan.found);
    }
    let missing = scan.missing(wanted);
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "initrd {path} lacks the 9p modules ({}): the VM's root file system is shared over \
         virtio-9p and cannot be mounted without {} in the initramfs or built into the kernel \
         (Debian: list them in /etc/initramfs-tools/modules and run update-initramfs -u)",
        missing.join(", "),
        wanted.join(", ")
    ))
}

/// Adds the wanted modules that `/lib/modules/*/modules.builtin` of the flist lists.
fn builtin_in_tree(
    tree: &Tree,
    store: &BlockingStore,
    wanted: &[&str],
    found: &mut std::collections::BTreeSet<String>,
) {
    const MAX_BUILTIN: u64 = 1 << 20;
    let Ok(dir) = tree.resolve("/lib/modules") else {
        return;
    };
    let reader = FileReader::new(tree, store);
    let versions: Vec<NodeId> = tree.children(dir).map(|(_, id)| id).collect();
    for v in versions {
        let Some(b) = tree.child(v, "modules.builtin") else {
            continue;
        };
        if let Ok(text) = reader.head(b, MAX_BUILTIN) {
            crate::initramfs::builtin_modules(&text, wanted, found);
        }
    }
}

/// Compression recognised by magic bytes, decompressed up to 64 KiB.
fn decompress_head(data: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    const OUT: u64 = 64 * 1024;
    let mut out = Vec::new();
    let name = if data.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        // Legacy LZ4 (what the kernel's build writes): blocks of [u32 LE size][block]; the
        // head may end inside the first block, so decode its prefix.
        let size = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?) as usize;
        let block = &data[8..(8 + size).min(data.len())];
        out = lz4_block_prefix(block, OUT as usize);
        "lz4"
    } else {
        let (name, decoder) = crate::initramfs::decoder(data, data)?;
        let _ = decoder.take(OUT).read_to_end(&mut out);
        name
    };
    if out.is_empty() {
        return None;
    }
    Some((name, out))
}

/// The first `limit` bytes an LZ4 block decodes to; stops early (without error) at the end
/// of a truncated block or on an invalid back-reference.
fn lz4_block_prefix(input: &[u8], limit: usize) -> Vec<u8> {
    fn length(input: &[u8], i: &mut usize, mut n: usize) -> Option<usize> {
        if n == 15 {
            loop {
                let b = *input.get(*i)?;
                *i += 1;
                n += b as usize;
                if b != 255 {
                    break;
                }
            }
        }
        Some(n)
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() && out.len() < limit {
        let token = input[i];
        i += 1;
        let Some(lit) = length(input, &mut i, (token >> 4) as usize) else {
            break;
        };
        let end = i.saturating_add(lit).min(input.len());
        out.extend_from_slice(&input[i..end]);
        i = end;
        if i + 2 > input.len() {
            break;
        }
        let offset = u16::from_le_bytes([input[i], input[i + 1]]) as usize;
        i += 2;
        if offset == 0 || offset > out.len() {
            break;
        }
        let Some(len) = length(input, &mut i, (token & 15) as usize) else {
            break;
        };
        let start = out.len() - offset;
        for k in 0..len + 4 {
            if out.len() >= limit {
                break;
            }
            let b = out[start + k];
            out.push(b);
        }
    }
    out.truncate(limit);
    out
}

fn raw_kernel(data: &[u8]) -> Option<&'static str> {
    if data.len() >= 0x206 && &data[0x202..0x206] == b"HdrS" {
        Some("bzImage")
    } else if data.starts_with(b"\x7fELF") {
        Some("ELF vmlinux")
    } else if data.len() >= 0x3c && &data[0x38..0x3c] == b"ARMd" {
        Some("arm64 Image")
    } else {
        None
    }
}

/// What a kernel's first bytes are, or why it is not a Linux boot image.
pub fn kernel_format(head: &[u8]) -> Result<String, String> {
    if let Some(f) = raw_kernel(head) {
        return Ok(f.to_string());
    }
    if let Some((comp, inner)) = decompress_head(head) {
        return match raw_kernel(&inner) {
            Some(f) => Ok(format!("{comp}-compressed {f}")),
            None => Err(format!(
                "{comp}-compressed, but not a Linux kernel inside (no bzImage header, ELF or arm64 Image magic)"
            )),
        };
    }
    Err("not a Linux kernel image (no bzImage \"HdrS\" header, no ELF magic, no arm64 Image magic, no known compression)".into())
}

fn raw_cpio(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Some("cpio (newc)")
    } else if data.starts_with(b"070707") {
        Some("cpio (odc)")
    } else if data.starts_with(&[0xc7, 0x71]) || data.starts_with(&[0x71, 0xc7]) {
        Some("cpio (binary)")
    } else {
        None
    }
}

/// What an initrd's first bytes are, or why it is not a (compressed) cpio archive.
pub fn initrd_format(head: &[u8]) -> Result<String, String> {
    if let Some(f) = raw_cpio(head) {
        return Ok(f.to_string());
    }
    if let Some((comp, inner)) = decompress_head(head) {
        return match raw_cpio(&inner) {
            Some(f) => Ok(format!("{comp}-compressed {f}")),
            None => Err(format!("{comp}-compressed, but not a cpio archive inside")),
        };
    }
    Err(
        "not an initramfs: neither a cpio archive nor a gzip/zstd/xz/lz4/bzip2-compressed one"
            .into(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn formats() {
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_format(&bz).unwrap(), "bzImage");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"\x7fELF\x02\x01\x01rest of a vmlinux")
            .unwrap();
        assert_eq!(
            kernel_format(&gz.finish().unwrap()).unwrap(),
            "gzip-compressed ELF vmlinux"
        );
        assert!(kernel_format(b"#!/bin/sh\n")
            .unwrap_err()
            .contains("not a Linux kernel"));
        let cpio = b"07070100000001rest";
        assert_eq!(initrd_format(cpio).unwrap(), "cpio (newc)");
        let z = zstd::encode_all(&cpio[..], 3).unwrap();
        assert_eq!(initrd_format(&z).unwrap(), "zstd-compressed cpio (newc)");
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(cpio).unwrap();
        assert_eq!(
            initrd_format(&lz.finish().unwrap()).unwrap(),
            "lz4-compressed cpio (newc)"
        );
        let block = lz4_flex::block::compress(cpio);
        let mut legacy = vec![0x02, 0x21, 0x4c, 0x18];
        legacy.extend_from_slice(&(block.len() as u32).to_le_bytes());
        legacy.extend_from_slice(&block);
        assert_eq!(
            initrd_format(&legacy).unwrap(),
            "lz4-compressed cpio (newc)"
        );
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(b"hello").unwrap();
        assert!(initrd_format(&xz.finish().unwrap())
            .unwrap_err()
            .contains("xz-compressed, but not a cpio"));
    }
}
