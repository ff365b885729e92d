//! `resnetc eval`: the reference interpreter on safetensors input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use resnetc_compiler::interp;
use resnetc_runtime::{io, LoadOptions, WeightFile};

use super::SpecArgs;

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The weights: a safetensors state_dict saved from PyTorch
    /// (`safetensors.torch.save_file(model.state_dict(), path)`).
    #[arg(long)]
    weights: PathBuf,
    /// A safetensors file holding tensor `input` [N, C, H, W] (f32, f16 or bf16).
    #[arg(long)]
    input: PathBuf,
    /// Where to write tensor `output` [N, classes] (f32).
    #[arg(long)]
    output: PathBuf,
    /// Accept weight files with extra tensors the model does not use.
    #[arg(long)]
    allow_unexpected: bool,
    /// Read weight keys that start with OLD as starting with NEW: `module.=` strips
    /// DataParallel's prefix, `model.=` Lightning's.
    #[arg(long, value_name = "OLD=NEW", value_parser = LoadOptions::parse_key_prefix)]
    key_prefix: Option<(String, String)>,
}

pub(crate) fn run(a: &EvalArgs) -> Result<(), ExitCode> {
    let compiled = a.spec.compile()?;
    let graph = &compiled.graph;
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(1)
    };
    let inputs = compiled
        .files
        .iter()
        .map(|p| ("a spec file", p.as_path()))
        .chain([("--weights", a.weights.as_path()), ("--input", a.input.as_path())]);
    for (what, input) in inputs {
        if io::same_file(&a.output, input) {
            return Err(fail(format!("--output {} is {what}; refusing to overwrite an input of this command", a.output.display())));
        }
    }
    let expected = interp::expected_weights(graph);
    let weights = WeightFile::open(&a.weights)
        .and_then(|f| f.load(&expected, &LoadOptions { allow_unexpected: a.allow_unexpected, key_prefix: a.key_prefix.clone() }))
        .map_err(|e| fail(format!("{}: {e}", a.weights.display())))?;
    let input = io::read_nchw(&a.input, "input").map_err(|e| fail(format!("{}: {e}", a.input.display())))?;
    let start = Instant::now();
    let out = interp::forward(graph, &weights, input.view()).map_err(|e| fail(format!("{}: {e}", a.input.display())))?;
    let elapsed = start.elapsed();
    io::write(&a.output, &[("output", &out.clone().into_dyn())]).map_err(|e| fail(e.to_string()))?;
    eprintln!(
        "wrote output {:?} to {} ({:.1} ms in the reference interpreter)",
        out.dim(),
        a.output.display(),
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
