//! `check-vm FLIST`: is the flist a bootable VM image? See [`flist_convert::vmcheck`].

use serde_json::json;

use crate::backend::StoreConfig;
use crate::error::Result;
use crate::mount::{load_flist_bytes, parse_flist};
use crate::response::Response;

/// `check-vm`: reads `/boot/boot.yaml` and the first bytes of the kernel and initrd from
/// the store. A response with a failure (non-zero exit) lists every problem.
pub fn check_vm(flist: &str, stores: &StoreConfig) -> Result<Response> {
    let f = "check-vm";
    let bytes = load_flist_bytes(f, flist)?;
    let parsed = parse_flist(f, &bytes, flist)?;
    let store = stores.open_read(f, &parsed.metadata)?;
    let report = flist_convert::vmcheck::check_vm(&parsed.tree, &store);
    let mut text = String::new();
    if report.ok {
        text.push_str(&format!(
            "{flist}: bootable VM image\n  kernel : {} ({})\n  initrd : {} ({})\n",
            report.kernel.as_deref().unwrap_or_default(),
            report.kernel_format.as_deref().unwrap_or_default(),
            report.initrd.as_deref().unwrap_or_default(),
            report.initrd_format.as_deref().unwrap_or_default(),
        ));
        if let Some(c) = &report.cmdline {
            text.push_str(&format!("  cmdline: {c}\n"));
        }
    }
    let json = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
    let mut r = Response::new(json, text);
    if !report.ok {
        r.failure = Some(not_bootable(flist, &report));
    }
    Ok(r)
}

/// Why `flist` cannot boot, in the words `check-vm` and `vm boot` both use.
pub fn not_bootable(flist: &str, report: &flist_convert::vmcheck::VmReport) -> String {
    format!(
        "{flist} is not a bootable VM image: {}",
        report.problems.join("; ")
    )
}
