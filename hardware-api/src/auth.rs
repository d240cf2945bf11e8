//! Bearer tokens with two roles: `read` for boot services, `write` for operators.
//!
//! Tokens come from a file (one `ROLE TOKEN [NAME]` per line, `#` comments) and/or the
//! `HARDWARE_API_TOKENS` variable (`ROLE:TOKEN[,ROLE:TOKEN…]`). A registry with no
//! tokens refuses every call: nothing is ever open by default.

use std::fmt;
use std::path::Path;

use tonic::{Status, metadata::MetadataMap};

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
        })
    }
}

#[derive(Clone)]
struct Entry {
    token: String,
    role: Role,
    name: String,
}

/// The tokens this registry accepts.
#[derive(Clone, Default)]
pub struct Tokens(Vec<Entry>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secrets themselves.
        f.debug_list()
            .entries(self.0.iter().map(|e| format!("{} ({})", e.name, e.role)))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{source_name} line {line}: expected `ROLE TOKEN [NAME]` with ROLE read or write")]
    Syntax { source_name: String, line: usize },
    #[error("{source_name} line {line}: token shorter than {MIN_TOKEN_LEN} characters")]
    TooShort { source_name: String, line: usize },
    /// The tokens file, with why in words an operator can act on.
    #[error("tokens file: {0}")]
    Io(String),
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn add(
        &mut self,
        role: &str,
        token: &str,
        name: &str,
        source_name: &str,
        line: usize,
    ) -> Result<(), TokenError> {
        let role = Role::parse(role).ok_or_else(|| TokenError::Syntax {
            source_name: source_name.into(),
            line,
        })?;
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                source_name: source_name.into(),
                line,
            });
        }
        let name = if name.is_empty() {
            format!("{source_name}:{line}")
        } else {
            name.to_string()
        };
        self.0.push(Entry {
            token: token.to_string(),
            role,
            name,
        });
        Ok(())
    }

    /// Adds the tokens of a tokens file.
    pub fn load_file(&mut self, path: &Path) -> Result<(), TokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| TokenError::Io(ironboot_telemetry::startup::unreadable(path, &err)))?;
        self.load_text(&text, &path.display().to_string())
    }

    pub fn load_text(&mut self, text: &str, source_name: &str) -> Result<(), TokenError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(role), Some(token)) = (parts.next(), parts.next()) else {
                return Err(TokenError::Syntax {
                    source_name: source_name.into(),
                    line: i + 1,
                });
            };
            let name = parts.collect::<Vec<_>>().join(" ");
            self.add(role, token, &name, source_name, i + 1)?;
        }
        Ok(())
    }

    /// Adds tokens from the `ROLE:TOKEN,ROLE:TOKEN` form of the environment variable.
    pub fn load_env(&mut self, value: &str) -> Result<(), TokenError> {
        for (i, item) in value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let source_name = "HARDWARE_API_TOKENS";
            let (role, token) = item.split_once(':').ok_or(TokenError::Syntax {
                source_name: source_name.into(),
                line: i + 1,
            })?;
            self.add(role, token, "", source_name, i + 1)?;
        }
        Ok(())
    }

    /// Checks the request's `authorization: Bearer …` header against `needed`.
    /// Returns the token's name for logs.
    pub fn authorize(&self, md: &MetadataMap, needed: Role) -> Result<String, Status> {
        if self.0.is_empty() {
            return Err(Status::unauthenticated(
                "this registry has no tokens configured: start it with --tokens-file or HARDWARE_API_TOKENS",
            ));
        }
        let Some(value) = md.get("authorization") else {
            return Err(Status::unauthenticated(
                "missing bearer token (metadata `authorization: Bearer <token>`)",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "malformed authorization metadata: expected `Bearer <token>`",
                )
            })?;
        // Compare against every token in constant time so timing says nothing about
        // how much of a guess was right.
        let mut found: Option<&Entry> = None;
        for e in &self.0 {
            if constant_time_eq(e.token.as_bytes(), presented.as_bytes()) {
                found = Some(e);
            }
        }
        let entry = found.ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        if entry.role < needed {
            return Err(Status::permission_denied(format!(
                "token {:?} has role {}, this call needs {}",
                entry.name, entry.role, needed
            )));
        }
        Ok(entry.name.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random token for generated configurations (the local launcher, tests).
pub fn generate_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", v.parse().unwrap());
        m
    }

    fn tokens() -> Tokens {
        let mut t = Tokens::default();
        t.load_text("# boot services\nread  rrrrrrrrrrrrrrrrrrrr dhcp-svc\nwrite wwwwwwwwwwwwwwwwwwww ops\n", "tokens").unwrap();
        t
    }

    #[test]
    fn roles() {
        let t = tokens();
        assert_eq!(
            t.authorize(&md("Bearer wwwwwwwwwwwwwwwwwwww"), Role::Write)
                .unwrap(),
            "ops"
        );
        assert_eq!(
            t.authorize(&md("Bearer wwwwwwwwwwwwwwwwwwww"), Role::Read)
                .unwrap(),
            "ops"
        );
        assert_eq!(
            t.authorize(&md("Bearer rrrrrrrrrrrrrrrrrrrr"), Role::Read)
                .unwrap(),
            "dhcp-svc"
        );
        let e = t
            .authorize(&md("Bearer rrrrrrrrrrrrrrrrrrrr"), Role::Write)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            t.authorize(&md("Bearer nope"), Role::Read)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.authorize(&MetadataMap::new(), Role::Read)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            Tokens::default()
                .authorize(&md("Bearer x"), Role::Read)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn refuses_bad_sources() {
        let mut t = Tokens::default();
        assert!(matches!(
            t.load_text("admin xxxxxxxxxxxxxxxxxxxxxx", "f"),
            Err(TokenError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            t.load_text("\n\nread short", "f"),
            Err(TokenError::TooShort { line: 3, .. })
        ));
        assert!(t.load_env("write:abc").is_err());
        t.load_env("write:0123456789abcdef0123, read:fedcba9876543210fedc")
            .unwrap();
        assert_eq!(t.len(), 2);
    }
}
