//! MIME as far as SMTP transport needs it: finding, while a body streams in, what a receiver
//! may refuse (lines over 998 bytes, 8-bit bytes: `scan`), and making such a body fit before it
//! is signed (RFC 2045, 2046): walking its structure and re-encoding the parts that need it as
//! quoted-printable (`walk`, `qp`), with the header fields that say so (`fields`, `top`).
//! Pure and I/O-free: bytes in, bytes out, so it can be unit-tested and fuzzed.
//! Imports only `smtp` of ours.

pub mod fields;
pub(crate) mod qp;
pub mod scan;
pub(crate) mod top;
pub mod walk;
