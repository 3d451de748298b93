//! TLS material generated at start: a throw-away self-signed CA and a server
//! certificate it signs (SANs `localhost`, `127.0.0.1`, `::1` plus any
//! configured extras), served by rustls with the ring provider, TLS 1.2/1.3.
//!
//! Clients must trust the CA (`SimHandle::ca_pem`) — nothing else does, which
//! is exactly what lets tests prove a client verifies certificates.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// What the server needs, and what clients need to trust it.
pub(crate) struct TlsMaterial {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: CertificateDer<'static>,
    pub(crate) server_config: Arc<ServerConfig>,
}

fn other<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> io::Error {
    move |e| io::Error::other(format!("{context}: {e}"))
}

/// Generates a fresh CA + server certificate and the rustls server config.
pub(crate) fn generate(extra_sans: &[String]) -> io::Result<TlsMaterial> {
    let ca_key = KeyPair::generate().map_err(other("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other("CA params"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.remove(DnType::CommonName);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meeting-sim test CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "meetgate");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(other("CA cert"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(
        extra_sans
            .iter()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let server_key = KeyPair::generate().map_err(other("server key"))?;
    let mut params = CertificateParams::new(names).map_err(other("server SANs"))?;
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, "meeting-sim");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .map_err(other("server cert"))?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain = vec![server_cert.der().clone()];
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(other("TLS versions"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(other("server cert/key"))?;
    // The upstream speaks HTTP/1.1 here; advertising it lets ALPN-capable
    // clients (which also offer h2) settle on http/1.1 explicitly.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_ca() {
        let m = generate(&["meeting-sim".to_owned()]).unwrap();
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!m.ca_der.is_empty());
    }
}
