pub use resnetc_compiler as compiler;
pub use resnetc_runtime as runtime;
