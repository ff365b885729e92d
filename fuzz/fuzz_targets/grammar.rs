//! `cargo fuzz run grammar`: specs built from the grammar (so they reach lowering, the
//! passes and codegen), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnetc_compiler::{codegen, compile, Options, Source};

fuzz_target!(|data: &[u8]| {
    let text = resnetc_compiler::syntax::generate::spec(data);
    let src = Source { name: "fuzz.resnet".into(), text, dir: None, path: None };
    match compile(&src, &Options::default()) {
        Ok(c) => {
            let opts = codegen::CodegenOptions::for_crate(&c.graph, "fuzz.resnet");
            let _ = codegen::model_source(&c, &opts);
        }
        Err(e) => {
            let _ = e.render();
        }
    }
});
