//! The contract between the ironboot registry and the boot services.
//!
//! - [`pb`]: the generated `hardware.v1` messages, client and server (tonic/prost).
//! - [`mac`]: one parser for every spelling of a MAC address the services meet.
//! - [`client`]: connecting to the registry with a token and optional TLS.
//! - [`cache`]: the watch-backed local cache that lets DHCP, TFTP, HTTP and syslog
//!   answer without a network hop per packet.

pub mod cache;
pub mod client;
pub mod mac;

/// Generated code for the `hardware.v1` package.
pub mod pb {
    tonic::include_proto!("hardware.v1");

    /// Encoded `FileDescriptorSet`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hardware_descriptor.bin"));
}

pub use mac::MacAddr;
