//! `cargo fuzz run weights`: any bytes as a weight file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnetc_runtime::weights::{LoadOptions, WeightFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = WeightFile::from_bytes(data) {
        let _ = file.load(&[("conv1.weight".to_string(), vec![4, 3, 3, 3])], &LoadOptions::default());
    }
});
