//! DKIM: keys, the signers of every configured domain, header fix-ups, our own
//! canonicalization, and the self-verification of every new signature before the 250 (ours,
//! and mail-auth's own verifier over the bytes as spooled: `independent`).
//! Imports only `smtp` of ours (configuration values are passed in).

pub mod canon;
pub(crate) mod fixups;
pub mod independent;
pub mod keys;
pub mod message;
pub(crate) mod rotation;
pub mod signer;
pub mod verify;
