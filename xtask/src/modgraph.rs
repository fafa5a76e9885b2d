//! `cargo xtask arch`: the module import graph of a crate, and its cycles.
//!
//! A node is a source file (a module with its inline submodules); an edge `a → b` says some
//! non-test code in `a` names an item of `b` (a path in an expression, a type, a pattern, a
//! trait bound, or inside a macro call), through whatever `use` brought the name in. Names
//! are followed through re-exports to the module that defines the item, so code in `x.rs`
//! naming `crate::Error` where `lib.rs` re-exports `error::Error` is an edge `x → error`,
//! not `x → lib`. Declarations are not edges: `mod x;`, `use` and `pub use` (a facade
//! re-exporting its children depends on nothing; the code naming the items does). Test code
//! (`#[cfg(test)]`) is left out: tests may reach anywhere.
//!
//! A cycle (a strongly connected component of more than one file) means the modules cannot
//! be read, changed or split one at a time; the crates listed in [`CHECKED`] must have none
//! (the architecture invariant of `docs/ARCHITECTURE.md`, checked by this file's tests).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Crates (directories under the workspace root) whose modules must not import in a cycle.
/// (`hub-http` joins once its feature folders have untangled its cycle.)
pub const CHECKED: &[&str] = &["crates/hub-repo"];

/// `cargo xtask arch [CRATE_DIR...]`: prints each crate's import cycles; fails if any.
pub fn run(args: &[String]) -> Result<()> {
    let dirs: Vec<String> = if args.is_empty() {
        CHECKED.iter().map(|s| s.to_string()).collect()
    } else {
        args.to_vec()
    };
    let mut bad = 0;
    for d in &dirs {
        let dir = crate::root().join(d);
        if !dir.join("src").is_dir() {
            continue;
        }
        let graph = Graph::of_crate(&dir.join("src"))?;
        let cycles = graph.cycles();
        if cycles.is_empty() {
            println!("{d}: {} modules, no import cycle", graph.files.len());
        }
        for c in &cycles {
            bad += 1;
            println!(
                "{d}: import cycle of {} files:\n{}",
                c.len(),
                graph.explain(c)
            );
        }
    }
    if bad > 0 {
        bail!("{bad} import cycle(s)");
    }
    Ok(())
}

/// A module path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

/// What one file holds.
#[derive(Default, Debug)]
struct FileInfo {
    /// Modules declared in the file, inline ones included (full paths).
    modules: BTreeSet<ModPath>,
    /// Names of items defined directly in each module of this file.
    items: HashMap<ModPath, BTreeSet<String>>,
    /// `use` imports of each module: name → absolute path (unresolved).
    imports: HashMap<ModPath, BTreeMap<String, ModPath>>,
    /// Glob imports of each module: absolute paths of the modules globbed.
    globs: HashMap<ModPath, Vec<ModPath>>,
    /// Paths named by non-test code, with the module they appear in (absolute when they
    /// start with `crate`/`self`/`super`, else relative to that module).
    refs: Vec<(ModPath, ModPath)>,
}

/// The import graph of one crate.
pub struct Graph {
    /// file index → path relative to `src/`.
    files: Vec<String>,
    /// module path → file index.
    module_file: HashMap<ModPath, usize>,
    /// per file, what it holds.
    infos: Vec<FileInfo>,
    /// file → files it depends on, with one example path for each edge.
    edges: Vec<BTreeMap<usize, String>>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (a crate's source directory).
    pub fn of_crate(src: &Path) -> Result<Graph> {
        let mut g = Graph {
            files: Vec::new(),
            module_file: HashMap::new(),
            infos: Vec::new(),
            edges: Vec::new(),
        };
        let root = if src.join("lib.rs").is_file() {
            src.join("lib.rs")
        } else {
            src.join("main.rs")
        };
        g.load(src, &root, Vec::new())?;
        g.link();
        Ok(g)
    }

    /// Parses `file` as module `path`, then the files of its out-of-line submodules.
    fn load(&mut self, src: &Path, file: &Path, path: ModPath) -> Result<()> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parse {}", file.display()))?;
        let idx = self.files.len();
        let rel = file.strip_prefix(src).unwrap_or(file).display().to_string();
        self.files.push(rel);
        self.infos.push(FileInfo::default());
        let mut children = Vec::new();
        {
            let mut c = Collector {
                info: &mut self.infos[idx],
                module: path.clone(),
                children: &mut children,
            };
            c.info.modules.insert(path.clone());
            c.items(&ast.items);
        }
        for m in self.infos[idx].modules.clone() {
            self.module_file.insert(m, idx);
        }
        // The directory holding this module's children: `foo.rs` → `foo/`, `foo/mod.rs`,
        // `lib.rs` → their own directory.
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().map(Path::to_path_buf),
            _ => file.parent().map(|p| {
                p.join(
                    file.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            }),
        }
        .unwrap_or_else(|| PathBuf::from("."));
        for (child, explicit) in children {
            let name = child.last().cloned().unwrap_or_default();
            let candidates = match explicit {
                Some(p) => vec![file.parent().unwrap_or(Path::new(".")).join(p)],
                None => vec![
                    dir.join(format!("{name}.rs")),
                    dir.join(&name).join("mod.rs"),
                ],
            };
            let Some(f) = candidates.into_iter().find(|c| c.is_file()) else {
                bail!("{}: module {name} has no file", file.display());
            };
            self.load(src, &f, child)?;
        }
        Ok(())
    }

    /// The file of the module `path` designates or holds the item `path` names.
    fn resolve(&self, path: &[String], depth: usize) -> Option<usize> {
        if depth > 16 {
            return None;
        }
        let mut module: ModPath = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.module_file.contains_key(&next) {
                module = next;
                continue;
            }
            let file = *self.module_file.get(&module)?;
            let info = &self.infos[file];
            if info.items.get(&module).is_some_and(|s| s.contains(seg)) {
                return Some(file);
            }
            if let Some(target) = info.imports.get(&module).and_then(|m| m.get(seg)) {
                let mut full = target.clone();
                full.extend(path[i + 1..].iter().cloned());
                return self.resolve(&full, depth + 1).or(Some(file));
            }
            for g in info.globs.get(&module).into_iter().flatten() {
                let mut full = g.clone();
                full.extend(path[i..].iter().cloned());
                if let Some(f) = self.resolve_strict(&full, depth + 1) {
                    return Some(f);
                }
            }
            return Some(file);
        }
        self.module_file.get(&module).copied()
    }

    /// Like [`resolve`](Self::resolve), but only when the first segment after the module
    /// part is known there (used to try glob imports).
    fn resolve_strict(&self, path: &[String], depth: usize) -> Option<usize> {
        let mut module: ModPath = Vec::new();
        for seg in path {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.module_file.contains_key(&next) {
                module = next;
                continue;
            }
            let file = *self.module_file.get(&module)?;
            let info = &self.infos[file];
            let known = info.items.get(&module).is_some_and(|s| s.contains(seg))
                || info
                    .imports
                    .get(&module)
                    .is_some_and(|m| m.contains_key(seg));
            return if known {
                self.resolve(path, depth)
            } else {
                None
            };
        }
        self.module_file.get(&module).copied()
    }

    /// Turns every file's references into edges.
    fn link(&mut self) {
        let mut edges = vec![BTreeMap::new(); self.files.len()];
        for (from, info) in self.infos.iter().enumerate() {
            for (module, path) in &info.refs {
                let Some(abs) = self.absolute(module, path, info) else {
                    continue;
                };
                if let Some(to) = self.resolve(&abs, 0) {
                    if to != from {
                        edges[from].entry(to).or_insert_with(|| abs.join("::"));
                    }
                }
            }
        }
        self.edges = edges;
    }

    /// The absolute form of `path` named in `module`, if it designates something of this
    /// crate.
    fn absolute(&self, module: &ModPath, path: &ModPath, info: &FileInfo) -> Option<ModPath> {
        let first = path.first()?;
        match first.as_str() {
            "crate" => Some(path[1..].to_vec()),
            "self" | "super" => {
                let mut m = module.clone();
                let mut rest = &path[..];
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "self" => {}
                        "super" => {
                            m.pop()?;
                        }
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                Some(m)
            }
            _ => {
                // A child module of `module`, or a name `module` imported.
                let mut child = module.clone();
                child.push(first.clone());
                if self.module_file.contains_key(&child) {
                    child.extend(path[1..].iter().cloned());
                    return Some(child);
                }
                let target = info.imports.get(module)?.get(first)?;
                let mut full = target.clone();
                full.extend(path[1..].iter().cloned());
                Some(full)
            }
        }
    }

    /// The strongly connected components of more than one file (Tarjan), each sorted.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        struct T<'a> {
            g: &'a [BTreeMap<usize, String>],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(t: &mut T<'_>, v: usize) {
            t.index[v] = Some(t.next);
            t.low[v] = t.next;
            t.next += 1;
            t.stack.push(v);
            t.on[v] = true;
            let succ: Vec<usize> = t.g[v].keys().copied().collect();
            for w in succ {
                match t.index[w] {
                    None => {
                        visit(t, w);
                        t.low[v] = t.low[v].min(t.low[w]);
                    }
                    Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                    _ => {}
                }
            }
            if Some(t.low[v]) == t.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = t.stack.pop() {
                    t.on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort_unstable();
                    t.out.push(comp);
                }
            }
        }
        let n = self.files.len();
        let mut t = T {
            g: &self.edges,
            index: vec![None; n],
            low: vec![0; n],
            on: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if t.index[v].is_none() {
                visit(&mut t, v);
            }
        }
        t.out
    }

    /// The files of a cycle and, for each, the edges that stay inside it.
    pub fn explain(&self, comp: &[usize]) -> String {
        let mut s = String::new();
        for &f in comp {
            let inside: Vec<String> = self.edges[f]
                .iter()
                .filter(|(to, _)| comp.contains(to))
                .map(|(to, via)| format!("{} (crate::{via})", self.files[*to]))
                .collect();
            s.push_str(&format!("  {} → {}\n", self.files[f], inside.join(", ")));
        }
        s
    }

    /// The file names of a component.
    #[cfg(test)]
    fn names(&self, comp: &[usize]) -> Vec<String> {
        comp.iter().map(|&f| self.files[f].clone()).collect()
    }
}

/// Walks one file's items.
struct Collector<'a> {
    info: &'a mut FileInfo,
    module: ModPath,
    /// Out-of-line child modules found: (module path, `#[path]` if any).
    children: &'a mut Vec<(ModPath, Option<String>)>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .map(|l| l.tokens.to_string().split_whitespace().any(|t| t == "test"))
                .unwrap_or(false)
    })
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        if !a.path().is_ident("path") {
            return None;
        }
        match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        }
    })
}

impl Collector<'_> {
    fn items(&mut self, items: &[syn::Item]) {
        for item in items {
            self.item(item);
        }
    }

    fn define(&mut self, name: String) {
        self.info
            .items
            .entry(self.module.clone())
            .or_default()
            .insert(name);
    }

    fn item(&mut self, item: &syn::Item) {
        use syn::Item;
        let attrs: &[syn::Attribute] = match item {
            Item::Const(i) => &i.attrs,
            Item::Enum(i) => &i.attrs,
            Item::Fn(i) => &i.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Macro(i) => &i.attrs,
            Item::Mod(i) => &i.attrs,
            Item::Static(i) => &i.attrs,
            Item::Struct(i) => &i.attrs,
            Item::Trait(i) => &i.attrs,
            Item::Type(i) => &i.attrs,
            Item::Union(i) => &i.attrs,
            Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if is_test(attrs) {
            return;
        }
        match item {
            Item::Mod(m) => {
                let mut path = self.module.clone();
                path.push(m.ident.to_string());
                self.info.modules.insert(path.clone());
                match &m.content {
                    Some((_, inner)) => {
                        let saved = std::mem::replace(&mut self.module, path);
                        self.items(inner);
                        self.module = saved;
                    }
                    None => self.children.push((path, path_attr(&m.attrs))),
                }
                return;
            }
            Item::Use(u) => {
                let mut prefix = Vec::new();
                self.use_tree(&u.tree, &mut prefix);
                return;
            }
            Item::Const(i) => self.define(i.ident.to_string()),
            Item::Enum(i) => self.define(i.ident.to_string()),
            Item::Fn(i) => self.define(i.sig.ident.to_string()),
            Item::Static(i) => self.define(i.ident.to_string()),
            Item::Struct(i) => self.define(i.ident.to_string()),
            Item::Trait(i) => self.define(i.ident.to_string()),
            Item::Type(i) => self.define(i.ident.to_string()),
            Item::Union(i) => self.define(i.ident.to_string()),
            Item::Macro(i) => {
                if let Some(id) = &i.ident {
                    self.define(id.to_string());
                }
            }
            _ => {}
        }
        let mut v = Refs {
            c: self,
            skip_test: true,
        };
        v.visit_item(item);
    }

    /// Records a `use` tree: imports (name → path) and the paths themselves as references.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        use syn::UseTree;
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut full = prefix.clone();
                if name != "self" {
                    full.push(name.clone());
                }
                let bind = if name == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    name
                };
                self.import(bind, full);
            }
            UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.import(r.rename.to_string(), full);
            }
            UseTree::Glob(_) => {
                let full = prefix.clone();
                if let Some(abs) = self.absolute_use(&full) {
                    self.info
                        .globs
                        .entry(self.module.clone())
                        .or_default()
                        .push(abs);
                }
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix);
                }
            }
        }
    }

    /// A `use` path made absolute when it starts with `crate`/`self`/`super` (other paths
    /// are external crates or child modules: the latter are resolved when linking).
    fn absolute_use(&self, path: &[String]) -> Option<ModPath> {
        let first = path.first()?;
        match first.as_str() {
            "crate" => Some(path[1..].to_vec()),
            "self" | "super" => {
                let mut m = self.module.clone();
                let mut rest = path;
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "self" => {}
                        "super" => {
                            m.pop()?;
                        }
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                Some(m)
            }
            _ => {
                // a child module of this one
                let mut m = self.module.clone();
                m.extend(path.iter().cloned());
                Some(m)
            }
        }
    }

    fn import(&mut self, name: String, full: ModPath) {
        if let Some(abs) = self.absolute_use(&full) {
            self.info
                .imports
                .entry(self.module.clone())
                .or_default()
                .insert(name, abs);
        }
    }

    fn reference(&mut self, path: ModPath) {
        if !path.is_empty() {
            self.info.refs.push((self.module.clone(), path));
        }
    }

    /// `crate :: a :: b`, `super :: x`, `self :: y` sequences in a macro's tokens.
    fn macro_tokens(&mut self, tokens: TokenStream) {
        let toks: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                TokenTree::Group(g) => self.macro_tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "super" || id == "self" => {
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    while j + 2 < toks.len() + 1 {
                        let colons = matches!((&toks.get(j), &toks.get(j + 1)),
                            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                            if a.as_char() == ':' && b.as_char() == ':');
                        match (colons, toks.get(j + 2)) {
                            (true, Some(TokenTree::Ident(n))) => {
                                path.push(n.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if path.len() > 1 {
                        self.reference(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Collects the paths named inside an item (not descending into test code or nested
/// modules, which [`Collector::item`] handles).
struct Refs<'c, 'a> {
    c: &'c mut Collector<'a>,
    skip_test: bool,
}

impl<'ast> Visit<'ast> for Refs<'_, '_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 || matches!(segs.first().map(String::as_str), Some("crate" | "super")) {
            self.c.reference(segs);
        } else if let Some(s) = segs.first() {
            // a single name: an item this module imported
            self.c.reference(vec![s.clone()]);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.c.macro_tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    // `pub(crate)`, `pub(super)`: visibility, not a reference
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {}

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if self.skip_test && is_test(&f.attrs) {
            return;
        }
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if self.skip_test && is_test(&f.attrs) {
            return;
        }
        syn::visit::visit_item_fn(self, f);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    fn cycles_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files);
        let g = Graph::of_crate(dir.path()).unwrap();
        g.cycles().iter().map(|c| g.names(c)).collect()
    }

    #[test]
    fn finds_a_cycle_through_reexports_and_super() {
        // a → b through a root re-export, b → a through `super` inside a folder module.
        let found = cycles_of(&[
            ("lib.rs", "mod a; mod f;\npub use f::b::Thing;\n"),
            ("a.rs", "pub fn now() -> i64 { crate::Thing::x() }\n"),
            ("f/mod.rs", "pub mod b;\npub use crate::a::now;\n"),
            (
                "f/b.rs",
                "pub struct Thing;\nimpl Thing { pub fn x() -> i64 { super::now() } }\n",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(&"a.rs".to_string()), "{found:?}");
        assert!(found[0].contains(&"f/b.rs".to_string()), "{found:?}");
    }

    #[test]
    fn macros_globs_and_imported_modules_are_edges() {
        let found = cycles_of(&[
            ("lib.rs", "mod a; mod b; mod m;\npub use m::*;\n"),
            ("m.rs", "pub struct Model;\npub fn f() { crate::a::g() }\n"),
            ("a.rs", "use crate::b;\npub fn g() { b::h() }\n"),
            (
                "b.rs",
                "pub fn h() { let _ = format!(\"{:?}\", crate::Model::default_name()); }\n",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].len(), 3, "{found:?}");
    }

    #[test]
    fn layers_and_test_code_are_not_cycles() {
        let found = cycles_of(&[
            ("lib.rs", "mod a; mod b;\npub use a::A;\n"),
            ("a.rs", "pub struct A;\npub fn f() { crate::b::g() }\n"),
            (
                "b.rs",
                "pub fn g() {}\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    /// The architecture invariant: no import cycle between the modules of the hub's crates.
    #[test]
    fn the_hub_crates_have_no_import_cycle() {
        let mut report = String::new();
        let mut checked = 0;
        for d in CHECKED {
            let src = crate::root().join(d).join("src");
            if !src.is_dir() {
                continue;
            }
            checked += 1;
            let g = Graph::of_crate(&src).unwrap();
            assert!(g.files.len() > 3, "{d}: {} files", g.files.len());
            for c in g.cycles() {
                report.push_str(&format!("{d}: cycle of {}:\n{}", c.len(), g.explain(&c)));
            }
        }
        assert_eq!(checked, CHECKED.len(), "crates checked");
        assert!(report.is_empty(), "{report}");
    }
}
