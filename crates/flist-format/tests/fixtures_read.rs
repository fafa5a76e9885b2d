//! Reading the reference fixtures.

use flist_format::Flist;
use test_support::fixture;

#[test]
fn smoke() {
    let f = Flist::open(fixture("fixture.flist")).unwrap();
    println!("{}", f.tree.len());
    let r = f.find_response();
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("fixture.zflist-find.json")).unwrap()).unwrap();
    assert_eq!(r, want["response"]);
}
