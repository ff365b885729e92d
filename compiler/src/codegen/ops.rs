//! The step of every node, on its static shapes: one `match` arm an op in [`emit`].
//!
//! Convolutions and pools get a named descriptor constant (`LAYER1_0_CONV1`) holding their
//! static shapes; every node becomes one `ws.<op>(...)` line.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use super::{comment, usize_lit, CodegenOptions};
use crate::ir::transform::FoldSide;
use crate::ir::{Activation, Graph, NodeId, Op, ParamRole, Pool, TensorId, Transform};
use resnetc_runtime::fast::{winograd, ConvAlgo, ConvSpec};

/// The runtime's descriptor of conv node `id`, with the activation of its epilogue and the
/// algorithm the compiler chooses for it.
pub(super) fn conv_spec(graph: &Graph, id: NodeId) -> ConvSpec {
    let n = graph.node(id);
    let Op::Conv2d(c) = &n.op else { unreachable!("invariant: called on conv nodes") };
    let x = graph.node(n.inputs[0]).shape;
    let mut spec =
        ConvSpec::new([x.c, x.h, x.w], c.out_channels, c.kernel).stride(c.stride).padding(c.padding).dilation(c.dilation).groups(c.groups);
    spec.act = c.act;
    if winograd::eligible(&spec) {
        spec.winograd(winograd::tile_for(&spec) as u8)
    } else {
        spec
    }
}

/// The scratch floats the largest convolution needs for one sample (the runtime scales it
/// by the batch): Winograd's transformed values, or the zeros of the padding taps.
pub(super) fn scratch_len(graph: &Graph) -> usize {
    graph
        .ids()
        .filter(|&id| matches!(graph.node(id).op, Op::Conv2d(_)))
        .map(|id| resnetc_runtime::fast::scratch_len(&conv_spec(graph, id), 1))
        .max()
        .unwrap_or(0)
}

/// Unique Rust constant names, made from layer paths and tensor keys.
#[derive(Default)]
pub(super) struct Names(HashSet<String>);

impl Names {
    /// `layer1.0.conv1` -> `LAYER1_0_CONV1`, made unique with a numeric suffix.
    pub(super) fn constant(&mut self, text: &str) -> Ident {
        let mut s: String = text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
            s = format!("L_{s}");
        }
        if !self.0.insert(s.clone()) {
            let base = s.clone();
            let mut i = 2;
            while !self.0.insert(format!("{base}_{i}")) {
                i += 1;
            }
            s = format!("{base}_{i}");
        }
        Ident::new(&s, Span::call_site())
    }
}

/// The named index of every tensor in the model's `w` (`tensors::LAYER1_0_CONV1_WEIGHT`):
/// the ids of the tensor arena, which the verifier guarantees are the file's tensors in
/// `WEIGHTS` order, then the derived ones in the order `model::fold_all` appends them.
pub(super) struct TensorNames {
    names: Vec<Ident>,
    /// The `mod tensors { ... }` of the generated model.
    pub module: TokenStream,
}

impl TensorNames {
    pub(super) fn new(graph: &Graph) -> TensorNames {
        let mut used = Names::default();
        let names: Vec<Ident> = graph.tensors.iter().map(|t| used.constant(&t.key)).collect();
        let consts = graph.tensor_ids().map(|(id, _)| {
            let name = &names[id.index()];
            let i = usize_lit(id.index());
            quote! { pub const #name: usize = #i; }
        });
        let module = quote! {
            /// Where each tensor is in the model's weights: the file's (`WEIGHTS` order, named
            /// after their keys), then the derived ones (named `KEY_BN` after the fold).
            #[allow(dead_code)]
            mod tensors { #(#consts)* }
        };
        TensorNames { names, module }
    }

    /// `tensors::NAME`.
    fn path(&self, id: TensorId) -> TokenStream {
        let name = &self.names[id.index()];
        quote!(tensors::#name)
    }

    /// `&w[tensors::NAME]` for node `id`'s tensor of `role`.
    fn get(&self, graph: &Graph, id: NodeId, role: ParamRole) -> Option<TokenStream> {
        graph.param(id, role).map(|t| {
            let path = self.path(t);
            quote!(&w[#path])
        })
    }

    fn optional(&self, graph: &Graph, id: NodeId, role: ParamRole) -> TokenStream {
        match self.get(graph, id, role) {
            Some(t) => quote!(Some(#t)),
            None => quote!(None),
        }
    }
}

/// The generated code of every node: descriptor constants and forward steps.
pub(super) struct Emitted {
    pub consts: TokenStream,
    pub steps: TokenStream,
    /// One `fast::pack(...)` a convolution, in order: the body of the model's `pack`.
    pub packs: Vec<TokenStream>,
    /// `mod packed { ... }`: each convolution's index in `p`.
    pub packed: TokenStream,
}

/// Emits every node, in order.
pub(super) fn emit(graph: &Graph, pairs: &HashMap<NodeId, NodeId>, tensors: &TensorNames, opts: &CodegenOptions) -> Emitted {
    let mut names = Names::default();
    let mut consts = Vec::new();
    let mut steps = Vec::new();
    let mut packs = Vec::new();
    let mut packed = Vec::new();
    let expansions: HashSet<NodeId> = pairs.values().copied().collect();
    // An expansion's (descriptor, packed weight, bias), emitted with its depthwise step.
    let mut pending: HashMap<NodeId, TokenStream> = HashMap::new();
    for id in graph.ids().skip(1) {
        let node = graph.node(id);
        let x = usize_lit(node.inputs[0].index());
        let y = usize_lit(id.index());
        let input = graph.node(node.inputs[0]).shape;
        let shape = {
            let [c, h, w] = [input.c, input.h, input.w].map(usize_lit);
            quote!([#c, #h, #w])
        };
        let mut descriptor = |names: &mut Names, value: TokenStream, ty: TokenStream| {
            let name = names.constant(&node.name);
            let doc = format!(" `{}`: {} {} -> {}", node.name, node.op.kind(), node.op.attrs(), node.shape);
            consts.push(quote! { #[doc = #doc] const #name: #ty = #value; });
            name
        };
        let step = match &node.op {
            Op::Input => unreachable!("invariant: only node 0 is the input"),
            Op::Conv2d(c) => {
                let spec = conv_spec(graph, id);
                let name = descriptor(&mut names, conv_value(&spec, &shape), quote!(ConvSpec));
                let bias = tensors.optional(graph, id, ParamRole::Bias);
                // The weight is packed at load; `p[packed::NAME]` is the packed copy.
                let weight = tensors.path(graph.param(id, ParamRole::Weight).expect("invariant: a conv has a weight"));
                let j = usize_lit(packs.len());
                packed.push(quote! { pub const #name: usize = #j; });
                packs.push(quote!(fast::pack(&std::mem::take(&mut w[#weight]), &Self::#name)));
                let weight = quote!(&p[packed::#name]);
                if expansions.contains(&id) {
                    pending.insert(id, quote!((&Self::#name, #weight, #bias)));
                    let note = comment(opts, format!("{} -> {}: runs in its depthwise convolution's step", node.name, node.shape));
                    steps.push(note);
                    continue;
                }
                if let Some(e) = pairs.get(&id) {
                    let expand = pending.remove(e).expect("invariant: the expansion comes first");
                    let (xe, ye) = (usize_lit(graph.node(*e).inputs[0].index()), usize_lit(e.index()));
                    quote!(ws.expand_depthwise(#xe, #ye, #y, #expand, (&Self::#name, #weight, #bias));)
                } else if c.residual {
                    let r = usize_lit(node.inputs[1].index());
                    quote!(ws.conv_add(#x, #r, #y, &Self::#name, #weight, #bias);)
                } else {
                    quote!(ws.conv(#x, #y, &Self::#name, #weight, #bias);)
                }
            }
            Op::BatchNorm { eps } => {
                let get = |r| tensors.get(graph, id, r).expect("invariant: batch norm has four tensors");
                let (wt, b, m, v) = (get(ParamRole::Weight), get(ParamRole::Bias), get(ParamRole::RunningMean), get(ParamRole::RunningVar));
                let c = usize_lit(input.c);
                quote!(ws.batch_norm(#x, #y, #c, #eps, [#wt, #b, #m, #v]);)
            }
            Op::Act(a) => {
                let act = act_tokens(*a);
                quote!(ws.act(#x, #y, #act);)
            }
            Op::Add => {
                let b = usize_lit(node.inputs[1].index());
                quote!(ws.add(#x, #b, #y);)
            }
            Op::LayerNorm { eps } => {
                let get = |r| tensors.get(graph, id, r).expect("invariant: layer norm has a weight and a bias");
                let (wt, b) = (get(ParamRole::Weight), get(ParamRole::Bias));
                let c = usize_lit(input.c);
                quote!(ws.layer_norm(#x, #y, #c, #eps, #wt, #b);)
            }
            Op::LayerScale => {
                let s = tensors.get(graph, id, ParamRole::Value).expect("invariant: a layer scale has its value");
                quote!(ws.scale_by(#x, #y, #s);)
            }
            Op::ScaleChannels => {
                let s = usize_lit(node.inputs[1].index());
                let c = usize_lit(input.c);
                quote!(ws.scale_channels(#x, #s, #y, #c);)
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let name = descriptor(&mut names, pool_value(p, matches!(node.op, Op::AvgPool(_)), &shape), quote!(PoolSpec));
                match node.op {
                    Op::MaxPool(_) => quote!(ws.max_pool(#x, #y, &Self::#name);),
                    _ => quote!(ws.avg_pool(#x, #y, &Self::#name);),
                }
            }
            Op::GlobalAvgPool => {
                let c = usize_lit(input.c);
                quote!(ws.global_avg_pool(#x, #y, #c);)
            }
            Op::Flatten => quote!(ws.flatten(#x, #y, #shape);),
            Op::Linear { .. } => {
                let weight = tensors.get(graph, id, ParamRole::Weight).expect("invariant: linear has a weight");
                let bias = tensors.optional(graph, id, ParamRole::Bias);
                quote!(ws.linear(#x, #y, #weight, #bias);)
            }
            Op::PadChannels { before, after, stride } => {
                let [b, a, s] = [*before, *after, *stride].map(usize_lit);
                quote!(ws.pad_channels(#x, #y, #shape, #b, #a, #s);)
            }
            Op::Shortcut(_) => unreachable!("invariant: the shortcut pass expands every shortcut before codegen"),
            Op::Softmax => {
                let c = usize_lit(input.c);
                quote!(ws.softmax(#x, #y, #c);)
            }
        };
        let note = comment(opts, format!("{} -> {}", node.name, node.shape));
        steps.push(quote! { #note #step });
    }
    let packed = quote! {
        /// Where each convolution's packed weights are in the model's `p`.
        mod packed { #(#packed)* }
    };
    Emitted { consts: quote!(#(#consts)*), steps: quote!(#(#steps)*), packs, packed }
}

/// `Activation::Relu`: the variant's name is its `Debug` form.
fn act_tokens(a: Activation) -> TokenStream {
    let variant = format_ident!("{a:?}");
    quote!(Activation::#variant)
}

/// `ConvSpec::new(input, out, k)` and a builder call for each attribute off its default.
fn conv_value(spec: &ConvSpec, shape: &TokenStream) -> TokenStream {
    let [o, k] = [spec.out_channels, spec.kernel].map(usize_lit);
    let mut value = quote!(ConvSpec::new(#shape, #o, #k));
    let p = spec.params;
    for (name, v, default) in [("stride", p.stride, 1), ("padding", p.padding, 0), ("dilation", p.dilation, 1), ("groups", p.groups, 1)] {
        if v != default {
            let (name, v) = (format_ident!("{name}"), usize_lit(v));
            value = quote!(#value.#name(#v));
        }
    }
    if let Some(a) = spec.act {
        let a = act_tokens(a);
        value = quote!(#value.then(#a));
    }
    if let ConvAlgo::Winograd(m) = spec.algo {
        let m = Literal::u8_unsuffixed(m);
        value = quote!(#value.winograd(#m));
    }
    value
}

/// `PoolSpec::new(input, k)` and a builder call for each attribute off its default.
fn pool_value(p: &Pool, average: bool, shape: &TokenStream) -> TokenStream {
    let k = usize_lit(p.kernel);
    let mut value = quote!(PoolSpec::new(#shape, #k));
    if p.stride != p.kernel {
        let s = usize_lit(p.stride);
        value = quote!(#value.stride(#s));
    }
    if p.padding != 0 {
        let pad = usize_lit(p.padding);
        value = quote!(#value.padding(#pad));
    }
    if p.ceil_mode {
        value = quote!(#value.ceil_mode());
    }
    if average && !p.count_include_pad {
        value = quote!(#value.exclude_padding());
    }
    value
}

/// The rows of the generated `FOLDS` table, one `Fold { .. }` a transform; `model::fold_all`
/// appends the results in the order of the derived tensors' ids.
pub(super) fn emit_folds(graph: &Graph, tensors: &TensorNames) -> (usize, TokenStream) {
    let rows: Vec<TokenStream> = graph
        .transforms
        .iter()
        .map(|t| match *t {
            Transform::FoldBn { weight, bias, bn, eps, side, .. } => {
                let out_channels = usize_lit(graph.tensor(weight).shape[0]);
                let wt = tensors.path(weight);
                let bias = match bias {
                    Some(b) => {
                        let b = tensors.path(b);
                        quote!(Some(#b))
                    }
                    None => quote!(None),
                };
                let [g, be, m, v] = bn.map(|k| tensors.path(k));
                let side = match side {
                    FoldSide::After => quote!(FoldSide::After),
                    FoldSide::Before { groups } => {
                        let groups = usize_lit(groups);
                        quote!(FoldSide::Before { groups: #groups })
                    }
                };
                quote!(Fold { weight: #wt, bias: #bias, bn: [#g, #be, #m, #v], eps: #eps, out_channels: #out_channels, side: #side })
            }
        })
        .collect();
    (rows.len(), quote!(#(#rows),*))
}
