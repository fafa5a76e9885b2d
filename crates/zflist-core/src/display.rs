//! Showing entries on a terminal: `ls -l` mode strings and names with control characters
//! escaped (an flist is untrusted input: a name holding ESC or a newline must not rewrite
//! the user's terminal or fake extra lines).

use flist_format::{Kind, SpecialKind};

/// The `ls -l` type letter: `-` file, `d` directory, `l` symlink, `p` fifo, `s` socket,
/// `b` block device, `c` character device, `?` unknown.
pub fn ls_type_char(kind: &Kind) -> char {
    match kind {
        Kind::Dir { .. } => 'd',
        Kind::File { .. } => '-',
        Kind::Symlink { .. } => 'l',
        Kind::Special { kind, .. } => match kind {
            SpecialKind::Socket => 's',
            SpecialKind::Block => 'b',
            SpecialKind::Chardev => 'c',
            SpecialKind::Fifo => 'p',
            SpecialKind::Unknown => '?',
        },
    }
}

/// The `ls -l` mode string: type letter and permissions with setuid/setgid (`s`/`S` in the
/// owner/group execute column) and sticky (`t`/`T` in the others execute column), e.g.
/// `-rwsr-xr-x`, `drwxrwxrwt`, `prw-r--r--`.
pub fn mode_string(kind: &Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(ls_type_char(kind));
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, set: char, unset: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

/// A name or path safe to print: backslash, C0 and C1 control characters and DEL written as
/// escapes (`\n`, `\t`, `\r`, `\e`, `\\`, `\x7f`, `\u{9b}`), everything else as is.
pub fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c == '\\' || c.is_control();
    if !name.chars().any(needs) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Kind {
        Kind::Dir {
            children: Default::default(),
            size: 4096,
        }
    }

    #[test]
    fn mode_strings_like_ls() {
        let file = Kind::File {
            size: 0,
            blocks: vec![],
        };
        let special = |kind| Kind::Special { kind, rdev: None };
        assert_eq!(mode_string(&file, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(&file, 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(&file, 0o2755), "-rwxr-sr-x");
        assert_eq!(mode_string(&file, 0o2745), "-rwxr-Sr-x");
        assert_eq!(mode_string(&dir(), 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(&dir(), 0o1770), "drwxrwx--T");
        assert_eq!(
            mode_string(&special(SpecialKind::Fifo), 0o644),
            "prw-r--r--"
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
    }

    #[test]
    fn control_characters_escaped() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[2J"), "\\e[2J");
        assert_eq!(escape("x\u{7f}\u{9b}\\"), "x\\x7f\\u{9b}\\\\");
        assert_eq!(escape("\u{1}"), "\\x01");
    }
}
