// trybuild compiles this in $WORKSPACE/target/tests/trybuild/resnetc-macros: paths are relative to that.
resnetc_macros::network!("../../../../tests/errors/unknown-block.net");

fn main() {}
