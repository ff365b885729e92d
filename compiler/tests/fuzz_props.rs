//! The front end never panics: random bytes, and stock specs with random mutations.

use proptest::prelude::*;
use resnetc_compiler::{compile, Options, Source};

fn stock() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "resnet"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

fn run(text: String) {
    // `use` resolves against specs/, so mutated stock specs reach lowering.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let src = Source { name: "fuzz.resnet".into(), text, dir: Some(dir), path: None };
    if let Err(e) = compile(&src, &Options::default()) {
        let _ = e.render();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Specs built from the grammar reach lowering and the passes: never a panic.
    #[test]
    fn grammar_specs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        run(resnetc_compiler::syntax::generate::spec(&bytes));
    }

    /// The CLI's numbers: `NAME=VALUE`, `C,H,W` and parameter values never panic, and
    /// integers come back exactly or are refused, never wrapped.
    #[test]
    fn cli_numbers_never_panic_or_wrap(text in ".{0,40}", n in any::<i128>()) {
        let _ = resnetc_compiler::Options::parse_set(&text);
        let _ = resnetc_compiler::Options::parse_input_shape(&text);
        let _ = resnetc_compiler::lower::Value::parse_setting(&text);
        let parsed = resnetc_compiler::lower::Value::parse_setting(&n.to_string());
        match i64::try_from(n) {
            Ok(v) => prop_assert_eq!(parsed, Ok(resnetc_compiler::lower::Value::Int(v))),
            Err(_) => prop_assert!(parsed.is_err()),
        }
        if let Ok(dims) = resnetc_compiler::Options::parse_input_shape(&format!("{n},2,3")) {
            prop_assert_eq!(dims[0] as i128, n);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        run(String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn mutated_specs_never_panic(which in 0usize..64, edits in proptest::collection::vec((any::<u16>(), 0u8..4, any::<char>()), 1..6)) {
        let specs = stock();
        let mut text: Vec<char> = specs[which % specs.len()].chars().collect();
        for (pos, kind, ch) in edits {
            let i = pos as usize % (text.len() + 1);
            match kind {
                0 => text.insert(i, ch),
                1 if i < text.len() => { text.remove(i); }
                2 if i < text.len() => text[i] = ch,
                // Insert a token from the language, to reach deeper than the parser.
                _ => {
                    let toks = ["(", ")", "{", "}", "0", "-1", "=", ",", "shortcut: identity\n", "stride = 0", "k = 99", "\n", "relu", "/ 0", "groups = 3"];
                    for c in toks[ch as usize % toks.len()].chars().rev() { text.insert(i, c); }
                }
            }
        }
        run(text.into_iter().collect());
    }
}
