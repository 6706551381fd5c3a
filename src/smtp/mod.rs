//! I/O-free SMTP pieces we add on top of smtp-proto: replies, DATA framing (end-of-data only at
//! CRLF.CRLF, dot-unstuffing, bare CR/LF handling), the header section, addresses, dates.
//! A bottom layer: anyone may import it.
//! Must not import other modules of ours.

pub mod address;
pub mod data;
pub mod date;
pub mod header;
pub mod reply;
