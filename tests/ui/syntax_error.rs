resnetc::resnet! {
    network bad {
        input [3, 8, 8]
        conv1: conv(16, k = 3 s = 2)
    }
}

fn main() {}
