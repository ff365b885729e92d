resnetc::resnet! {
    network bad {
        input [3, 8, 8]
        conv1: conv(64, k = 3, groups = 32)
    }
}

fn main() {}
