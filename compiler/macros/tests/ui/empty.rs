resnetc_macros::network!();

fn main() {}
