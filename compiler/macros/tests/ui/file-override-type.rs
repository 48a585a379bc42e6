// trybuild compiles this in $WORKSPACE/target/tests/trybuild/resnetc-macros: paths are relative to that.
resnetc_macros::network!("../../../../specs/wrn-28-10.net", k = 2.5);

fn main() {}
