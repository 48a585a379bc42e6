// Compile a spec at build time; the code lands in OUT_DIR as se_resnet_20.rs.
fn main() {
    resnetc_compiler::Build::new().spec("../../specs/se-resnet-20.net").set("classes", 100).compile_or_exit();
}
