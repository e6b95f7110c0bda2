//! Connecting to the warehouse: the database URL with libpq's TLS settings (`sslmode`,
//! `sslrootcert`), secrets read from files, the rustls connector, the connection errors that no
//! retry can fix, and the URL as it may be shown (password redacted).
//!
//! tokio-postgres' own parser knows `sslmode` `disable`/`prefer`/`require` only and no
//! `sslrootcert`, so both are taken out of the URL here and the rest is handed to it. The modes
//! mean what they mean to `psql`: `require` encrypts without checking the certificate, unless
//! `sslrootcert` names a CA (then the chain is checked, as `verify-ca` does); `verify-ca` checks
//! the chain; `verify-full` the chain and the host name. Without `sslrootcert` the verify modes
//! trust the system's CAs (`sslrootcert=system` says so explicitly).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;
pub use crate::load::error::SetupError;
use crate::load::error::{causes, DbError};
use crate::secrets::key_values;
pub use crate::secrets::redact;

/// libpq's `sslmode` values (`allow` is taken as `prefer`: tokio-postgres cannot start
/// without TLS and then retry with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, SetupError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(SetupError(format!(
                    "invalid sslmode {other:?} in the database URL: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// The bound of one connection attempt (TCP, TLS, the server's start-up answer), unless the
/// database URL sets its own `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to connect to, and how: the parsed tokio-postgres configuration (password included)
/// and the TLS connector its `sslmode` asks for.
#[derive(Clone)]
pub struct Target {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub sslmode: SslMode,
    /// The URL with its password replaced: what may be shown.
    shown: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The warehouse of `config`: its URL (or the file `database_url_file` names), with the
    /// password from `database_password_file` when set.
    pub fn from_config(config: &Config) -> Result<Target, SetupError> {
        let url = match &config.database.url_file {
            Some(path) => read_secret(path, "database_url_file")?.trim().to_owned(),
            None => config.database.url.clone(),
        };
        let password = match &config.database.password_file {
            Some(path) => Some(read_secret(path, "database_password_file")?),
            None => None,
        };
        Target::new(&url, password)
    }

    /// A URL alone (no secret files).
    pub fn parse(url: &str) -> Result<Target, SetupError> {
        Target::new(url, None)
    }

    fn new(url: &str, password: Option<String>) -> Result<Target, SetupError> {
        let shown = redact(url);
        let parsed = split_tls_params(url)?;
        let mut pg: tokio_postgres::Config = parsed.rest.parse().map_err(|error| {
            SetupError(format!(
                "invalid database URL {shown}: {}",
                causes(&error as &dyn std::error::Error)
            ))
        })?;
        if let Some(password) = password {
            pg.password(password);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.application_name("etl");
        let sslmode = parsed.sslmode.unwrap_or(SslMode::Prefer);
        pg.ssl_mode(match sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let roots = match (sslmode, parsed.sslrootcert.as_deref()) {
            (SslMode::Disable, _) => None,
            (_, Some("system")) => Some(system_roots()),
            (_, Some(path)) => Some(file_roots(Path::new(path))?),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Some(system_roots()),
            (SslMode::Prefer | SslMode::Require, None) => None,
        };
        let tls = connector(roots, sslmode == SslMode::VerifyFull)?;
        Ok(Target {
            pg,
            tls,
            sslmode,
            shown,
        })
    }

    /// The URL with its password redacted.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// How long one connection attempt may take: the URL's `connect_timeout`, else
    /// [`CONNECT_TIMEOUT`].
    pub fn connect_timeout(&self) -> Duration {
        self.pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT)
    }

    /// One connection outside the pool (for one-shot commands); its driver runs on a task.
    /// The whole attempt is bounded by [`Target::connect_timeout`]: tokio-postgres bounds the
    /// TCP connection only, and a peer that accepts it and never answers the start-up message
    /// would hold the caller for ever.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DbError> {
        let bound = self.connect_timeout();
        let (client, connection) = tokio::time::timeout(bound, self.pg.connect(self.tls.clone()))
            .await
            .map_err(|_| DbError::NoAnswer(bound))??;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// A connection of its own, outside the warehouse's pool: a session-level advisory lock taken
/// on it (`crate::housekeeping::lock::take`) ends with it, also when the process dies.
pub async fn session(config: &Config) -> Result<tokio_postgres::Client, DbError> {
    Target::from_config(config)?.connect().await
}

/// The warehouse URL of `config` as it may be shown: password redacted, or the name of the
/// file that holds it.
pub fn describe(config: &Config) -> String {
    match &config.database.url_file {
        Some(path) => match read_secret(path, "database_url_file") {
            Ok(url) => redact(url.trim()),
            Err(_) => format!("(database_url_file {})", path.display()),
        },
        None => redact(&config.database.url),
    }
}

/// A secret file's content without the final newline that `echo` and editors add.
fn read_secret(path: &Path, key: &str) -> Result<String, SetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| SetupError(format!("cannot read {key} {}: {error}", path.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// A URL with the TLS settings taken out.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    /// What tokio-postgres parses.
    rest: String,
    sslmode: Option<SslMode>,
    sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL or a `key=value` string.
fn split_tls_params(url: &str) -> Result<Parsed, SetupError> {
    let mut parsed = Parsed {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut keep = |key: &str, value: &str| -> Result<bool, SetupError> {
        match key {
            "sslmode" => parsed.sslmode = Some(SslMode::parse(value)?),
            "sslrootcert" => parsed.sslrootcert = Some(value.to_owned()),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(SetupError(format!(
                    "{key} in the database URL: client certificates are not supported"
                )))
            }
            _ => return Ok(true),
        }
        Ok(false)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if keep(&percent_decode(key)?, &percent_decode(value)?)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for token in key_values(url)? {
            if keep(&token.key, &token.value)? {
                kept.push(token.text);
            }
        }
        kept.join(" ")
    };
    parsed.rest = rest;
    Ok(parsed)
}

/// Decodes `%XX` escapes (a URL's query values).
fn percent_decode(s: &str) -> Result<String, SetupError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(SetupError(
                    "invalid %-escape in the database URL's parameters".into(),
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| SetupError("the database URL's parameters are not UTF-8".into()))
}

/// The rustls connector for the mode: `roots` are the CAs to check the chain against (none:
/// no check), `check_host` adds the host name check of `verify-full`.
fn connector(
    roots: Option<RootCertStore>,
    check_host: bool,
) -> Result<MakeRustlsConnect, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |error: &dyn fmt::Display| SetupError(format!("cannot set up TLS: {error}"));
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        Some(roots) if check_host => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| tls_error(&e))?
        }
        roots => Arc::new(ChainOnly {
            roots,
            provider: provider.clone(),
        }),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The CAs of `sslrootcert`: every PEM certificate in the file.
fn file_roots(path: &Path) -> Result<RootCertStore, SetupError> {
    let bytes = std::fs::read(path).map_err(|error| {
        SetupError(format!(
            "cannot read sslrootcert {}: {error}",
            path.display()
        ))
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| {
            SetupError(format!(
                "sslrootcert {} is not a PEM file: {error}",
                path.display()
            ))
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(SetupError(format!(
            "sslrootcert {} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The operating system's CAs (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), or Mozilla's
/// list built into the binary when the system has none (e.g. a slim container image).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Checks the chain against `roots` without the host name (`verify-ca`), or nothing at all
/// when there are no roots (`require` and `prefer` without `sslrootcert`). The handshake's
/// signatures are always checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

/// At start-up, the one-line advice for an error that retrying cannot fix (wrong password,
/// unknown database, refused login, TLS refused or certificate not trusted, unusable
/// settings); `None` for what may pass (server down or starting, too many connections …).
pub fn fatal_at_startup(error: &DbError) -> Option<String> {
    match error {
        DbError::Setup(error) => Some(error.to_string()),
        DbError::Url(error) => Some(format!("invalid database URL: {}", causes(error))),
        DbError::Pool(deadpool_postgres::PoolError::Backend(error)) | DbError::Postgres(error) => {
            fatal_connect_error(error)
        }
        DbError::Tables(_) => Some(error.to_string()),
        // The server ran the migration's SQL and refused it: fix the file, then restart. A
        // connection lost mid-migration is retried like any other.
        DbError::Migration { source, .. } => source
            .as_db_error()
            .filter(|db| !["08", "53", "57"].contains(&&db.code().code()[..2]))
            .map(|_| error.to_string()),
        _ => None,
    }
}

/// [`fatal_at_startup`] for an error or any of its causes.
pub fn fatal_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    std::iter::successors(Some(error), |cause| cause.source()).find_map(|cause| {
        if let Some(db) = cause.downcast_ref::<DbError>() {
            fatal_at_startup(db)
        } else if let Some(types) = cause.downcast_ref::<crate::catalog::CatalogError>() {
            Some(types.to_string())
        } else {
            cause.downcast_ref::<SetupError>().map(ToString::to_string)
        }
    })
}

fn fatal_connect_error(error: &tokio_postgres::Error) -> Option<String> {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        let message = db.message();
        return if *code == SqlState::INVALID_PASSWORD {
            Some(format!(
                "{message}: fix the password (in the database URL, or in the file database_password_file names)"
            ))
        } else if code.code().starts_with("28") {
            Some(format!(
                "the server refused the login: {message}: check the user name and the server's pg_hba.conf (it may demand TLS: sslmode)"
            ))
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Some(format!(
                "{message}: create it, or fix the database name in the URL"
            ))
        } else {
            None
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(tls) = rustls_error(cause) {
            return Some(tls_advice(tls));
        }
        source = cause.source();
    }
    let text = causes(error as &dyn std::error::Error);
    if text.contains("server does not support TLS") {
        Some("the server does not accept TLS connections, but sslmode demands TLS: enable ssl on the server, or set sslmode=prefer or disable".into())
    } else if text.contains("password missing") {
        Some("the server asks for a password and none is configured: put it in the database URL, or in a file named by database_password_file".into())
    } else if text.starts_with("authentication error") {
        Some(format!("authentication failed: {text}"))
    } else {
        None
    }
}

/// The rustls error inside a handshake error (tokio-rustls wraps it in an `io::Error`).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    error.downcast_ref::<rustls::Error>().or_else(|| {
        error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

fn tls_advice(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's TLS certificate does not name the host connected to ({error}): connect with a host name the certificate lists, or use sslmode=verify-ca to check the CA only"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the server's TLS certificate is not signed by a trusted CA ({error}): set sslrootcert to the file of the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's TLS certificate cannot be trusted: {error}")
        }
        _ => format!("the TLS handshake with the server failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Parsed {
        split_tls_params(url).expect("parses")
    }

    #[test]
    fn takes_tls_settings_out_of_urls() {
        let p = split("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.pem&connect_timeout=3");
        assert_eq!(p.rest, "postgres://u:p@h:5432/db?connect_timeout=3");
        assert_eq!(p.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(p.sslrootcert.as_deref(), Some("/tmp/ca x.pem"));

        let p = split("postgresql://h/db?sslmode=require");
        assert_eq!(p.rest, "postgresql://h/db");
        assert_eq!(p.sslmode, Some(SslMode::Require));
        assert_eq!(p.sslrootcert, None);

        let p = split("postgres://h/db");
        assert_eq!(p.rest, "postgres://h/db");
        assert_eq!(p.sslmode, None);
    }

    #[test]
    fn takes_tls_settings_out_of_key_value_strings() {
        let p = split("host=h  sslmode = verify-ca user=u sslrootcert='/a b/c\\'a.pem' dbname=d");
        assert_eq!(p.rest, "host=h user=u dbname=d");
        assert_eq!(p.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(p.sslrootcert.as_deref(), Some("/a b/c'a.pem"));
        assert!(split_tls_params("host=h sslmode='x").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for url in [
            "postgres://h/db?sslmode=verify",
            "postgres://h/db?sslcert=/c.pem",
            "postgres://h/db?sslmode=%zz",
            "host=h sslkey=/k.pem",
        ] {
            assert!(split_tls_params(url).is_err(), "{url}");
        }
    }

    #[test]
    fn every_mode_builds_a_connector() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let target =
                Target::parse(&format!("postgres://u:pw@h/db?sslmode={mode}")).expect("valid URL");
            assert_eq!(
                target.shown(),
                format!("postgres://u:***@h/db?sslmode={mode}")
            );
        }
        let missing = Target::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=/no/such.pem");
        assert!(missing.is_err_and(|e| e.to_string().contains("/no/such.pem")));
    }

    #[test]
    fn redacts_passwords() {
        let cases = [
            (
                "postgres://etl:s3cr%40t@db.example:5432/dwh?sslmode=require",
                "postgres://etl:***@db.example:5432/dwh?sslmode=require",
            ),
            ("postgres://etl:p@ss@h/db", "postgres://etl:***@h/db"),
            ("postgres://etl@h/db", "postgres://etl@h/db"),
            (
                "postgres://h/db?password=x&user=u",
                "postgres://h/db?password=***&user=u",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("host=h password='a b' user=u", "host=h password=*** user=u"),
            (
                "host=h password='unterminated",
                "(unparseable connection string)",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn a_logged_config_shows_no_password() {
        let mut config = Config::default();
        config.database.url = "postgres://etl:hunter2@h/db".into();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://etl:***@h/db"), "{shown}");
    }

    #[test]
    fn secret_files_lose_their_final_newline_only() {
        let dir = std::env::temp_dir().join(format!("etl-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("pw");
        std::fs::write(&file, " pw with spaces \n").expect("write");
        assert_eq!(
            read_secret(&file, "database_password_file").expect("reads"),
            " pw with spaces "
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
