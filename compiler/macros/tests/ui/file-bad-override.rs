// trybuild compiles this in $WORKSPACE/target/tests/trybuild/resnetc-macros: paths are relative to that.
resnetc_macros::network!("../../../../specs/resnet-20.net", clases = 100);

fn main() {}
