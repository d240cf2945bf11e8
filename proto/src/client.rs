//! Connecting to the registry: endpoint, bearer token, optional (mutual) TLS.
//!
//! Every binary that talks to hardware-api flattens [`RegistryArgs`] into its flags, so
//! the same flag and variable names work everywhere.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pb::hardware_service_client::HardwareServiceClient;

/// The typed client every service uses.
pub type HardwareClient = HardwareServiceClient<InterceptedService<Channel, BearerToken>>;

/// Largest message a client accepts (a page of 5000 records is ≈ 2 MB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, clap::Args)]
pub struct RegistryArgs {
    /// hardware-api endpoint, http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long = "registry",
        env = "IRONBOOT_REGISTRY",
        default_value = "http://127.0.0.1:50061"
    )]
    pub endpoint: String,
    /// Bearer token for hardware-api (role `read` is enough for boot services).
    #[arg(
        long = "registry-token",
        env = "IRONBOOT_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the bearer token (first line), instead of --registry-token.
    #[arg(
        long = "registry-token-file",
        env = "IRONBOOT_REGISTRY_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate that signed the registry's certificate (https endpoints).
    #[arg(long = "registry-ca", env = "IRONBOOT_REGISTRY_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, when the registry requires mutual TLS.
    #[arg(
        long = "registry-client-cert",
        env = "IRONBOOT_REGISTRY_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --registry-client-cert.
    #[arg(
        long = "registry-client-key",
        env = "IRONBOOT_REGISTRY_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("registry endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// A file the client needs (token, CA, certificate, key), with the reason in words
    /// an operator can act on ([`ironboot_telemetry::startup::unreadable`]).
    #[error("{0}")]
    Read(String),
    #[error("registry token: {0}")]
    Token(String),
    #[error("cannot reach the registry at {0}: {1}")]
    Connect(String, String),
}

/// An error with its causes, `a: b: c` (tonic's transport errors hide the useful part
/// in their source chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Read(ironboot_telemetry::startup::unreadable(path, &e)))
}

impl RegistryArgs {
    /// Arguments for an endpoint with a token (tests, launchers).
    pub fn new(endpoint: impl Into<String>, token: Option<String>) -> Self {
        RegistryArgs {
            endpoint: endpoint.into(),
            token,
            token_file: None,
            ca: None,
            client_cert: None,
            client_key: None,
        }
    }

    fn token_value(&self) -> Result<Option<AsciiMetadataValue>, ClientError> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(p)) => {
                let text = String::from_utf8(read(p)?)
                    .map_err(|_| ClientError::Token(format!("{} is not text", p.display())))?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (None, None) => None,
        };
        match token {
            None => Ok(None),
            Some(t) if t.is_empty() => Err(ClientError::Token("empty token".into())),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(Some)
                .map_err(|_| ClientError::Token("the token must be printable ASCII".into())),
        }
    }

    fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let bad = |m: String| ClientError::Endpoint(self.endpoint.clone(), m);
        let mut ep = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if self.endpoint.starts_with("https://") {
            let Some(ca) = &self.ca else {
                return Err(bad(
                    "https needs --registry-ca (the CA that signed the registry's certificate)"
                        .into(),
                ));
            };
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(c), Some(k)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        } else if !self.endpoint.starts_with("http://") {
            return Err(bad("expected http://HOST:PORT or https://HOST:PORT".into()));
        }
        Ok(ep)
    }

    /// A client that connects on first use and reconnects by itself, so a service can
    /// start before the registry does.
    pub fn connect_lazy(&self) -> Result<HardwareClient, ClientError> {
        let channel = self.endpoint()?.connect_lazy();
        self.wrap(channel)
    }

    /// A client connected now: fails fast when the registry is unreachable (CLIs).
    pub async fn connect(&self) -> Result<HardwareClient, ClientError> {
        let channel = self.channel().await?;
        self.wrap(channel)
    }

    /// A connected channel without the token interceptor (health checks, reflection).
    pub async fn channel(&self) -> Result<Channel, ClientError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|e| ClientError::Connect(self.endpoint.clone(), error_chain(&e)))
    }

    fn wrap(&self, channel: Channel) -> Result<HardwareClient, ClientError> {
        Ok(
            HardwareServiceClient::with_interceptor(channel, BearerToken(self.token_value()?))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }
}
