resnetc_macros::network! {
    network tiny(classes = 10) {
        input 3x32x32
        conv3x3(30, groups = 4)
        global_avg_pool linear(classes)
    }
}

fn main() {}
