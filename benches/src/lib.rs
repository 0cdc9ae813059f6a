//! Benchmarks: see `benches/*.rs` and `README.md`. The library holds what the benchmarks and
//! the `merge-data` tool share: the merge benchmark's deterministic data set.

pub mod merge_data;

/// Whether this run only checks that each benchmark works (smoke size), not measures it:
/// criterion's test mode, either `cargo bench -- --test` or `cargo test --benches` (which
/// runs a bench binary without `--bench`). Benchmarks whose data takes long to build use it to
/// pick a small size.
pub fn smoke_run() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}
