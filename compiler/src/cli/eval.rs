//! `resnetc eval`: the reference interpreter on safetensors input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::SpecArgs;

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The weights: a safetensors state_dict saved from PyTorch.
    #[arg(long)]
    weights: PathBuf,
    /// A safetensors file holding tensor `input` [N, C, H, W] (f32).
    #[arg(long)]
    input: PathBuf,
    /// Where to write tensor `output`.
    #[arg(long)]
    output: PathBuf,
}

pub(crate) fn run(_a: &EvalArgs) -> Result<(), ExitCode> {
    eprintln!("error: eval is not built yet");
    Err(ExitCode::from(1))
}
