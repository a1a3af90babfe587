//! JWT tokens, etcd's `--auth-token jwt,pub-key=P,priv-key=K,sign-method=M,ttl=D`:
//! signed by the member that checked the password, verified by any member
//! with the public key, nothing stored. The claims are etcd's: `username`,
//! `revision` (the auth revision at login; a token older than the latest
//! change to users or roles is refused with "revision of auth store is
//! old", and clients log in again) and `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::EtcdError;

/// etcd's default JWT lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

pub struct Jwt {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Jwt {
    /// Parses the options after `jwt,` and loads the keys.
    pub fn from_options(options: &str) -> Result<Jwt, String> {
        let mut map = std::collections::HashMap::new();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').ok_or_else(|| format!("malformed option {option:?}"))?;
            map.insert(key, value);
        }
        let method = map.get("sign-method").ok_or("sign-method is required")?;
        let algorithm: Algorithm = method.parse().map_err(|_| format!("unknown sign-method {method:?}"))?;
        let read = |key: &str| -> Result<Vec<u8>, String> {
            let path = map.get(key).ok_or_else(|| format!("{key} is required for {method}"))?;
            std::fs::read(path).map_err(|e| format!("{path}: {e}"))
        };
        let bad = |e: jsonwebtoken::errors::Error| format!("bad key: {e}");
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = read("priv-key")?;
                (EncodingKey::from_secret(&secret), DecodingKey::from_secret(&secret))
            }
            Algorithm::ES256 | Algorithm::ES384 => (
                EncodingKey::from_ec_pem(&read("priv-key")?).map_err(bad)?,
                DecodingKey::from_ec_pem(&read("pub-key")?).map_err(bad)?,
            ),
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(&read("priv-key")?).map_err(bad)?,
                DecodingKey::from_ed_pem(&read("pub-key")?).map_err(bad)?,
            ),
            _ => (
                EncodingKey::from_rsa_pem(&read("priv-key")?).map_err(bad)?,
                DecodingKey::from_rsa_pem(&read("pub-key")?).map_err(bad)?,
            ),
        };
        let ttl = match map.get("ttl") {
            Some(ttl) => crate::config::parse_duration(ttl)?,
            None => DEFAULT_TTL,
        };
        Ok(Jwt { algorithm, encoding, decoding, ttl })
    }

    /// A token for `user`, who logged in at auth revision `revision`.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, EtcdError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims { username: user.to_string(), revision, exp: (now + self.ttl).as_secs() };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|e| EtcdError::Internal(format!("etcdserver: cannot sign a token: {e}")))
    }

    /// The user and auth revision of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<(String, u64), EtcdError> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| EtcdError::InvalidAuthToken)?;
        Ok((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_public_key_and_forgeries_do_not() {
        let dir = tempfile::tempdir().expect("dir");
        let key = rcgen::KeyPair::generate().expect("an ES256 key");
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).expect("write");
        std::fs::write(dir.path().join("p.pem"), key.public_key_pem()).expect("write");
        let options = format!(
            "pub-key={},priv-key={},sign-method=ES256,ttl=1m",
            dir.path().join("p.pem").display(),
            dir.path().join("k.pem").display()
        );
        let jwt = Jwt::from_options(&options).expect("jwt");
        let token = jwt.sign("alice", 7).expect("sign");
        assert_eq!(jwt.verify(&token).expect("valid"), ("alice".to_string(), 7));
        let mut forged = token.clone();
        forged.insert(forged.len() - 2, 'x');
        assert_eq!(jwt.verify(&forged), Err(EtcdError::InvalidAuthToken));
        assert!(Jwt::from_options("sign-method=RS999").is_err());
        assert!(Jwt::from_options("sign-method=ES256").is_err(), "keys are required");
    }
}
