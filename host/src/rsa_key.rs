//! RSA private keys for key-pair authentication: Snowflake's key-pair JWT
//! and Google's service-account JWT-bearer grant both sign an RS256 token
//! with a PEM key the operator configures. Signing is `jsonwebtoken`'s;
//! `ring` (already the TLS stack's) checks the key and yields its public
//! half, whose fingerprint Snowflake wants in the token's issuer.
//!
//! The config reads and checks a key when it loads (so a bad one is named
//! by its setting before anything connects) and the sources sign with it,
//! so the key is a module of its own rather than either's.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Why a PEM text is no key Ebb can sign with, or signing failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM private key ({0}); paste the whole `-----BEGIN PRIVATE KEY-----` block")]
    NotPem(pem::PemError),
    #[error(
        "the key is encrypted; store it unencrypted in a secret (`openssl pkcs8 -topk8 -nocrypt -in KEY`)"
    )]
    Encrypted,
    #[error("expected an RSA private key, found a PEM `{0}` block")]
    NotRsa(String),
    #[error("not a usable RSA private key of 2048 bits or more ({0})")]
    Rejected(ring::error::KeyRejected),
    #[error("not a usable RSA private key ({0})")]
    Unusable(jsonwebtoken::errors::Error),
    #[error("cannot sign the authentication token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// A checked RSA private key, ready to sign.
#[derive(Clone)]
pub struct RsaKey {
    encoding: EncodingKey,
    /// The public key as DER `SubjectPublicKeyInfo` (what
    /// `openssl rsa -pubout -outform DER` prints).
    public_der: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey(…)")
    }
}

impl RsaKey {
    /// Reads a PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(text: &str) -> Result<RsaKey, KeyError> {
        let block = pem::parse(text.trim()).map_err(KeyError::NotPem)?;
        let pair = match block.tag() {
            "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(block.contents()),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            other => return Err(KeyError::NotRsa(other.to_string())),
        }
        .map_err(KeyError::Rejected)?;
        let encoding =
            EncodingKey::from_rsa_pem(text.trim().as_bytes()).map_err(KeyError::Unusable)?;
        Ok(RsaKey {
            encoding,
            public_der: subject_public_key_info(
                ring::signature::KeyPair::public_key(&pair).as_ref(),
            ),
        })
    }

    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// An RS256 JWT of `claims`, with `kid` in its header when given.
    pub fn sign(&self, claims: &impl Serialize, kid: Option<&str>) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(KeyError::Sign)
    }
}

/// Wraps a PKCS#1 `RSAPublicKey` in the `SubjectPublicKeyInfo` envelope
/// (algorithm rsaEncryption, NULL parameters).
fn subject_public_key_info(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ENCRYPTION: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = Vec::with_capacity(pkcs1.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ENCRYPTION.to_vec();
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

/// A DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_der() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        let refused = |text: &str| RsaKey::from_pem(text).unwrap_err().to_string();
        assert!(refused("hello").contains("PEM"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(refused(cert).contains("CERTIFICATE"));
    }
}
