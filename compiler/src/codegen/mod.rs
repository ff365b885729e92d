//! Code generation: a graph becomes Rust source for a model type.
//!
//! The generated model holds its weights in a table (`WEIGHTS`: key and shape, in load
//! order, each tensor's index a named constant in `mod tensors`) and runs one kernel call
//! per IR node, specialised on the node's static shapes (descriptor constants written as
//! builder calls), over buffers of a [`Workspace`](resnetc_runtime::Workspace) laid out by
//! the compilation's memory plan. Codegen only reads the [`Compiled`] graph and its
//! analyses; it does not optimise. The step of each op is in `ops.rs`.

mod ops;
pub mod package;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use crate::ir::Graph;
use crate::report::group;
use crate::Compiled;

/// How to generate.
#[derive(Debug, Clone)]
pub struct CodegenOptions {
    /// The model type's name, e.g. `Resnet18`.
    pub type_name: String,
    /// The spec's name as shown in the header (a path or `<inline>`).
    pub spec_name: String,
    /// The path to the runtime crate in the generated code (`resnetc_runtime`, or
    /// `::resnetc::runtime` from the macro).
    pub runtime: TokenStream,
    /// Emit `// layer` comments before each step (only for source text, not macro tokens).
    pub comments: bool,
}

impl CodegenOptions {
    /// Options for a standalone crate that depends on `resnetc_runtime`.
    pub fn for_crate(graph: &Graph, spec_name: &str) -> CodegenOptions {
        CodegenOptions {
            type_name: type_name(&graph.name),
            spec_name: spec_name.to_string(),
            runtime: quote!(resnetc_runtime),
            comments: true,
        }
    }
}

/// `resnet18` -> `Resnet18`, `cifar_resnet20` -> `CifarResnet20`; a name the generated
/// code cannot take (`self`, `conv_spec`) gets `Model` appended.
pub fn type_name(network: &str) -> String {
    let name = network
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<String>()
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .to_string();
    if check_type_name(&name).is_ok() {
        name
    } else {
        format!("{name}Model")
    }
}

/// Names the generated module uses besides the model type (its imports and the prelude's
/// types): a model type may not take them.
const RESERVED_TYPE_NAMES: &[&str] = &[
    "Activation",
    "ConvSpec",
    "PoolSpec",
    "Fold",
    "FoldSide",
    "Self",
    "Result",
    "Option",
    "Vec",
    "Box",
    "String",
    "Some",
    "None",
    "Ok",
    "Err",
];

/// Checks a model type name: a Rust identifier that is not a keyword, starting with a
/// letter, and not a name the generated code already uses.
pub fn check_type_name(name: &str) -> Result<(), String> {
    let ident = syn::parse_str::<syn::Ident>(name).is_ok() && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !ident {
        return Err(format!(
            "`{name}` is not a valid type name: use a Rust identifier (letters, digits, `_`, starting with a letter; not a keyword)"
        ));
    }
    if RESERVED_TYPE_NAMES.contains(&name) {
        return Err(format!("`{name}` is not a valid type name here: the generated code uses it for something else"));
    }
    Ok(())
}

/// A marker macro whose calls become `// ...` comments in formatted source.
const COMMENT_MARKER: &str = "__resnetc_comment";

pub(crate) fn comment(opts: &CodegenOptions, text: String) -> TokenStream {
    if !opts.comments {
        return TokenStream::new();
    }
    let marker = Ident::new(COMMENT_MARKER, Span::call_site());
    quote!(#marker!(#text);)
}

pub(crate) fn usize_lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

/// The model's tokens.
pub fn generate(compiled: &Compiled, opts: &CodegenOptions) -> TokenStream {
    let graph = &compiled.graph;
    let rt = &opts.runtime;
    let ty = format_ident!("{}", opts.type_name);
    let input = graph.input_shape();
    let [ic, ih, iw] = [input.c, input.h, input.w].map(usize_lit);
    let out = graph.output_shape().len();
    let out_lit = usize_lit(out);
    let slots: Vec<_> = graph.params().collect();
    let table = slots.iter().map(|p| {
        let key = &p.key;
        let dims = p.shape.iter().map(|&d| usize_lit(d));
        quote!((#key, &[#(#dims),*]))
    });
    let n_values = usize_lit(graph.nodes.len());
    let plan = &compiled.memory;
    let lens = plan.lens.iter().map(|&l| usize_lit(l));
    let layers = graph.nodes.iter().map(|n| {
        let (name, what) = (&n.name, format!("{} {}", n.op.kind(), n.op.attrs()));
        let what = what.trim_end();
        quote!((#name, #what))
    });
    let offsets = plan.offsets.iter().map(|&o| usize_lit(o));
    let arena = usize_lit(plan.arena);
    let tensors = ops::TensorNames::new(graph);
    let (n_folds, folds) = ops::emit_folds(graph, &tensors);
    let n_folds = usize_lit(n_folds);
    let module = format_ident!("{}_model", opts.type_name.to_lowercase());
    let scratch = usize_lit(ops::scratch_len(graph));
    let ops::Emitted { consts, steps, packs, packed } = ops::emit(graph, &plan.pairs, &tensors, opts);
    let tensor_module = &tensors.module;
    let output_id = usize_lit(graph.output.index());
    let output_shape = {
        let o = graph.output_shape();
        let [c, h, w] = [o.c, o.h, o.w].map(usize_lit);
        quote!([#c, #h, #w])
    };
    let doc_head = format!(" `{}`: generated by resnetc {} from `{}`.", graph.name, env!("CARGO_PKG_VERSION"), opts.spec_name);
    let doc_shape = format!(
        " Input [N, {}, {}, {}] f32, output [N, {out}]; {} nodes, {} parameters, {:.3} GMACs a sample.",
        input.c,
        input.h,
        input.w,
        graph.nodes.len(),
        group(graph.param_count() as u64),
        graph.macs() as f64 / 1e9
    );
    quote! {
        pub use #module::#ty;

        #[doc = #doc_head]
        #[allow(unused_imports)]
        mod #module {
        use #rt::kernels::Activation;
        use #rt::{ConvSpec, PoolSpec};
        use #rt::model::{Fold, FoldSide};
        use #rt::fast;

        #tensor_module
        #packed

        #[doc = #doc_head]
        #[doc = ""]
        #[doc = #doc_shape]
        #[doc = " Regenerate it from the spec rather than editing it."]
        #[derive(Debug, Clone)]
        pub struct #ty {
            /// The weights, in the order of [`Self::WEIGHTS`], then the derived ones
            /// (convolution weights are moved into `p`).
            w: Vec<Vec<f32>>,
            /// Convolution weights packed for the GEMM, one a convolution in order.
            p: Vec<#rt::fast::PackedConv>,
        }

        impl #ty {
            /// The input shape [C, H, W]; the batch N is free.
            pub const INPUT_SHAPE: [usize; 3] = [#ic, #ih, #iw];
            /// Features of each output row.
            pub const OUTPUT_FEATURES: usize = #out_lit;
            /// Every weight the model reads: `state_dict` key and shape, in load order.
            pub const WEIGHTS: &'static [(&'static str, &'static [usize])] = &[#(#table),*];
            /// Floats per sample of every value of the graph, by node.
            const VALUE_LENS: [usize; #n_values] = [#(#lens),*];
            /// Every node's layer name and op, by node (for profiles).
            pub const LAYERS: [(&'static str, &'static str); #n_values] = [#(#layers),*];
            /// Where each value lives in the arena (floats per sample), from the memory plan.
            const VALUE_OFFSETS: [usize; #n_values] = [#(#offsets),*];
            /// The arena's floats per sample.
            const ARENA: usize = #arena;
            /// Batch norms folded into convolutions at load.
            const FOLDS: [Fold; #n_folds] = [#folds];
            /// Floats of scratch the convolutions share.
            const SCRATCH: usize = #scratch;

            #consts

            /// Loads and validates the weights of a safetensors file (a PyTorch `state_dict`).
            pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, #rt::ModelError> {
                Self::from_file(&#rt::WeightFile::open(path.as_ref())?, &#rt::LoadOptions::default())
            }

            /// Loads a safetensors file with options (e.g. `LoadOptions::with_key_prefix("module.", "")`
            /// for a checkpoint saved from `nn.DataParallel`).
            pub fn load_with(path: impl AsRef<std::path::Path>, options: &#rt::LoadOptions) -> Result<Self, #rt::ModelError> {
                Self::from_file(&#rt::WeightFile::open(path.as_ref())?, options)
            }

            /// Loads and validates the weights of a safetensors file held in memory.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, #rt::ModelError> {
                Self::from_file(&#rt::WeightFile::from_bytes(bytes.to_vec())?, &#rt::LoadOptions::default())
            }

            /// Loads from an opened weight file with explicit options.
            pub fn from_file(file: &#rt::WeightFile, options: &#rt::LoadOptions) -> Result<Self, #rt::ModelError> {
                let w = #rt::model::load_table(file, Self::WEIGHTS, options)?;
                Ok(Self::prepare(w))
            }

            /// Seeded random weights, for trying the model without a trained one.
            pub fn random(seed: u64) -> Self {
                Self::prepare(#rt::model::random_table(Self::WEIGHTS, seed))
            }

            /// The load-time work, done once: derived weights, then packed convolutions.
            fn prepare(mut w: Vec<Vec<f32>>) -> Self {
                Self::derive(&mut w);
                let p = Self::pack(&mut w);
                Self { w, p }
            }

            /// Packs every convolution's weight into the layout of its algorithm's kernel.
            fn pack(w: &mut [Vec<f32>]) -> Vec<#rt::fast::PackedConv> {
                Vec::from([#(#packs),*])
            }

            /// The load-time weight transforms (batch norms folded into convolutions),
            /// applied once: appends the derived tensors after the file's.
            fn derive(w: &mut Vec<Vec<f32>>) {
                #rt::model::fold_all(w, &Self::FOLDS);
            }

            /// Runs the model on `input` [N, C, H, W]; returns [N, OUTPUT_FEATURES].
            pub fn forward(&self, input: #rt::ndarray::ArrayView4<f32>) -> Result<#rt::ndarray::Array2<f32>, #rt::ModelError> {
                let mut ws = #rt::Workspace::new();
                Ok(self.forward_into(input, &mut ws)?.to_owned())
            }

            /// Runs the model with a caller-held workspace: after the first call for a batch
            /// size, nothing is allocated.
            pub fn forward_into<'w>(
                &self,
                input: #rt::ndarray::ArrayView4<f32>,
                ws: &'w mut #rt::Workspace,
            ) -> Result<#rt::ndarray::ArrayView2<'w, f32>, #rt::ModelError> {
                ws.begin(input, Self::INPUT_SHAPE, &Self::VALUE_OFFSETS, &Self::VALUE_LENS, Self::ARENA, Self::SCRATCH)?;
                let (w, p) = (&self.w, &self.p);
                // Once for the batch, or once a sample (see `BatchOrder`).
                for pass in 0..ws.passes() {
                    ws.pass(pass);
                    #steps
                    ws.end_pass(#output_id, #output_shape);
                }
                Ok(ws.output(#output_id, #output_shape))
            }
        }
        }
    }
}

/// Formats tokens as source text, turning comment markers into `//` comments.
pub fn to_source(tokens: &TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens.clone()).expect("invariant: generated tokens parse as a file");
    let text = prettyplease::unparse(&file);
    let marker = format!("{COMMENT_MARKER}!(");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // prettyplease may wrap a long marker call over several lines: take everything up to
    // its closing `);` and keep the string literal's text.
    while let Some(at) = rest.find(&marker) {
        let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
        let indent = &rest[line_start..at];
        out.push_str(&rest[..line_start]);
        let after = &rest[at + marker.len()..];
        let end = after.find(");").expect("invariant: a marker call is closed");
        let literal = after[..end].trim().trim_end_matches(',').trim();
        let body = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or(literal);
        out.push_str(&format!("{indent}// {}", body.replace("\\\"", "\"")));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The model as a source file, with a header.
pub fn model_source(compiled: &Compiled, opts: &CodegenOptions) -> String {
    let header = format!(
        "// Generated by resnetc {} from `{}` (network `{}`). Do not edit: regenerate it.\n\n",
        env!("CARGO_PKG_VERSION"),
        opts.spec_name,
        compiled.graph.name
    );
    header + &to_source(&generate(compiled, opts))
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(super::type_name("resnet18"), "Resnet18");
        assert_eq!(super::type_name("cifar_resnet20"), "CifarResnet20");
        assert_eq!(super::type_name("resnext50_32x4d"), "Resnext5032x4d");
        assert_eq!(super::type_name("self"), "SelfModel");
        assert_eq!(super::type_name("conv_spec"), "ConvSpecModel");
        assert_eq!(super::type_name("1"), "Model");
    }
}
