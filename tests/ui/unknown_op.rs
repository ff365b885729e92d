resnetc::resnet! {
    network bad {
        input [3, 8, 8]
        conv1: convv(16, k = 3)
    }
}

fn main() {}
