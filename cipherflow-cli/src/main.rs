//! `cipherflow`: generate keys, seal, open, inspect and rewrap CipherFlow envelopes.
//!
//! Errors are printed as one line, `error: ...`, on stderr; the exit status says which kind
//! of failure it was (see `cipherflow --help`, and [`error`]).
#![forbid(unsafe_code)]

#[cfg(feature = "aws")]
mod aws;
mod cli;
mod error;
mod ingest;
mod ledger;
mod merge;
mod merge_state;
mod pipeline;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cipherflow_core::{
    Info, KeyId, KeyUnwrapper, KeyWrapper, Opener, RsaPrivateKey, RsaPublicKey, Sealer, Signer,
    SigningKey, VerifyingKey,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tempfile::NamedTempFile;
use zeroize::Zeroizing;

use crate::cli::{Command, InspectArgs, KeygenArgs, OpenArgs, RewrapArgs, SealArgs};
use crate::error::{Context, Error};

/// Buffer size for file and stdio streams.
const BUF_SIZE: usize = 1 << 20;
/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_LEN: u64 = 64 << 20;

fn main() -> ExitCode {
    let cli = cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.one_line());
            e.exit_code()
        }
    }
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Keygen(args) => keygen(args),
        Command::Seal(args) => seal(args),
        Command::Open(args) => open(args),
        Command::Inspect(args) => inspect(args),
        Command::Rewrap(args) => rewrap(args),
        Command::Ledger(command) => ledger::run(command),
        Command::Merge(args) => merge::merge(args),
        Command::Run(args) => pipeline::run(args),
        Command::Pull(args) => pipeline::pull(args),
        Command::Gc(args) => pipeline::gc(args),
        Command::Ingest(args) => ingest::ingest(args),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

fn keygen(args: KeygenArgs) -> Result<(), Error> {
    // Claim both paths first: fail fast (before a slow RSA generation) if either exists, and
    // never leave half a key pair behind.
    let mut created = CreatedFiles::default();
    let mut private = created.create(&args.private, 0o600)?;
    let mut public = created.create(&args.public, 0o644)?;

    let (private_pem, public_pem, key_id) = if args.signing {
        let key = SigningKey::generate_p256().context(|| "generating a P-256 signing key")?;
        let id = Signer::key_id(&key);
        (key.to_pem(), key.verifying_key().to_pem(), id)
    } else {
        let key = RsaPrivateKey::generate(args.bits)
            .context(|| format!("generating an RSA-{} key", args.bits))?;
        let id = key.public_key().key_id();
        (key.to_pem(), key.public_key().to_pem(), id)
    };

    write_key_file(&mut private, &args.private, private_pem.as_bytes())?;
    write_key_file(&mut public, &args.public, public_pem.as_bytes())?;
    created.keep();

    print_json(&KeyIdJson {
        key_id: key_id.to_string(),
    })
}

fn seal(args: SealArgs) -> Result<(), Error> {
    let recipients = args
        .recipients
        .iter()
        .map(|p| load_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let recipient_refs: Vec<&dyn KeyWrapper> = recipients.iter().map(|r| &**r).collect();
    let signer = args.sign_key.as_deref().map(load_signing).transpose()?;

    let mut sealer = Sealer::new(&recipient_refs);
    let mut seen = BTreeSet::new();
    for (k, v) in args.meta {
        if !seen.insert(k.clone()) {
            return Err(Error::Usage(format!(
                "--meta key {k:?} given more than once"
            )));
        }
        sealer = sealer.metadata(k, v);
    }
    if let Some(s) = &signer {
        sealer = sealer.signer(&**s);
    }
    if let Some(c) = args.chunk_size {
        sealer = sealer.chunk_size(c as usize);
    }

    let mut input = Input::open(args.input.as_deref())?;
    let mut output = Output::create(args.output.as_deref())?;
    let what = format!("sealing {} to {}", input.label, output.label());
    let context = || what.clone();
    let mut writer = sealer.seal_writer(&mut output).context(context)?;
    writer.read_from(&mut input.reader).context(context)?;
    writer.finish().context(context)?;
    input.done();
    output.commit()
}

fn open(args: OpenArgs) -> Result<(), Error> {
    let key = load_private(&args.key)?;
    let verifier = args.signer.as_deref().map(load_verifying).transpose()?;
    let mut opener = Opener::new(&*key);
    if let Some(v) = &verifier {
        opener = opener.require_signer(v);
    }

    let mut input = Input::open(args.input.as_deref())?;
    let context = format!("opening {}", input.label);
    match args.output.as_deref().filter(|p| !is_stdio(p)) {
        // To S3: the whole plaintext is verified in memory before the one put.
        Some(dst) if s3_url(dst).is_some() => {
            let mut output = Output::create(Some(dst))?;
            let mut reader = opener
                .open_reader(&mut input.reader)
                .context(|| context.clone())?;
            reader.copy_to(&mut output).context(|| context.clone())?;
            output.commit()?;
        }
        // Plaintext goes to a temporary file beside `dst`, renamed into place only once the
        // last chunk (and the signature) verified.
        Some(dst) => {
            opener
                .open_to_path(&mut input.reader, dst)
                .context(|| context.clone())?;
        }
        None => {
            let mut reader = opener
                .open_reader(&mut input.reader)
                .context(|| context.clone())?;
            let mut out = BufWriter::with_capacity(BUF_SIZE, io::stdout().lock());
            reader.copy_to(&mut out).context(|| context.clone())?;
            out.flush().context(|| "writing to stdout")?;
        }
    }
    input.done();
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<(), Error> {
    let info = if is_stdio(&args.file) {
        let mut input = Input::open(Some(&args.file))?;
        let info = cipherflow_core::inspect(&mut input.reader)
            .context(|| format!("inspecting {}", input.label))?;
        input.done();
        info
    } else {
        // Only the header is read; the size comes from the file system.
        cipherflow_core::inspect_file(&args.file)
            .context(|| format!("inspecting {}", args.file.display()))?
    };
    print_json(&InfoJson::from(&info))
}

fn rewrap(args: RewrapArgs) -> Result<(), Error> {
    if is_stdio(&args.input) || is_stdio(&args.output) {
        return Err(Error::Usage(
            "rewrap reads and writes files: -i and -o must not be `-`".into(),
        ));
    }
    if same_file(&args.input, &args.output) {
        return Err(Error::Usage(format!(
            "rewrap: the output {} is the input file; write to another path",
            args.output.display()
        )));
    }
    let key = load_private(&args.key)?;
    let add = args
        .add
        .iter()
        .map(|p| load_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let add_refs: Vec<&dyn KeyWrapper> = add.iter().map(|r| &**r).collect();

    let mut input = Input::open(Some(&args.input))?;
    let mut output = Output::create(Some(&args.output))?;
    let recipients = cipherflow_core::rewrap(
        &mut input.reader,
        &mut output,
        &*key,
        &add_refs,
        &args.remove,
    )
    .context(|| format!("rewrapping {}", input.label))?;
    input.done();
    output.commit()?;
    print_json(&RecipientsJson {
        recipients: recipients.iter().map(KeyId::to_string).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON output

#[derive(Serialize)]
struct KeyIdJson {
    key_id: String,
}

#[derive(Serialize)]
struct RecipientsJson {
    recipients: Vec<String>,
}

#[derive(Serialize)]
struct InfoJson<'a> {
    format_version: u16,
    suite: u16,
    chunk_size: u32,
    chunk_count: u64,
    plaintext_len: u64,
    envelope_len: u64,
    header_len: u64,
    recipients: Vec<String>,
    signer: Option<SignerJson>,
    metadata: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct SignerJson {
    algorithm: &'static str,
    key_id: String,
}

impl<'a> From<&'a Info> for InfoJson<'a> {
    fn from(info: &'a Info) -> Self {
        InfoJson {
            format_version: info.version,
            suite: info.suite,
            chunk_size: info.chunk_size,
            chunk_count: info.chunk_count,
            plaintext_len: info.plaintext_len,
            envelope_len: info.envelope_len,
            header_len: info.header_len,
            recipients: info.recipients.iter().map(KeyId::to_string).collect(),
            signer: info.signer.map(|(algorithm, id)| SignerJson {
                algorithm: algorithm.name(),
                key_id: id.to_string(),
            }),
            metadata: &info.metadata,
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("plain structs serialize");
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context(|| "writing to stdout")
}

// ---------------------------------------------------------------------------------------------
// Key files

fn read_key_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    fs::read(path)
        .map(Zeroizing::new)
        .context(|| format!("reading key {}", path.display()))
}

/// A `kms:KEY` argument's key name, if it is one.
fn kms_name(path: &Path) -> Option<&str> {
    path.to_str().and_then(|s| s.strip_prefix("kms:"))
}

/// Whether an argument is an `s3://` URL.
fn s3_url(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| s.starts_with("s3://"))
}

#[cfg(not(feature = "aws"))]
fn no_aws(arg: &str) -> Error {
    Error::Usage(format!(
        "{arg}: this cipherflow was built without AWS support (cargo build --features aws)"
    ))
}

/// A recipient: a public key file, or `kms:KEY` (wrapped locally with the key's public key).
fn load_public(path: &Path) -> Result<Box<dyn KeyWrapper>, Error> {
    if let Some(name) = kms_name(path) {
        #[cfg(feature = "aws")]
        return aws::recipient(name);
        #[cfg(not(feature = "aws"))]
        return Err(no_aws(name));
    }
    let key = RsaPublicKey::from_bytes(&read_key_bytes(path)?)
        .context(|| format!("reading key {}", path.display()))?;
    Ok(Box::new(key))
}

/// A private key: a key file, or `kms:KEY` (unwrapped through `kms:Decrypt`).
fn load_private(path: &Path) -> Result<Box<dyn KeyUnwrapper>, Error> {
    if let Some(name) = kms_name(path) {
        #[cfg(feature = "aws")]
        return aws::unwrapper(name);
        #[cfg(not(feature = "aws"))]
        return Err(no_aws(name));
    }
    let key = RsaPrivateKey::from_bytes(&read_key_bytes(path)?)
        .context(|| format!("reading key {}", path.display()))?;
    Ok(Box::new(key))
}

/// A signing key: a key file, or `kms:KEY` (signing through `kms:Sign`).
fn load_signing(path: &Path) -> Result<Box<dyn Signer>, Error> {
    if let Some(name) = kms_name(path) {
        #[cfg(feature = "aws")]
        return aws::signer(name);
        #[cfg(not(feature = "aws"))]
        return Err(no_aws(name));
    }
    let key = SigningKey::from_bytes(&read_key_bytes(path)?)
        .context(|| format!("reading key {}", path.display()))?;
    Ok(Box::new(key))
}

/// A producer's public key: a key file, or `kms:KEY` (its public key).
fn load_verifying(path: &Path) -> Result<VerifyingKey, Error> {
    if let Some(name) = kms_name(path) {
        #[cfg(feature = "aws")]
        return aws::verifier(name);
        #[cfg(not(feature = "aws"))]
        return Err(no_aws(name));
    }
    VerifyingKey::from_bytes(&read_key_bytes(path)?)
        .context(|| format!("reading key {}", path.display()))
}

/// Files created by `keygen`, removed again unless [`CreatedFiles::keep`] is called.
#[derive(Default)]
struct CreatedFiles(Vec<PathBuf>);

impl CreatedFiles {
    /// Creates `path`, which must not exist, with `mode` (less the umask) on Unix.
    fn create(&mut self, path: &Path, mode: u32) -> Result<File, Error> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let file = options
            .open(path)
            .context(|| format!("creating {}", path.display()))?;
        self.0.push(path.to_owned());
        Ok(file)
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn write_key_file(file: &mut File, path: &Path, contents: &[u8]) -> Result<(), Error> {
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Streams

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Whether two paths name the same existing file (hard links and symlinks included).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    }
}

/// A buffered input (a file, or stdin), with a progress bar on stderr for large files.
struct Input {
    reader: Box<dyn Read>,
    label: String,
    progress: Option<ProgressBar>,
}

impl Input {
    fn open(path: Option<&Path>) -> Result<Input, Error> {
        let Some(path) = path.filter(|p| !is_stdio(p)) else {
            return Ok(Input {
                reader: Box::new(BufReader::with_capacity(BUF_SIZE, io::stdin().lock())),
                label: "stdin".into(),
                progress: None,
            });
        };
        let label = path.display().to_string();
        if let Some(url) = s3_url(path) {
            #[cfg(feature = "aws")]
            return Ok(Input {
                reader: Box::new(io::Cursor::new(aws::get(url)?)),
                label,
                progress: None,
            });
            #[cfg(not(feature = "aws"))]
            return Err(no_aws(url));
        }
        let file = File::open(path).context(|| format!("reading {label}"))?;
        let len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let reader = BufReader::with_capacity(BUF_SIZE, file);
        match len {
            Some(len) if len >= PROGRESS_MIN_LEN && io::stderr().is_terminal() => {
                let bar = ProgressBar::new(len);
                if let Ok(style) = ProgressStyle::with_template(
                    "{bytes}/{total_bytes} [{wide_bar}] {binary_bytes_per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                Ok(Input {
                    reader: Box::new(bar.wrap_read(reader)),
                    label,
                    progress: Some(bar),
                })
            }
            _ => Ok(Input {
                reader: Box::new(reader),
                label,
                progress: None,
            }),
        }
    }

    /// Call on success; the bar is cleared either way.
    fn done(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.done();
    }
}

/// A buffered output: stdout, or a temporary file renamed onto its path by
/// [`Output::commit`], so that a failure never leaves a partial file behind.
enum Output {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    /// A device or pipe (`-o /dev/null`): written in place, since renaming a file over it
    /// would replace the device node.
    Device(BufWriter<File>, PathBuf),
    File {
        writer: BufWriter<NamedTempFile>,
        dst: PathBuf,
    },
    /// An `s3://` object: collected, then written with one put by [`Output::commit`].
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    S3 {
        bytes: Vec<u8>,
        url: String,
    },
}

impl Output {
    fn create(path: Option<&Path>) -> Result<Output, Error> {
        let Some(dst) = path.filter(|p| !is_stdio(p)) else {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                BUF_SIZE,
                io::stdout().lock(),
            )));
        };
        if let Some(url) = s3_url(dst) {
            #[cfg(not(feature = "aws"))]
            return Err(no_aws(url));
            #[cfg(feature = "aws")]
            return Ok(Output::S3 {
                bytes: Vec::new(),
                url: url.to_owned(),
            });
        }
        if fs::metadata(dst).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = OpenOptions::new()
                .write(true)
                .open(dst)
                .context(|| format!("opening {}", dst.display()))?;
            return Ok(Output::Device(
                BufWriter::with_capacity(BUF_SIZE, file),
                dst.to_owned(),
            ));
        }
        let dir = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".cipherflow-out-");
        // Envelopes are ciphertext: ordinary file permissions (0666 less the umask), not the
        // temporary file's 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let tmp = builder
            .tempfile_in(dir)
            .context(|| format!("creating a temporary file in {}", dir.display()))?;
        Ok(Output::File {
            writer: BufWriter::with_capacity(BUF_SIZE, tmp),
            dst: dst.to_owned(),
        })
    }

    fn label(&self) -> String {
        match self {
            Output::Stdout(_) => "stdout".into(),
            Output::Device(_, dst) | Output::File { dst, .. } => dst.display().to_string(),
            Output::S3 { url, .. } => url.clone(),
        }
    }

    /// Flushes, and moves a file output into place.
    fn commit(self) -> Result<(), Error> {
        match self {
            Output::Stdout(mut w) => w.flush().context(|| "writing to stdout"),
            Output::Device(mut w, dst) => {
                w.flush().context(|| format!("writing {}", dst.display()))
            }
            Output::File { writer, dst } => {
                let context = || format!("writing {}", dst.display());
                let tmp = writer
                    .into_inner()
                    .map_err(|e| Error::io(context(), e.into_error()))?;
                tmp.as_file().sync_all().context(context)?;
                tmp.persist(&dst)
                    .map_err(|e| Error::io(context(), e.error))?;
                Ok(())
            }
            #[cfg(feature = "aws")]
            Output::S3 { bytes, url } => aws::put(&url, bytes),
            #[cfg(not(feature = "aws"))]
            Output::S3 { url, .. } => Err(no_aws(&url)),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::Device(w, _) => w.write(buf),
            Output::File { writer, .. } => writer.write(buf),
            Output::S3 { bytes, .. } => bytes.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::Device(w, _) => w.write_all(buf),
            Output::File { writer, .. } => writer.write_all(buf),
            Output::S3 { bytes, .. } => bytes.write_all(buf),
        }
    }

    /// Vectored writes (`cipherflow merge` writes runs of the base this way) go straight to
    /// a file, after what is buffered, without being copied: a `BufWriter` would copy every
    /// slice smaller than its buffer (and all of them for a `NamedTempFile`, which does not
    /// report vectored writes).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write_vectored(bufs),
            Output::Device(w, _) => {
                w.flush()?;
                w.get_mut().write_vectored(bufs)
            }
            Output::File { writer, .. } => {
                writer.flush()?;
                writer.get_mut().as_file_mut().write_vectored(bufs)
            }
            Output::S3 { bytes, .. } => bytes.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Device(w, _) => w.flush(),
            Output::File { writer, .. } => writer.flush(),
            Output::S3 { .. } => Ok(()),
        }
    }
}
