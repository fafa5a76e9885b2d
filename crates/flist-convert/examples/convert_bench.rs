//! Driver for `cargo xtask bench convert` (built in release):
//!
//! - `convert-bench gen <dir> <bytes>`: a deterministic corpus of about `<bytes>` as
//!   `<dir>/tree/` and `<dir>/tree.tar.gz` (flate2 default level): many small text files,
//!   some large compressible files, some random ones;
//! - `convert-bench gen-small <archive.tar.gz> <count>`: an archive of `<count>` small files
//!   (100 B – 2 KiB of text, 200 per directory), made in memory; `gen-empty`: the same
//!   with empty files;
//! - `convert-bench tar <archive> <store-dir> <out.flist>` and
//!   `convert-bench dir <tree> <store-dir> <out.flist>`: one conversion into a `dir://`
//!   store, printing `seconds=… peak_rss_kb=… files=… chunks_written=… bytes=…`;
//!   `convert-bench dir-fl <tree> <store-dir> <out.fl>`: the same, writing an rfs `.fl`;
//! - `convert-bench reencode <in.flist> <from-store-dir> <to-store-dir> <out.fl>`: an
//!   `.flist` converted to `.fl` (every chunk re-encoded into the second store), printing
//!   `seconds=… peak_rss_kb=… chunks=… bytes=…`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flist_convert::{convert, ConvertOptions, Source, UploadMode};
use flist_store::{BlockingStore, DirStore};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn words() -> Vec<String> {
    let mut r = Rng(42);
    let letters = b"etaoinshrdlcumwfgypbvkjxqz";
    (0..2000)
        .map(|_| {
            let len = 2 + (r.next() % 9) as usize;
            (0..len)
                .map(|_| letters[(r.next() % 13 + r.next() % 13) as usize] as char)
                .collect()
        })
        .collect()
}

fn text(r: &mut Rng, words: &[String], size: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < size {
        let w = &words[(r.next() % words.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if r.next().is_multiple_of(12) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(size);
}

fn random(r: &mut Rng, size: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < size {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(size);
}

fn gen(dir: &Path, total: u64) -> std::io::Result<()> {
    let tree = dir.join("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    fs::create_dir_all(&tree)?;
    let words = words();
    let mut r = Rng(0x5eed);
    let mut buf = Vec::new();
    // 40% small text files (1-12 KiB) in 100 directories, 40% large text files (8 MiB),
    // 20% random files (8 MiB).
    let small_budget = total * 4 / 10;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < small_budget {
        let d = tree.join(format!("small/d{:03}", i % 100));
        fs::create_dir_all(&d)?;
        let size = 1024 + (r.next() % (11 * 1024)) as usize;
        text(&mut r, &words, size, &mut buf);
        fs::write(d.join(format!("f{i:06}.txt")), &buf)?;
        written += size as u64;
        i += 1;
    }
    let big = 8usize << 20;
    fs::create_dir_all(tree.join("large"))?;
    for j in 0..(total * 4 / 10) / big as u64 {
        text(&mut r, &words, big, &mut buf);
        fs::write(tree.join(format!("large/text{j:03}.log")), &buf)?;
    }
    fs::create_dir_all(tree.join("random"))?;
    for j in 0..(total * 2 / 10) / big as u64 {
        random(&mut r, big, &mut buf);
        fs::write(tree.join(format!("random/blob{j:03}.bin")), &buf)?;
    }
    let gz = File::create(dir.join("tree.tar.gz"))?;
    let enc = flate2::write::GzEncoder::new(BufWriter::new(gz), flate2::Compression::default());
    let mut b = tar::Builder::new(enc);
    b.follow_symlinks(false);
    b.append_dir_all(".", &tree)?;
    let enc = b.into_inner()?;
    enc.finish()?.flush()?;
    Ok(())
}

/// An archive of `count` small text files (empty ones with `empty`), 200 per directory.
fn gen_small(path: &Path, count: u64, empty: bool) -> std::io::Result<()> {
    let words = words();
    let mut r = Rng(0x5a11);
    let mut buf = Vec::new();
    let tmp = path.with_extension("partial");
    let gz = File::create(&tmp)?;
    let enc = flate2::write::GzEncoder::new(BufWriter::new(gz), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for i in 0..count {
        let size = if empty {
            0
        } else {
            100 + (r.next() % 1948) as usize
        };
        text(&mut r, &words, size, &mut buf);
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(
            &mut h,
            format!("d{:04}/f{i:07}.txt", i / 200),
            buf.as_slice(),
        )?;
    }
    let enc = b.into_inner()?;
    enc.finish()?.flush()?;
    fs::rename(tmp, path)
}

/// Opens a `dir://` store on a private runtime, or exits.
fn open_dir_store(dir: &Path) -> BlockingStore {
    match DirStore::new(dir).and_then(|s| BlockingStore::on_private_runtime(Arc::new(s))) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store: {e}");
            std::process::exit(1);
        }
    }
}

/// `.flist` → `.fl` of `input`, read from `from`, blocks into a fresh `to`.
fn reencode(input: &Path, from: &Path, to: &Path, out: &Path) {
    let _ = fs::remove_dir_all(to);
    let (from, to) = (open_dir_store(from), open_dir_store(to));
    let start = Instant::now();
    let result = flist_format::Flist::open(input)
        .map_err(|e| e.to_string())
        .and_then(|src| {
            let opts = flist_convert::ReencodeOptions::default();
            let (tree, stats) =
                flist_convert::reencode(&src.tree, &from, &to, &opts).map_err(|e| e.to_string())?;
            flist_format::Flist {
                tree,
                metadata: src.metadata,
            }
            .write_fl(out)
            .map_err(|e| e.to_string())?;
            Ok(stats)
        });
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(s) => println!(
            "seconds={secs:.3} peak_rss_kb={} chunks={} bytes={} chunks_written={}",
            peak_rss_kb(),
            s.chunks,
            s.bytes,
            s.chunks_written
        ),
        Err(e) => {
            eprintln!("reencode: {e}");
            std::process::exit(1);
        }
    }
}

fn peak_rss_kb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: convert-bench gen <dir> <bytes> | gen-small <archive> <count> | gen-empty <archive> <count> | tar <archive> <store> <out> | dir <tree> <store> <out>";
    let Some(cmd) = args.first() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(2)
        })
    };
    if cmd == "gen-small" || cmd == "gen-empty" {
        let count: u64 = arg(2).parse().unwrap_or_else(|_| {
            eprintln!("{usage}");
            std::process::exit(2)
        });
        if let Err(e) = gen_small(Path::new(arg(1)), count, cmd == "gen-empty") {
            eprintln!("gen-small: {e}");
            std::process::exit(1);
        }
        return;
    }
    if cmd == "gen" {
        let total: u64 = arg(2).parse().unwrap_or_else(|_| {
            eprintln!("{usage}");
            std::process::exit(2)
        });
        if let Err(e) = gen(Path::new(arg(1)), total) {
            eprintln!("gen: {e}");
            std::process::exit(1);
        }
        return;
    }
    if cmd == "reencode" {
        reencode(
            Path::new(arg(1)),
            Path::new(arg(2)),
            Path::new(arg(3)),
            Path::new(arg(4)),
        );
        return;
    }
    let store_dir = Path::new(arg(2));
    let _ = fs::remove_dir_all(store_dir);
    let store = match DirStore::new(store_dir)
        .and_then(|s| BlockingStore::on_private_runtime(Arc::new(s)))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store: {e}");
            std::process::exit(1);
        }
    };
    let upload = match std::env::var("CONVERT_UPLOAD").as_deref() {
        Ok("set") => UploadMode::SetOnly,
        Ok("check") => UploadMode::CheckThenSet,
        _ => UploadMode::Auto,
    };
    let opts = ConvertOptions {
        upload,
        codec: if cmd == "dir-fl" {
            flist_format::Codec::Rfs
        } else {
            flist_format::Codec::Flist
        },
        ..ConvertOptions::default()
    };
    let out = Path::new(arg(3));
    let start = Instant::now();
    let source = match cmd.as_str() {
        "tar" => File::open(arg(1)).map(Source::archive),
        "dir" | "dir-fl" => Ok(Source::dir(arg(1))),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let result = source.map_err(|e| e.to_string()).and_then(|src| {
        let c = convert(src, Some(&store), &opts).map_err(|e| e.to_string())?;
        c.write_flist(out).map_err(|e| e.to_string())?;
        Ok(c.stats)
    });
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(s) => println!(
            "seconds={secs:.3} peak_rss_kb={} files={} bytes={} chunks_written={} chunks_present={} chunks_dedup={}",
            peak_rss_kb(),
            s.files,
            s.bytes,
            s.chunks_written,
            s.chunks_present,
            s.chunks_deduplicated
        ),
        Err(e) => {
            eprintln!("convert: {e}");
            std::process::exit(1);
        }
    }
}
