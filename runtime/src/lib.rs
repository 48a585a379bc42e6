//! Training and evaluation of resnetc networks (see the runtime issue); empty for now.
