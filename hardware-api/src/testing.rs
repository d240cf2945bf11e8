//! An in-process registry for other crates' tests: every boot service's integration
//! tests start one of these (memory store, loopback port, fresh tokens) instead of a
//! mock, so they exercise the real server, client and watch-backed cache.

use std::time::Duration;

use clap::Parser;
use ironboot_proto::client::{HardwareClient, RegistryArgs};
use ironboot_proto::pb::{Hardware, UpdateHardwareRequest};
use tokio::sync::oneshot;

use crate::auth::generate_token;
use crate::manifest::parse_documents;
use crate::server::{Config, serve_with_admin};

pub struct TestRegistry {
    pub endpoint: String,
    pub write_token: String,
    pub read_token: String,
    /// The registry's admin listener (`/metrics`, `/healthz`), on the same address.
    pub admin_addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl TestRegistry {
    /// Starts a registry with an in-memory store on 127.0.0.1 and a free port.
    pub async fn start() -> TestRegistry {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts one on a given address (e.g. the host end of a veth pair, so a service in
    /// a test's network namespace can reach it).
    pub async fn start_on(listen: &str) -> TestRegistry {
        let write_token = generate_token();
        let read_token = generate_token();
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admin = tokio::net::TcpListener::bind((addr.ip(), 0))
            .await
            .expect("bind admin");
        let admin_addr = admin.local_addr().expect("admin addr");
        let config = Config::parse_from([
            "hardware-api",
            "--store",
            "memory",
            "--listen",
            &addr.to_string(),
            "--bookmark-interval",
            "1s",
            "--tokens",
            &format!("write:{write_token},read:{read_token}"),
        ]);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = serve_with_admin(config, Some(listener), Some(admin), stop).await {
                eprintln!("test registry failed: {e:#}");
            }
        });
        let reg = TestRegistry {
            endpoint: format!("http://{addr}"),
            write_token,
            read_token,
            admin_addr,
            stop: Some(tx),
        };
        // Ready when a call gets through.
        for _ in 0..100 {
            if let Ok(mut c) = reg.client_with(&reg.read_token.clone()).await
                && c.list_hardware(ironboot_proto::pb::ListHardwareRequest::default())
                    .await
                    .is_ok()
            {
                return reg;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("test registry did not come up at {}", reg.endpoint);
    }

    /// Client arguments with the read token, as a boot service would have.
    pub fn read_args(&self) -> RegistryArgs {
        RegistryArgs::new(self.endpoint.clone(), Some(self.read_token.clone()))
    }

    async fn client_with(
        &self,
        token: &str,
    ) -> Result<HardwareClient, ironboot_proto::client::ClientError> {
        RegistryArgs::new(self.endpoint.clone(), Some(token.to_string()))
            .connect()
            .await
    }

    /// A client with the write token.
    pub async fn writer(&self) -> HardwareClient {
        self.client_with(&self.write_token.clone())
            .await
            .expect("connect")
    }

    /// Creates or replaces a record (by name); panics with the registry's message on error.
    pub async fn put(&self, hw: Hardware) -> Hardware {
        let mut c = self.writer().await;
        c.update_hardware(UpdateHardwareRequest {
            hardware: Some(hw),
            expected_revision: 0,
            allow_missing: true,
            validate_only: false,
        })
        .await
        .unwrap_or_else(|s| panic!("put: {}", s.message()))
        .into_inner()
        .hardware
        .expect("record")
    }

    /// Applies YAML in `hwctl apply` form (ours or Tinkerbell's).
    pub async fn put_yaml(&self, yaml: &str) -> Vec<Hardware> {
        let docs = parse_documents(yaml).unwrap_or_else(|e| panic!("bad test YAML: {e}"));
        let mut out = Vec::new();
        for d in docs {
            out.push(self.put(d.hardware).await);
        }
        out
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
