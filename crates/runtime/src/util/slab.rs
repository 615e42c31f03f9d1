//! A minimal slab: stable `usize` keys, O(1) insert and remove, slots reused LIFO.

#[derive(Debug)]
enum Entry<T> {
    Vacant(usize),
    Occupied(T),
}

/// Pre-allocated storage with stable keys.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    next_free: usize,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        match self.entries.get_mut(key) {
            Some(slot) => {
                let Entry::Vacant(next) = *slot else {
                    unreachable!("free list points at an occupied slot")
                };
                self.next_free = next;
                *slot = Entry::Occupied(value);
            }
            None => {
                self.entries.push(Entry::Occupied(value));
                self.next_free = self.entries.len();
            }
        }
        self.len += 1;
        key
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let slot = self.entries.get_mut(key)?;
        if matches!(slot, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(slot, Entry::Vacant(self.next_free)) else {
            return None;
        };
        self.next_free = key;
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key)? {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    /// Every value, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        })
    }

    /// Removes and returns every value.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let out = std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Occupied(v) => Some(v),
                Entry::Vacant(_) => None,
            })
            .collect();
        self.next_free = 0;
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_stable_and_reused() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        let c = s.insert("c");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.remove(b), Some("b"));
        assert_eq!(s.remove(b), None);
        assert_eq!(s.get(a), Some(&"a"));
        assert_eq!(s.insert("d"), b);
        assert_eq!(s.len(), 3);
        assert_eq!(s.remove(99), None);
        let mut all = s.drain();
        all.sort_unstable();
        assert_eq!(all, ["a", "c", "d"]);
        assert_eq!(s.len(), 0);
        assert_eq!(s.insert("e"), 0);
    }
}
