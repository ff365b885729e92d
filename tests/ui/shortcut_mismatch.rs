resnetc::resnet! {
    network bad {
        input [16, 8, 8]
        layer1: down(32)
    }
    block down(c) {
        conv1: conv(c, k = 3, s = 2, p = 1)
        shortcut: identity
    }
}

fn main() {}
