//! The reference fixture: `fixture-tree.tar.gz` converted must give the reference flist.

use std::fs::File;
use std::sync::Arc;

use flist_convert::{archive_to_flist, ConvertOptions};
use flist_format::diff::{diff, DiffOptions};
use flist_format::{Flist, Metadata};
use flist_store::{DirStore, Store};
use test_support::fixture;

#[test]
fn explore() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::new(tmp.path().join("store")).unwrap());
    let out = tmp.path().join("out.flist");
    let stats = archive_to_flist(
        File::open(fixture("fixture-tree.tar.gz")).unwrap(),
        &store,
        Metadata::new(),
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    println!("{stats:#?}");
    let ours = Flist::open(&out).unwrap();
    let reference = Flist::open(fixture("fixture.flist")).unwrap();
    for d in diff(&reference.tree, &ours.tree, &DiffOptions::default()) {
        println!("{d}");
    }
    let r = reference.tree.node(0);
    println!("ref root {:?}", r.meta);
    let s = reference.tree.node(reference.tree.lookup("secret").unwrap());
    println!("ref secret {:?}", s.meta);
    let s = reference.tree.node(reference.tree.lookup("hello.txt").unwrap());
    println!("ref hello {:?}", s.meta);
    panic!();
}
