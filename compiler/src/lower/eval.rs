//! Evaluating expressions and binding actual arguments to an op's or block's parameters.

// A `Diagnostic` is the error of every lowering step; boxing it here would buy nothing on
// this cold path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use crate::ast::{Arg, BinOp, Expr, ExprKind};
use crate::diag::{did_you_mean, Diagnostic, Span};

/// A value of the language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a floating-point number",
            Value::Bool(_) => "a boolean",
        }
    }

    /// Parses a network parameter's value set from outside the spec (`classes=37`):
    /// `true`, `false`, an integer that fits in 64 bits, or a finite number; otherwise says
    /// why not (completing "the value `X` set for ... ").
    pub fn parse_setting(text: &str) -> Result<Value, String> {
        let t = text.trim();
        match t {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("does not fit in a 64-bit integer (at most {})", i64::MAX));
        }
        match t.parse::<f64>() {
            Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() >= 9.2e18 => {
                Err(format!("does not fit in a 64-bit integer (at most {})", i64::MAX))
            }
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            Ok(_) => Err("is not a finite number".into()),
            Err(_) => Err("is not a number or a boolean (true, false)".into()),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Names in scope: parameters and `let`s.
pub type Env = HashMap<String, Value>;

/// Evaluates an expression.
pub fn eval(e: &Expr, env: &Env) -> Result<Value, Diagnostic> {
    match &e.kind {
        ExprKind::Int(i) => Ok(Value::Int(*i)),
        ExprKind::Float(x) => Ok(Value::Float(*x)),
        ExprKind::Bool(b) => Ok(Value::Bool(*b)),
        ExprKind::Name(n) => env.get(n).copied().ok_or_else(|| {
            let d = Diagnostic::error(e.span, format!("unknown name `{n}`")).label("not a parameter or `let` in scope");
            match did_you_mean(n, env.keys().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d,
            }
        }),
        ExprKind::Neg(x) => match eval(x, env)? {
            Value::Int(i) => Ok(Value::Int(-i)),
            Value::Float(f) => Ok(Value::Float(-f)),
            v => Err(Diagnostic::error(e.span, format!("cannot negate {}", v.type_name()))),
        },
        ExprKind::Binary(op, l, r) => {
            let (a, b) = (eval(l, env)?, eval(r, env)?);
            binary(*op, a, b, e.span, r.span)
        }
    }
}

fn binary(op: BinOp, a: Value, b: Value, span: Span, rhs: Span) -> Result<Value, Diagnostic> {
    let overflow = || Diagnostic::error(span, "integer overflow in this expression");
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            if matches!(op, BinOp::Div | BinOp::Rem) && y == 0 {
                return Err(Diagnostic::error(rhs, "division by zero").label("this is 0"));
            }
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => x.checked_div(y),
                BinOp::Rem => x.checked_rem(y),
            };
            r.map(Value::Int).ok_or_else(overflow)
        }
        (Value::Bool(_), _) | (_, Value::Bool(_)) => Err(Diagnostic::error(span, "arithmetic on a boolean")),
        (x, y) => {
            let (x, y) = (as_f64(x), as_f64(y));
            Ok(Value::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Rem => x % y,
            }))
        }
    }
}

fn as_f64(v: Value) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        Value::Bool(b) => f64::from(u8::from(b)),
    }
}

/// The type a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Float,
    Bool,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Float => "a number",
            Ty::Bool => "`true` or `false`",
        }
    }

    fn accept(self, v: Value) -> Option<Value> {
        match (self, v) {
            (Ty::Int, Value::Int(_)) | (Ty::Bool, Value::Bool(_)) | (Ty::Float, Value::Float(_)) => Some(v),
            (Ty::Float, Value::Int(i)) => Some(Value::Float(i as f64)),
            _ => None,
        }
    }
}

/// One parameter of a built-in op: its names, type and default (`None`: required).
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub names: &'static [&'static str],
    pub ty: Ty,
    pub default: Option<Value>,
}

/// A required parameter.
pub const fn req(names: &'static [&'static str], ty: Ty) -> ParamSpec {
    ParamSpec { names, ty, default: None }
}

/// An optional parameter.
pub const fn opt(names: &'static [&'static str], ty: Ty, default: Value) -> ParamSpec {
    ParamSpec { names, ty, default: Some(default) }
}

/// Bound arguments of a built-in op, by the parameter's first name.
#[derive(Debug, Default)]
pub struct Bound {
    values: HashMap<&'static str, (Value, Option<Span>)>,
}

impl Bound {
    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some((Value::Int(i), _)) => *i,
            _ => 0,
        }
    }
    /// An optional integer with no default.
    pub fn int_opt(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some((Value::Int(i), _)) => Some(*i),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> f64 {
        match self.values.get(name) {
            Some((v, _)) => as_f64(*v),
            _ => 0.0,
        }
    }
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some((Value::Bool(true), _)))
    }
    /// Where the argument was written, if it was.
    pub fn span(&self, name: &str) -> Option<Span> {
        self.values.get(name).and_then(|(_, s)| *s)
    }
}

/// Binds `args` to the parameters of op `op`. Parameters whose default is `None` and that
/// are listed in `optional_no_default` may stay unbound; others are required.
pub fn bind(op: &str, call: Span, params: &[ParamSpec], args: &[Arg], env: &Env, diags: &mut Vec<Diagnostic>) -> Option<Bound> {
    bind_with(op, call, params, &[], args, env, diags)
}

/// [`bind`], with parameters that may be left out although they have no default.
pub fn bind_with(
    op: &str,
    call: Span,
    params: &[ParamSpec],
    may_omit: &[&str],
    args: &[Arg],
    env: &Env,
    diags: &mut Vec<Diagnostic>,
) -> Option<Bound> {
    let before = diags.len();
    let mut bound = Bound::default();
    // Parameters whose argument was written but failed to evaluate: not "missing".
    let mut attempted: Vec<&str> = Vec::new();
    let mut positional = 0;
    for a in args {
        let idx = match &a.name {
            None => {
                let i = positional;
                positional += 1;
                if i >= params.len() {
                    diags.push(Diagnostic::error(a.span, format!("`{op}` takes at most {} arguments", params.len())).label("one too many"));
                    continue;
                }
                i
            }
            Some(n) => match params.iter().position(|p| p.names.contains(&n.text.as_str())) {
                Some(i) => i,
                None => {
                    let all: Vec<&str> = params.iter().flat_map(|p| p.names.iter().copied()).collect();
                    let mut d = Diagnostic::error(n.span, format!("`{op}` has no argument `{}`", n.text)).label("unknown argument");
                    d = match did_you_mean(&n.text, all.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if all.is_empty() => d.help(format!("`{op}` takes no arguments")),
                        None => d.help(format!("`{op}` takes {}", all.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "))),
                    };
                    diags.push(d);
                    continue;
                }
            },
        };
        let p = &params[idx];
        if bound.values.contains_key(p.names[0]) || attempted.contains(&p.names[0]) {
            diags.push(Diagnostic::error(a.span, format!("argument `{}` is given twice", p.names[0])));
            continue;
        }
        attempted.push(p.names[0]);
        match eval(&a.value, env) {
            Ok(v) => match p.ty.accept(v) {
                Some(v) => {
                    bound.values.insert(p.names[0], (v, Some(a.value.span)));
                }
                None => diags.push(
                    Diagnostic::error(a.value.span, format!("`{}` of `{op}` must be {}, found {}", p.names[0], p.ty.name(), v.type_name()))
                        .label(format!("this is {}", v.type_name())),
                ),
            },
            Err(d) => diags.push(d),
        }
    }
    for p in params {
        if bound.values.contains_key(p.names[0]) || attempted.contains(&p.names[0]) {
            continue;
        }
        match p.default {
            Some(v) => {
                bound.values.insert(p.names[0], (v, None));
            }
            None if may_omit.contains(&p.names[0]) => {}
            None => diags.push(
                Diagnostic::error(call, format!("`{op}` needs the argument `{}`", p.names[0])).label("missing argument").help(format!(
                    "write it as `{}` or `{} = ...`",
                    signature(op, params),
                    p.names[0]
                )),
            ),
        }
    }
    (diags.len() == before).then_some(bound)
}

/// `conv(out, k, s = 1, ...)`, for hints.
fn signature(op: &str, params: &[ParamSpec]) -> String {
    let ps: Vec<String> = params
        .iter()
        .map(|p| match p.default {
            Some(d) => format!("{} = {d}", p.names[0]),
            None => p.names[0].to_string(),
        })
        .collect();
    format!("{op}({})", ps.join(", "))
}
