//! Training and evaluation of resnetc networks on CIFAR-10/100.
//!
//! So far: [`data`], loading both CIFAR formats and image folders (plain or in a tar)
//! with the papers' augmentation. The trainer is the next step (see the runtime issue).

pub mod data;
pub mod model;
