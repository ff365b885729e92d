//! The instruction set the fast kernels run on, as a value.
//!
//! Users get [`Isa::selected`]: the widest the CPU has, narrowed by the environment
//! (`RESNETC_PORTABLE=1`, `RESNETC_AVX512=0`), read once. Everything below the generated
//! code's [`Workspace`](crate::Workspace) takes the ISA as an argument, so tests run every
//! path in one process ([`Isa::available`]) and a workspace can be made for any path the
//! CPU supports ([`Workspace::with_isa`](crate::Workspace::with_isa)).

/// A kernel path, from the narrowest to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 with AVX2 and FMA (16 ymm registers).
    Avx2,
    /// x86-64 with AVX-512 F and VL (32 zmm registers), plus AVX2 and FMA.
    Avx512,
}

impl Isa {
    /// Every path, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The name reports print: "AVX-512", "AVX2+FMA" or "portable".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "AVX2+FMA",
            Isa::Avx512 => "AVX-512",
        }
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported() && std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest path this CPU supports.
    pub fn detect() -> Isa {
        Isa::ALL.into_iter().find(|i| i.supported()).unwrap_or(Isa::Portable)
    }

    /// Every path this CPU supports, widest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// The path for users: [`Isa::detect`], then `RESNETC_PORTABLE=1` forces the portable
    /// one and `RESNETC_AVX512=0` keeps to AVX2. Read once a process.
    pub fn selected() -> Isa {
        static SELECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            let set = |name: &str| std::env::var_os(name).map(|v| v != "0");
            let mut isa = Isa::detect();
            if set("RESNETC_PORTABLE") == Some(true) {
                isa = Isa::Portable;
            }
            if set("RESNETC_AVX512") == Some(false) {
                isa = isa.min(Isa::Avx2);
            }
            isa
        })
    }
}

impl Default for Isa {
    /// [`Isa::selected`].
    fn default() -> Isa {
        Isa::selected()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Isa;

    #[test]
    fn paths_are_ordered_and_the_portable_one_always_runs() {
        assert!(Isa::Portable < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        assert!(Isa::Portable.supported());
        let available = Isa::available();
        assert_eq!(available.first().copied(), Some(Isa::detect()));
        assert_eq!(available.last().copied(), Some(Isa::Portable));
        assert!(Isa::selected() <= Isa::detect());
    }
}
