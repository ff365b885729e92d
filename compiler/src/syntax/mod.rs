//! Parsing `.resnet` text into the AST.
//!
//! The pest grammar is in `resnet.pest`. [`parse`] never panics and never stops at the first
//! error: broken lines are swallowed by recovery rules and re-parsed strictly to report what
//! was expected there, so one run reports every syntax error of a file.

mod build;
mod errors;

use pest::Parser;

use crate::ast;
use crate::diag::{Diagnostic, FileId};

#[derive(pest_derive::Parser)]
#[grammar = "syntax/resnet.pest"]
pub(crate) struct ResnetParser;

/// Parses one file. Returns the AST of everything that parsed and a diagnostic for each
/// broken region.
pub fn parse(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
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
    fn garbage_never_panics() {
        for src in ["", "}", "{", "network", "network n {", "block b(", "use", "use \"", "\u{0}\u{ff}", "network n { shortcut { }"] {
            let _ = parse(FileId(0), src);
        }
    }
}
