//! Inbound TLS: the gateway serves HTTPS with a configured certificate and key.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::Gateway;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sluice::config::TlsConfig;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let gw = Gateway::start(vec![], |c| {
        c.tls = Some(TlsConfig {
            cert: format!("{DIR}/localhost.cert.pem").into(),
            key: format!("{DIR}/localhost.key.pem").into(),
        })
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(format!("{DIR}/localhost.cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi over TLS"}]}"#;
    let req = http::Request::post("/v1/chat/completions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-tier"], "interactive");
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["object"], "chat.completion");

    // Plain HTTP on the TLS port is not served.
    let plain = gw.client_get_plain("/healthz").await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be answered on a TLS listener"
    );
    gw.stop().await;
}
