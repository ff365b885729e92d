//! Bad weight files: each failure gives an error naming the tensor or the problem; random
//! damage never panics.

use std::collections::HashMap;

use proptest::prelude::*;
use resnetc_runtime::{LoadOptions, WeightError, WeightFile};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Serialises tensors given as (name, dtype, shape, raw bytes).
fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: HashMap<String, TensorView<'_>> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, &None).unwrap()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn expected() -> Vec<(String, Vec<usize>)> {
    vec![("conv1.weight".into(), vec![2, 1, 1, 1]), ("bn1.running_var".into(), vec![2])]
}

fn good() -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    vec![
        ("conv1.weight", Dtype::F32, vec![2, 1, 1, 1], f32s(&[1.5, -2.0])),
        ("bn1.running_var", Dtype::F32, vec![2], f32s(&[0.25, 4.0])),
        ("bn1.num_batches_tracked", Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
    ]
}

fn load(bytes: Vec<u8>, opts: &LoadOptions) -> Result<resnetc_runtime::Weights, WeightError> {
    WeightFile::from_bytes(bytes)?.load(&expected(), opts)
}

#[test]
fn a_good_file_loads_and_skips_counters() {
    let w = load(file(&good()), &LoadOptions::default()).unwrap();
    assert_eq!(w.data("conv1.weight"), &[1.5, -2.0]);
    assert_eq!(w.len(), 2);
    assert!(w.get("bn1.num_batches_tracked").is_none());
}

#[test]
fn a_counter_saved_as_a_float_is_still_a_counter() {
    let mut t = good();
    t[2] = ("bn1.num_batches_tracked", Dtype::F32, vec![], f32s(&[7.0]));
    let w = load(file(&t), &LoadOptions::default()).unwrap();
    assert!(w.get("bn1.num_batches_tracked").is_none());
}

#[test]
fn a_directory_or_an_input_of_the_wrong_rank_says_so() {
    let dir = std::env::temp_dir();
    let e = WeightFile::open(&dir).err().unwrap().to_string();
    assert!(e.contains("it is a directory"), "{e}");
    let p = dir.join(format!("resnetc-rank-{}.safetensors", std::process::id()));
    std::fs::write(&p, file(&[("input", Dtype::F32, vec![2, 3], f32s(&[0.0; 6]))])).unwrap();
    let e = resnetc_runtime::io::read_nchw(&p, "input").err().unwrap().to_string();
    std::fs::remove_file(&p).ok();
    assert!(e.contains("[2, 3]") && e.contains("4 dimensions [N, C, H, W]"), "{e}");
}

#[test]
fn f16_and_bf16_are_converted() {
    let mut t = good();
    t[0] = (
        "conv1.weight",
        Dtype::F16,
        vec![2, 1, 1, 1],
        [half::f16::from_f32(1.5), half::f16::from_f32(-2.0)].iter().flat_map(|h| h.to_le_bytes()).collect(),
    );
    t[1] = (
        "bn1.running_var",
        Dtype::BF16,
        vec![2],
        [half::bf16::from_f32(0.25), half::bf16::from_f32(4.0)].iter().flat_map(|h| h.to_le_bytes()).collect(),
    );
    let w = load(file(&t), &LoadOptions::default()).unwrap();
    assert_eq!(w.data("conv1.weight"), &[1.5, -2.0]);
    assert_eq!(w.data("bn1.running_var"), &[0.25, 4.0]);
}

#[test]
fn a_missing_tensor_is_named() {
    let mut t = good();
    t.remove(1);
    let e = load(file(&t), &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, WeightError::Missing { ref name, .. } if name == "bn1.running_var"), "{e:?}");
    assert!(e.to_string().contains("missing tensor `bn1.running_var` (expected shape [2])"), "{e}");
}

#[test]
fn a_misnamed_tensor_gets_a_hint() {
    let mut t = good();
    t[1].0 = "bn.running_var";
    let e = load(file(&t), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("did you mean `bn.running_var`?"), "{e}");
}

#[test]
fn an_unexpected_tensor_is_an_error_unless_allowed() {
    let mut t = good();
    t.push(("fc.weight", Dtype::F32, vec![1], f32s(&[0.0])));
    let e = load(file(&t), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().starts_with("unexpected tensor `fc.weight` (shape [1])"), "{e}");
    assert!(load(file(&t), &LoadOptions { allow_unexpected: true, ..LoadOptions::default() }).is_ok());
}

#[test]
fn a_shape_mismatch_says_expected_and_found() {
    let mut t = good();
    t[0] = ("conv1.weight", Dtype::F32, vec![1, 2, 1, 1], f32s(&[1.5, -2.0]));
    let e = load(file(&t), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "tensor `conv1.weight` has shape [1, 2, 1, 1], expected [2, 1, 1, 1]");
}

#[test]
fn an_unsupported_dtype_is_named() {
    let mut t = good();
    t[1] = ("bn1.running_var", Dtype::I32, vec![2], vec![0; 8]);
    let e = load(file(&t), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "tensor `bn1.running_var` has dtype I32; supported are F32, F64, F16 and BF16");
}

#[test]
fn a_truncated_file_is_reported() {
    let mut bytes = file(&good());
    bytes.truncate(bytes.len() - 3);
    let e = load(bytes, &LoadOptions::default()).err().unwrap();
    assert!(matches!(e, WeightError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated or corrupt"), "{e}");
}

#[test]
fn a_file_that_is_not_safetensors_is_reported() {
    for bytes in
        [b"PK\x03\x04 this is a zip file, not weights".to_vec(), vec![], b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!".to_vec()]
    {
        let e = load(bytes, &LoadOptions::default()).err().unwrap();
        assert!(matches!(e, WeightError::NotSafetensors { .. }), "{e:?}");
        assert!(e.to_string().contains("is not a safetensors file"), "{e}");
    }
}

#[test]
fn a_missing_path_is_an_io_error() {
    let e = WeightFile::open(std::path::Path::new("/nonexistent/w.safetensors")).err().unwrap();
    assert!(e.to_string().starts_with("cannot read `/nonexistent/w.safetensors`"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Flipped, overwritten and truncated bytes: an error or a load, never a panic. (Most
    /// truncations fail early; the test below keeps the length.)
    #[test]
    fn damaged_files_never_panic(edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8), cut in any::<u16>()) {
        let mut bytes = file(&good());
        for (pos, val) in edits {
            let i = pos as usize % bytes.len();
            bytes[i] = val;
        }
        let cut = cut as usize % (bytes.len() + 1);
        bytes.truncate(cut);
        if let Ok(f) = WeightFile::from_bytes(bytes) {
            let _ = f.load(&expected(), &LoadOptions::default());
            let _ = f.tensors();
        }
    }

    /// Damage that keeps the length (header values, offsets, dtypes, data bytes): an error,
    /// or a load whose every value is exactly what the file holds at the tensor's place;
    /// damage to the data alone always loads, with the damaged values.
    #[test]
    fn damage_that_keeps_the_length_is_caught_or_loaded_exactly(edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6), header in any::<bool>()) {
        let clean = file(&good());
        let header_len = u64::from_le_bytes(clean[..8].try_into().unwrap()) as usize + 8;
        let mut bytes = clean.clone();
        for (pos, val) in edits {
            // Half the cases aim at the header (its length, names, dtypes, shapes, offsets).
            let i = if header { pos as usize % header_len } else { header_len + pos as usize % (clean.len() - header_len) };
            bytes[i] = val;
        }
        prop_assert_eq!(bytes.len(), clean.len());
        let data_only = bytes[..header_len] == clean[..header_len];
        match WeightFile::from_bytes(bytes.clone()).and_then(|f| f.load(&expected(), &LoadOptions::default())) {
            Ok(w) => {
                let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
                for (name, shape) in expected() {
                    let t = st.tensor(&name).unwrap();
                    prop_assert_eq!(t.shape(), shape.as_slice());
                    if t.dtype() == Dtype::F32 {
                        let want: Vec<u32> = t.data().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
                        let got: Vec<u32> = w.data(&name).iter().map(|v| v.to_bits()).collect();
                        prop_assert_eq!(got, want, "{}", name);
                    }
                }
            }
            Err(e) => prop_assert!(!data_only, "damage to the data alone must load: {}", e),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(f) = WeightFile::from_bytes(bytes) {
            let _ = f.load(&expected(), &LoadOptions::default());
        }
    }
}

#[test]
fn tensors_held_in_memory_load_like_a_file_and_bad_lengths_name_the_tensor() {
    let owned = |t: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>| t.into_iter().map(|(n, d, s, b)| (n.to_string(), d, s, b)).collect();
    let w = WeightFile::from_tensors("state_dict", owned(good())).unwrap().load(&expected(), &LoadOptions::default()).unwrap();
    assert_eq!(w.data("conv1.weight"), &[1.5, -2.0]);
    // The same validation as a file: a missing key is named, with the closest one.
    let mut renamed = good();
    renamed[0].0 = "module.conv1.weight";
    let err = WeightFile::from_tensors("state_dict", owned(renamed)).unwrap().load(&expected(), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing tensor `conv1.weight`"), "{err}");
    // A prefixed key (DataParallel's `module.`) is the hint, though no prefix matches.
    assert!(err.to_string().contains("did you mean `module.conv1.weight`?"), "{err}");
    let mut short = good();
    short[1].3.pop();
    let err = WeightFile::from_tensors("state_dict", owned(short)).err().unwrap().to_string();
    assert!(err.contains("`bn1.running_var`") && err.contains("7 bytes"), "{err}");
}

/// `good()` with every key under `prefix`.
fn prefixed(prefix: &str) -> Vec<u8> {
    let t: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = good().into_iter().map(|(n, d, s, b)| (format!("{prefix}{n}"), d, s, b)).collect();
    let views: HashMap<String, TensorView<'_>> =
        t.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, &None).unwrap()
}

#[test]
fn a_dataparallel_file_loads_with_the_key_prefix_option_and_without_it_the_error_suggests_it() {
    let err = load(prefixed("module."), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("missing tensor `conv1.weight`") && err.contains("did you mean `module.conv1.weight`?"), "{err}");
    assert!(err.contains("The file's keys start with `module.`") && err.contains("--key-prefix module.="), "{err}");
    let w = load(prefixed("module."), &LoadOptions::with_key_prefix("module.", "")).unwrap();
    assert_eq!(w.data("conv1.weight"), &[1.5, -2.0]);
    // Replace rather than strip: Lightning's `model.` read as another prefix, and back.
    let w = WeightFile::from_bytes(prefixed("model."))
        .unwrap()
        .load(
            &[("net.conv1.weight".into(), vec![2, 1, 1, 1]), ("net.bn1.running_var".into(), vec![2])],
            &LoadOptions::with_key_prefix("model.", "net."),
        )
        .unwrap();
    assert_eq!(w.data("net.bn1.running_var"), &[0.25, 4.0]);
    // The wrong prefix still fails, naming the file's key.
    let err = load(prefixed("model."), &LoadOptions::with_key_prefix("module.", "")).unwrap_err().to_string();
    assert!(err.contains("did you mean `model.conv1.weight`?"), "{err}");
}

#[test]
fn a_prefix_that_makes_two_keys_one_is_an_error() {
    let mut t = good();
    t.push(("module.conv1.weight", Dtype::F32, vec![2, 1, 1, 1], f32s(&[0.0, 0.0])));
    let err = load(file(&t), &LoadOptions::with_key_prefix("module.", "")).unwrap_err().to_string();
    assert!(err.contains("`conv1.weight`") && err.contains("`module.conv1.weight`") && err.contains("ambiguous"), "{err}");
}

#[test]
fn the_key_prefix_flag_parses() {
    assert_eq!(LoadOptions::parse_key_prefix("module.="), Ok(("module.".into(), String::new())));
    assert_eq!(LoadOptions::parse_key_prefix("=model."), Ok((String::new(), "model.".into())));
    assert!(LoadOptions::parse_key_prefix("module.").unwrap_err().contains("expected OLD=NEW"));
    assert!(LoadOptions::parse_key_prefix("a=a").is_err());
}

#[test]
fn double_weights_load_as_float_like_pytorchs_load_state_dict() {
    let mut t = good();
    t[0] = ("conv1.weight", Dtype::F64, vec![2, 1, 1, 1], [1.5f64, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect());
    let w = load(file(&t), &LoadOptions::default()).unwrap();
    assert_eq!(w.data("conv1.weight"), &[1.5, -2.0]);
}
