//! `resnet!`: compiles a `.resnet` spec into a model type, at build time.
//!
//! ```ignore
//! resnetc::resnet!(Resnet18 = "specs/resnet18.resnet");            // path from CARGO_MANIFEST_DIR
//! resnetc::resnet!(Pets = "specs/resnet50.resnet", set(classes = 37), input_shape = [3, 160, 200]);
//! resnetc::resnet! {                                                // inline
//!     network tiny(classes = 3) { input [3, 16, 16]  conv1: conv(8, k = 3) ... }
//! }
//! ```
//!
//! A thin shell over `resnetc_compiler::compile` and `codegen::generate`: a spec error
//! becomes a `compile_error!` carrying the rendered diagnostic (file:line:col and caret).
//! The macro emits `include_str!` of every spec file so that Cargo rebuilds when one changes.

use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use resnetc_compiler::codegen::{self, CodegenOptions};
use resnetc_compiler::{compile_with_sources, Options, Source, Suggestion};
use syn::parse::{Parse, ParseStream};
use syn::{bracketed, parenthesized, Ident, LitInt, LitStr, Token};

#[proc_macro]
pub fn resnet(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = TokenStream::from(input);
    let inline = matches!(input.clone().into_iter().next(), Some(TokenTree::Ident(i)) if i == "network" || i == "block" || i == "use");
    let result =
        if inline { expand_inline(input) } else { syn::parse2::<PathForm>(input).map_err(|e| e.to_string()).and_then(expand_path) };
    match result {
        Ok(tokens) => tokens.into(),
        Err(msg) => quote!(compile_error!(#msg);).into(),
    }
}

/// `Name = "path" [, set(k = v, ...)] [, input_shape = [c, h, w]]`.
struct PathForm {
    name: Ident,
    path: LitStr,
    options: Options,
}

impl Parse for PathForm {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let path: LitStr = input.parse()?;
        let mut options = Options::default();
        while input.parse::<Option<Token![,]>>()?.is_some() && !input.is_empty() {
            let key: Ident = input.parse()?;
            if key == "set" {
                let content;
                parenthesized!(content in input);
                while !content.is_empty() {
                    let k: Ident = content.parse()?;
                    content.parse::<Token![=]>()?;
                    let v: syn::Lit = content.parse()?;
                    let v = match v {
                        syn::Lit::Int(i) => i.base10_digits().to_string(),
                        syn::Lit::Float(f) => f.base10_digits().to_string(),
                        syn::Lit::Bool(b) => b.value.to_string(),
                        other => return Err(syn::Error::new(other.span(), "expected a number or a boolean")),
                    };
                    options.sets.push((k.to_string(), v));
                    if content.parse::<Option<Token![,]>>()?.is_none() {
                        break;
                    }
                }
            } else if key == "input_shape" {
                input.parse::<Token![=]>()?;
                let content;
                bracketed!(content in input);
                let dims = content.parse_terminated(LitInt::parse, Token![,])?;
                let dims: Vec<usize> = dims.iter().map(|d| d.base10_parse()).collect::<syn::Result<_>>()?;
                let [c, h, w] = dims[..] else { return Err(syn::Error::new(key.span(), "input_shape takes [C, H, W]")) };
                options.input_shape = Some([c, h, w]);
            } else {
                return Err(syn::Error::new(key.span(), "expected `set(name = value, ...)` or `input_shape = [C, H, W]`"));
            }
        }
        Ok(PathForm { name, path, options })
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()))
}

fn expand_path(form: PathForm) -> Result<TokenStream, String> {
    let rel = form.path.value();
    let base = manifest_dir();
    let full = base.join(&rel);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| format!("cannot read spec `{rel}` (relative to the crate's CARGO_MANIFEST_DIR): {e}"))?;
    let dir = full.parent().map(Path::to_path_buf);
    let source = Source { name: rel.clone(), text, dir, path: full.canonicalize().ok() };
    let (compiled, sources) = compile_with_sources(&source, &form.options).map_err(|e| e.with_hints(hint).render())?;
    // Every file the spec read, so that editing any of them rebuilds the crate.
    let includes = sources.files().map(|f| base.join(&f.name).display().to_string()).map(|p| {
        quote!(
            const _: &str = include_str!(#p);
        )
    });
    let model = generate(&compiled, &form.name.to_string(), &rel);
    Ok(quote!(#(#includes)* #model))
}

fn expand_inline(input: TokenStream) -> Result<TokenStream, String> {
    let first = input.clone().into_iter().next().map_or_else(Span::call_site, |t| t.span());
    let file = first.file();
    let text = reconstruct(input);
    let source = Source { name: file.clone(), text, dir: Some(manifest_dir()), path: None };
    let (compiled, _) = compile_with_sources(&source, &Options::default()).map_err(|e| e.with_hints(inline_hint).render())?;
    let name = codegen::type_name(&compiled.graph.name);
    Ok(generate(&compiled, &name, &format!("an inline spec in {file}")))
}

/// A diagnostic's suggestion in the macro's terms.
/// A diagnostic's suggestion in the terms of `resnet!(Name = "path", ...)`.
fn hint(s: &Suggestion) -> String {
    match s {
        Suggestion::SetParameter { name } => format!("in `resnet!`: set({name} = VALUE)"),
        Suggestion::InputShape => "in `resnet!`: input_shape = [C, H, W]".into(),
    }
}

/// A diagnostic's suggestion for an inline spec, which takes no options.
fn inline_hint(s: &Suggestion) -> String {
    match s {
        Suggestion::SetParameter { name } => format!("an inline `resnet!` sets nothing from outside: give `{name}` a default"),
        Suggestion::InputShape => "an inline `resnet!` sets nothing from outside: change `input` in the spec".into(),
    }
}

fn generate(compiled: &resnetc_compiler::Compiled, type_name: &str, spec_name: &str) -> TokenStream {
    let opts = CodegenOptions {
        type_name: format_ident!("{}", type_name).to_string(),
        spec_name: spec_name.to_string(),
        runtime: quote!(::resnetc::runtime),
        comments: false,
    };
    codegen::generate(compiled, &opts)
}

/// The spec's text, rebuilt from the tokens at their lines and columns (the language ends
/// statements at newlines, which tokens do not carry). Line numbers match the Rust file.
fn reconstruct(tokens: TokenStream) -> String {
    let mut out = String::new();
    let (mut line, mut col) = (1usize, 0usize);
    fn place(out: &mut String, line: &mut usize, col: &mut usize, at: proc_macro2::LineColumn) {
        while *line < at.line {
            out.push('\n');
            *line += 1;
            *col = 0;
        }
        while *col < at.column {
            out.push(' ');
            *col += 1;
        }
    }
    fn walk(out: &mut String, line: &mut usize, col: &mut usize, tokens: TokenStream) {
        for t in tokens {
            match t {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    place(out, line, col, g.span_open().start());
                    out.push_str(open);
                    *col += open.len();
                    walk(out, line, col, g.stream());
                    place(out, line, col, g.span_close().start());
                    out.push_str(close);
                    *col += close.len();
                }
                other => {
                    place(out, line, col, other.span().start());
                    let s = other.to_string();
                    *col += s.chars().count();
                    out.push_str(&s);
                }
            }
        }
    }
    walk(&mut out, &mut line, &mut col, tokens);
    out.push('\n');
    out
}
