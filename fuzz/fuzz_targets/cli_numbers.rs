//! `cargo fuzz run cli_numbers`: the numbers users give on the command line (`--set`,
//! `--input-shape`) never panic and never wrap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnetc_compiler::lower::Value;
use resnetc_compiler::Options;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Options::parse_set(&text);
    if let Ok(dims) = Options::parse_input_shape(&text) {
        assert!(dims.iter().all(|&d| d > 0));
    }
    if let Ok(Value::Int(v)) = Value::parse_setting(&text) {
        // An integer comes back exactly as written (no wrapping).
        assert_eq!(text.trim().trim_start_matches('+').parse::<i128>().ok(), Some(i128::from(v)));
    }
});
