//! A hierarchical timing wheel with millisecond ticks.
//!
//! Six levels of 64 slots: level `L` slots are `64^L` ms wide, so the wheel spans
//! `64^6` ms (about 795 days); later deadlines are parked in the top level and re-placed as
//! time approaches them. Entries live in a slab and are linked into their slot by index, so
//! insert and cancel are O(1) and cancel needs only the key. Each level keeps a 64-bit
//! occupancy mask, so finding the next deadline is a handful of bit operations per level.
//!
//! # Placement invariant
//!
//! An entry with deadline `d` sits at the lowest level `L` such that `elapsed` and `d`
//! differ only in their low `6 * (L + 1)` bits, in slot `(d >> 6L) & 63`. Hence every entry
//! of a lower level is due before every entry of a higher level, and the first occupied slot
//! found scanning levels upward is the next expiration. When a level-`L` slot comes due its
//! entries are either fired (deadline reached) or re-placed at a lower level.
//!
//! The wheel knows nothing about threads or tasks: its owner advances it with a clock value,
//! which is how the tests drive it with a manual clock.

use crate::util::slab::Slab;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const NIL: usize = usize::MAX;
/// The furthest ahead a deadline is placed; later ones are re-placed when reached.
const MAX_SPAN: u64 = (1 << (SLOT_BITS * LEVELS as u32)) - 1;

#[derive(Debug)]
struct Node<T> {
    deadline: u64,
    prev: usize,
    next: usize,
    level: u8,
    slot: u8,
    value: T,
}

/// A timing wheel holding values of type `T`, keyed by `usize`.
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    elapsed: u64,
    occupied: [u64; LEVELS],
    heads: [[usize; SLOTS]; LEVELS],
    nodes: Slab<Node<T>>,
}

impl<T> Wheel<T> {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            elapsed: now,
            occupied: [0; LEVELS],
            heads: [[NIL; SLOTS]; LEVELS],
            nodes: Slab::default(),
        }
    }

    /// Timers armed.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Inserts `value` to fire at `deadline`. Returns it back if the deadline has passed.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> Result<usize, T> {
        if deadline <= self.elapsed {
            return Err(value);
        }
        let key = self.nodes.insert(Node {
            deadline,
            prev: NIL,
            next: NIL,
            level: 0,
            slot: 0,
            value,
        });
        self.link(key);
        Ok(key)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.nodes.get(key).map(|n| &n.value)
    }

    /// Cancels an entry in O(1).
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        self.nodes.get(key)?;
        self.unlink(key);
        self.nodes.remove(key).map(|n| n.value)
    }

    /// The earliest time at which [`advance`](Self::advance) has work (a deadline, or a
    /// higher-level slot to cascade).
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.next_expiration().map(|(_, _, d)| d)
    }

    /// Moves time to `now`, handing every entry due by then to `fire`.
    pub(crate) fn advance(&mut self, now: u64, mut fire: impl FnMut(T)) {
        while let Some((level, slot, deadline)) = self.next_expiration() {
            if deadline > now {
                break;
            }
            self.elapsed = self.elapsed.max(deadline);
            let mut key = std::mem::replace(&mut self.heads[level][slot], NIL);
            self.occupied[level] &= !(1u64 << slot);
            while key != NIL {
                let Some(node) = self.nodes.get_mut(key) else {
                    break;
                };
                let next = node.next;
                if node.deadline <= now {
                    if let Some(n) = self.nodes.remove(key) {
                        fire(n.value);
                    }
                } else {
                    self.link(key);
                }
                key = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let now_slot = ((self.elapsed >> shift) & (SLOTS as u64 - 1)) as u32;
            let slot =
                (occupied.rotate_right(now_slot).trailing_zeros() + now_slot) as usize % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + slot as u64 * slot_range;
            if deadline < self.elapsed {
                // Only the top level wraps (deadlines beyond the wheel's span).
                deadline += level_range;
            }
            return Some((level, slot, deadline));
        }
        None
    }

    fn link(&mut self, key: usize) {
        let elapsed = self.elapsed;
        let Some(node) = self.nodes.get_mut(key) else {
            return;
        };
        let when = node.deadline.min(elapsed + MAX_SPAN);
        let level = level_for(elapsed, when);
        let slot = ((when >> (SLOT_BITS * level as u32)) & (SLOTS as u64 - 1)) as usize;
        let head = self.heads[level][slot];
        node.level = level as u8;
        node.slot = slot as u8;
        node.prev = NIL;
        node.next = head;
        if let Some(h) = self.nodes.get_mut(head) {
            h.prev = key;
        }
        self.heads[level][slot] = key;
        self.occupied[level] |= 1u64 << slot;
    }

    fn unlink(&mut self, key: usize) {
        let Some(node) = self.nodes.get(key) else {
            return;
        };
        let (prev, next, level, slot) = (
            node.prev,
            node.next,
            node.level as usize,
            node.slot as usize,
        );
        match self.nodes.get_mut(prev) {
            Some(p) => p.next = next,
            None => {
                self.heads[level][slot] = next;
                if next == NIL {
                    self.occupied[level] &= !(1u64 << slot);
                }
            }
        }
        if let Some(n) = self.nodes.get_mut(next) {
            n.prev = prev;
        }
    }
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    ((significant / SLOT_BITS) as usize).min(LEVELS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no dependency and replays exactly.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn past_deadlines_are_returned() {
        let mut w = Wheel::new(10);
        assert_eq!(w.insert(10, "now"), Err("now"));
        assert_eq!(w.insert(3, "past"), Err("past"));
        assert!(w.insert(11, "soon").is_ok());
    }

    #[test]
    fn level_boundaries_fire_exactly() {
        for start in [0u64, 63, 64, 4095, 4096, 262_143] {
            for delta in [1u64, 2, 63, 64, 65, 4095, 4096, 4097, 262_144, 16_777_216] {
                let mut w = Wheel::new(start);
                w.insert(start + delta, ()).unwrap();
                let mut fired_at = None;
                while fired_at.is_none() {
                    // Jump to the wheel's next deadline, as a parked worker does.
                    let t = w.next_deadline().expect("an entry is pending");
                    assert!(t <= start + delta, "wheel asked to wake after the deadline");
                    w.advance(t, |()| fired_at = Some(t));
                }
                assert_eq!(fired_at, Some(start + delta), "start {start} delta {delta}");
            }
        }
    }

    /// 100 000 timers, half cancelled; stepping one tick at a time, each live timer fires at
    /// exactly its deadline tick and no cancelled timer ever fires.
    #[test]
    fn hundred_thousand_timers_fire_on_their_tick_and_cancelled_never_fire() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut w = Wheel::new(0);
        let n = 100_000;
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let deadline = 1 + rng.next() % 300_000;
            keys.push((w.insert(deadline, (i, deadline)).unwrap(), deadline));
        }
        let mut cancelled = vec![false; n];
        for (i, &(key, _)) in keys.iter().enumerate() {
            if rng.next().is_multiple_of(2) {
                assert_eq!(w.remove(key).map(|(j, _)| j), Some(i));
                cancelled[i] = true;
            }
        }
        let live = cancelled.iter().filter(|c| !**c).count();
        assert_eq!(w.len(), live);
        let mut fired = vec![false; n];
        for now in 1..=300_000u64 {
            w.advance(now, |(i, deadline)| {
                assert_eq!(deadline, now, "timer {i} fired off its tick");
                assert!(!cancelled[i], "cancelled timer {i} fired");
                assert!(!fired[i], "timer {i} fired twice");
                fired[i] = true;
            });
        }
        assert_eq!(fired.iter().filter(|f| **f).count(), live);
        assert_eq!(w.len(), 0);
    }

    /// Random jumps of the clock (a worker that was busy): each timer fires at the first
    /// advance whose time reaches its deadline, never before.
    #[test]
    fn random_jumps_fire_in_the_right_advance() {
        let mut rng = XorShift(42);
        let mut w = Wheel::new(1_000);
        let mut pending = 0;
        for i in 0..20_000u64 {
            let d = 1_001 + rng.next() % 5_000_000;
            w.insert(d, (i, d)).unwrap();
            pending += 1;
        }
        let mut prev = 1_000;
        while pending > 0 {
            let now = prev + 1 + rng.next() % 50_000;
            w.advance(now, |(_, d)| {
                assert!(
                    d > prev && d <= now,
                    "deadline {d} fired in ({prev}, {now}]"
                );
                pending -= 1;
            });
            prev = now;
        }
    }

    #[test]
    fn deadlines_beyond_the_span_are_replaced_not_fired_early() {
        let mut w = Wheel::new(5);
        let far = 5 + MAX_SPAN * 2 + 17;
        w.insert(far, ()).unwrap();
        let mut fired_at = None;
        while fired_at.is_none() {
            let t = w.next_deadline().unwrap();
            assert!(t <= far);
            w.advance(t, |()| fired_at = Some(t));
        }
        assert_eq!(fired_at, Some(far));
    }
}
