//! HTTP/1.1 as functions over byte buffers (sans-I/O): request heads, response heads (both
//! ways), the chunked coding. The only code that reads or writes HTTP/1.1 syntax.

pub mod chunked;
pub mod encode;
pub mod parse;
pub mod response;
