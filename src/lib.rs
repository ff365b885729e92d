//! resnetc: residual networks written in the `.resnet` language, compiled to Rust.
//!
//! This facade re-exports the three parts: [`resnet!`] (a spec compiled into a model type
//! at build time), [`runtime`] (what the generated models call) and [`compiler`] (the
//! library behind the `resnetc` command).
//!
//! ```
//! resnetc::resnet! {
//!     network tiny(classes = 3) {
//!         input [1, 8, 8]
//!         conv1: conv(4, k = 3, p = 1)
//!         relu
//!         global_avgpool
//!         fc: linear(classes)
//!     }
//! }
//! let model = Tiny::random(7);
//! let x = resnetc::runtime::ndarray::Array4::<f32>::zeros((2, 1, 8, 8));
//! let y = model.forward(x.view()).unwrap();
//! assert_eq!(y.dim(), (2, 3));
//! ```

pub use resnetc_compiler as compiler;
pub use resnetc_macros::resnet;
pub use resnetc_runtime as runtime;
