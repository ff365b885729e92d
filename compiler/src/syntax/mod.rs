//! Parsing `.resnet` text into the AST.
//!
//! The pest grammar is in `resnet.pest`. [`parse`] never panics and never stops at the first
//! error: broken lines are swallowed by recovery rules and re-parsed strictly to report what
//! was expected there, so one run reports every syntax error of a file.

mod build;
mod errors;
#[doc(hidden)]
pub mod generate;

use pest::Parser;

use crate::ast;
use crate::diag::{Diagnostic, FileId};

#[derive(pest_derive::Parser)]
#[grammar = "syntax/resnet.pest"]
pub(crate) struct ResnetParser;

/// The deepest nesting of brackets (`(`, `[`, `{`) a spec may have: parsing and lowering
/// recurse on it, and real specs need a handful.
pub const MAX_NESTING: usize = 64;

/// The most operands one expression may have (deeper trees would exhaust the stack when
/// evaluated or dropped; real specs use a few).
pub const MAX_EXPR_TERMS: usize = 256;

/// Parses one file. Returns the AST of everything that parsed and a diagnostic for each
/// broken region.
pub fn parse(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    if let Some(at) = too_deep(text) {
        let d = Diagnostic::error(crate::diag::Span::new(file, at, at + 1), format!("brackets nest more than {MAX_NESTING} deep"))
            .label("too deep")
            .help("split the spec into blocks");
        return (ast::File::default(), vec![d]);
    }
    // Lets errors list the literal tokens (`)`, `,`) that were expected, not only rules.
    pest::set_error_detail(true);
    match ResnetParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let root = pairs.next().expect("invariant: the file rule yields one pair");
            let mut b = build::Builder { file, text, diags: Vec::new() };
            let ast = b.file(root);
            (ast, b.diags)
        }
        // The recovery rules make the file rule total in practice; this is a last resort.
        Err(e) => (ast::File::default(), vec![errors::convert(file, text, 0, &e)]),
    }
}

/// The byte offset of the first bracket nested deeper than [`MAX_NESTING`], skipping
/// comments and strings.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        parse(FileId(0), src).1.into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn parses_a_network_with_blocks_and_comments() {
        let src = "// c\nuse \"b.resnet\"\nnetwork n(classes = 10) {\n  input [3, 32, 32]\n  conv1: conv(16, k = 3, p = 1) /* x */\n  relu; fc: linear(classes)\n}\nblock b(c, s = 1) {\n  let w = c * 2 / (1 + 1)\n  conv(w, k = 1)\n  shortcut down: projection always from x\n}\n";
        let (file, diags) = parse(FileId(0), src);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(file.items.len(), 3);
    }

    #[test]
    fn reports_every_broken_line() {
        let errs = errors("network n {\n  input [3, 8, 8]\n  conv(16, k = )\n  relu\n  linear(10 10)\n}\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("expected"), "{errs:?}");
    }

    #[test]
    fn deep_nesting_and_huge_expressions_are_errors_not_stack_overflows() {
        let deep = format!("network n {{ input [3, 8, 8]\n let x = {}1{} }}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(errors(&deep)[0].contains("nest more than"), "{:?}", errors(&deep));
        let seqs = format!("network n {{ input [3, 8, 8]\n {} relu {} }}", "seq { ".repeat(10_000), "} ".repeat(10_000));
        assert!(errors(&seqs)[0].contains("nest more than"));
        let sum = format!("network n {{ input [3, 8, 8]\n let x = {}1\n}}", "1 + ".repeat(30_000));
        assert!(errors(&sum).iter().any(|e| e.contains("operands")), "{:?}", errors(&sum));
        // Brackets in comments do not count.
        let commented = format!("// {}\nnetwork n {{ input [3, 8, 8] }}", "(".repeat(100));
        assert!(errors(&commented).is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        for src in ["", "}", "{", "network", "network n {", "block b(", "use", "use \"", "\u{0}\u{ff}", "network n { shortcut { }"] {
            let _ = parse(FileId(0), src);
        }
    }
}
