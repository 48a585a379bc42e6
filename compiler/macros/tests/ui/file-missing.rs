// trybuild compiles this in $WORKSPACE/target/tests/trybuild/resnetc-macros: paths are relative to that.
resnetc_macros::network!("specs/does-not-exist.net");

fn main() {}
