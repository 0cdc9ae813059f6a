"""moto_server with real AWS-KMS RSA semantics for asymmetric ENCRYPT_DECRYPT keys.

Stock moto (5.2.x) encrypts with an AES-GCM moto blob for *every* key, so a
ciphertext produced locally with the GetPublicKey SPKI cannot be decrypted.
This launcher patches moto's KMS response handlers so that, for RSA_* keys:
  * Encrypt  -> real RSA-OAEP (RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256) with the key's
                private key, ciphertext length == modulus size, AWS size limits enforced
  * Decrypt  -> real RSA-OAEP decryption (KeyId + EncryptionAlgorithm required, as in AWS);
                bad ciphertext -> InvalidCiphertextException
  * Sign/Verify RSASSA_PSS_* use salt length == digest length (AWS behaviour;
                stock moto uses the maximum salt length)
  * (cipherflow-aws addition) Encrypt, Decrypt, Sign and GetPublicKey on a disabled key fail
                with DisabledException, on a key pending deletion with
                KMSInvalidStateException, as in AWS (stock moto ignores the key state)
Symmetric keys keep moto's behaviour. Usage: python moto_rsa_server.py -H 127.0.0.1 -p PORT
"""
import base64, json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from moto.kms import responses as kms_responses, utils as kms_utils
from moto.kms.exceptions import (InvalidCiphertextException, InvalidKeyUsageException,
                                 ValidationException)

# Fail loudly if moto internals this relies on change (written against moto 5.2.5).
assert hasattr(kms_utils.RSAPrivateKey, "_RSAPrivateKey__padding_and_hash_algorithm"), "moto internals changed"
assert hasattr(kms_responses.KmsResponse, "encrypt") and hasattr(kms_responses.KmsResponse, "decrypt")

_HASH = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}
_orig_encrypt = kms_responses.KmsResponse.encrypt
_orig_decrypt = kms_responses.KmsResponse.decrypt


def _rsa_key(self, key_id):
    if not key_id:
        return None
    key = self.kms_backend.describe_key(key_id)
    return key if key.key_spec.startswith("RSA_") else None


def _oaep(alg, spec):
    if alg not in _HASH:
        raise ValidationException(
            f"EncryptionAlgorithm {alg} is not supported for key spec {spec}; "
            "use RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256")
    h = _HASH[alg]
    return padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None), h.digest_size


def encrypt(self):
    key_id = self._get_param("KeyId")
    self._validate_key_id(key_id)
    key = _rsa_key(self, key_id)
    if key is None:
        return _orig_encrypt(self)
    if key.key_usage != "ENCRYPT_DECRYPT":
        raise InvalidKeyUsageException()
    alg = self._get_param("EncryptionAlgorithm")
    pad, hlen = _oaep(alg, key.key_spec)
    plaintext = self._get_param("Plaintext")
    if isinstance(plaintext, str):
        plaintext = plaintext.encode("utf-8")
    pub = key.private_key.private_key.public_key()
    limit = pub.key_size // 8 - 2 * hlen - 2
    if len(plaintext) > limit:
        raise ValidationException(
            f"Algorithm {alg} and key spec {key.key_spec} cannot encrypt data larger than {limit} bytes.")
    ct = pub.encrypt(plaintext, pad)
    return json.dumps({"CiphertextBlob": base64.b64encode(ct).decode(), "KeyId": key.arn,
                       "EncryptionAlgorithm": alg})


def decrypt(self):
    key_id = self._get_param("KeyId")
    if key_id:
        self._validate_key_id(key_id)
    key = _rsa_key(self, key_id)
    if key is None:
        return _orig_decrypt(self)
    if key.key_usage != "ENCRYPT_DECRYPT":
        raise InvalidKeyUsageException()
    alg = self._get_param("EncryptionAlgorithm")
    pad, _ = _oaep(alg, key.key_spec)
    try:
        pt = key.private_key.private_key.decrypt(self._get_param("CiphertextBlob"), pad)
    except Exception:
        raise InvalidCiphertextException()
    return json.dumps({"Plaintext": base64.b64encode(pt).decode(), "KeyId": key.arn,
                       "EncryptionAlgorithm": alg})


kms_responses.KmsResponse.encrypt = encrypt
kms_responses.KmsResponse.decrypt = decrypt

# AWS KMS RSASSA-PSS uses salt length == digest length.
_orig_pad = kms_utils.RSAPrivateKey._RSAPrivateKey__padding_and_hash_algorithm


def _pad(self, signing_algorithm):
    pad, alg = _orig_pad(self, signing_algorithm)
    if isinstance(pad, padding.PSS):
        pad = padding.PSS(mgf=padding.MGF1(type(alg)()), salt_length=padding.PSS.DIGEST_LENGTH)
    return pad, alg


kms_utils.RSAPrivateKey._RSAPrivateKey__padding_and_hash_algorithm = _pad

# cipherflow-aws addition: AWS refuses cryptographic operations on a key that is not enabled.
from moto.core.exceptions import JsonRESTError


class DisabledException(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("DisabledException", message)


class KMSInvalidStateException(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("KMSInvalidStateException", message)


def _require_enabled(handler):
    def checked(self):
        key_id = self._get_param("KeyId")
        try:
            key = self.kms_backend.describe_key(key_id) if key_id else None
        except Exception:
            key = None  # the handler itself reports an unknown key
        if key is not None and key.key_state == "Disabled":
            raise DisabledException(f"{key.arn} is disabled.")
        if key is not None and key.key_state == "PendingDeletion":
            raise KMSInvalidStateException(f"{key.arn} is pending deletion.")
        return handler(self)
    return checked


for _name in ("encrypt", "decrypt", "sign", "get_public_key"):
    setattr(kms_responses.KmsResponse, _name,
            _require_enabled(getattr(kms_responses.KmsResponse, _name)))

if __name__ == "__main__":
    from moto.server import main
    main()
