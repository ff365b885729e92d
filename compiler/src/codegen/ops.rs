//! One `emit_*` function a op: the step of one node, on its static shapes.
//!
//! Convolutions and pools get a named descriptor constant (`LAYER1_0_CONV1`) holding their
//! static shapes; every node becomes one `ws.<op>(...)` line.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use super::{comment, usize_lit, CodegenOptions};
use crate::ir::{Act, Graph, NodeId, Op, ParamRole, Pool, Transform};
use resnetc_runtime::fast::winograd;

/// The runtime's descriptor of conv node `id` (without its activation), with the
/// algorithm the compiler chooses for it.
fn conv_spec(graph: &Graph, id: NodeId) -> resnetc_runtime::ConvSpec {
    let n = graph.node(id);
    let Op::Conv2d(c) = &n.op else { unreachable!("invariant: called on conv nodes") };
    let x = graph.node(n.inputs[0]).shape;
    let spec = resnetc_runtime::ConvSpec::new([x.c, x.h, x.w], c.out_channels, c.kernel, c.stride, c.padding, c.dilation, c.groups);
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

/// Where each tensor lives in the model's `w`: the file's tensors (`WEIGHTS` order), then
/// the derived ones in transform order.
fn tensor_indices(graph: &Graph) -> HashMap<String, usize> {
    graph.params().map(|p| p.key.clone()).chain(graph.derived().into_iter().map(|p| p.key)).enumerate().map(|(i, k)| (k, i)).collect()
}

/// Index of each node's parameter slots in the model's `w`.
struct ParamIndex(Vec<Vec<(ParamRole, usize)>>);

impl ParamIndex {
    fn new(graph: &Graph) -> ParamIndex {
        let index = tensor_indices(graph);
        ParamIndex(
            graph
                .nodes
                .iter()
                .map(|n| {
                    n.params
                        .iter()
                        .map(|p| (p.role, *index.get(&p.key).expect("invariant: every tensor a node reads is declared")))
                        .collect()
                })
                .collect(),
        )
    }

    /// `&w[i]` for a node's slot, if it has one.
    fn get(&self, id: NodeId, role: ParamRole) -> Option<TokenStream> {
        self.0[id.index()].iter().find(|(r, _)| *r == role).map(|(_, i)| {
            let i = usize_lit(*i);
            quote!(&w[#i])
        })
    }

    /// The index of a node's slot in `w`.
    fn index(&self, id: NodeId, role: ParamRole) -> Option<usize> {
        self.0[id.index()].iter().find(|(r, _)| *r == role).map(|(_, i)| *i)
    }

    fn weight(&self, id: NodeId) -> TokenStream {
        self.get(id, ParamRole::Weight).expect("invariant: the op has a weight slot")
    }

    fn optional(&self, id: NodeId, role: ParamRole) -> TokenStream {
        match self.get(id, role) {
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
}

/// Emits every node, in order.
pub(super) fn emit(graph: &Graph, opts: &CodegenOptions) -> Emitted {
    let params = ParamIndex::new(graph);
    let mut names = HashSet::new();
    let mut consts = Vec::new();
    let mut steps = Vec::new();
    let mut packs = Vec::new();
    for id in graph.ids().skip(1) {
        let node = graph.node(id);
        let x = usize_lit(node.inputs[0].index());
        let y = usize_lit(id.index());
        let input = graph.node(node.inputs[0]).shape;
        let shape = {
            let [c, h, w] = [input.c, input.h, input.w].map(usize_lit);
            quote!([#c, #h, #w])
        };
        let mut descriptor = |value: TokenStream, ty: TokenStream| {
            let name = const_name(&node.name, id, &mut names);
            let doc = format!(" `{}`: {} {} -> {}", node.name, node.op.kind(), node.op.attrs(), node.shape);
            consts.push(quote! { #[doc = #doc] const #name: #ty = #value; });
            name
        };
        let step = match &node.op {
            Op::Input => unreachable!("invariant: only node 0 is the input"),
            Op::Conv2d(c) => {
                let [o, k, s, p, d, g] = [c.out_channels, c.kernel, c.stride, c.padding, c.dilation, c.groups].map(usize_lit);
                let then = c.act.map(|a| {
                    let a = act_variant(a);
                    quote!(.then(Activation::#a))
                });
                // The algorithm, from the static shapes: Winograd where it gains.
                let algo = match conv_spec(graph, id).algo {
                    resnetc_runtime::steps::ConvAlgo::Winograd(m) => {
                        let m = proc_macro2::Literal::u8_unsuffixed(m);
                        Some(quote!(.winograd(#m)))
                    }
                    resnetc_runtime::steps::ConvAlgo::Direct => None,
                };
                let name = descriptor(quote!(ConvSpec::new(#shape, #o, #k, #s, #p, #d, #g) #then #algo), quote!(ConvSpec));
                let bias = params.optional(id, ParamRole::Bias);
                // The weight is packed at load for the fast GEMM; `p[j]` is the packed copy.
                let j = usize_lit(packs.len());
                let w_index = usize_lit(params.index(id, ParamRole::Weight).expect("invariant: a conv has a weight"));
                packs.push(quote!(fast::pack(&std::mem::take(&mut w[#w_index]), &Self::#name)));
                let weight = quote!(&p[#j]);
                if c.residual {
                    let r = usize_lit(node.inputs[1].index());
                    quote!(ws.conv_add(#x, #r, #y, &Self::#name, #weight, #bias);)
                } else {
                    quote!(ws.conv(#x, #y, &Self::#name, #weight, #bias);)
                }
            }
            Op::BatchNorm { eps } => emit_batch_norm(&params, id, &x, &y, input.c, *eps),
            Op::Act(a) => emit_act(*a, &x, &y),
            Op::Add => {
                let b = usize_lit(node.inputs[1].index());
                quote!(ws.add(#x, #b, #y);)
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let name = descriptor(pool_value(p, &shape), quote!(PoolSpec));
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
            Op::Linear { .. } => emit_linear(&params, id, &x, &y),
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
    Emitted { consts: quote!(#(#consts)*), steps: quote!(#(#steps)*), packs }
}

/// `layer1.0.conv1` -> `LAYER1_0_CONV1`, made unique.
fn const_name(layer: &str, id: NodeId, used: &mut HashSet<String>) -> Ident {
    let mut s: String = layer.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("L_{s}");
    }
    if !used.insert(s.clone()) {
        s = format!("{s}_{}", id.0);
        used.insert(s.clone());
    }
    Ident::new(&s, Span::call_site())
}

fn emit_batch_norm(
    params: &ParamIndex,
    id: NodeId,
    x: &proc_macro2::Literal,
    y: &proc_macro2::Literal,
    channels: usize,
    eps: f32,
) -> TokenStream {
    let get = |r| params.get(id, r).expect("invariant: batch norm has four slots");
    let (wt, b, m, v) = (get(ParamRole::Weight), get(ParamRole::Bias), get(ParamRole::RunningMean), get(ParamRole::RunningVar));
    let c = usize_lit(channels);
    quote!(ws.batch_norm(#x, #y, #c, #eps, [#wt, #b, #m, #v]);)
}

fn act_variant(a: Act) -> TokenStream {
    match a {
        Act::Relu => quote!(Relu),
        Act::Relu6 => quote!(Relu6),
        Act::Silu => quote!(Silu),
        Act::Gelu => quote!(Gelu),
        Act::Sigmoid => quote!(Sigmoid),
    }
}

fn emit_act(a: Act, x: &proc_macro2::Literal, y: &proc_macro2::Literal) -> TokenStream {
    let act = act_variant(a);
    quote!(ws.act(#x, #y, Activation::#act);)
}

/// The rows of the generated `FOLDS` table: (weight, bias, [gamma, beta, mean, var], eps)
/// as indices into `w`; `model::fold_all` appends the results in the order
/// [`tensor_indices`] expects.
pub(super) fn emit_folds(graph: &Graph) -> (usize, TokenStream) {
    let index = tensor_indices(graph);
    let at = |k: &str| usize_lit(*index.get(k).expect("invariant: a transform reads declared tensors"));
    let rows: Vec<TokenStream> = graph
        .transforms
        .iter()
        .map(|t| match t {
            Transform::FoldBn { weight, bias, bn, eps, input_groups, .. } => {
                let oc = usize_lit(crate::ir::transform::shape_of(graph, weight)[0]);
                let groups = usize_lit(*input_groups);
                let wt = at(weight);
                let b = match bias {
                    Some(b) => {
                        let b = at(b);
                        quote!(Some(#b))
                    }
                    None => quote!(None),
                };
                let [g, be, m, v] = [&bn[0], &bn[1], &bn[2], &bn[3]].map(|k| at(k));
                quote!((#wt, #b, [#g, #be, #m, #v], #eps, #oc, #groups))
            }
        })
        .collect();
    (rows.len(), quote!(#(#rows),*))
}

fn pool_value(p: &Pool, shape: &TokenStream) -> TokenStream {
    let [k, s, pad] = [p.kernel, p.stride, p.padding].map(usize_lit);
    let (ceil, cip) = (p.ceil_mode, p.count_include_pad);
    quote!(PoolSpec::new(#shape, #k, #s, #pad, #ceil, #cip))
}

fn emit_linear(params: &ParamIndex, id: NodeId, x: &proc_macro2::Literal, y: &proc_macro2::Literal) -> TokenStream {
    let weight = params.weight(id);
    let bias = params.optional(id, ParamRole::Bias);
    quote!(ws.linear(#x, #y, #weight, #bias);)
}
