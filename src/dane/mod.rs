//! DANE for SMTP (RFC 7672): the TLSA records of an MX host, looked up through the
//! DNSSEC-aware resolver and applied only when every answer on the way was authenticated
//! ([`host`]); which records SMTP can use and what a certificate must be to match one
//! ([`tlsa`]); and the certificate check a TLS connection to such a host runs ([`verify`]).
//!
//! A host with usable records gets mandatory STARTTLS and a certificate that matches; a host
//! whose records cannot be looked up (bogus, SERVFAIL, no answer) gets nothing until they can.
//! Deciding that per delivery attempt, and reporting how it went, is `outbound`'s and the
//! TLS policy layer's job: this module imports only `dnssec`.

pub mod host;
pub mod tlsa;
pub mod verify;

pub use host::{for_host, HostDane, NoDane, TlsaRrset};
pub use tlsa::Tlsa;
pub use verify::{DaneVerifier, Failure, Verdict};
