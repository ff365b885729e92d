//! The abstract syntax tree of a `.resnet` file.
//!
//! The AST is what the parser saw, nothing more: names are not resolved and expressions are
//! not evaluated. Every node keeps the [`Span`] of the text it came from so that lowering can
//! point at it.

use crate::diag::Span;

/// One parsed file.
#[derive(Debug, Clone, Default)]
pub struct File {
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    Use(Use),
    Network(Def),
    Block(Def),
}

/// `use "path"`.
#[derive(Debug, Clone)]
pub struct Use {
    pub path: String,
    pub span: Span,
}

/// A network or block definition.
#[derive(Debug, Clone)]
pub struct Def {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// An identifier with its span.
#[derive(Debug, Clone)]
pub struct Ident {
    pub text: String,
    pub span: Span,
}

/// A formal parameter of a network or block.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
}

/// A statement of a body.
#[derive(Debug, Clone)]
pub enum Stmt {
    Input {
        dims: Vec<Expr>,
        span: Span,
    },
    Let {
        name: Ident,
        value: Expr,
    },
    Layer(Layer),
    Shortcut(Shortcut),
    /// `if COND { .. } else { .. }`: the chosen statements count as written in place.
    If {
        cond: Expr,
        then: Vec<Stmt>,
        otherwise: Option<Vec<Stmt>>,
        span: Span,
    },
    /// `for VARS in SOURCE { .. }`: the body once a value or row, as if written out.
    For {
        vars: Vec<Ident>,
        source: ForSource,
        body: Vec<Stmt>,
        span: Span,
    },
}

/// What a `for` runs over.
#[derive(Debug, Clone)]
pub enum ForSource {
    /// `A..B`.
    Range(Expr, Expr),
    /// `[(..), (..)]`: rows, each with its span.
    Table(Vec<(Vec<Expr>, Span)>),
}

/// `[name:] op[(args)] [{ body }]`.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: Option<Ident>,
    pub op: Ident,
    pub args: Vec<Arg>,
    pub body: Option<Vec<Stmt>>,
    pub span: Span,
}

/// An actual argument, positional (`name == None`) or named.
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

/// The residual add point of a block.
#[derive(Debug, Clone)]
pub struct Shortcut {
    pub name: Option<Ident>,
    pub kind: ShortcutKind,
    pub from: Option<Ident>,
    pub span: Span,
}

/// What the shortcut path is.
#[derive(Debug, Clone)]
pub enum ShortcutKind {
    /// `identity`, `projection`, `pad`, `avgdown`, with their arguments.
    Named { kind: Ident, args: Vec<Arg>, always: bool },
    /// A path written out by hand.
    Path(Vec<Stmt>),
}

/// An expression with its span.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The kinds of expression.
#[derive(Debug, Clone)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Name(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `then if cond else otherwise`.
    Cond {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    /// A built-in function call.
    Call(Ident, Vec<Expr>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}
