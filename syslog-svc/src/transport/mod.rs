//! The sockets: each receiver turns what arrives into queue [`Entry`](crate::queue::Entry)s
//! and nothing else — parsing and output happen on the writer thread.

pub mod tcp;
pub mod udp;
