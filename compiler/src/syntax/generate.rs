//! Specs built from the grammar, driven by bytes: for the fuzz target `grammar` and the
//! property test of the same name. Every spec is well-formed text of the language (blocks,
//! stages, shortcuts, sequences, expressions, every built-in op with arguments drawn from
//! a range that includes 0, negatives and extremes), so that fuzzing reaches lowering and
//! the passes instead of stopping at the parser.

/// Reads choices from bytes; past the end, every choice is 0.
struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }

    /// A number as users write them: small mostly, sometimes 0, negative or extreme.
    fn number(&mut self) -> String {
        match self.below(16) {
            0 => "0".into(),
            1 => "-1".into(),
            2 => "9223372036854775807".into(),
            3 => "4294967296".into(),
            4 => "65536".into(),
            5 => "1e400".into(),
            6 => "0.5".into(),
            7 => "c * 2".into(),
            8 => "(c + 1) / 2".into(),
            _ => (1 + self.below(9)).to_string(),
        }
    }
}

const OPS: &[&str] = &[
    "conv",
    "bn",
    "relu",
    "relu6",
    "silu",
    "gelu",
    "sigmoid",
    "hardswish",
    "hardsigmoid",
    "identity",
    "dropout",
    "maxpool",
    "avgpool",
    "global_avgpool",
    "flatten",
    "linear",
    "softmax",
];
const ARGS: &[&str] = &["k", "s", "p", "d", "groups", "bias", "eps", "ceil", "count_include_pad", "out"];
const SHORTCUTS: &[&str] = &["identity", "projection", "projection always", "projection(bn = false)", "pad", "avgdown"];

/// A spec from `bytes`.
pub fn spec(bytes: &[u8]) -> String {
    let mut g = Choices { bytes, at: 0 };
    let blocks = 1 + g.below(3);
    let mut out = String::new();
    for b in 0..blocks {
        out.push_str(&format!("block b{b}(c, stride = 1) {{\n"));
        body(&mut g, &mut out, 1, b, blocks);
        if g.below(3) > 0 {
            let kind = SHORTCUTS[g.below(SHORTCUTS.len())];
            let from = if g.below(4) == 0 { " from l0" } else { "" };
            out.push_str(&format!("    shortcut down: {kind}{from}\n    relu\n"));
        }
        out.push_str("}\n");
    }
    let c = 1 + g.below(4);
    out.push_str(&format!("network n(classes = {}) {{\n    input [{c}, {}, {}]\n", 2 + g.below(5), 1 + g.below(16), 1 + g.below(16)));
    for i in 0..1 + g.below(4) {
        match g.below(4) {
            0 => out.push_str(&format!(
                "    layer{i}: stage(b{}, {}, blocks = {}, stride = {})\n",
                g.below(blocks),
                g.number(),
                g.number(),
                g.number()
            )),
            1 => out.push_str(&format!("    s{i}: seq {{ conv({}, k = {}); relu }}\n", g.number(), g.number())),
            _ => layer(&mut g, &mut out, i),
        }
    }
    out.push_str("    global_avgpool\n    fc: linear(classes)\n}\n");
    out
}

fn body(g: &mut Choices, out: &mut String, depth: usize, block: usize, blocks: usize) {
    for i in 0..1 + g.below(4) {
        if depth < 3 && g.below(8) == 0 {
            out.push_str(&format!("    l{i}: seq {{\n"));
            body(g, out, depth + 1, block, blocks);
            out.push_str("    }\n");
        } else if block + 1 < blocks && g.below(8) == 0 {
            out.push_str(&format!("    l{i}: b{}(c)\n", block + 1));
        } else {
            layer(g, out, i);
        }
    }
}

fn layer(g: &mut Choices, out: &mut String, i: usize) {
    let op = OPS[g.below(OPS.len())];
    let mut args: Vec<String> = Vec::new();
    if matches!(op, "conv" | "linear") {
        args.push(g.number());
    }
    if matches!(op, "conv" | "maxpool" | "avgpool") {
        args.push(format!("k = {}", g.number()));
    }
    for _ in 0..g.below(3) {
        let name = ARGS[g.below(ARGS.len())];
        let value =
            if matches!(name, "bias" | "ceil" | "count_include_pad") { ["true", "false"][g.below(2)].to_string() } else { g.number() };
        args.push(format!("{name} = {value}"));
    }
    let call = if args.is_empty() && g.below(2) == 0 { op.to_string() } else { format!("{op}({})", args.join(", ")) };
    out.push_str(&format!("    l{i}: {call}\n"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_parse_as_the_grammar_says() {
        for seed in 0..64u8 {
            let bytes: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(seed).wrapping_add(seed)).collect();
            let text = super::spec(&bytes);
            let (_, diags) = super::super::parse(crate::diag::FileId(0), &text);
            assert!(diags.is_empty(), "{text}\n{diags:?}");
        }
    }
}
