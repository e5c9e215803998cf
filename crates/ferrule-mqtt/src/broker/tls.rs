//! MQTT over TLS: the rustls server configuration and the accept loop.
//!
//! Client certificates are optional. When a client presents one, rustls
//! checks that the client holds its private key (the handshake signature);
//! *which* device it is comes from the certificate's SHA-256 fingerprint,
//! registered as a device credential. That is why the verifier below does
//! not chain certificates to a CA: registration is the trust anchor, as with
//! self-signed device certificates in AWS IoT or Azure DPS. The server name
//! the client asks for (SNI) is handed on too: its first label may name the
//! device's tenant, where the same certificate is registered in several.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener::ConnectRate;
use super::observe::{self, RefusedReason};
use super::{Broker, TlsPeer, Transport, serve_connection};

/// Accepts any well-formed client certificate whose key the client proves
/// it holds; identity is decided by the registered fingerprint.
#[derive(Debug)]
struct RegisteredCertificates {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RegisteredCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS server configuration for MQTT, from a certificate chain and key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RegisteredCertificates {
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts MQTT over TLS until `shutdown`.
pub async fn serve_tls(
    broker: Arc<Broker>,
    listener: TcpListener,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(config);
    let rate = ConnectRate::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        if !rate.admit(peer.ip(), broker.config.max_connect_rate_per_ip) {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (acceptor, broker, shutdown) = (acceptor.clone(), broker.clone(), shutdown.clone());
        let timeout = broker.config.connect_timeout;
        tasks.spawn(async move {
            // The handshake runs on the connection's own task, so a slow or
            // hostile client never holds up the accept loop.
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    observe::ConnectionRefused {
                        reason: RefusedReason::TlsHandshake,
                    }
                    .emit();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    observe::ConnectionRefused {
                        reason: RefusedReason::TlsHandshake,
                    }
                    .emit();
                    return;
                }
            };
            let session = tls.get_ref().1;
            let peer_tls = TlsPeer {
                cert_fingerprint: session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|der| ferrule_core::secret::certificate_fingerprint(der)),
                server_name: session.server_name().map(str::to_owned),
            };
            serve_connection(broker, tls, peer, Transport::Tls(peer_tls), shutdown).await;
        });
    }
}
