//! async-tftp 0.4 serving files from memory: the design card's starting point, kept as a
//! benchmark baseline so the decision to replace it (see README.md) can be re-measured.
//!
//! `cargo run --release -p tftp-svc --example async-tftp-baseline -- 127.0.0.1:6970 /usr/lib/ipxe/ipxe.efi`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use bytes::Bytes;
use futures::io::{Cursor, Sink};

/// Files by name, held in memory (the directory handler read from disk per request and
/// was ~3× slower than tftpd-hpa, see DEPENDENCIES.md).
struct MemHandler {
    files: Arc<HashMap<String, Bytes>>,
}

impl Handler for MemHandler {
    type Reader = Cursor<Bytes>;
    type Writer = Sink;

    async fn read_req_open(
        &mut self,
        _client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        let name = path.to_str().ok_or(packet::Error::FileNotFound)?;
        let data = self
            .files
            .get(name)
            .cloned()
            .ok_or(packet::Error::FileNotFound)?;
        let len = data.len() as u64;
        Ok((Cursor::new(data), Some(len)))
    }

    async fn write_req_open(
        &mut self,
        _client: &SocketAddr,
        _path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        Err(packet::Error::PermissionDenied)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: async-tftp-baseline ADDR FILE...");
    let mut files = HashMap::new();
    for f in args {
        let p = Path::new(&f);
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_string();
        files.insert(name, Bytes::from(std::fs::read(p).expect("read file")));
    }
    let handler = MemHandler {
        files: Arc::new(files),
    };
    futures::executor::block_on(async move {
        let server = TftpServerBuilder::with_handler(handler)
            .bind(addr)
            .block_size_limit(1468)
            .window_size_limit(16)
            .build()
            .await
            .expect("bind");
        server.serve().await.expect("serve");
    });
}
