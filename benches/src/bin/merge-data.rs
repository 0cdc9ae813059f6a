//! Writes the merge benchmark's data set: `DIR/base.csv` and `DIR/changes-NN.csv`.
//!
//! `merge-data DIR [ROWS [CHANGES [FILES [SEED]]]]` (defaults: 1,000,000 rows, 100,000
//! changes, 8 files, seed 1). The same arguments always give the same bytes.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use cipherflow_benches::merge_data::{Spec, changes, write_base};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: merge-data DIR [ROWS [CHANGES [FILES [SEED]]]]");
        return ExitCode::from(2);
    };
    let num = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse().map_err(|e| format!("{s:?}: {e}"))
        })
    };
    let spec = match (num(1, 1_000_000), num(2, 100_000), num(3, 8), num(4, 1)) {
        (Ok(rows), Ok(changes), Ok(files), Ok(seed)) => Spec {
            rows,
            changes,
            files: files as usize,
            seed,
        },
        (a, b, c, d) => {
            for e in [a, b, c, d].into_iter().filter_map(Result::err) {
                eprintln!("merge-data: bad number {e}");
            }
            return ExitCode::from(2);
        }
    };
    let run = || -> std::io::Result<()> {
        fs::create_dir_all(&dir)?;
        write_base(&spec, BufWriter::new(File::create(dir.join("base.csv"))?))?;
        for (i, bytes) in changes(&spec).iter().enumerate() {
            fs::write(dir.join(format!("changes-{i:02}.csv")), bytes)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("merge-data: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
