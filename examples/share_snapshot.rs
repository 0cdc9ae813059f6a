//! The README's first command: share a table snapshot with two consumers, end to end, on the
//! local disk. `cargo run --release --example share_snapshot [DIR] [ROWS]`.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "cipherflow-share-demo".into()),
    );
    let rows = args
        .next()
        .map_or(200_000, |r| r.parse().expect("ROWS must be a number"));
    match cipherflow_examples::run(&dir, rows) {
        Ok(summary) => print!("{}", summary.report()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
