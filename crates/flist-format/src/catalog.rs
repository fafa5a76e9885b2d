//! Cap'n Proto values of the catalog: decoding `Dir` and `ACI` rows into plain structs and
//! encoding them back. Values are standard unpacked messages; decoding copies the bytes into
//! an aligned buffer (bounded by the row size) and reads them with bounded limits, so
//! hostile rows (bad pointers, huge list sizes, deep nesting) give an error, never a panic
//! or an unbounded allocation.

use capnp::message::{self, ReaderOptions};
use capnp::serialize;

use crate::error::FormatError;
use crate::flist_capnp::{a_c_i, dir, inode, special};
use crate::tree::{Block, SpecialKind};

/// Traversal budget: at least this many words, or 8× the message size, whichever is more.
const MIN_TRAVERSAL_WORDS: usize = 1 << 20;
/// Upper bound of the traversal budget (2 GiB of reads).
const MAX_TRAVERSAL_WORDS: usize = 1 << 28;
/// Nesting limit (the schema is at most 4 levels deep).
const NESTING_LIMIT: i32 = 16;

/// `S_IFMT` and the file-type bits of `st_mode`.
pub mod mode_bits {
    /// Mask of the file-type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// Fifo.
    pub const S_IFIFO: u32 = 0o010000;
}

/// The file-type bits of a special kind.
pub fn special_type_bits(kind: SpecialKind) -> u32 {
    use mode_bits::*;
    match kind {
        SpecialKind::Socket => S_IFSOCK,
        SpecialKind::Block => S_IFBLK,
        SpecialKind::Chardev => S_IFCHR,
        SpecialKind::Fifo => S_IFIFO,
        SpecialKind::Unknown => 0,
    }
}

/// The special kind told by file-type bits, if they name a special file.
pub fn special_from_mode(mode: u32) -> Option<SpecialKind> {
    use mode_bits::*;
    match mode & S_IFMT {
        S_IFSOCK => Some(SpecialKind::Socket),
        S_IFBLK => Some(SpecialKind::Block),
        S_IFCHR => Some(SpecialKind::Chardev),
        S_IFIFO => Some(SpecialKind::Fifo),
        _ => None,
    }
}

pub(crate) fn special_to_capnp(kind: SpecialKind) -> special::Type {
    match kind {
        SpecialKind::Socket => special::Type::Socket,
        SpecialKind::Block => special::Type::Block,
        SpecialKind::Chardev => special::Type::Chardev,
        SpecialKind::Fifo => special::Type::Fifopipe,
        SpecialKind::Unknown => special::Type::Unknown,
    }
}

fn special_from_capnp(t: Result<special::Type, capnp::NotInSchema>) -> SpecialKind {
    match t {
        Ok(special::Type::Socket) => SpecialKind::Socket,
        Ok(special::Type::Block) => SpecialKind::Block,
        Ok(special::Type::Chardev) => SpecialKind::Chardev,
        Ok(special::Type::Fifopipe) => SpecialKind::Fifo,
        Ok(special::Type::Unknown) | Err(_) => SpecialKind::Unknown,
    }
}

/// A decoded `Inode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeRec {
    /// Entry name.
    pub name: String,
    /// Recorded size.
    pub size: u64,
    /// Kind-specific attributes.
    pub attr: AttrRec,
    /// Key of the ACL row.
    pub aclkey: String,
    /// mtime.
    pub mtime: u32,
    /// ctime.
    pub ctime: u32,
}

/// The `attributes` union of an `Inode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrRec {
    /// A subdirectory, with the key of its own `Dir` row.
    Dir {
        /// `SubDir.key`.
        key: String,
    },
    /// A regular file.
    File {
        /// `File.blockSize` (4 KiB units).
        block_size: u16,
        /// Chunks.
        blocks: Vec<Block>,
    },
    /// A symbolic link.
    Link {
        /// Raw target text.
        target: String,
    },
    /// A special file.
    Special {
        /// `Special.type`.
        kind: SpecialKind,
        /// `Special.data`, raw.
        data: Vec<u8>,
    },
}

/// A decoded `Dir` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirRec {
    /// Last path component (`""` for the root).
    pub name: String,
    /// Relative path.
    pub location: String,
    /// Entries in stored order.
    pub contents: Vec<InodeRec>,
    /// Key of the parent's row.
    pub parent: String,
    /// Recorded size.
    pub size: u64,
    /// Key of the ACL row.
    pub aclkey: String,
    /// mtime.
    pub mtime: u32,
    /// ctime.
    pub ctime: u32,
}

/// A decoded `ACI` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AciRec {
    /// Owner name.
    pub uname: String,
    /// Group name.
    pub gname: String,
    /// Mode as stored (may carry file-type bits).
    pub mode: u16,
    /// Numeric owner (-1 when unset).
    pub uid: i64,
    /// Numeric group (-1 when unset).
    pub gid: i64,
}

/// The ACL key of an ACI: BLAKE2b-8 of `user:..\ngroup:..\nmode:0o..\nuid:..\ngid:..`.
pub fn acl_key(uname: &str, gname: &str, mode: u32, uid: u32, gid: u32) -> String {
    let text = format!("user:{uname}\ngroup:{gname}\nmode:0o{mode:o}\nuid:{uid}\ngid:{gid}");
    hex::encode(crate::codec::blake2b::<8>(text.as_bytes()))
}

/// Reads one unpacked message from `bytes` with bounded limits and hands it to `f`.
///
/// The bytes are copied into a word-aligned buffer (as large as the value itself) and read
/// in place; a segment table that claims more than is there is an error.
fn with_message<T>(
    key: &str,
    bytes: &[u8],
    f: impl FnOnce(&message::Reader<serialize::BufferSegments<&[u8]>>) -> Result<T, FormatError>,
) -> Result<T, FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::capnp(key, "empty value"));
    }
    let nwords = bytes.len().div_ceil(8);
    let mut words = capnp::Word::allocate_zeroed_vec(nwords);
    capnp::Word::words_to_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    let limit = nwords
        .saturating_mul(8)
        .clamp(MIN_TRAVERSAL_WORDS, MAX_TRAVERSAL_WORDS);
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(limit))
        .nesting_limit(NESTING_LIMIT);
    let mut slice = &capnp::Word::words_to_bytes(&words)[..bytes.len()];
    let msg = serialize::read_message_from_flat_slice(&mut slice, options)
        .map_err(|e| FormatError::capnp(key, e))?;
    f(&msg)
}

/// A field's name for error messages, built only when an error is reported (a catalog's
/// rows are decoded on every open: no formatting per field on the success path).
trait Field {
    fn name(&self) -> String;
}

impl Field for &str {
    fn name(&self) -> String {
        (*self).to_string()
    }
}

/// `"<field> of <entry name>"`.
struct Of<'a>(&'a str, &'a str);

impl std::fmt::Display for Of<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {:?}", self.0, self.1)
    }
}

impl Field for Of<'_> {
    fn name(&self) -> String {
        self.to_string()
    }
}

fn text(
    key: &str,
    field: impl Field,
    t: capnp::Result<capnp::text::Reader<'_>>,
) -> Result<String, FormatError> {
    let t = t.map_err(|e| FormatError::capnp(key, format!("{}: {e}", field.name())))?;
    match t.to_str() {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(FormatError::bad(
            key,
            format!(
                "{} is not UTF-8 ({:?}); such names cannot be represented",
                field.name(),
                String::from_utf8_lossy(t.as_bytes())
            ),
        )),
    }
}

fn block16(
    key: &str,
    what: impl Field,
    d: capnp::Result<capnp::data::Reader<'_>>,
) -> Result<[u8; 16], FormatError> {
    let d = d.map_err(|e| FormatError::capnp(key, format!("{}: {e}", what.name())))?;
    <[u8; 16]>::try_from(d).map_err(|_| {
        FormatError::bad(
            key,
            format!("{} is {} bytes, expected 16", what.name(), d.len()),
        )
    })
}

fn decode_inode(key: &str, r: inode::Reader<'_>) -> Result<InodeRec, FormatError> {
    let name = text(key, "Inode.name", r.get_name())?;
    let ctx = |field: &'static str| Of(field, &name);
    let attr = match r.get_attributes().which() {
        Ok(inode::attributes::Which::Dir(d)) => {
            let d = d.map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("dir"))))?;
            AttrRec::Dir {
                key: text(key, ctx("SubDir.key"), d.get_key())?,
            }
        }
        Ok(inode::attributes::Which::File(f)) => {
            let f = f.map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("file"))))?;
            let list = f
                .get_blocks()
                .map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("File.blocks"))))?;
            let mut blocks = Vec::with_capacity(list.len().min(1 << 16) as usize);
            for b in list.iter() {
                blocks.push(Block::Flist {
                    hash: block16(key, ctx("FileBlock.hash"), b.get_hash())?,
                    key: block16(key, ctx("FileBlock.key"), b.get_key())?,
                });
            }
            AttrRec::File {
                block_size: f.get_block_size(),
                blocks,
            }
        }
        Ok(inode::attributes::Which::Link(l)) => {
            let l = l.map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("link"))))?;
            AttrRec::Link {
                target: text(key, ctx("Link.target"), l.get_target())?,
            }
        }
        Ok(inode::attributes::Which::Special(s)) => {
            let s = s.map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("special"))))?;
            let data = s
                .get_data()
                .map_err(|e| FormatError::capnp(key, format!("{}: {e}", ctx("Special.data"))))?;
            AttrRec::Special {
                kind: special_from_capnp(s.get_type()),
                data: data.to_vec(),
            }
        }
        Err(capnp::NotInSchema(n)) => {
            return Err(FormatError::bad(
                key,
                format!("{}: unknown attributes variant {n}", ctx("Inode")),
            ))
        }
    };
    Ok(InodeRec {
        aclkey: text(key, ctx("Inode.aclkey"), r.get_aclkey())?,
        size: r.get_size(),
        attr,
        mtime: r.get_modification_time(),
        ctime: r.get_creation_time(),
        name,
    })
}

/// Decodes a `Dir` row.
pub fn decode_dir(key: &str, bytes: &[u8]) -> Result<DirRec, FormatError> {
    with_message(key, bytes, |msg| {
        let r: dir::Reader<'_> = msg.get_root().map_err(|e| FormatError::capnp(key, e))?;
        let list = r
            .get_contents()
            .map_err(|e| FormatError::capnp(key, format!("Dir.contents: {e}")))?;
        let mut contents = Vec::with_capacity(list.len().min(1 << 20) as usize);
        for i in list.iter() {
            contents.push(decode_inode(key, i)?);
        }
        Ok(DirRec {
            name: text(key, "Dir.name", r.get_name())?,
            location: text(key, "Dir.location", r.get_location())?,
            parent: text(key, "Dir.parent", r.get_parent())?,
            aclkey: text(key, "Dir.aclkey", r.get_aclkey())?,
            size: r.get_size(),
            mtime: r.get_modification_time(),
            ctime: r.get_creation_time(),
            contents,
        })
    })
}

/// Decodes an `ACI` row.
pub fn decode_aci(key: &str, bytes: &[u8]) -> Result<AciRec, FormatError> {
    with_message(key, bytes, |msg| {
        let r: a_c_i::Reader<'_> = msg.get_root().map_err(|e| FormatError::capnp(key, e))?;
        Ok(AciRec {
            uname: text(key, "ACI.uname", r.get_uname())?,
            gname: text(key, "ACI.gname", r.get_gname())?,
            mode: r.get_mode(),
            uid: r.get_uid(),
            gid: r.get_gid(),
        })
    })
}

/// Encodes an `ACI` row.
pub fn encode_aci(aci: &AciRec) -> Vec<u8> {
    let mut msg = message::Builder::new_default();
    {
        let mut b = msg.init_root::<a_c_i::Builder<'_>>();
        b.set_uname(aci.uname.as_str());
        b.set_gname(aci.gname.as_str());
        b.set_mode(aci.mode);
        b.set_uid(aci.uid);
        b.set_gid(aci.gid);
    }
    serialize::write_message_to_words(&msg)
}

/// The error for a chunk of another codec than the `.flist` one in a tree being written.
fn foreign_block(d: &DirRec, name: &str, b: &Block) -> FormatError {
    let path = if d.location.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", d.location)
    };
    FormatError::ForeignBlock {
        path,
        codec: b.codec(),
        format: crate::Format::Flist,
    }
}

/// Encodes a `Dir` row. Every file block must be of the `.flist` codec
/// ([`FormatError::ForeignBlock`] otherwise).
pub fn encode_dir(d: &DirRec) -> Result<Vec<u8>, FormatError> {
    let too_big = |what: &str| FormatError::Unwritable {
        path: d.location.clone(),
        reason: format!("{what} is too large for Cap'n Proto"),
    };
    let n = u32::try_from(d.contents.len()).map_err(|_| too_big("directory"))?;
    let mut msg = message::Builder::new_default();
    {
        let mut b = msg.init_root::<dir::Builder<'_>>();
        b.set_name(d.name.as_str());
        b.set_location(d.location.as_str());
        b.set_parent(d.parent.as_str());
        b.set_size(d.size);
        b.set_aclkey(d.aclkey.as_str());
        b.set_modification_time(d.mtime);
        b.set_creation_time(d.ctime);
        let mut list = b.init_contents(n);
        for (i, e) in d.contents.iter().enumerate() {
            let mut ib = list.reborrow().get(i as u32);
            ib.set_name(e.name.as_str());
            ib.set_size(e.size);
            ib.set_aclkey(e.aclkey.as_str());
            ib.set_modification_time(e.mtime);
            ib.set_creation_time(e.ctime);
            let attrs = ib.init_attributes();
            match &e.attr {
                AttrRec::Dir { key } => attrs.init_dir().set_key(key.as_str()),
                AttrRec::File { block_size, blocks } => {
                    let mut f = attrs.init_file();
                    f.set_block_size(*block_size);
                    if !blocks.is_empty() {
                        let nb = u32::try_from(blocks.len()).map_err(|_| too_big(&e.name))?;
                        let mut bl = f.init_blocks(nb);
                        for (j, blk) in blocks.iter().enumerate() {
                            let Block::Flist { hash, key } = blk else {
                                return Err(foreign_block(d, &e.name, blk));
                            };
                            let mut bb = bl.reborrow().get(j as u32);
                            bb.set_hash(&hash[..]);
                            bb.set_key(&key[..]);
                        }
                    }
                }
                AttrRec::Link { target } => attrs.init_link().set_target(target.as_str()),
                AttrRec::Special { kind, data } => {
                    let mut s = attrs.init_special();
                    s.set_type(special_to_capnp(*kind));
                    if !data.is_empty() {
                        s.set_data(data);
                    }
                }
            }
        }
    }
    Ok(serialize::write_message_to_words(&msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_keys_match_spec() {
        assert_eq!(acl_key("root", "root", 0o755, 0, 0), "d7683de000c13689");
        assert_eq!(acl_key("root", "root", 0o644, 0, 0), "5f64cf1389d15471");
    }

    #[test]
    fn dir_round_trip() {
        let d = DirRec {
            name: "x".into(),
            location: "a/x".into(),
            parent: "p".into(),
            size: 4096,
            aclkey: "k".into(),
            mtime: 1,
            ctime: 2,
            contents: vec![
                InodeRec {
                    name: "f".into(),
                    size: 3,
                    attr: AttrRec::File {
                        block_size: 128,
                        blocks: vec![Block::Flist {
                            hash: [1; 16],
                            key: [2; 16],
                        }],
                    },
                    aclkey: "a".into(),
                    mtime: 5,
                    ctime: 6,
                },
                InodeRec {
                    name: "s".into(),
                    size: 0,
                    attr: AttrRec::Special {
                        kind: SpecialKind::Fifo,
                        data: vec![],
                    },
                    aclkey: "a".into(),
                    mtime: 5,
                    ctime: 6,
                },
            ],
        };
        let bytes = encode_dir(&d).unwrap();
        assert_eq!(decode_dir("k", &bytes).unwrap(), d);
        let a = AciRec {
            uname: "u".into(),
            gname: "g".into(),
            mode: 0o4755,
            uid: 7,
            gid: 8,
        };
        assert_eq!(decode_aci("k", &encode_aci(&a)).unwrap(), a);
        // a truncated message is an error
        assert!(decode_dir("k", &bytes[..bytes.len() / 2]).is_err());
        assert!(decode_dir("k", &[]).is_err());
    }
}
