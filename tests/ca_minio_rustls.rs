//! A rustls TLS handshake against keyward's MinIO certificate: a server on loopback
//! with `public.crt` and `private.key`, a client trusting only `CAs/ca.crt`, which
//! validates the SANs.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use common::Env;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves one TLS connection with the MinIO target's files; echoes one line.
fn serve(dir: &Path) -> (u16, std::thread::JoinHandle<()>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("public.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("private.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        // Serve until the client side is done (one connection per attempt).
        for stream in listener.incoming().take(3) {
            let Ok(mut tcp) = stream else { continue };
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 5];
            if tls.read_exact(&mut buf).is_ok() {
                let _ = tls.write_all(b"pong\n");
                let _ = tls.flush();
                conn.send_close_notify();
                let _ = conn.complete_io(&mut tcp);
            }
        }
    });
    (port, h)
}

fn connect(ca: &Path, port: u16, name: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"ping\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn rustls_validates_the_minio_certificate_and_its_sans() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let dir = env.path("deploy/minio/certs");
    let ca = dir.join("CAs/ca.crt");
    let (port, server) = serve(&dir);
    // The SANs of ca/minio-server.toml: a DNS name and an IP address.
    assert_eq!(connect(&ca, port, "minio").unwrap(), "pong\n");
    assert_eq!(connect(&ca, port, "127.0.0.1").unwrap(), "pong\n");
    // A name the certificate does not carry is refused by the client.
    let err = connect(&ca, port, "s3.example.com").unwrap_err();
    assert!(err.contains("NotValidForName") || err.contains("not valid for name"), "{err}");
    server.join().unwrap();

    // A client trusting another CA refuses the certificate.
    let other = Env::init();
    other.run(&["run"]).code(0);
    let (port, server) = serve(&dir);
    let err = connect(&other.path("deploy/minio/certs/CAs/ca.crt"), port, "minio").unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");
    let _ = TcpStream::connect(("127.0.0.1", port));
    let _ = TcpStream::connect(("127.0.0.1", port));
    server.join().unwrap();
}
