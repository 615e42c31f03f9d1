//! Per-thread pools of the buffers a connection needs only while it has a request: an idle
//! keep-alive connection gives them back and holds almost nothing (SPEC §11: ≤ 4 KiB per
//! idle connection), and taking them again allocates nothing once the pools are warm.
//!
//! A task may move to another worker between giving and taking; the buffers simply join
//! that thread's pool. Each pool keeps at most [`KEEP`] free entries; the rest are freed.

use std::cell::RefCell;

use crate::h1::parse::Head;
use crate::message::ResponseHead;

/// Most free entries kept per pool and thread.
const KEEP: usize = 128;
/// Input buffers larger than this (grown for a large head) are freed, not kept.
const KEEP_INPUT_MAX: usize = 32 * 1024;
/// Output buffers larger than this are freed, not kept (a pool then holds at most
/// 128 × 64 KiB per thread).
const KEEP_OUTPUT_MAX: usize = 64 * 1024;

#[derive(Default)]
struct Pools {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
    #[allow(
        clippy::vec_box,
        reason = "the boxes move in and out whole; a Head is 2 KiB"
    )]
    heads: Vec<Box<Heads>>,
}

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

/// An input buffer of at least `size` bytes, all initialised (`len() == size` or more).
pub(crate) fn take_input(size: usize) -> Vec<u8> {
    POOLS
        .with(|p| p.borrow_mut().inputs.pop())
        .filter(|b| b.len() >= size)
        .unwrap_or_else(|| vec![0; size])
}

/// Gives an input buffer back.
pub(crate) fn give_input(buf: Vec<u8>) {
    if buf.len() <= KEEP_INPUT_MAX && !buf.is_empty() {
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            if p.inputs.len() < KEEP {
                p.inputs.push(buf);
            }
        });
    }
}

/// An empty output buffer.
pub(crate) fn take_output() -> Vec<u8> {
    POOLS
        .with(|p| p.borrow_mut().outputs.pop())
        .unwrap_or_else(|| Vec::with_capacity(4096))
}

/// Gives an output buffer back.
pub(crate) fn give_output(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > KEEP_OUTPUT_MAX {
        return;
    }
    buf.clear();
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        if p.outputs.len() < KEEP {
            p.outputs.push(buf);
        }
    });
}

/// A request-head table and a response head, pooled together (one trip per request).
#[derive(Debug, Default)]
pub(crate) struct Heads {
    pub(crate) request: Head,
    pub(crate) response: ResponseHead,
    pub(crate) edits: super::Edits,
}

/// A pair of heads (the response head's buffers warm).
pub(crate) fn take_heads() -> Box<Heads> {
    POOLS
        .with(|p| p.borrow_mut().heads.pop())
        .unwrap_or_default()
}

/// Gives a pair of heads back.
pub(crate) fn give_heads(heads: Box<Heads>) {
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        if p.heads.len() < KEEP {
            p.heads.push(heads);
        }
    });
}
