//! The flist v2 format: the tree model, the chunk codec, and (in later modules) the
//! container, sqlite catalog, Cap'n Proto encoding, metadata and merge.
//!
//! This crate does no network I/O and knows nothing of chunk stores: it turns bytes into
//! trees and trees into bytes.

pub mod codec;
pub mod error;
pub mod tree;

pub use error::{CodecError, TreeError};
pub use tree::{Block, Kind, Meta, Node, NodeId, SpecialKind, Tree, TreeStats};
