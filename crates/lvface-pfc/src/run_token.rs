//! [`RunToken`]: the secret that the ranks of one run share, and with which every rendezvous
//! and ring connection proves it belongs to the run.
//!
//! The proof is a challenge and response: the side that accepts sends a fresh random nonce, the
//! side that connects answers with HMAC-SHA256(token, purpose ‖ nonce ‖ message). A stranger
//! without the token cannot answer, and an answer recorded from one connection is worth nothing
//! on the next (its nonce differs). The token itself never travels.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{PfcError, Result};

/// Bytes of a message authentication code.
pub(crate) const MAC_BYTES: usize = 32;
/// Bytes of a challenge.
pub(crate) const NONCE_BYTES: usize = 16;
/// The shortest token accepted: shorter secrets can be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The run's shared secret, from `LVFACE_RUN_TOKEN` or the file `LVFACE_RUN_TOKEN_FILE` names;
/// empty when neither is set, which is allowed only when every rank listens on loopback
/// ([`Launch::from_vars`](crate::Launch::from_vars) checks). Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RunToken(Vec<u8>);

impl std::fmt::Debug for RunToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("RunToken(none)")
        } else {
            f.write_str("RunToken(<secret>)")
        }
    }
}

impl RunToken {
    /// A token from its text; at least [`MIN_TOKEN_BYTES`] bytes once surrounding whitespace is
    /// trimmed.
    pub fn new(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_BYTES {
            return Err(PfcError::Launch(format!(
                "the run token must be at least {MIN_TOKEN_BYTES} characters (for example the \
                 output of `openssl rand -hex 16`), got {}",
                text.len()
            )));
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// No token: connections still go through the challenge, with an empty key, and prove only
    /// that the peer speaks this protocol.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Whether a secret was given.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// The token of `LVFACE_RUN_TOKEN` or of the file `LVFACE_RUN_TOKEN_FILE` names, read through
    /// `var`; [`none`](Self::none) when neither is set.
    pub fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<Self> {
        match (var("LVFACE_RUN_TOKEN"), var("LVFACE_RUN_TOKEN_FILE")) {
            (Some(_), Some(_)) => Err(PfcError::Launch(
                "LVFACE_RUN_TOKEN and LVFACE_RUN_TOKEN_FILE are both set; set one".into(),
            )),
            (Some(text), None) => {
                Self::new(&text).map_err(|e| PfcError::Launch(format!("LVFACE_RUN_TOKEN: {e}")))
            }
            (None, Some(path)) => Self::read(Path::new(&path)),
            (None, None) => Ok(Self::none()),
        }
    }

    /// The token in the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |reason: String| {
            PfcError::Launch(format!(
                "LVFACE_RUN_TOKEN_FILE={}: {reason}",
                path.display()
            ))
        };
        // A token file is a line; anything long is not one (and is not read whole).
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(fail(format!("{} bytes is not a token", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::new(&text).map_err(|e| fail(e.to_string()))
    }

    /// HMAC-SHA256 of `parts`, in order, under this token, for `purpose` (so that a code made for
    /// one kind of message is never accepted as another).
    pub(crate) fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        self.hmac(purpose, parts).finalize().into_bytes().into()
    }

    /// Whether `code` is [`mac`](Self::mac) of the same message, compared in constant time.
    pub(crate) fn verify(&self, purpose: &str, parts: &[&[u8]], code: &[u8]) -> bool {
        self.hmac(purpose, parts).verify_slice(code).is_ok()
    }

    fn hmac(&self, purpose: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(&(purpose.len() as u32).to_le_bytes());
        mac.update(purpose.as_bytes());
        for part in parts {
            // Lengths first, so that no two splits of the same bytes give the same code.
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }
}

/// A fresh challenge from the operating system's generator.
pub(crate) fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    let mut bytes = [0; NONCE_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        std::io::Error::other(format!("the operating system gave no random bytes: {e}"))
    })?;
    Ok(bytes)
}

/// Whether every address `host` names is a loopback address (and it names at least one), so
/// that only processes of this machine can reach a port bound there.
pub(crate) fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn codes_depend_on_token_purpose_and_every_byte() {
        let a = RunToken::new("0123456789abcdef").unwrap();
        let b = RunToken::new("0123456789abcdeg").unwrap();
        let code = a.mac("hello", &[b"xy", b"z"]);
        assert!(a.verify("hello", &[b"xy", b"z"], &code));
        assert!(!b.verify("hello", &[b"xy", b"z"], &code));
        assert!(!a.verify("other", &[b"xy", b"z"], &code));
        assert!(!a.verify("hello", &[b"x", b"yz"], &code));
        assert!(!a.verify("hello", &[b"xy", b"y"], &code));
        assert!(!a.verify("hello", &[b"xy", b"z"], &code[..31]));
    }

    /// RFC 4231, test case 2: the code is HMAC-SHA256 and nothing else.
    #[test]
    fn the_code_is_standard_hmac_sha256() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_come_from_the_variable_or_a_file_and_short_ones_are_refused() {
        assert!(!RunToken::from_vars(&vars(&[])).unwrap().is_set());
        let token = RunToken::from_vars(&vars(&[("LVFACE_RUN_TOKEN", " 0123456789abcdef\n")]));
        assert_eq!(token.unwrap(), RunToken::new("0123456789abcdef").unwrap());
        let err = RunToken::from_vars(&vars(&[("LVFACE_RUN_TOKEN", "short")])).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");

        let dir = std::env::temp_dir().join(format!("lvface-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "fedcba9876543210fedcba\n").unwrap();
        let path = file.to_str().unwrap();
        let token = RunToken::from_vars(&vars(&[("LVFACE_RUN_TOKEN_FILE", path)])).unwrap();
        assert_eq!(token, RunToken::new("fedcba9876543210fedcba").unwrap());
        let missing = dir.join("missing");
        let missing = missing.to_str().unwrap();
        let err = RunToken::from_vars(&vars(&[("LVFACE_RUN_TOKEN_FILE", missing)])).unwrap_err();
        assert!(err.to_string().contains(missing), "{err}");
        let both = [
            ("LVFACE_RUN_TOKEN", "0123456789abcdef"),
            ("LVFACE_RUN_TOKEN_FILE", path),
        ];
        assert!(RunToken::from_vars(&vars(&both)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            format!("{:?}", RunToken::new("0123456789abcdef").unwrap()),
            "RunToken(<secret>)"
        );
    }

    #[test]
    fn loopback_hosts_are_told_from_others() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.0.0.2"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("no-such-host.invalid"));
    }
}
