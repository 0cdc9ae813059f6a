//! Benchmarks only: see `benches/envelope.rs` and `README.md`.
