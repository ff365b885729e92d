//! Lowering: AST -> graph IR, with every expression evaluated and every shape inferred.
//!
//! Lowering resolves names (blocks, parameters, `let`s, layers for `from`), instantiates
//! blocks and stages, turns shortcuts into explicit ops, and names every parameterised node
//! with its PyTorch `state_dict` path. It does not optimise. Errors are collected, not
//! thrown: a layer that fails to lower is skipped so that later errors are still found.

pub(crate) mod blocks;
mod builtins;
mod eval;
mod layers;

use std::collections::HashMap;

pub use eval::Value;

use crate::ast::{Def, ForSource, Item, Layer, Stmt};
use crate::diag::{did_you_mean, Diagnostic, Span, Suggestion};
use crate::frontend::Program;
use crate::ir::{Graph, Mark, NodeId, Shape};
use crate::Options;
use eval::{eval, Env};

/// The largest integer attribute (channels, kernel, stride, padding, input size...) a spec
/// may give: far above what real networks use, small enough that products of a few of them
/// cannot overflow unnoticed.
pub const MAX_DIM: usize = 1 << 24;

/// The most elements a value (per sample) or a weight tensor may have: 2^28 floats, 1 GiB
/// (a 64-channel 2048x2048 feature map).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

/// The most nodes a network may lower to (ResNet-152 has about 500).
pub const MAX_NODES: usize = 100_000;

/// Lowers the root file's network. Returns a graph only when there were no errors.
pub fn lower(program: &Program, opts: &Options) -> (Option<Graph>, Vec<Diagnostic>) {
    let mut l = Lowerer {
        blocks: HashMap::new(),
        diags: vec![],
        graph: Graph::new("", Shape::new(1, 1, 1)),
        stack: vec![],
        too_many_nodes: false,
        iterations: 0,
    };
    let mut networks = Vec::new();
    for (i, (_, file)) in program.files.iter().enumerate() {
        for item in &file.items {
            match item {
                Item::Block(def) => {
                    if builtins::find(&def.name.text).is_some() {
                        l.diags.push(
                            Diagnostic::error(def.name.span, format!("block `{}` has the name of a built-in op", def.name.text))
                                .label("shadows the built-in")
                                .help("rename the block: a layer `NAME(...)` would be ambiguous"),
                        );
                    } else if let Some(first) = l.blocks.get(def.name.text.as_str()) {
                        l.diags.push(
                            Diagnostic::error(def.name.span, format!("block `{}` is defined twice", def.name.text))
                                .label("second definition")
                                .note(first.name.span, "first definition")
                                .help("rename one of them"),
                        );
                    } else {
                        l.blocks.insert(&def.name.text, def);
                    }
                }
                Item::Network(def) if i == 0 => networks.push(def),
                _ => {}
            }
        }
    }
    let network = match networks.as_slice() {
        [] => {
            let root = program.files.first().map(|(id, _)| *id).unwrap_or_default();
            let d = Diagnostic::error(Span::new(root, 0, 0), "no `network` in this file")
                .label("expected a network definition")
                .help("a spec needs one `network NAME { input [C, H, W] ... }`");
            return (None, vec![d]);
        }
        [n, rest @ ..] => {
            for extra in rest {
                l.diags.push(Diagnostic::error(extra.name.span, "a spec defines one network; this is a second").label("second network"));
            }
            *n
        }
    };
    l.network(network, opts);
    if l.diags.is_empty() {
        l.unique_keys();
    }
    let Lowerer { graph, mut diags, .. } = l;
    // A loop body lowers once an iteration: an error in it is reported once.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert((d.span, d.message.clone())));
    if diags.is_empty() {
        if let Err(e) = graph.verify() {
            panic!("invariant: lowering produced an invalid graph: {e}");
        }
        (Some(graph), diags)
    } else {
        (None, diags)
    }
}

/// What kind of body is being lowered; it decides default names and what is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Network,
    Block,
    /// A `seq { }` or a hand-written shortcut path: unnamed layers are numbered, like
    /// `nn.Sequential`.
    Sequential,
    /// A `gate { }` body: numbered like a `seq`; it cannot hold a shortcut.
    Gate,
}

pub(crate) struct Lowerer<'p> {
    blocks: HashMap<&'p str, &'p Def>,
    diags: Vec<Diagnostic>,
    graph: Graph,
    /// Blocks being instantiated, to reject a block that contains itself.
    stack: Vec<&'p str>,
    /// Whether the [`MAX_NODES`] error was reported.
    too_many_nodes: bool,
    /// `for` iterations so far, all loops together (bounded by [`MAX_ITERATIONS`]).
    iterations: usize,
}

/// The most iterations of one `for` (rows of a table, or values of a range).
pub const MAX_LOOP: usize = 1024;

/// The most iterations of all `for`s of a spec together (nested loops multiply).
pub const MAX_ITERATIONS: usize = 100_000;

/// Where the lowering of a body stands: `if` branches and `for` bodies continue it.
struct BodyState<'s> {
    main: NodeId,
    names: Names,
    /// The next index of an unnamed layer in a sequential body.
    index: usize,
    shortcut_seen: Option<Span>,
    prefix: &'s str,
    scope: Scope,
    block_input: Option<NodeId>,
}

/// The outputs of the named layers of a body so far, for `from` and duplicate checks.
#[derive(Default)]
struct Names {
    outputs: HashMap<String, (NodeId, Span)>,
}

impl<'p> Lowerer<'p> {
    fn network(&mut self, def: &'p Def, opts: &Options) {
        let mut env = Env::new();
        for (name, text) in &opts.sets {
            if !def.params.iter().any(|p| &p.name.text == name) {
                let names: Vec<String> = def.params.iter().map(|p| format!("`{}`", p.name.text)).collect();
                let help = if names.is_empty() {
                    format!("network `{}` has no parameters", def.name.text)
                } else {
                    format!("its parameters are {}", names.join(", "))
                };
                let d = Diagnostic::global(format!("network `{}` has no parameter `{name}`, which was given a value", def.name.text));
                let d = match did_you_mean(name, def.params.iter().map(|p| p.name.text.as_str())) {
                    Some(s) => d.help(format!("did you mean `{s}`? {help}")),
                    None => d.help(help),
                };
                self.diags.push(d);
            }
            if let Err(why) = Value::parse_setting(text) {
                self.diags.push(Diagnostic::global(format!("the value `{text}` set for network parameter `{name}` {why}")));
            }
        }
        for p in &def.params {
            let set = opts.sets.iter().rev().find(|(n, _)| *n == p.name.text).and_then(|(_, v)| Value::parse_setting(v).ok());
            let value = match (set, &p.default) {
                (Some(v), _) => Some(v),
                (None, Some(e)) => self.ok(eval(e, &env)),
                (None, None) => {
                    self.diags.push(
                        Diagnostic::error(p.name.span, format!("network parameter `{}` has no default and was not set", p.name.text))
                            .help("give it a default in the spec, or set its value")
                            .suggest(Suggestion::SetParameter { name: p.name.text.clone() }),
                    );
                    None
                }
            };
            if let Some(v) = value {
                env.insert(p.name.text.clone(), v);
            }
        }
        let input = self.input_shape(def, &env, opts);
        self.graph = Graph::new(def.name.text.clone(), input.unwrap_or(Shape::new(1, 1, 1)));
        if input.is_none() {
            return;
        }
        let x = self.graph.output;
        self.body(&def.body, &mut env, "", x, Scope::Network, None);
    }

    fn input_shape(&mut self, def: &Def, env: &Env, opts: &Options) -> Option<Shape> {
        let stmts: Vec<(&Vec<crate::ast::Expr>, Span)> =
            def.body.iter().filter_map(|s| if let Stmt::Input { dims, span } = s { Some((dims, *span)) } else { None }).collect();
        for (_, span) in stmts.iter().skip(1) {
            self.diags.push(Diagnostic::error(*span, "the input shape is given twice").label("second `input`"));
        }
        if let Some([c, h, w]) = opts.input_shape {
            let shape = Shape::new(c, h, w);
            if c == 0 || h == 0 || w == 0 || c.max(h).max(w) > MAX_DIM || shape.checked_len().is_none_or(|l| l > MAX_TENSOR_ELEMENTS) {
                self.diags.push(Diagnostic::global(format!(
                    "the input shape {shape} that was set is out of range: every dimension must be 1 to {MAX_DIM}, and C*H*W at most {MAX_TENSOR_ELEMENTS}"
                )));
                return None;
            }
            return Some(shape);
        }
        let Some((dims, span)) = stmts.first() else {
            self.diags.push(
                Diagnostic::error(def.name.span, format!("network `{}` has no input shape", def.name.text))
                    .help("add a line `input [C, H, W]`, e.g. `input [3, 224, 224]`, or set the input shape")
                    .suggest(Suggestion::InputShape),
            );
            return None;
        };
        if dims.len() != 3 {
            self.diags.push(Diagnostic::error(*span, format!("the input shape needs 3 dimensions [C, H, W], found {}", dims.len())));
            return None;
        }
        let mut v = [0usize; 3];
        for (i, e) in dims.iter().enumerate() {
            match eval(e, env) {
                Ok(Value::Int(n)) if n >= 1 && n as u64 <= MAX_DIM as u64 => v[i] = n as usize,
                Ok(Value::Int(n)) if n >= 1 => {
                    self.diags.push(Diagnostic::error(e.span, format!("an input dimension must be at most {MAX_DIM}, found {n}")));
                    return None;
                }
                Ok(other) => {
                    self.diags.push(Diagnostic::error(e.span, format!("an input dimension must be a positive integer, found {other}")));
                    return None;
                }
                Err(d) => {
                    self.diags.push(d);
                    return None;
                }
            }
        }
        let shape = Shape::new(v[0], v[1], v[2]);
        if shape.checked_len().is_none_or(|l| l > MAX_TENSOR_ELEMENTS) {
            self.diags.push(
                Diagnostic::error(*span, format!("the input {shape} has more than {MAX_TENSOR_ELEMENTS} elements a sample"))
                    .label("too large")
                    .suggest(Suggestion::InputShape),
            );
            return None;
        }
        Some(shape)
    }

    /// Lowers a body; returns the value at its end. In a block, `shortcut` statements add
    /// the shortcut (taken from `block_input` or a named layer) to the main path.
    fn body(&mut self, stmts: &'p [Stmt], env: &mut Env, prefix: &str, x: NodeId, scope: Scope, block_input: Option<NodeId>) -> NodeId {
        let mut st = BodyState { main: x, names: Names::default(), index: 0, shortcut_seen: None, prefix, scope, block_input };
        self.stmts(stmts, env, &mut st);
        st.main
    }

    /// The statements of a body (or of an `if` branch or `for` body spliced into it).
    /// Returns false when lowering must stop (too many layers).
    fn stmts(&mut self, stmts: &'p [Stmt], env: &mut Env, st: &mut BodyState<'_>) -> bool {
        for stmt in stmts {
            match stmt {
                Stmt::Input { span, .. } => {
                    if st.scope != Scope::Network {
                        self.diags.push(Diagnostic::error(*span, "`input` belongs in the network, not in a block"));
                    }
                }
                Stmt::Let { name, value } => {
                    if let Some(v) = self.ok(eval(value, env)) {
                        env.insert(name.text.clone(), v);
                    }
                }
                Stmt::If { cond, then, otherwise, .. } => {
                    let chosen = match self.ok(eval::boolean(cond, env, "`if`")) {
                        Some(true) => Some(then),
                        Some(false) => otherwise.as_ref(),
                        None => None,
                    };
                    if let Some(branch) = chosen {
                        // `let`s inside a branch stay there, as inside a loop body.
                        let saved = env.clone();
                        let go_on = self.stmts(branch, env, st);
                        *env = saved;
                        if !go_on {
                            return false;
                        }
                    }
                }
                Stmt::For { vars, source, body, span } => {
                    let Some(rows) = self.for_rows(vars, source, env, *span) else { continue };
                    // Loop variables are visible in the body only; `let`s inside stay local too.
                    let saved = env.clone();
                    for row in rows {
                        self.iterations += 1;
                        if self.iterations > MAX_ITERATIONS {
                            self.diags.push(
                                Diagnostic::error(*span, format!("the loops of this spec run more than {MAX_ITERATIONS} times in all"))
                                    .label("stopped here")
                                    .help("nested loops multiply their counts"),
                            );
                            return false;
                        }
                        for (var, value) in vars.iter().zip(row) {
                            env.insert(var.text.clone(), value);
                        }
                        let go_on = self.stmts(body, env, st);
                        *env = saved.clone();
                        if !go_on {
                            return false;
                        }
                    }
                }
                Stmt::Layer(layer) => {
                    if self.graph.nodes.len() >= MAX_NODES {
                        if !self.too_many_nodes {
                            self.too_many_nodes = true;
                            self.diags.push(
                                Diagnostic::error(layer.span, format!("the network grows past {MAX_NODES} layers here"))
                                    .label("too many layers")
                                    .help("check the `blocks` counts of the stages"),
                            );
                        }
                        return false;
                    }
                    let Some(local) = self.layer_name(layer, st.index, st.scope, env) else {
                        st.index += 1;
                        continue;
                    };
                    st.index += 1;
                    let path = join(st.prefix, &local);
                    if layer.name.is_some() || self.has_params(layer) {
                        if let Some((_, first)) = st.names.outputs.get(&local) {
                            self.diags.push(
                                Diagnostic::error(
                                    layer.name.as_ref().map_or(layer.op.span, |n| n.span),
                                    format!("duplicate layer name `{local}`"),
                                )
                                .label("used again here")
                                .note(*first, "first used here")
                                .help("weight names must be unique; rename one of the layers"),
                            );
                        }
                    }
                    if let Some(y) = self.layer(layer, env, &path, st.main) {
                        st.main = y;
                    }
                    st.names.outputs.insert(local.clone(), (st.main, layer.span));
                    if st.scope == Scope::Network {
                        self.graph.marks.push(Mark { name: path, node: st.main });
                    }
                }
                Stmt::Shortcut(sc) => {
                    let Some(input) = st.block_input else {
                        let d = if st.scope == Scope::Gate {
                            Diagnostic::error(sc.span, "a gate's body cannot hold a shortcut")
                                .help("put the shortcut in the block, after the gate")
                        } else {
                            Diagnostic::error(sc.span, "`shortcut` belongs in a block")
                                .help("define a `block` with the residual connection and use it as a layer")
                        };
                        self.diags.push(d);
                        continue;
                    };
                    if let Some(first) = st.shortcut_seen {
                        let d = Diagnostic::error(sc.span, "a block has one shortcut; this is a second").label("second shortcut");
                        let d = if first == sc.span {
                            d.help("this shortcut is inside a loop that runs more than once")
                        } else {
                            d.note(first, "the first shortcut")
                        };
                        self.diags.push(d);
                        continue;
                    }
                    st.shortcut_seen = Some(sc.span);
                    if let Some(y) = self.shortcut(sc, env, st.prefix, input, st.main, &st.names) {
                        st.main = y;
                    }
                }
            }
        }
        true
    }

    /// The values a `for` binds, one row an iteration (checked: arity, length, limits).
    fn for_rows(&mut self, vars: &[crate::ast::Ident], source: &ForSource, env: &Env, span: Span) -> Option<Vec<Vec<Value>>> {
        for (i, v) in vars.iter().enumerate() {
            if let Some(first) = vars[..i].iter().find(|u| u.text == v.text) {
                self.diags.push(
                    Diagnostic::error(v.span, format!("the loop names `{}` twice", v.text))
                        .label("second time")
                        .note(first.span, "first time"),
                );
                return None;
            }
        }
        match source {
            ForSource::Range(a, b) => {
                if vars.len() != 1 {
                    self.diags.push(Diagnostic::error(span, "a range gives one value an iteration: write `for i in A..B`"));
                    return None;
                }
                let (from, to) = (self.ok(eval(a, env))?, self.ok(eval(b, env))?);
                let (Value::Int(from), Value::Int(to)) = (from, to) else {
                    self.diags.push(Diagnostic::error(a.span.to(b.span), format!("a range needs integers, found {from} and {to}")));
                    return None;
                };
                let n = to.saturating_sub(from).max(0);
                if n as u64 > MAX_LOOP as u64 {
                    self.diags.push(
                        Diagnostic::error(a.span.to(b.span), format!("this loop runs {n} times, more than {MAX_LOOP}")).label("too many"),
                    );
                    return None;
                }
                Some((from..to).map(|i| vec![Value::Int(i)]).collect())
            }
            ForSource::Table(rows) => {
                if rows.len() > MAX_LOOP {
                    self.diags.push(Diagnostic::error(span, format!("a table may have at most {MAX_LOOP} rows")));
                    return None;
                }
                let mut out = Vec::with_capacity(rows.len());
                for (row, row_span) in rows {
                    if row.len() != vars.len() {
                        let names: Vec<&str> = vars.iter().map(|v| v.text.as_str()).collect();
                        self.diags.push(
                            Diagnostic::error(
                                *row_span,
                                format!("this row has {} values; the loop names {} ({})", row.len(), vars.len(), names.join(", ")),
                            )
                            .label("wrong number of values"),
                        );
                        return None;
                    }
                    out.push(row.iter().map(|e| self.ok(eval(e, env))).collect::<Option<Vec<_>>>()?);
                }
                Some(out)
            }
        }
    }

    /// The local name of a layer: its own (with `{NAME}`s replaced by their values), else
    /// its index in a sequential body, else its op.
    fn layer_name(&mut self, layer: &Layer, index: usize, scope: Scope, env: &Env) -> Option<String> {
        match (&layer.name, scope) {
            (Some(n), _) => self.interpolate(n, env),
            (None, Scope::Sequential | Scope::Gate) => Some(index.to_string()),
            (None, _) => Some(layer.op.text.clone()),
        }
    }

    /// A name with every `{NAME}` replaced by the integer `NAME` has in `env`.
    fn interpolate(&mut self, name: &crate::ast::Ident, env: &Env) -> Option<String> {
        let text = &name.text;
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = open + rest[open..].find('}').expect("invariant: the grammar closes every `{` of a name");
            let var = &rest[open + 1..close];
            let at = name.span.start + (text.len() - rest.len()) + open;
            let span = Span::new(name.span.file, at, at + var.len() + 2);
            match env.get(var) {
                Some(eval::Value::Int(i)) => out.push_str(&i.to_string()),
                Some(v) => {
                    self.diags.push(Diagnostic::error(span, format!("`{{{var}}}` in a layer name must be an integer, found {v}")));
                    return None;
                }
                None => {
                    let d = Diagnostic::error(span, format!("unknown name `{var}` in this layer name")).label("not in scope");
                    self.diags.push(match did_you_mean(var, env.keys().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d,
                    });
                    return None;
                }
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Two layers whose weights would have the same `state_dict` key (names are unique in
    /// each scope, but paths can still meet, e.g. a layer `a.b` beside a block `a`).
    fn unique_keys(&mut self) {
        let mut first: HashMap<&str, Option<Span>> = HashMap::new();
        for n in &self.graph.nodes {
            for &t in &n.params {
                let key = self.graph.tensor(t).key.as_str();
                if let Some(prev) = first.insert(key, n.span) {
                    let d = Diagnostic::error(n.span.unwrap_or_default(), format!("two layers have the weight `{key}`"))
                        .label("second layer with this weight")
                        .help("rename one of the layers: weight names must be unique");
                    self.diags.push(match prev {
                        Some(p) => d.note(p, "first layer with this weight"),
                        None => d,
                    });
                    return;
                }
            }
        }
    }

    fn ok<T>(&mut self, r: Result<T, Diagnostic>) -> Option<T> {
        r.map_err(|d| self.diags.push(d)).ok()
    }

    /// Points the user at the closest known op or block.
    fn unknown_op(&mut self, layer: &Layer) {
        let op = &layer.op.text;
        let mut candidates: Vec<&str> = builtins::names().collect();
        candidates.extend(self.blocks.keys().copied());
        let d = Diagnostic::error(layer.op.span, format!("unknown op or block `{op}`")).label("not a built-in op or a defined block");
        let d = match did_you_mean(op, candidates.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("built-in ops: {}", builtins::names().collect::<Vec<_>>().join(", "))),
        };
        self.diags.push(d);
    }
}

/// `prefix.local`, or `local` at the top.
fn join(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_string()
    } else {
        format!("{prefix}.{local}")
    }
}
