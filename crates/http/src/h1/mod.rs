//! HTTP/1.1 as functions over byte buffers (sans-I/O): request heads, the chunked coding.

pub mod chunked;
pub mod parse;
