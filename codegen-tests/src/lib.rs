//! The Burn code resnetc emits for every shipped spec, compiled as a crate.
//!
//! `build.rs` runs the compiler library over `specs/*.net`; each spec becomes a
//! module here (`resnet_20`, `wrn_28_10`, ...) holding the generated network
//! and its checked summary (`SUMMARY`, JSON). That this crate builds proves the
//! emitted code compiles; `tests/` runs it.

include!(concat!(env!("OUT_DIR"), "/specs.rs"));
