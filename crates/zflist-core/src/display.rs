//! Showing entries on a terminal: `ls -l` mode strings (from flist-format) and names with control characters
//! escaped (an flist is untrusted input: a name holding ESC or a newline must not rewrite
//! the user's terminal or fake extra lines).

pub use flist_format::display::mode_string;

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

    #[test]
    fn control_characters_escaped() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[2J"), "\\e[2J");
        assert_eq!(escape("x\u{7f}\u{9b}\\"), "x\\x7f\\u{9b}\\\\");
        assert_eq!(escape("\u{1}"), "\\x01");
    }
}
