//! Turning pest errors into [`Diagnostic`]s with readable rule names.

use pest::error::{ErrorVariant, InputLocation};

use super::Rule;
use crate::diag::{Diagnostic, FileId, Span};

/// Converts a pest error on `text[offset..]` of `file` into a diagnostic.
pub(crate) fn convert(file: FileId, text: &str, offset: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let (start, end) = (offset + start, offset + end);
    let found = describe_found(text, start);
    let (message, label) = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } if !positives.is_empty() => {
            let tokens = expected_punctuation(e, start - offset);
            let mut names: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
            names.extend(tokens.iter().map(String::as_str));
            names.sort_unstable();
            names.dedup();
            (format!("expected {}, found {found}", one_of(&names)), format!("expected {}", one_of(&names)))
        }
        ErrorVariant::ParsingError { .. } => (format!("unexpected {found}"), "unexpected".to_string()),
        ErrorVariant::CustomError { message } => (message.clone(), "here".to_string()),
    };
    let end = if end > start { end } else { next_token_end(text, start) };
    Diagnostic::error(Span::new(file, start, end), message).label(label)
}

/// The punctuation pest tried at `pos` (`)`, `,`, ...), quoted; pest lists only rules in
/// `positives`, and "expected `)`" is what a user needs to read.
fn expected_punctuation(e: &pest::error::Error<Rule>, pos: usize) -> Vec<String> {
    let Some(attempts) = e.parse_attempts() else { return vec![] };
    if attempts.max_position != pos {
        return vec![];
    }
    attempts
        .expected_tokens()
        .into_iter()
        .map(|t| t.to_string())
        .filter(|t| {
            // Operators are summed up as "an operator" (the rule name).
            let skip = [
                " ", "\t", "\n", "\r\n", "\r", "//", "/*", "+", "-", "*", "/", "%", "\"", "_", ".", "==", "!=", "<", "<=", ">", ">=", "..",
            ];
            !skip.contains(&t.as_str()) && t.chars().all(|c| c.is_ascii_punctuation())
        })
        .map(|t| format!("`{t}`"))
        .collect()
}

fn one_of(names: &[&str]) -> String {
    match names {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "something else".into(),
    }
}

/// What stands at `pos`: a token, the end of the line or the end of the file.
fn describe_found(text: &str, pos: usize) -> String {
    let rest = text.get(pos..).unwrap_or("");
    match rest.chars().next() {
        None => "end of file".into(),
        Some('\n') | Some('\r') => "end of line".into(),
        Some(_) => {
            let end = next_token_end(text, pos) - pos;
            format!("`{}`", &rest[..end])
        }
    }
}

/// The end of the token starting at `pos` (an identifier/number run, or one character).
fn next_token_end(text: &str, pos: usize) -> usize {
    let Some(rest) = text.get(pos..) else {
        return pos;
    };
    let mut chars = rest.char_indices();
    match chars.next() {
        None => pos,
        Some((_, c)) if c.is_alphanumeric() || c == '_' => {
            pos + rest.char_indices().find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.')).map_or(rest.len(), |(i, _)| i)
        }
        Some((_, c)) => pos + c.len_utf8(),
    }
}

/// The name a user understands for a grammar rule.
fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::item_strict | Rule::bad_item => "`network`, `block` or `use`",
        Rule::use_item => "`use`",
        Rule::string | Rule::string_inner => "a quoted path",
        Rule::network => "`network`",
        Rule::block_def => "`block`",
        Rule::param_list => "a parameter list",
        Rule::param => "a parameter",
        Rule::body => "`{`",
        Rule::stmt_strict | Rule::bad_stmt => "a statement",
        Rule::input_stmt => "`input`",
        Rule::let_stmt => "`let`",
        Rule::shortcut_stmt => "`shortcut`",
        Rule::shortcut_kind => "a shortcut kind",
        Rule::always => "`always`",
        Rule::from_clause => "`from`",
        Rule::layer_stmt => "a layer",
        Rule::layer_name => "a layer name",
        Rule::args => "`(`",
        Rule::named_arg => "an argument",
        Rule::expr | Rule::sum => "an expression",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::rem => "an operator",
        Rule::eq | Rule::ne | Rule::lt | Rule::le | Rule::gt | Rule::ge => "an operator",
        Rule::and | Rule::or => "an operator",
        Rule::not => "`not`",
        Rule::if_stmt | Rule::if_kw => "`if`",
        Rule::else_kw => "`else`",
        Rule::for_stmt => "`for`",
        Rule::for_vars => "loop variables",
        Rule::range => "a range `A..B`",
        Rule::table => "a table `[(..), (..)]`",
        Rule::row => "a row `(a, b, ..)`",
        Rule::call => "a function call",
        Rule::neg => "`-`",
        Rule::float | Rule::int => "a number",
        Rule::boolean => "`true` or `false`",
        Rule::ident => "a name",
        Rule::keyword => "a keyword",
        Rule::item => "`network`, `block` or `use`",
        Rule::stmt | Rule::stmt_inner => "a statement",
        Rule::arg | Rule::primary => "an expression",
        Rule::infix => "an operator",
        Rule::prefix => "`-` or `not`",
        Rule::ident_char => "a name",
        Rule::nl => "a newline",
        Rule::WHITESPACE | Rule::COMMENT => "a space",
    }
}
