//! The `wgtune` binary as users run it: bad input of every kind, interruptions, numerical
//! faults. Each test runs the real executable (CARGO_BIN_EXE_wgtune) in a scratch directory.

#[path = "../kernels/common.rs"]
mod common;

mod autotune;
mod bad_input;
mod ci_rule;
mod device_check;
mod faults;
mod gpu_fault;
mod harness;
mod inspect;
mod interrupt;
mod llama;
mod numerical;
mod quiet;
mod selftest;
mod torn_writes;
