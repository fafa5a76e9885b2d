//! Readmes: Markdown rendered by `pulldown-cmark`, then sanitised by `ammonia` (no scripts,
//! no event handlers, no `javascript:` links, `rel="noopener noreferrer"` on links).

use pulldown_cmark::{html, Options, Parser};

/// Largest readme rendered (longer ones are cut).
pub const MAX_README: usize = 256 * 1024;

/// Safe HTML for a Markdown readme.
pub fn render(markdown: &str) -> String {
    let text = match markdown.char_indices().nth(MAX_README) {
        Some((i, _)) => &markdown[..i],
        None => markdown,
    };
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let mut out = String::with_capacity(text.len() * 2);
    html::push_html(&mut out, Parser::new_ext(text, opts));
    ammonia::clean(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_scripts_removed() {
        let h = render("# Title\n\n*hi* <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>");
        assert!(h.contains("<h1>Title</h1>"), "{h}");
        assert!(h.contains("<em>hi</em>"), "{h}");
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("javascript:"), "{h}");
        assert!(!h.contains("onerror"), "{h}");
    }
}
