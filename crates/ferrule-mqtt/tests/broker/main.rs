//! The broker in the test's own process, over in-memory streams: one test
//! binary, with a shared harness.

mod connectivity;
mod footprint;
mod harness;
mod timing;
