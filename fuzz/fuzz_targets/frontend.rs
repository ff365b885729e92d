//! `cargo fuzz run frontend`: any text through the parser and lowering, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnetc_compiler::{compile, Options, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let src = Source { name: "fuzz.resnet".into(), text, dir: None, path: None };
    if let Err(e) = compile(&src, &Options::default()) {
        let _ = e.render();
    }
});
