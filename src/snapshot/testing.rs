//! Test helpers: run one compile step on a TOML text and read its errors.

use super::build::Compiler;
use crate::config::raw::ConfigFile;
use crate::config::{Diagnostics, Source};

pub(super) fn source(text: &str) -> Source {
    Source {
        path: "t.toml".into(),
        text: text.into(),
    }
}

fn report(d: Diagnostics<'_>) -> String {
    d.finish()
        .map_or_else(|e| e.to_string(), |()| String::new())
}

/// `step`'s output on `text`, and the error report (empty when none).
pub(super) fn run<T>(
    text: &str,
    step: impl FnOnce(&Source, &ConfigFile, &mut Diagnostics<'_>) -> T,
) -> (T, String) {
    let src = source(text);
    let file = crate::config::parse(&src).expect("the TOML parses");
    let mut d = Diagnostics::new(&src);
    let out = step(&src, &file, &mut d);
    (out, report(d))
}

/// [`run`] for the steps that share a [`Compiler`].
pub(super) fn run_compiler<T>(
    text: &str,
    step: impl FnOnce(&ConfigFile, &mut Compiler<'_>) -> T,
) -> (T, String) {
    let src = source(text);
    let file = crate::config::parse(&src).expect("the TOML parses");
    let mut c = Compiler::new(Diagnostics::new(&src));
    let out = step(&file, &mut c);
    (out, report(c.d))
}
