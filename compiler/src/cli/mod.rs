//! `resnetc` subcommands. Each parses its flags with clap, calls the library, and prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use resnetc_compiler::{compile_file, report, CompileError, Compiled, Options, Suggestion};

mod build;
mod eval;

/// resnetc: a compiler for residual convolutional networks.
///
/// Write a ResNet-family architecture in the small .resnet language; check it, see its
/// layers, shapes, parameters and cost, list the weights it expects, and run it on weights
/// trained in PyTorch (a safetensors state_dict, names unchanged), through the reference
/// interpreter (`eval`) or as generated Rust (`emit`, `build`, `run`).
#[derive(Parser)]
#[command(name = "resnetc", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a spec: exit 0 when it is valid, else print every error (file:line:col, the
    /// line, a caret under the problem and a hint) and exit 1.
    Check(SpecArgs),
    /// One row a layer: dotted name, op, output shape, parameters and multiply-accumulates,
    /// with totals.
    Summary(SummaryArgs),
    /// Every weight name (PyTorch state_dict key) the model expects, with its shape.
    Params(SpecArgs),
    /// Print the graph IR after lowering, as text (one node a line) or Graphviz dot.
    Graph(GraphArgs),
    /// Run the model with the reference interpreter: read tensor `input` [N, C, H, W] from a
    /// safetensors file, write tensor `output` [N, classes].
    Eval(eval::EvalArgs),
    /// Print the generated Rust code of the model.
    Emit(build::EmitArgs),
    /// Write a standalone crate: the model (library) and an `infer` binary, with the runtime
    /// vendored so that it builds wherever it is moved.
    Build(build::BuildArgs),
    /// Build the model's crate (cached by content) and run it: with no weights it uses seeded
    /// random weights, with no input a seeded random input; prints the output's shape, the
    /// best classes and the time taken.
    Run(build::RunArgs),
    /// Measure this machine's peak FP32 FMA throughput (GFLOP/s), for 1 and N threads:
    /// the physical limit benchmark results are stated against.
    Peak {
        /// Threads for the second measurement (default: available cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        threads: Option<u64>,
    },
}

/// A spec and what can be set on it from outside.
#[derive(Args, Clone)]
pub(crate) struct SpecArgs {
    /// The .resnet file.
    spec: PathBuf,
    /// Set a network parameter, e.g. `--set classes=37`. Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = Options::parse_set)]
    sets: Vec<(String, String)>,
    /// Override the input shape, e.g. `--input-shape 3,160,200`.
    #[arg(long, value_name = "C,H,W", value_parser = Options::parse_input_shape)]
    input_shape: Option<[usize; 3]>,
    /// Optimisation level: -O0 runs no pass, -O2 (the default) runs them all
    /// (fold_bn, fuse, dce, memory_plan).
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    opt_level: u8,
    /// Run exactly these passes, e.g. `--passes fold_bn,fuse` (in pipeline order).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    passes: Option<Vec<String>>,
}

impl SpecArgs {
    pub(crate) fn options(&self) -> Options {
        Options {
            sets: self.sets.clone(),
            input_shape: self.input_shape,
            opt_level: self.opt_level,
            passes: self.passes.clone(),
            stop_after: None,
        }
    }

    /// Compiles the spec, printing diagnostics on failure.
    pub(crate) fn compile(&self) -> Result<Compiled, ExitCode> {
        self.compile_with(self.options())
    }

    pub(crate) fn compile_with(&self, opts: Options) -> Result<Compiled, ExitCode> {
        compile_file(&self.spec, &opts).map_err(|e| report_error(&e.with_hints(hint)))
    }
}

#[derive(Args)]
struct SummaryArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The batch size the shapes and MACs are given for.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
    format: SummaryFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Table,
    Json,
}

#[derive(Args)]
struct GraphArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
    /// Show the graph after this pass (`lower` for the graph before any pass).
    #[arg(long, value_name = "PASS")]
    after: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

/// A diagnostic's suggestion in the CLI's terms.
fn hint(s: &Suggestion) -> String {
    match s {
        Suggestion::SetParameter { name } => format!("on the command line: --set {name}=VALUE"),
        Suggestion::InputShape => "on the command line: --input-shape C,H,W".into(),
    }
}

fn report_error(e: &CompileError) -> ExitCode {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", e.render_with(color));
    ExitCode::from(1)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(spec) => spec.compile().map(|c| {
            let g = &c.graph;
            println!("{}: ok ({} layers, {} parameters)", spec.spec.display(), g.nodes.len() - 1, report::group(g.param_count() as u64));
        }),
        Command::Summary(a) => a.spec.compile().and_then(|c| {
            if a.batch == 0 {
                eprintln!("error: --batch must be at least 1");
                return Err(ExitCode::from(2));
            }
            let s = report::Summary::new(&c, a.batch as usize);
            match a.format {
                SummaryFormat::Table => print!("{}", s.to_table()),
                SummaryFormat::Json => println!("{}", s.to_json()),
            }
            Ok(())
        }),
        Command::Params(spec) => spec.compile().map(|c| print!("{}", report::params_listing(&c.graph))),
        Command::Graph(a) => a.spec.compile_with(Options { stop_after: a.after.clone(), ..a.spec.options() }).map(|c| match a.format {
            GraphFormat::Text => {
                print!("{}", c.graph.dump());
                for r in &c.reports {
                    println!("// {}: {}", r.pass, r.summary);
                }
                println!("// memory plan: {}", c.memory.summary());
            }
            GraphFormat::Dot => print!("{}", c.graph.to_dot()),
        }),
        Command::Eval(a) => eval::run(&a),
        Command::Emit(a) => build::emit(&a),
        Command::Build(a) => build::build(&a),
        Command::Run(a) => build::run(&a),
        Command::Peak { threads } => {
            use resnetc_runtime::fast;
            let t = threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize);
            let kind = fast::kernel_name();
            let one = fast::peak::peak_gflops(1, 200_000_000);
            let all = fast::peak::peak_gflops(t, 200_000_000);
            println!("peak_gflops_1_thread={one:.1} peak_gflops_{t}_threads={all:.1} kernel={kind}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
