//! GetHardware answered with each record's stored encoding.
//!
//! Point reads are the registry's hot path: every boot service's cache miss and every
//! `hwctl get`. tonic's generated handler would clone the record out of the read index
//! and encode it again on every call — 9 % of the registry's CPU per call in `perf`
//! (`bench/README.md`). The read index keeps each record's protobuf encoding, made once
//! when the record is written, and this route sends those bytes as they are:
//! [`EncodedGetHardwareResponse`]'s `bytes` field 1 is, on the wire, exactly
//! `GetHardwareResponse { Hardware hardware = 1; }`, so clients see no difference.
//!
//! [`WithEncodedGet`] sits where the generated `HardwareServiceServer` would: it takes
//! GetHardware and hands every other method to the generated server unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ironboot_proto::pb::GetHardwareRequest;
use ironboot_proto::pb::hardware_service_server::HardwareServiceServer;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};

use crate::metrics::Metered;
use crate::service::Registry;

/// Wire-identical to `GetHardwareResponse`, with the record already encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedGetHardwareResponse {
    /// An encoded `hardware.v1.Hardware` message.
    #[prost(bytes = "bytes", tag = "1")]
    pub hardware: Bytes,
}

const GET_HARDWARE: &str = "/hardware.v1.HardwareService/GetHardware";

type Generated = HardwareServiceServer<Metered<Registry>>;

/// The `hardware.v1.HardwareService` the server mounts.
#[derive(Clone)]
pub struct WithEncodedGet {
    registry: Arc<Metered<Registry>>,
    generated: Generated,
}

impl WithEncodedGet {
    pub fn new(registry: Metered<Registry>) -> Self {
        let registry = Arc::new(registry);
        WithEncodedGet {
            generated: HardwareServiceServer::from_arc(registry.clone()),
            registry,
        }
    }
}

impl NamedService for WithEncodedGet {
    const NAME: &'static str = <Generated as NamedService>::NAME;
}

struct GetHardware(Arc<Metered<Registry>>);

impl UnaryService<GetHardwareRequest> for GetHardware {
    type Response = EncodedGetHardwareResponse;
    type Future = BoxFuture<tonic::Response<EncodedGetHardwareResponse>, tonic::Status>;

    fn call(&mut self, req: tonic::Request<GetHardwareRequest>) -> Self::Future {
        let registry = self.0.clone();
        Box::pin(async move { registry.get_hardware_encoded(req).await })
    }
}

impl<B> Service<http::Request<B>> for WithEncodedGet
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != GET_HARDWARE {
            return self.generated.call(req);
        }
        let method = GetHardware(self.registry.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::<
                EncodedGetHardwareResponse,
                GetHardwareRequest,
            >::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::{GetHardwareResponse, Hardware, Interface};
    use prost::Message;

    #[test]
    fn the_encoded_answer_decodes_as_get_hardware_response() {
        let hw = Hardware {
            id: "id-1".into(),
            name: "m1".into(),
            interfaces: vec![Interface {
                mac: "52:54:00:00:00:01".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let sent = EncodedGetHardwareResponse {
            hardware: hw.encode_to_vec().into(),
        }
        .encode_to_vec();
        assert_eq!(
            sent,
            GetHardwareResponse {
                hardware: Some(hw.clone())
            }
            .encode_to_vec()
        );
        assert_eq!(
            GetHardwareResponse::decode(sent.as_slice())
                .unwrap()
                .hardware,
            Some(hw)
        );
    }
}
