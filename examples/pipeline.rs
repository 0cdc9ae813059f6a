//! The README's first command: a CDC pipeline end to end on the local default store.
//! `cargo run --release --example pipeline [DIR] [ROWS]` (default `cipherflow-demo`, 20000).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "cipherflow-demo".into()));
    let rows = args
        .next()
        .map_or(20_000, |r| r.parse().expect("ROWS must be a number"));
    match cipherflow_examples::pipeline_demo::run(&dir, rows) {
        Ok(summary) => print!("{}", summary.report()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
