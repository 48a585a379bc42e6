resnetc_macros::network! {
    network resnet(classes = 10, depth = 21) {
        input 3x32x32
        assert (depth - 2) % 6 == 0, "depth must be 6n+2"
        conv3x3(16)
        stage (depth - 2) / 6 x basic(16)
        global_avg_pool linear(classes)
    }
}

fn main() {}
