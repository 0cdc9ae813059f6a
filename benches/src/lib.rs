//! Benchmarks: see `benches/*.rs` and `README.md`. The library holds what the benchmarks and
//! the `merge-data` tool share: the merge benchmark's deterministic data set.

pub mod merge_data;
