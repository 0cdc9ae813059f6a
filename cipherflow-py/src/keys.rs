//! Key classes: consumers' `PrivateKey`/`PublicKey`, producers' `SigningKey`/`VerifyingKey`,
//! and `KmsKey`, which unwraps through a boto3 KMS client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherflow_core::{
    Error, KeyError, KeyId, KeyUnwrapper, RsaPrivateKey, RsaPublicKey, SigningKey as CoreSigning,
    VerifyingKey as CoreVerifying, WrapAlgorithm,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use zeroize::Zeroizing;

use crate::errors::{io_to_py, to_py};

/// A key type the classes below load from PEM or DER, and what errors call it.
trait LoadKey: Sized + Send {
    const WHAT: &'static str;
    fn parse(bytes: &[u8]) -> Result<Self, Error>;
}

impl LoadKey for RsaPrivateKey {
    const WHAT: &'static str = "private key";
    fn parse(bytes: &[u8]) -> Result<Self, Error> {
        RsaPrivateKey::from_bytes(bytes)
    }
}

impl LoadKey for RsaPublicKey {
    const WHAT: &'static str = "public key";
    fn parse(bytes: &[u8]) -> Result<Self, Error> {
        RsaPublicKey::from_bytes(bytes)
    }
}

impl LoadKey for CoreSigning {
    const WHAT: &'static str = "signing key";
    fn parse(bytes: &[u8]) -> Result<Self, Error> {
        CoreSigning::from_bytes(bytes)
    }
}

impl LoadKey for CoreVerifying {
    const WHAT: &'static str = "verifying key";
    fn parse(bytes: &[u8]) -> Result<Self, Error> {
        CoreVerifying::from_bytes(bytes)
    }
}

/// Parses PEM or DER bytes (GIL released); errors say `loading <what>`.
fn load_bytes<K: LoadKey>(py: Python<'_>, data: &[u8]) -> PyResult<Arc<K>> {
    py.detach(|| K::parse(data))
        .map(Arc::new)
        .map_err(|e| to_py(e, &format!("loading {}", K::WHAT)))
}

/// Reads and parses a key file (PEM or DER); errors say `loading <what> <path>`, and an I/O
/// error is the matching `OSError` with the file name set.
fn load_file<K: LoadKey>(py: Python<'_>, path: &Path) -> PyResult<Arc<K>> {
    let data = py
        .detach(|| std::fs::read(path).map(Zeroizing::new))
        .map_err(|e| {
            io_to_py(
                e,
                &format!("reading key file {}", path.display()),
                Some(path),
            )
        })?;
    py.detach(|| K::parse(&data))
        .map(Arc::new)
        .map_err(|e| to_py(e, &format!("loading {} {}", K::WHAT, path.display())))
}

/// A consumer's RSA private key (2048 to 4096 bits): opens envelopes sealed for it.
#[pyclass(frozen, module = "cipherflow")]
pub struct PrivateKey {
    pub(crate) inner: Arc<RsaPrivateKey>,
}

#[pymethods]
impl PrivateKey {
    /// Loads a PEM or DER private key (PKCS#8 or PKCS#1).
    #[staticmethod]
    fn from_pem(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(PrivateKey {
            inner: load_bytes(py, data)?,
        })
    }

    /// Loads a private key file (PEM or DER).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Ok(PrivateKey {
            inner: load_file(py, &path)?,
        })
    }

    /// The public half, to give to producers.
    fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: Arc::new(self.inner.public_key().clone()),
        }
    }

    /// PEM (`PRIVATE KEY`, PKCS#8).
    fn to_pem<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.to_pem().as_bytes())
    }

    /// The key id: SHA-256 of the public key's SubjectPublicKeyInfo DER, in hex.
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// Modulus size in bits.
    #[getter]
    fn bits(&self) -> usize {
        self.inner.public_key().bits()
    }

    fn __repr__(&self) -> String {
        format!(
            "PrivateKey(bits={}, key_id='{}')",
            self.bits(),
            self.key_id()
        )
    }
}

/// A consumer's RSA public key: producers seal for it; it cannot open anything.
#[pyclass(frozen, module = "cipherflow")]
pub struct PublicKey {
    pub(crate) inner: Arc<RsaPublicKey>,
}

#[pymethods]
impl PublicKey {
    /// Loads a PEM or DER public key (SPKI or PKCS#1). A private key is refused.
    #[staticmethod]
    fn from_pem(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(PublicKey {
            inner: load_bytes(py, data)?,
        })
    }

    /// Loads a public key file (PEM or DER).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Ok(PublicKey {
            inner: load_file(py, &path)?,
        })
    }

    /// PEM (`PUBLIC KEY`, SPKI).
    fn to_pem<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.to_pem().as_bytes())
    }

    /// SubjectPublicKeyInfo DER.
    fn to_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.spki_der())
    }

    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    #[getter]
    fn bits(&self) -> usize {
        self.inner.bits()
    }

    fn __repr__(&self) -> String {
        format!(
            "PublicKey(bits={}, key_id='{}')",
            self.bits(),
            self.key_id()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PublicKey>()
            .is_ok_and(|o| o.get().inner.key_id() == self.inner.key_id())
    }

    fn __hash__(&self) -> u64 {
        u64::from_be_bytes(self.inner.key_id().0[..8].try_into().expect("8 bytes"))
    }
}

/// A producer's signing key: ECDSA P-256, or RSA used with PSS.
#[pyclass(frozen, module = "cipherflow")]
pub struct SigningKey {
    pub(crate) inner: Arc<CoreSigning>,
}

#[pymethods]
impl SigningKey {
    /// Loads a PEM or DER P-256 or RSA private key.
    #[staticmethod]
    fn from_pem(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(SigningKey {
            inner: load_bytes(py, data)?,
        })
    }

    /// Loads a signing key file (PEM or DER).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Ok(SigningKey {
            inner: load_file(py, &path)?,
        })
    }

    /// The public half, which consumers require with `signer=`.
    fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: Arc::new(self.inner.verifying_key().clone()),
        }
    }

    /// Same as `verifying_key()`.
    fn public_key(&self) -> VerifyingKey {
        self.verifying_key()
    }

    fn to_pem<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.to_pem().as_bytes())
    }

    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// `ecdsa-p256-sha256` or `rsa-pss-sha256`.
    #[getter]
    fn algorithm(&self) -> &'static str {
        use cipherflow_core::Verifier;
        self.inner.verifying_key().algorithm().name()
    }

    fn __repr__(&self) -> String {
        format!(
            "SigningKey(algorithm='{}', key_id='{}')",
            self.algorithm(),
            self.key_id()
        )
    }
}

/// A producer's public key: `signer=` when opening refuses envelopes not signed by it.
#[pyclass(frozen, module = "cipherflow")]
pub struct VerifyingKey {
    pub(crate) inner: Arc<CoreVerifying>,
}

#[pymethods]
impl VerifyingKey {
    /// Loads a PEM or DER P-256 or RSA public key.
    #[staticmethod]
    fn from_pem(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(VerifyingKey {
            inner: load_bytes(py, data)?,
        })
    }

    /// Loads a verifying key file (PEM or DER).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Ok(VerifyingKey {
            inner: load_file(py, &path)?,
        })
    }

    fn to_pem<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.to_pem().as_bytes())
    }

    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        use cipherflow_core::Verifier;
        self.inner.algorithm().name()
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifyingKey(algorithm='{}', key_id='{}')",
            self.algorithm(),
            self.key_id()
        )
    }
}

/// A generated RSA consumer key (2048, 3072 or 4096 bits).
#[pyfunction]
#[pyo3(signature = (bits = 3072))]
pub fn generate_key(py: Python<'_>, bits: usize) -> PyResult<PrivateKey> {
    let key = py
        .detach(|| RsaPrivateKey::generate(bits))
        .map_err(|e| to_py(e, "generating an RSA key"))?;
    Ok(PrivateKey {
        inner: Arc::new(key),
    })
}

/// A generated producer signing key: `ecdsa-p256-sha256` (default) or `rsa-pss-sha256`.
#[pyfunction]
#[pyo3(signature = (algorithm = "ecdsa-p256-sha256", bits = 3072))]
pub fn generate_signing_key(py: Python<'_>, algorithm: &str, bits: usize) -> PyResult<SigningKey> {
    let key = match algorithm {
        "ecdsa-p256-sha256" | "p256" | "ecdsa" => py.detach(CoreSigning::generate_p256),
        "rsa-pss-sha256" | "rsa" => py.detach(|| {
            let rsa = RsaPrivateKey::generate(bits)?;
            CoreSigning::from_bytes(rsa.to_pem().as_bytes())
        }),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown signing algorithm {other:?} (use 'ecdsa-p256-sha256' or 'rsa-pss-sha256')"
            )));
        }
    }
    .map_err(|e| to_py(e, "generating a signing key"))?;
    Ok(SigningKey {
        inner: Arc::new(key),
    })
}

/// An RSA key held in AWS KMS: unwraps with `Decrypt` (`RSAES_OAEP_SHA_256`) through a
/// boto3 KMS client. The private key never leaves KMS.
#[pyclass(frozen, module = "cipherflow")]
pub struct KmsKey {
    pub(crate) inner: Arc<KmsUnwrapper>,
}

pub struct KmsUnwrapper {
    key_arn: String,
    client: Py<PyAny>,
    id: KeyId,
    public: Arc<RsaPublicKey>,
}

#[pymethods]
impl KmsKey {
    /// `key_id`: a KMS key id, ARN or alias; `client`: `boto3.client("kms")`. Calls
    /// `GetPublicKey` once to learn the key id envelopes name it by.
    #[new]
    fn new(py: Python<'_>, key_id: String, client: Py<PyAny>) -> PyResult<Self> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("KeyId", &key_id)?;
        let response = client.call_method(py, "get_public_key", (), Some(&kwargs))?;
        let der: Vec<u8> = response.bind(py).get_item("PublicKey")?.extract()?;
        let public = RsaPublicKey::from_bytes(&der)
            .map_err(|e| to_py(e, &format!("public key of KMS key {key_id}")))?;
        Ok(KmsKey {
            inner: Arc::new(KmsUnwrapper {
                id: KeyId::of_spki(&der),
                key_arn: key_id,
                client,
                public: Arc::new(public),
            }),
        })
    }

    /// The key's public half (from `GetPublicKey`), for sealing.
    pub(crate) fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: self.inner.public.clone(),
        }
    }

    #[getter]
    fn key_id(&self) -> String {
        self.inner.id.to_string()
    }

    /// The KMS key id, ARN or alias given.
    #[getter]
    fn kms_key_id(&self) -> String {
        self.inner.key_arn.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "KmsKey(kms_key_id='{}', key_id='{}')",
            self.inner.key_arn, self.inner.id
        )
    }
}

impl KeyUnwrapper for KmsUnwrapper {
    fn key_id(&self) -> KeyId {
        self.id
    }

    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if algorithm != WrapAlgorithm::RsaOaepSha256 {
            return Err(KeyError::Unsupported(format!("wrap algorithm {algorithm:?}")).into());
        }
        Python::attach(|py| {
            let call = || -> PyResult<Zeroizing<Vec<u8>>> {
                let kwargs = PyDict::new(py);
                kwargs.set_item("KeyId", &self.key_arn)?;
                kwargs.set_item("CiphertextBlob", PyBytes::new(py, wrapped))?;
                kwargs.set_item("EncryptionAlgorithm", "RSAES_OAEP_SHA_256")?;
                let response = self.client.call_method(py, "decrypt", (), Some(&kwargs))?;
                let plaintext: Vec<u8> = response.bind(py).get_item("Plaintext")?.extract()?;
                Ok(Zeroizing::new(plaintext))
            };
            call().map_err(|err| {
                if is_invalid_ciphertext(py, &err) {
                    // KMS could not decrypt this wrapped key: the header does not authenticate.
                    cipherflow_core::IntegrityError::Header.into()
                } else {
                    KeyError::OperationFailed(format!("KMS Decrypt with {}: {err}", self.key_arn))
                        .into()
                }
            })
        })
    }
}

/// Whether a botocore `ClientError` says `InvalidCiphertextException`.
fn is_invalid_ciphertext(py: Python<'_>, err: &PyErr) -> bool {
    let value = err.value(py);
    let code = value
        .getattr("response")
        .and_then(|r| r.get_item("Error"))
        .and_then(|e| e.get_item("Code"))
        .and_then(|c| c.extract::<String>());
    matches!(code.as_deref(), Ok("InvalidCiphertextException"))
}

/// Any key that opens: a local `PrivateKey` or a `KmsKey`.
#[derive(Clone)]
pub enum AnyUnwrapper {
    Local(Arc<RsaPrivateKey>),
    Kms(Arc<KmsUnwrapper>),
}

impl AnyUnwrapper {
    pub fn extract(key: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(k) = key.cast::<PrivateKey>() {
            return Ok(AnyUnwrapper::Local(k.get().inner.clone()));
        }
        if let Ok(k) = key.cast::<KmsKey>() {
            return Ok(AnyUnwrapper::Kms(k.get().inner.clone()));
        }
        Err(PyTypeError::new_err(format!(
            "key must be a cipherflow.PrivateKey or cipherflow.KmsKey, not {}",
            key.get_type().name()?
        )))
    }
}

impl KeyUnwrapper for AnyUnwrapper {
    fn key_id(&self) -> KeyId {
        match self {
            AnyUnwrapper::Local(k) => k.key_id(),
            AnyUnwrapper::Kms(k) => k.key_id(),
        }
    }

    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self {
            AnyUnwrapper::Local(k) => k.unwrap(algorithm, wrapped),
            AnyUnwrapper::Kms(k) => k.unwrap(algorithm, wrapped),
        }
    }
}

/// The optional `signer=` of the open functions.
pub fn extract_verifier(signer: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<CoreVerifying>>> {
    let Some(signer) = signer else {
        return Ok(None);
    };
    if signer.is_none() {
        return Ok(None);
    }
    if let Ok(v) = signer.cast::<VerifyingKey>() {
        return Ok(Some(v.get().inner.clone()));
    }
    if let Ok(s) = signer.cast::<SigningKey>() {
        return Ok(Some(Arc::new(s.get().inner.verifying_key().clone())));
    }
    Err(PyTypeError::new_err(format!(
        "signer must be a cipherflow.VerifyingKey, not {}",
        signer.get_type().name()?
    )))
}
