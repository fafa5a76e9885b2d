//! How entries look to a person: the `ls -l` mode string, shared by the `zflist` CLI and the
//! hub's file browser.

use crate::catalog::mode_bits;
use crate::tree::{Kind, SpecialKind};

/// The `ls -l` type letter: `-` file, `d` directory, `l` symlink, `p` fifo, `s` socket,
/// `b` block device, `c` character device; for a special node of unknown kind, the type bits
/// of `mode` decide, and `?` when they say nothing.
pub fn ls_type_char(kind: &Kind, mode: u32) -> char {
    match kind {
        Kind::Dir { .. } => 'd',
        Kind::File { .. } => '-',
        Kind::Symlink { .. } => 'l',
        Kind::Special { kind, .. } => match kind {
            SpecialKind::Socket => 's',
            SpecialKind::Block => 'b',
            SpecialKind::Chardev => 'c',
            SpecialKind::Fifo => 'p',
            SpecialKind::Unknown => match mode & mode_bits::S_IFMT {
                mode_bits::S_IFSOCK => 's',
                mode_bits::S_IFBLK => 'b',
                mode_bits::S_IFCHR => 'c',
                mode_bits::S_IFIFO => 'p',
                _ => '?',
            },
        },
    }
}

/// The `ls -l` mode string: type letter and permissions with setuid/setgid (`s`/`S` in the
/// owner/group execute column) and sticky (`t`/`T` in the others execute column), e.g.
/// `-rwsr-xr-x`, `drwxrwxrwt`, `prw-r--r--`.
pub fn mode_string(kind: &Kind, mode: u32) -> String {
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, set: char, unset: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    [
        ls_type_char(kind, mode),
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't', 'T'),
    ]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(kind: SpecialKind) -> Kind {
        Kind::Special { kind, rdev: None }
    }

    #[test]
    fn mode_strings_like_ls() {
        let file = Kind::File {
            size: 0,
            blocks: vec![],
        };
        assert_eq!(mode_string(&file, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(&file, 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(&file, 0o2755), "-rwxr-sr-x");
        assert_eq!(mode_string(&file, 0o2640), "-rw-r-S---");
        assert_eq!(mode_string(&file, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(&Kind::empty_dir(), 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(&Kind::empty_dir(), 0o1770), "drwxrwx--T");
        let link = Kind::Symlink { target: "x".into() };
        assert_eq!(mode_string(&link, 0o777), "lrwxrwxrwx");
        assert_eq!(
            mode_string(&special(SpecialKind::Fifo), 0o600),
            "prw-------"
        );
        assert_eq!(
            mode_string(&special(SpecialKind::Socket), 0o755),
            "srwxr-xr-x"
        );
        assert_eq!(
            mode_string(&special(SpecialKind::Block), 0o660),
            "brw-rw----"
        );
        assert_eq!(
            mode_string(&special(SpecialKind::Chardev), 0o666),
            "crw-rw-rw-"
        );
        let unknown = special(SpecialKind::Unknown);
        assert_eq!(
            mode_string(&unknown, mode_bits::S_IFIFO | 0o644),
            "prw-r--r--"
        );
        assert_eq!(mode_string(&unknown, 0o644), "?rw-r--r--");
    }
}
