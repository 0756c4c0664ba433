//! Configuration: reading the TOML file and reporting errors that point into
//! it (`file:line:col: key.path: advice`).
//!
//! Syntax and type errors come from `toml` + `serde_path_to_error`; semantic
//! errors are collected by the snapshot compiler through [`Diagnostics`], all
//! of them in one run.

pub mod cluster;
pub mod duration;
pub mod protect;
pub mod raw;
mod split;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use raw::ConfigFile;

/// The text of a config file and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as given by the operator.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

impl Source {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Directory that relative paths in the file are resolved against.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// Where each line of a text starts, computed once, so that placing many
/// errors costs a binary search each instead of a rescan of the file.
#[derive(Debug)]
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// As [`Source::line_col`].
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, text[start..offset].chars().count() + 1)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem found in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line (0 when the problem has no place in the file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Key path such as `pools.eu.endpoints[0].address`.
    pub key: String,
    /// What is wrong and what to do about it.
    pub msg: String,
}

/// Errors loading a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{}", render(.path, .diagnostics))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(path: &Path, diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&d.to_string_with(path));
    }
    s
}

impl Diagnostic {
    /// `file:line:col: key: msg`.
    pub fn to_string_with(&self, path: &Path) -> String {
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.key)
        };
        format!(
            "{}:{}:{}: {}{}",
            path.display(),
            self.line,
            self.col,
            key,
            self.msg
        )
    }
}

/// Collects semantic errors with their places in the file.
pub struct Diagnostics<'a> {
    source: &'a Source,
    list: Vec<Diagnostic>,
    /// Built at the first error.
    lines: std::cell::OnceCell<LineIndex>,
}

impl<'a> Diagnostics<'a> {
    /// Start collecting for `source`.
    pub fn new(source: &'a Source) -> Self {
        Diagnostics {
            source,
            list: Vec::new(),
            lines: std::cell::OnceCell::new(),
        }
    }

    /// The file being compiled (for paths relative to it).
    pub fn source(&self) -> &'a Source {
        self.source
    }

    /// Record an error at `span` (byte range into the file) for `key`.
    pub fn error(&mut self, span: Range<usize>, key: impl fmt::Display, msg: impl fmt::Display) {
        let (line, col) = if span == (0..0) {
            (0, 0)
        } else {
            let text = &self.source.text;
            self.lines
                .get_or_init(|| LineIndex::new(text))
                .line_col(text, span.start)
        };
        self.list.push(Diagnostic {
            line,
            col,
            key: key.to_string(),
            msg: msg.to_string(),
        });
    }

    /// True if no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Finish: `Ok` if no error was recorded.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|d| (d.line, d.col));
        Err(ConfigError::Invalid {
            path: self.source.path.clone(),
            diagnostics: self.list,
        })
    }
}

/// Read a config file from disk.
pub fn read_source(path: &Path) -> Result<Source, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(Source {
        path: path.to_owned(),
        text,
    })
}

/// Parse the TOML of `source` into the raw structs (syntax and types only).
/// A syntax error stops parsing (it is the first one); type errors are all
/// reported, each zone, pool, name, monitor and static record checked on
/// its own (see [`split`]).
pub fn parse(source: &Source) -> Result<ConfigFile, ConfigError> {
    let mut d = Diagnostics::new(source);
    let root = match toml::de::DeTable::parse(&source.text) {
        Ok(root) => root,
        Err(e) => {
            let (line, col) = e.span().map_or((1, 1), |s| source.line_col(s.start));
            return Err(ConfigError::Invalid {
                path: source.path.clone(),
                diagnostics: vec![Diagnostic {
                    line,
                    col,
                    key: String::new(),
                    msg: first_line(e.message()),
                }],
            });
        }
    };
    let file = split::deserialize(root, &mut d);
    d.finish()?;
    file.ok_or_else(|| ConfigError::Invalid {
        path: source.path.clone(),
        diagnostics: Vec::new(),
    })
}

/// Render a serde path as `a.b[0].c`, hiding the `Spanned` wrapper's
/// internal field names.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quote_key(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Quote a TOML key when it is not a bare key (`"www.lb.example.com"`).
pub fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn first_line(s: &str) -> String {
    s.trim_end().to_string()
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<(Source, ConfigFile), ConfigError> {
    let source = read_source(path)?;
    let file = parse(&source)?;
    Ok((source, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            path: PathBuf::from("t.toml"),
            text: text.into(),
        }
    }

    #[test]
    fn line_col_counts_lines_and_chars() {
        let s = src("a = 1\nbé = 2\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        // 'é' is two bytes but one column
        assert_eq!(s.line_col(9), (2, 3));
    }

    #[test]
    fn unknown_key_names_place_and_path() {
        let s = src("[pools.eu]\nendpoints = [{ address = \"192.0.2.1\", wieght = 2 }]\n");
        let err = parse(&s).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:"), "{err}");
        assert!(err.contains("pools.eu.endpoints"), "{err}");
        assert!(err.contains("wieght"), "{err}");
    }

    #[test]
    fn line_index_agrees_with_line_col() {
        let s = src("a = 1\nbé = \"ü\"\n\n[x]\r\ny = 2");
        let idx = LineIndex::new(&s.text);
        for off in 0..=s.text.len() + 2 {
            assert_eq!(idx.line_col(&s.text, off), s.line_col(off), "offset {off}");
        }
    }

    #[test]
    fn every_type_error_is_reported_in_one_run() {
        let s = src(concat!(
            "[server]\n",
            "udp_workers = \"four\"\n",
            "[zones.\"a.example\"]\n",
            "ns = [\"ns1\"]\n",
            "records = [\n",
            "  { name = \"x\", type = \"A\", data = \"192.0.2.1\" },\n",
            "  { name = \"y\", type = \"A\", ttl = true, data = \"192.0.2.2\" },\n",
            "  { name = \"z\", type = 5, data = \"192.0.2.3\" },\n",
            "]\n",
            "[zones.\"b.example\"]\n",
            "ns = \"not a list\"\n",
            "[pools.eu]\n",
            "endpoints = [{ address = \"192.0.2.10\", weight = \"heavy\" }]\n",
            "[pools.na]\n",
            "endpoints = [{ address = \"192.0.2.20\" }]\n",
            "min_healthy = -1\n",
            "[monitors.web]\n",
            "type = \"gopher\"\n",
            "[names.\"www.a.example\"]\n",
            "policy = \"failover\"\n",
            "ttl = []\n",
        ));
        let err = parse(&s).unwrap_err();
        let ConfigError::Invalid { diagnostics, .. } = &err else {
            panic!("{err}");
        };
        let text = err.to_string();
        let want = [
            (2, "server.udp_workers"),
            (7, "zones.\"a.example\".records[1].ttl"),
            (8, "zones.\"a.example\".records[2].type"),
            (11, "zones.\"b.example\".ns"),
            (13, "pools.eu.endpoints[0].weight"),
            (16, "pools.na.min_healthy"),
            (18, "monitors.web.type"),
            (21, "names.\"www.a.example\".ttl"),
        ];
        assert_eq!(diagnostics.len(), want.len(), "{text}");
        for ((line, key), d) in want.iter().zip(diagnostics) {
            assert_eq!((d.line, d.key.as_str()), (*line, *key), "{text}");
        }
    }

    #[test]
    fn syntax_error_has_line() {
        let s = src("[server]\nnode_name = \n");
        let err = parse(&s).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:"), "{err}");
    }

    #[test]
    fn bad_duration_is_reported_at_value() {
        let s = src("[server]\ntcp_idle_timeout = \"10 parsecs\"\n");
        let err = parse(&s).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:20"), "{err}");
        assert!(err.contains("server.tcp_idle_timeout"), "{err}");
    }
}
