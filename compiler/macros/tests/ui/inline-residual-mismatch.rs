resnetc_macros::network! {
    block plain(planes, stride = 1) {
        { conv3x3(planes, stride = stride) bn } + { }
    }

    network tiny(classes = 10) {
        input 3x32x32
        conv3x3(16)
        stage 2 x plain(32, stride = 2)
        global_avg_pool linear(classes)
    }
}

fn main() {}
