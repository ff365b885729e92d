//! Lowering of blocks, stages and shortcuts.
//!
//! A block's layers before its `shortcut` statement are the main path; the shortcut
//! statement adds the shortcut path (from the block input, or from the layer named by
//! `from`) to it; the layers after it apply to the sum. A path written out by hand is
//! lowered here; a named kind becomes a `shortcut` node that the `shortcut` pass expands:
//! - `identity`: the input as it is; the shapes must already match;
//! - `projection [(bn = false)] [always]`: identity where shapes match, else a 1x1 conv with
//!   the stride that matches the shapes plus a bn, named `NAME.0`, `NAME.1` (torchvision's
//!   `downsample`); `always` projects even where shapes match (option C);
//! - `pad`: option A: every s-th pixel, channels zero-padded equally on both sides;
//! - `avgdown`: ResNet-D: `NAME.0` avg-pool (k = s, ceil, padding not counted), `NAME.1`
//!   1x1 conv, `NAME.2` bn, where shapes differ;
//! - `{ layers }`: a path written out by hand, numbered like `nn.Sequential`.

use super::eval::{bind, eval, opt, Env, Ty, Value};
use super::{join, Lowerer, Names, Scope};
use crate::ast::{Arg, Def, ExprKind, Layer, Shortcut, ShortcutKind};
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::ir::{NodeId, Op, Shape, ShortcutKind as IrShortcut};

/// The most blocks a `stage` may repeat (real networks use at most a few dozen).
pub const MAX_STAGE_BLOCKS: usize = 1024;

/// The name a block's body reads its input's channel count from (unless a parameter
/// has that name).
pub const IN_CHANNELS: &str = "in_channels";

/// The deepest nesting of block calls (each level recurses in lowering; real specs use 2-3).
pub const MAX_BLOCK_DEPTH: usize = 64;

impl<'p> Lowerer<'p> {
    /// `NAME: stage(block, args..., blocks = N, stride = s, ...)`: N instances of the block,
    /// named `NAME.0` ... `NAME.{N-1}`; `stride` goes to the first instance only.
    pub(super) fn stage(&mut self, layer: &'p Layer, env: &Env, path: &str, x: NodeId) -> Option<NodeId> {
        let usage = "write `stage(BLOCK, args..., blocks = N)`, e.g. `stage(basic, 64, blocks = 2, stride = 2)`";
        let Some(first) = layer.args.first().filter(|a| a.name.is_none()) else {
            self.diags.push(Diagnostic::error(layer.span, "`stage` needs the block to repeat as its first argument").help(usage));
            return None;
        };
        let ExprKind::Name(block) = &first.value.kind else {
            self.diags.push(Diagnostic::error(first.span, "the first argument of `stage` must name a block").help(usage));
            return None;
        };
        let Some(def) = self.blocks.get(block.as_str()).copied() else {
            let d = Diagnostic::error(first.span, format!("unknown block `{block}`")).label("no block of this name");
            let d = match did_you_mean(block, self.blocks.keys().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("define it with `block NAME(params) { ... }` or `use` the file that does"),
            };
            self.diags.push(d);
            return None;
        };
        let Some(count_arg) = layer.args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.text == "blocks")) else {
            self.diags.push(Diagnostic::error(layer.span, "`stage` needs `blocks = N`, the number of blocks").help(usage));
            return None;
        };
        let count = match eval(&count_arg.value, env) {
            Ok(Value::Int(n)) if n >= 1 && n as u64 <= MAX_STAGE_BLOCKS as u64 => n as usize,
            Ok(Value::Int(n)) if n >= 1 => {
                self.diags.push(
                    Diagnostic::error(count_arg.value.span, format!("`blocks` = {n} is more than a stage may repeat ({MAX_STAGE_BLOCKS})"))
                        .label("too many blocks"),
                );
                return None;
            }
            Ok(v) => {
                self.diags.push(Diagnostic::error(count_arg.value.span, format!("`blocks` must be an integer of at least 1, found {v}")));
                return None;
            }
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        let mut y = x;
        for i in 0..count {
            let args: Vec<&'p Arg> = layer.args[1..]
                .iter()
                .filter(|a| match &a.name {
                    Some(n) if n.text == "blocks" => false,
                    Some(n) if n.text == "stride" => i == 0,
                    _ => true,
                })
                .collect();
            y = self.block_call(def, layer, args.iter().copied(), env, &join(path, &i.to_string()), y)?;
        }
        Some(y)
    }

    /// One instance of block `def` applied to `x`, named `path`.
    pub(super) fn block_call<'a>(
        &mut self,
        def: &'p Def,
        call: &Layer,
        args: impl IntoIterator<Item = &'a Arg>,
        env: &Env,
        path: &str,
        x: NodeId,
    ) -> Option<NodeId> {
        let name = def.name.text.as_str();
        if self.stack.len() >= MAX_BLOCK_DEPTH {
            self.diags.push(
                Diagnostic::error(call.op.span, format!("blocks nest more than {MAX_BLOCK_DEPTH} deep here"))
                    .label("too deep")
                    .help("blocks may call blocks, but not this deep"),
            );
            return None;
        }
        if self.stack.contains(&name) {
            self.diags.push(Diagnostic::error(call.op.span, format!("block `{name}` contains itself")).help("blocks cannot be recursive"));
            return None;
        }
        let mut inner = Env::new();
        let mut given: Vec<Option<Value>> = vec![None; def.params.len()];
        let mut positional = 0;
        let mut failed = false;
        for a in args {
            let idx = match &a.name {
                None => {
                    positional += 1;
                    if positional > def.params.len() {
                        self.diags.push(
                            Diagnostic::error(a.span, format!("block `{name}` takes {} parameters", def.params.len()))
                                .label("one too many"),
                        );
                        failed = true;
                        continue;
                    }
                    positional - 1
                }
                Some(n) => match def.params.iter().position(|p| p.name.text == n.text) {
                    Some(i) => i,
                    None => {
                        let d =
                            Diagnostic::error(n.span, format!("block `{name}` has no parameter `{}`", n.text)).label("unknown parameter");
                        let d = match did_you_mean(&n.text, def.params.iter().map(|p| p.name.text.as_str())) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!(
                                "its parameters: {}",
                                def.params.iter().map(|p| p.name.text.as_str()).collect::<Vec<_>>().join(", ")
                            )),
                        };
                        self.diags.push(d);
                        failed = true;
                        continue;
                    }
                },
            };
            match eval(&a.value, env) {
                Ok(v) => given[idx] = Some(v),
                Err(d) => {
                    self.diags.push(d);
                    failed = true;
                }
            }
        }
        for (p, v) in def.params.iter().zip(given) {
            let v = match (v, &p.default) {
                (Some(v), _) => Some(v),
                (None, Some(e)) => self.ok(eval(e, &inner)),
                (None, None) => {
                    self.diags.push(
                        Diagnostic::error(call.span, format!("block `{name}` needs the parameter `{}`", p.name.text))
                            .label("missing parameter")
                            .help(format!("`{}` has no default; pass it here", p.name.text)),
                    );
                    None
                }
            };
            match v {
                Some(v) => {
                    inner.insert(p.name.text.clone(), v);
                }
                None => failed = true,
            }
        }
        if failed {
            return None;
        }
        // The channels of the block's input, for structure that depends on them
        // (MobileNet's residual only where the channels stay the same).
        if !inner.contains_key(IN_CHANNELS) {
            let c = self.graph.node(x).shape.c;
            inner.insert(IN_CHANNELS.to_string(), Value::Int(i64::try_from(c).unwrap_or(i64::MAX)));
        }
        self.stack.push(name);
        let before = self.diags.len();
        let y = self.body(&def.body, &mut inner, path, x, Scope::Block, Some(x));
        self.stack.pop();
        (self.diags.len() == before).then_some(y)
    }

    /// Builds the shortcut path and the residual add.
    pub(super) fn shortcut(
        &mut self,
        sc: &'p Shortcut,
        env: &Env,
        prefix: &str,
        input: NodeId,
        main: NodeId,
        names: &Names,
    ) -> Option<NodeId> {
        let src = match &sc.from {
            None => input,
            Some(from) => match names.outputs.get(&from.text) {
                Some((id, _)) => *id,
                None => {
                    let d = Diagnostic::error(from.span, format!("no layer `{}` before this shortcut", from.text)).label("unknown layer");
                    let d = match did_you_mean(&from.text, names.outputs.keys().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help("`from` names a layer of this block that comes before the shortcut"),
                    };
                    self.diags.push(d);
                    return None;
                }
            },
        };
        let name = sc.name.as_ref().map_or("downsample", |n| n.text.as_str());
        let path = join(prefix, name);
        let to_shape = self.graph.node(main).shape;
        let short = match &sc.kind {
            ShortcutKind::Path(stmts) => {
                let mut env = env.clone();
                self.body(stmts, &mut env, &path, src, Scope::Sequential, None)
            }
            ShortcutKind::Named { kind, args, always } => {
                let k = kind.text.as_str();
                if *always && !matches!(k, "projection" | "avgdown") {
                    self.diags.push(Diagnostic::error(sc.span, format!("`always` applies to `projection` and `avgdown`, not `{k}`")));
                    return None;
                }
                let params: &[_] = match k {
                    "projection" | "avgdown" => &[opt(&["bn"], Ty::Bool, Value::Bool(true))],
                    _ => &[],
                };
                if !matches!(k, "identity" | "projection" | "pad" | "avgdown") {
                    let d = Diagnostic::error(kind.span, format!("unknown shortcut kind `{k}`")).label("not a shortcut kind");
                    let d = match did_you_mean(k, ["identity", "projection", "pad", "avgdown"]) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help("shortcut kinds: identity, projection, pad, avgdown, or a path `{ ... }`"),
                    };
                    self.diags.push(d);
                    return None;
                }
                let b = bind(k, kind.span, params, args, env, &mut self.diags)?;
                let (bn, always) = (b.bool("bn"), *always);
                let kind = match k {
                    "identity" => IrShortcut::Identity,
                    "pad" => IrShortcut::Pad,
                    "projection" => IrShortcut::Projection { bn, always },
                    _ => IrShortcut::AvgDown { bn, always },
                };
                // The `shortcut` pass makes it explicit ops; whether it can is decided here, so
                // that a mismatch is reported at the user's shortcut.
                let from = self.graph.node(src).shape;
                if kind.expansion(from, to_shape).is_none() {
                    self.mismatch(sc.span, k, from, to_shape);
                    return None;
                }
                let projects = matches!(kind, IrShortcut::Projection { .. } | IrShortcut::AvgDown { .. });
                if projects && from.c.checked_mul(to_shape.c).is_none_or(|n| n > super::MAX_TENSOR_ELEMENTS) {
                    self.diags.push(
                        Diagnostic::error(sc.span, format!("the projection from {} to {} channels would be too large", from.c, to_shape.c))
                            .label("too large"),
                    );
                    return None;
                }
                self.graph.push(Op::Shortcut(kind), vec![src], to_shape, path.clone(), Some(sc.span))
            }
        };
        let got = self.graph.node(short).shape;
        if got != to_shape {
            let kind = match &sc.kind {
                ShortcutKind::Named { kind, .. } => kind.text.as_str(),
                ShortcutKind::Path(_) => "path",
            };
            self.mismatch(sc.span, kind, got, to_shape);
            return None;
        }
        Some(self.graph.push(Op::Add, vec![main, short], to_shape, join(prefix, "add"), Some(sc.span)))
    }

    fn mismatch(&mut self, span: Span, kind: &str, from: Shape, to: Shape) {
        self.diags.push(mismatch(span, kind, from, to));
    }
}

/// The error of a shortcut whose shapes cannot be made to match.
fn mismatch(span: Span, kind: &str, from: Shape, to: Shape) -> Diagnostic {
    let help = match kind {
        "identity" => "use `projection` (a 1x1 conv + bn where shapes differ) or `pad` (option A)",
        "pad" => "`pad` can only add channels and subsample; use `projection` to change shapes otherwise",
        _ => "the main path's output shape must be reachable from the shortcut's input",
    };
    Diagnostic::error(span, format!("the {kind} shortcut cannot match shapes: the shortcut gives {from} but the main path gives {to}"))
        .label("shapes cannot be added")
        .help(help)
}
