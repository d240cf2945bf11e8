//! TLS and mutual TLS with certificates made for the test (rcgen), through the real
//! binary and the same client code the services use.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{READ_TOKEN, Registry};
use ironboot_proto::client::RegistryArgs;
use ironboot_proto::pb::ListHardwareRequest;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            p.subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            p.extended_key_usages = vec![purpose];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth);
        let w = |name: &str, s: &str| std::fs::write(dir.path().join(name), s).unwrap();
        w("ca.pem", &ca_cert.pem());
        w("server.pem", &server_cert);
        w("server.key", &server_key);
        w("client.pem", &client_cert);
        w("client.key", &client_key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn tls_args(r: &Registry, pki: &Pki, with_client_cert: bool) -> RegistryArgs {
    let mut a = RegistryArgs::new(format!("https://{}", r.addr), Some(READ_TOKEN.into()));
    a.ca = Some(pki.path("ca.pem").into());
    if with_client_cert {
        a.client_cert = Some(pki.path("client.pem").into());
        a.client_key = Some(pki.path("client.key").into());
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_ca() {
    let pki = Pki::new();
    let r = Registry::start_with(&[
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
    ]);
    let mut c = tls_args(&r, &pki, false)
        .connect()
        .await
        .expect("TLS connect");
    c.list_hardware(ListHardwareRequest::default())
        .await
        .expect("list over TLS");

    // Plain HTTP/2 against a TLS port does not get an answer.
    let mut plain = RegistryArgs::new(r.endpoint(), Some(READ_TOKEN.into()))
        .connect_lazy()
        .unwrap();
    assert!(
        plain
            .list_hardware(ListHardwareRequest::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    let r = Registry::start_with(&[
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
        "--tls-client-ca",
        &pki.path("ca.pem"),
    ]);
    let mut with_cert = tls_args(&r, &pki, true)
        .connect()
        .await
        .expect("mTLS connect");
    with_cert
        .list_hardware(ListHardwareRequest::default())
        .await
        .expect("list over mTLS");

    let without = tls_args(&r, &pki, false).connect_lazy().unwrap();
    let mut without = without;
    assert!(
        without
            .list_hardware(ListHardwareRequest::default())
            .await
            .is_err(),
        "a client without a certificate was served"
    );
}
