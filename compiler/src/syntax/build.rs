//! Building the AST from pest's parse tree: one method per grammar rule.
//!
//! The grammar guarantees the shape of each pair, so the accessors here only assert that
//! invariant (`expect("invariant: ...")`); user errors never reach them. Recovered regions
//! (`bad_item`, `bad_stmt`) are re-parsed with the strict rules to produce diagnostics.

use std::sync::OnceLock;

use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;

use super::{errors, ResnetParser, Rule};
use crate::ast::*;
use crate::diag::{Diagnostic, FileId, Span};

pub(crate) struct Builder<'t> {
    pub file: FileId,
    pub text: &'t str,
    pub diags: Vec<Diagnostic>,
}

fn pratt() -> &'static PrattParser<Rule> {
    static P: OnceLock<PrattParser<Rule>> = OnceLock::new();
    P.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::prefix(Rule::not))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left) | Op::infix(Rule::rem, Assoc::Left))
            .op(Op::prefix(Rule::neg))
    })
}

impl<'t> Builder<'t> {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident { text: pair.as_str().to_string(), span: self.span(&pair) }
    }

    /// `file`
    pub fn file(&mut self, pair: Pair<'_, Rule>) -> File {
        let mut items = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::use_item => items.push(self.use_item(p)),
                Rule::network => items.push(Item::Network(self.def(p))),
                Rule::block_def => items.push(Item::Block(self.def(p))),
                Rule::bad_item => self.recover(p, Rule::item_strict),
                _ => {}
            }
        }
        File { items }
    }

    /// A recovered region: parse it strictly to learn what was wrong.
    fn recover(&mut self, pair: Pair<'_, Rule>, strict: Rule) {
        let offset = pair.as_span().start();
        let region = pair.as_str();
        let d = match ResnetParser::parse(strict, region) {
            Err(e) => errors::convert(self.file, self.text, offset, &e),
            Ok(_) => Diagnostic::error(self.span(&pair), format!("unexpected `{}`", region.trim())),
        };
        self.diags.push(d);
    }

    /// `use_item`
    fn use_item(&mut self, pair: Pair<'_, Rule>) -> Item {
        let span = self.span(&pair);
        let string = pair.into_inner().next().expect("invariant: use has a string");
        let path = string.into_inner().next().map(|p| p.as_str().to_string()).unwrap_or_default();
        Item::Use(Use { path, span })
    }

    /// `network` and `block_def`
    fn def(&mut self, pair: Pair<'_, Rule>) -> Def {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("invariant: a definition has a name"));
        let mut params = Vec::new();
        let mut body = Vec::new();
        for p in inner {
            match p.as_rule() {
                Rule::param_list => params = p.into_inner().map(|p| self.param(p)).collect(),
                Rule::body => body = self.body(p),
                _ => {}
            }
        }
        Def { name, params, body, span }
    }

    /// `param`
    fn param(&mut self, pair: Pair<'_, Rule>) -> Param {
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("invariant: a parameter has a name"));
        let default = inner.next().map(|e| self.expr(e));
        Param { name, default }
    }

    /// `body`
    fn body(&mut self, pair: Pair<'_, Rule>) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::input_stmt => {
                    let span = self.span(&p);
                    let dims = p.into_inner().map(|e| self.expr(e)).collect();
                    stmts.push(Stmt::Input { dims, span });
                }
                Rule::let_stmt => {
                    let mut inner = p.into_inner();
                    let name = self.ident(inner.next().expect("invariant: let has a name"));
                    let value = self.expr(inner.next().expect("invariant: let has a value"));
                    stmts.push(Stmt::Let { name, value });
                }
                Rule::layer_stmt => stmts.push(Stmt::Layer(self.layer(p))),
                Rule::if_stmt => stmts.push(self.if_stmt(p)),
                Rule::for_stmt => stmts.push(self.for_stmt(p)),
                Rule::shortcut_stmt => stmts.push(Stmt::Shortcut(self.shortcut(p))),
                Rule::bad_stmt => self.recover(p, Rule::stmt_strict),
                _ => {}
            }
        }
        stmts
    }

    /// `layer_stmt`
    fn layer(&mut self, pair: Pair<'_, Rule>) -> Layer {
        let span = self.span(&pair);
        let mut name = None;
        let mut op = None;
        let mut args = Vec::new();
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::layer_name => name = Some(self.ident(p)),
                Rule::ident => op = Some(self.ident(p)),
                Rule::args => args = self.args(p),
                Rule::body => body = Some(self.body(p)),
                _ => {}
            }
        }
        Layer { name, op: op.expect("invariant: a layer has an op"), args, body, span }
    }

    /// `shortcut_stmt`
    fn shortcut(&mut self, pair: Pair<'_, Rule>) -> Shortcut {
        let span = self.span(&pair);
        let mut name = None;
        let mut kind = None;
        let mut from = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::layer_name => name = Some(self.ident(p)),
                Rule::shortcut_kind => kind = Some(self.shortcut_kind(p)),
                Rule::body => kind = Some(ShortcutKind::Path(self.body(p))),
                Rule::from_clause => from = Some(self.ident(p.into_inner().next().expect("invariant: from names a layer"))),
                _ => {}
            }
        }
        Shortcut { name, kind: kind.expect("invariant: a shortcut has a kind or a path"), from, span }
    }

    /// `shortcut_kind`
    fn shortcut_kind(&mut self, pair: Pair<'_, Rule>) -> ShortcutKind {
        let mut inner = pair.into_inner();
        let kind = self.ident(inner.next().expect("invariant: a shortcut kind has a name"));
        let mut args = Vec::new();
        let mut always = false;
        for p in inner {
            match p.as_rule() {
                Rule::args => args = self.args(p),
                Rule::always => always = true,
                _ => {}
            }
        }
        ShortcutKind::Named { kind, args, always }
    }

    /// `args`
    fn args(&mut self, pair: Pair<'_, Rule>) -> Vec<Arg> {
        pair.into_inner()
            .map(|p| {
                let span = self.span(&p);
                match p.as_rule() {
                    Rule::named_arg => {
                        let mut inner = p.into_inner();
                        let name = self.ident(inner.next().expect("invariant: a named argument has a name"));
                        let value = self.expr(inner.next().expect("invariant: a named argument has a value"));
                        Arg { name: Some(name), value, span }
                    }
                    _ => Arg { name: None, value: self.expr(p), span },
                }
            })
            .collect()
    }

    /// `if COND { .. } [else ..]`
    fn if_stmt(&mut self, pair: Pair<'_, Rule>) -> Stmt {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let cond = self.expr(inner.next().expect("invariant: if has a condition"));
        let then = self.body(inner.next().expect("invariant: if has a body"));
        let otherwise = inner.next().map(|p| match p.as_rule() {
            Rule::if_stmt => vec![self.if_stmt(p)],
            _ => self.body(p),
        });
        Stmt::If { cond, then, otherwise, span }
    }

    /// `for VARS in SOURCE { .. }`
    fn for_stmt(&mut self, pair: Pair<'_, Rule>) -> Stmt {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let vars = inner.next().expect("invariant: for has variables").into_inner().map(|p| self.ident(p)).collect();
        let src = inner.next().expect("invariant: for has a source");
        let source = match src.as_rule() {
            Rule::range => {
                let mut ends = src.into_inner();
                let a = self.expr_pairs(ends.next().expect("invariant: a range has a start").into_inner());
                let b = self.expr_pairs(ends.next().expect("invariant: a range has an end").into_inner());
                ForSource::Range(a, b)
            }
            _ => ForSource::Table(
                src.into_inner()
                    .map(|row| {
                        let rs = self.span(&row);
                        (row.into_inner().map(|e| self.expr(e)).collect(), rs)
                    })
                    .collect(),
            ),
        };
        let body = self.body(inner.next().expect("invariant: for has a body"));
        Stmt::For { vars, source, body, span }
    }

    /// `expr`: `A if COND else B`, or a plain `sum`.
    fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let mut inner = pair.into_inner();
        let first = self.expr_pairs(inner.next().expect("invariant: an expression has a sum").into_inner());
        match (inner.next(), inner.next()) {
            (Some(cond), Some(otherwise)) => {
                let cond = self.expr_pairs(cond.into_inner());
                let otherwise = self.expr(otherwise);
                let span = first.span.to(otherwise.span);
                Expr { kind: ExprKind::Cond { cond: Box::new(cond), then: Box::new(first), otherwise: Box::new(otherwise) }, span }
            }
            _ => first,
        }
    }

    fn expr_pairs(&mut self, pairs: Pairs<'_, Rule>) -> Expr {
        let file = self.file;
        let sp = |p: &Pair<'_, Rule>| Span::new(file, p.as_span().start(), p.as_span().end());
        // Unary operators nest like operands (each one a level of the tree): counted too.
        let operands = pairs
            .clone()
            .filter(|p| {
                matches!(
                    p.as_rule(),
                    Rule::int | Rule::float | Rule::boolean | Rule::ident | Rule::call | Rule::expr | Rule::neg | Rule::not
                )
            })
            .count();
        if operands > super::MAX_EXPR_TERMS {
            let (first, last) = (pairs.clone().next(), pairs.clone().last());
            let span = match (first, last) {
                (Some(a), Some(b)) => sp(&a).to(sp(&b)),
                _ => Span::new(file, 0, 0),
            };
            self.diags.push(
                Diagnostic::error(
                    span,
                    format!("an expression may have at most {} operands and unary operators; this has {operands}", super::MAX_EXPR_TERMS),
                )
                .label("too long"),
            );
            return Expr { kind: ExprKind::Int(0), span };
        }
        // The Pratt closures cannot borrow `self` mutably; number errors are collected here.
        let diags = std::cell::RefCell::new(Vec::new());
        let e = pratt()
            .map_primary(|p| {
                let span = sp(&p);
                let kind = match p.as_rule() {
                    Rule::int => p.as_str().parse().map(ExprKind::Int).unwrap_or_else(|_| {
                        diags.borrow_mut().push(Diagnostic::error(span, format!("integer `{}` is too large", p.as_str())));
                        ExprKind::Int(0)
                    }),
                    Rule::float => ExprKind::Float(p.as_str().parse().unwrap_or(f64::NAN)),
                    Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
                    Rule::ident => ExprKind::Name(p.as_str().to_string()),
                    Rule::call => {
                        let mut nested = Builder { file, text: self.text, diags: Vec::new() };
                        let mut parts = p.into_inner();
                        let name = nested.ident(parts.next().expect("invariant: a call names a function"));
                        let args = parts.map(|a| nested.expr(a)).collect();
                        diags.borrow_mut().extend(nested.diags);
                        ExprKind::Call(name, args)
                    }
                    Rule::expr => {
                        let mut nested = Builder { file, text: self.text, diags: Vec::new() };
                        let e = nested.expr(p);
                        diags.borrow_mut().extend(nested.diags);
                        return e;
                    }
                    r => unreachable!("invariant: the grammar has no primary {r:?}"),
                };
                Expr { kind, span }
            })
            .map_prefix(|op, rhs| {
                let span = sp(&op).to(rhs.span);
                let kind = if op.as_rule() == Rule::not { ExprKind::Not(Box::new(rhs)) } else { ExprKind::Neg(Box::new(rhs)) };
                Expr { kind, span }
            })
            .map_infix(|lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    Rule::rem => BinOp::Rem,
                    Rule::eq => BinOp::Eq,
                    Rule::ne => BinOp::Ne,
                    Rule::lt => BinOp::Lt,
                    Rule::le => BinOp::Le,
                    Rule::gt => BinOp::Gt,
                    Rule::ge => BinOp::Ge,
                    Rule::and => BinOp::And,
                    _ => BinOp::Or,
                };
                let span = lhs.span.to(rhs.span);
                Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span }
            })
            .parse(pairs);
        self.diags.extend(diags.into_inner());
        e
    }
}
