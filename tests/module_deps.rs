//! The module picture is checked, not only drawn: every reference from one
//! top-level module of `src/` to another (`use crate::x::…` lines, inline
//! paths such as `crate::net::mask(..)`, and `super::` paths that leave the
//! module) must be an arrow the README's architecture section allows, and
//! the top-level modules must form no cycle.
//!
//! The allowed arrows are the block after `<!-- module-deps -->` in
//! `README.md`, one module per line: `name -> dep, dep`. Arrows on a line
//! whose comment says `to go` are known back edges being removed: they are
//! allowed, but left out of the cycle check (and reported once gone).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from -> to` with the first place it was seen (`file:line`).
type Graph = BTreeMap<(String, String), String>;

/// The allowed picture from the README.
#[derive(Debug, Default)]
struct Allowed {
    /// Every module named in the block, with its permanent arrows.
    perm: BTreeMap<String, BTreeSet<String>>,
    /// Temporary arrows (`# to go`).
    to_go: BTreeSet<(String, String)>,
}

fn parse_allowed(readme: &str) -> Result<Allowed, String> {
    let after = readme
        .split_once("<!-- module-deps -->")
        .ok_or("README.md has no `<!-- module-deps -->` block")?
        .1;
    let mut lines = after.lines().skip_while(|l| !l.starts_with("```"));
    lines
        .next()
        .ok_or("no fenced block after `<!-- module-deps -->`")?;
    let mut a = Allowed::default();
    for line in lines.take_while(|l| !l.starts_with("```")) {
        let (code, comment) = line.split_once('#').unwrap_or((line, ""));
        if code.trim().is_empty() {
            continue;
        }
        let (from, deps) = code
            .split_once("->")
            .ok_or_else(|| format!("module-deps line without `->`: {line:?}"))?;
        let from = from.trim().to_string();
        let temporary = comment.contains("to go");
        let entry = a.perm.entry(from.clone()).or_default();
        for dep in deps
            .split([',', ' '])
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            if temporary {
                a.to_go.insert((from.clone(), dep.to_string()));
            } else {
                entry.insert(dep.to_string());
            }
        }
    }
    if a.perm.is_empty() {
        return Err("the module-deps block is empty".into());
    }
    Ok(a)
}

/// `src` with comments and the insides of string and char literals blanked
/// out (newlines kept, so line numbers stay right).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&c, i) {
            // Raw string r"..." / r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, c[j]);
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = c.get(i) {
                    blank(&mut out, ch);
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c[i] == '\''
            && (next == Some('\\') || (c.get(i + 2) == Some(&'\'') && next != Some('\'')))
        {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `c[i]` continues an identifier (`var"` is no raw
/// string; `br"..."` is one).
fn ident_before(c: &[char], i: usize) -> bool {
    let is_id = |k: usize| c[k].is_alphanumeric() || c[k] == '_';
    if i == 0 || !is_id(i - 1) {
        return false;
    }
    // A lone `b` prefix (`br"`) is not an identifier before the `r`.
    let byte_prefix = c[i - 1] == 'b' && (i == 1 || !is_id(i - 2));
    !byte_prefix
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(stripped: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = stripped.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((
                match ch {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    _ => Tok::Other,
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// The module path of a file under `src/`: `select/compiled/tests.rs` is
/// `[select, compiled, tests]`, `api/mod.rs` is `[api]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

fn ident(toks: &[(Tok, usize)], i: usize) -> Option<&str> {
    match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Top-level module names a path starting at `toks[i]` (after `crate::` or
/// the last `super::`) names: one, or several for a `{a, b::c}` group.
fn heads(toks: &[(Tok, usize)], i: usize) -> Vec<String> {
    if let Some(s) = ident(toks, i) {
        return vec![s.to_string()];
    }
    let mut out = Vec::new();
    if toks.get(i).map(|t| &t.0) != Some(&Tok::Open) {
        return out;
    }
    let (mut depth, mut expect, mut j) = (0, true, i);
    while j < toks.len() {
        match &toks[j].0 {
            Tok::Open => {
                depth += 1;
                expect = depth == 1;
            }
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Comma if depth == 1 => expect = true,
            Tok::Ident(s) if expect => {
                out.push(s.clone());
                expect = false;
            }
            _ => expect = false,
        }
        j += 1;
    }
    out
}

/// Every `(top-level module referred to, line)` in one file whose module
/// path is `path`, other than `path[0]` itself.
fn references(src: &str, path: &[String]) -> Vec<(String, usize)> {
    let toks = tokens(&strip(src));
    let mut out = Vec::new();
    // Inline `mod name { .. }` blocks: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(name), Some((Tok::Open, _))) = (ident(&toks, i + 1), toks.get(i + 2)) {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(k)
                if k == "crate"
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                    && (i == 0 || toks[i - 1].0 != Tok::Path) =>
            {
                let line = toks[i].1;
                out.extend(heads(&toks, i + 2).into_iter().map(|h| (h, line)));
            }
            Tok::Ident(k)
                if k == "super"
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                    && (i == 0 || toks[i - 1].0 != Tok::Path) =>
            {
                let line = toks[i].1;
                let mut here: Vec<String> = path
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(n, _)| n.clone()))
                    .collect();
                let mut j = i;
                while ident(&toks, j) == Some("super")
                    && toks.get(j + 1).map(|t| &t.0) == Some(&Tok::Path)
                {
                    here.pop();
                    j += 2;
                }
                match here.first() {
                    Some(top) => out.push((top.clone(), line)),
                    None => out.extend(heads(&toks, j).into_iter().map(|h| (h, line))),
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.retain(|(m, _)| Some(m) != path.first());
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules `src/lib.rs` declares.
fn top_modules(lib: &str) -> BTreeSet<String> {
    let toks = tokens(&strip(lib));
    (0..toks.len())
        .filter(|&i| ident(&toks, i) == Some("mod"))
        .filter_map(|i| ident(&toks, i + 1).map(str::to_string))
        .collect()
}

/// The actual graph among `top` modules, read from `src/`.
fn actual_graph(src: &Path, top: &BTreeSet<String>) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src");
        let path = module_path(rel);
        // The crate root and the binary are not modules of the picture.
        if path.len() <= 1 && matches!(path.first().map(String::as_str), Some("lib" | "main")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        for (to, line) in references(&text, &path) {
            if top.contains(&to) {
                g.entry((path[0].clone(), to))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    struct T<'a> {
        adj: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.adj.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().expect("on stack");
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        adj: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for (a, b) in edges {
        t.adj.entry(a).or_default().push(b);
        t.adj.entry(b).or_default();
    }
    let nodes: Vec<&str> = t.adj.keys().copied().collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Everything wrong with `actual` against `allowed`, one line each.
fn violations(actual: &Graph, allowed: &Allowed, top: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    let named: BTreeSet<String> = allowed.perm.keys().cloned().collect();
    for m in top.difference(&named) {
        bad.push(format!(
            "module `{m}` has no line in the README's module-deps block"
        ));
    }
    for m in named.difference(top) {
        bad.push(format!(
            "README names module `{m}`, which src/lib.rs does not declare"
        ));
    }
    for ((from, to), at) in actual {
        let ok = allowed.perm.get(from).is_some_and(|d| d.contains(to))
            || allowed.to_go.contains(&(from.clone(), to.clone()));
        if !ok {
            bad.push(format!("arrow not allowed: {from} -> {to} ({at})"));
        }
    }
    let perm: BTreeSet<(String, String)> = allowed
        .perm
        .iter()
        .flat_map(|(f, ds)| ds.iter().map(move |d| (f.clone(), d.clone())))
        .collect();
    for c in cycles(&perm) {
        bad.push(format!(
            "the README's picture has a cycle: {}",
            c.join(", ")
        ));
    }
    let real: BTreeSet<(String, String)> = actual
        .keys()
        .filter(|e| !allowed.to_go.contains(*e))
        .cloned()
        .collect();
    for c in cycles(&real) {
        let inside: Vec<String> = actual
            .iter()
            .filter(|((f, t), _)| {
                c.contains(f) && c.contains(t) && real.contains(&(f.clone(), t.clone()))
            })
            .map(|((f, t), at)| format!("{f} -> {t} ({at})"))
            .collect();
        bad.push(format!(
            "cycle among {}: {}",
            c.join(", "),
            inside.join("; ")
        ));
    }
    bad
}

#[test]
fn module_dependencies_match_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let allowed = parse_allowed(&readme).unwrap_or_else(|e| panic!("{e}"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let top = top_modules(&lib);
    let actual = actual_graph(&root.join("src"), &top);
    for gone in allowed.to_go.iter().filter(|e| !actual.contains_key(*e)) {
        eprintln!(
            "note: `{} -> {}` is marked `to go` in the README and is gone: drop it there",
            gone.0, gone.1
        );
    }
    let bad = violations(&actual, &allowed, &top);
    assert!(
        bad.is_empty(),
        "module dependencies disagree with the README's architecture section:\n  {}",
        bad.join("\n  ")
    );
}

#[cfg(test)]
mod scanner {
    use super::*;

    fn refs(src: &str, path: &[&str]) -> Vec<String> {
        let p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let mut r: Vec<String> = references(src, &p).into_iter().map(|(m, _)| m).collect();
        r.sort();
        r.dedup();
        r
    }

    #[test]
    fn use_lines_groups_and_inline_paths() {
        let src = "use crate::geo::Location;\n\
                   use crate::{zone, snapshot::{self, Snapshot}};\n\
                   fn f() { let m = crate::net::mask(ip, 24); }\n\
                   pub(crate) fn g() {}\n";
        assert_eq!(refs(src, &["select"]), ["geo", "net", "snapshot", "zone"]);
    }

    #[test]
    fn comments_strings_and_own_module_do_not_count() {
        let src = "//! see [`crate::app`]\n\
                   /* crate::api */ const S: &str = \"crate::cluster\";\n\
                   const R: &str = r#\"crate::dns\"#; const C: char = '\"';\n\
                   const B: &[u8] = br\"crate::app\"; let var = 1;\n\
                   fn f<'a>(x: &'a str) { crate::select::choose(); }\n\
                   use crate::explain;\n";
        assert_eq!(refs(src, &["select", "compiled"]), ["explain"]);
    }

    #[test]
    fn super_paths_resolve_through_files_and_inline_mods() {
        // `super::super::model` from a test module inside api/html.rs stays in api.
        let src = "mod tests { use super::super::model::X; use super::*; }";
        assert!(refs(src, &["api", "html"]).is_empty());
        // From a top-level file, `super::` is the crate root.
        assert_eq!(refs("use super::geo::Db;", &["select"]), ["geo"]);
        assert_eq!(
            refs("mod t { fn f() { super::super::zone::x(); } }", &["select"]),
            ["zone"]
        );
    }

    #[test]
    fn a_planted_back_edge_and_cycle_are_reported() {
        let top: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let readme = "<!-- module-deps -->\n```text\na -> b\nb ->\nc -> a  # to go\n```\n";
        let allowed = parse_allowed(readme).unwrap();
        let mut g = Graph::new();
        g.insert(("a".into(), "b".into()), "src/a.rs:1".into());
        g.insert(("c".into(), "a".into()), "src/c.rs:1".into());
        assert!(violations(&g, &allowed, &top).is_empty());
        g.insert(("b".into(), "a".into()), "src/b.rs:7".into());
        let bad = violations(&g, &allowed, &top);
        assert!(
            bad.iter()
                .any(|l| l == "arrow not allowed: b -> a (src/b.rs:7)"),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|l| l.starts_with("cycle among a, b:")),
            "{bad:?}"
        );
    }
}
