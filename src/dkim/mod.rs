//! DKIM: keys, the signer that runs while DATA streams in, header fix-ups, and the
//! self-verification of every new signature before the 250. Must not import other modules of
//! ours (config values are passed in).

pub mod keys;
