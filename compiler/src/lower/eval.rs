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
        ExprKind::Not(x) => match eval(x, env)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            v => Err(Diagnostic::error(x.span, format!("`not` needs a boolean, found {}", v.type_name()))),
        },
        ExprKind::Binary(op @ (BinOp::And | BinOp::Or), l, r) => {
            let a = boolean(l, env, "and/or")?;
            // Short-circuit, as in Python: `i > 0 and n / i > 2` never divides by zero.
            match (op, a) {
                (BinOp::And, false) => Ok(Value::Bool(false)),
                (BinOp::Or, true) => Ok(Value::Bool(true)),
                _ => Ok(Value::Bool(boolean(r, env, "and/or")?)),
            }
        }
        ExprKind::Binary(op, l, r) => {
            let (a, b) = (eval(l, env)?, eval(r, env)?);
            binary(*op, a, b, e.span, r.span)
        }
        ExprKind::Cond { cond, then, otherwise } => {
            if boolean(cond, env, "`if`")? {
                eval(then, env)
            } else {
                eval(otherwise, env)
            }
        }
        ExprKind::Call(name, args) => {
            let values = args.iter().map(|a| eval(a, env)).collect::<Result<Vec<_>, _>>()?;
            call(name, &values, e.span)
        }
    }
}

/// Evaluates a condition, which must be a boolean.
pub fn boolean(e: &Expr, env: &Env, what: &str) -> Result<bool, Diagnostic> {
    match eval(e, env)? {
        Value::Bool(b) => Ok(b),
        v => Err(Diagnostic::error(e.span, format!("{what} needs a boolean, found {}", v.type_name()))
            .label("not true or false")
            .help("compare it: `==`, `!=`, `<`, `<=`, `>`, `>=`")),
    }
}

/// The built-in functions of expressions.
pub const FUNCTIONS: &[&str] = &["make_divisible", "min", "max", "int", "round", "ceil"];

/// Calls a built-in function.
fn call(name: &crate::ast::Ident, args: &[Value], span: Span) -> Result<Value, Diagnostic> {
    let arity = |n: std::ops::RangeInclusive<usize>, usage: &str| -> Result<(), Diagnostic> {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(Diagnostic::error(span, format!("`{}` takes {usage}, found {} arguments", name.text, args.len())))
        }
    };
    let number = |v: &Value| -> Result<f64, Diagnostic> {
        match v {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::Bool(_) => Err(Diagnostic::error(span, format!("`{}` takes numbers, found a boolean", name.text))),
        }
    };
    let to_int = |x: f64| -> Result<Value, Diagnostic> {
        if x.is_finite() && x.abs() < 9.0e18 {
            Ok(Value::Int(x as i64))
        } else {
            Err(Diagnostic::error(span, format!("`{}` gives {x}, not a 64-bit integer", name.text)))
        }
    };
    match name.text.as_str() {
        // torchvision's `_make_divisible(v, divisor, min_value=None)`: the nearest multiple
        // of `divisor`, at least `min_value`, and not below 90% of `v`.
        "make_divisible" => {
            arity(2..=3, "2 or 3 arguments (value, divisor[, minimum])")?;
            let (v, d) = (number(&args[0])?, number(&args[1])?);
            if d < 1.0 || d.fract() != 0.0 || !v.is_finite() || v.abs() > 1e15 {
                return Err(Diagnostic::error(
                    span,
                    format!("`make_divisible` needs a value below 1e15 in size and a whole divisor of at least 1, found {v} and {d}"),
                ));
            }
            let min = if args.len() == 3 { number(&args[2])? } else { d };
            let mut new_v = min.max(((v + d / 2.0) as i64 / d as i64 * d as i64) as f64);
            if new_v < 0.9 * v {
                new_v += d;
            }
            to_int(new_v)
        }
        "min" | "max" => {
            arity(2..=usize::MAX, "2 or more arguments")?;
            if args.iter().all(|a| matches!(a, Value::Int(_))) {
                let ints = args.iter().map(|a| if let Value::Int(i) = a { *i } else { 0 });
                return Ok(Value::Int(if name.text == "min" { ints.min() } else { ints.max() }.unwrap_or(0)));
            }
            let xs = args.iter().map(number).collect::<Result<Vec<_>, _>>()?;
            let f = if name.text == "min" { f64::min } else { f64::max };
            Ok(Value::Float(xs.into_iter().reduce(f).unwrap_or(0.0)))
        }
        // Python's `int` (toward zero) and `round` (half to even).
        "int" => {
            arity(1..=1, "1 argument")?;
            to_int(number(&args[0])?.trunc())
        }
        "round" => {
            arity(1..=1, "1 argument")?;
            to_int(number(&args[0])?.round_ties_even())
        }
        "ceil" => {
            arity(1..=1, "1 argument")?;
            to_int(number(&args[0])?.ceil())
        }
        other => {
            let d = Diagnostic::error(name.span, format!("unknown function `{other}`")).label("not a built-in function");
            Err(match did_you_mean(other, FUNCTIONS.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("functions: {}", FUNCTIONS.join(", "))),
            })
        }
    }
}

fn binary(op: BinOp, a: Value, b: Value, span: Span, rhs: Span) -> Result<Value, Diagnostic> {
    let overflow = || Diagnostic::error(span, "integer overflow in this expression");
    if matches!(op, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) {
        return compare(op, a, b, span);
    }
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
                _ => unreachable!("invariant: comparisons and and/or are handled before"),
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
                _ => unreachable!("invariant: comparisons and and/or are handled before"),
            }))
        }
    }
}

/// `== != < <= > >=`: numbers with numbers (an integer equals the same float), booleans
/// with booleans for `==` and `!=`.
fn compare(op: BinOp, a: Value, b: Value, span: Span) -> Result<Value, Diagnostic> {
    let ord = match (a, b) {
        (Value::Bool(x), Value::Bool(y)) if matches!(op, BinOp::Eq | BinOp::Ne) => x.cmp(&y),
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            return Err(Diagnostic::error(span, format!("cannot compare {} with {}", a.type_name(), b.type_name())));
        }
        (Value::Int(x), Value::Int(y)) => x.cmp(&y),
        (x, y) => match as_f64(x).partial_cmp(&as_f64(y)) {
            Some(o) => o,
            None => return Ok(Value::Bool(op == BinOp::Ne)),
        },
    };
    use std::cmp::Ordering::*;
    Ok(Value::Bool(match op {
        BinOp::Eq => ord == Equal,
        BinOp::Ne => ord != Equal,
        BinOp::Lt => ord == Less,
        BinOp::Le => ord != Greater,
        BinOp::Gt => ord == Greater,
        _ => ord != Less,
    }))
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
