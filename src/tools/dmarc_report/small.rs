//! Maps and sets for the handful of entries one source collects (its dispositions, signatures,
//! SPF domains, reporters, days): a vector searched from the end, sorted when read. A report
//! with 100,000 distinct sources holds a million of these; a B-tree node costs hundreds of
//! bytes even for one entry, a vector of one entry tens.

/// Keys with values, in insertion order; [`SmallMap::into_sorted`] gives them in key order.
#[derive(Debug, Clone)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// The value of `key`, made with `make` when it is new.
    pub fn slot(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        // Records of one source tend to repeat their last key: look from the end.
        let at = match self.0.iter().rposition(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.0.push((key, make()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry, in key order.
    pub fn into_sorted(mut self) -> Vec<(K, V)> {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        self.0
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.0.iter()
    }
}

/// Distinct values; read in order with [`SmallSet::sorted`] or [`SmallSet::into_sorted`].
#[derive(Debug, Clone)]
pub struct SmallSet<K>(SmallMap<K, ()>);

impl<K> Default for SmallSet<K> {
    fn default() -> Self {
        SmallSet(SmallMap::default())
    }
}

impl<K: Ord> SmallSet<K> {
    pub fn insert(&mut self, key: K) {
        self.0.slot(key, || ());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in order, borrowed.
    pub fn sorted(&self) -> Vec<&K> {
        let mut out: Vec<&K> = self.0.iter().map(|(k, _)| k).collect();
        out.sort();
        out
    }

    /// The values in order.
    pub fn into_sorted(self) -> Vec<K> {
        self.0.into_sorted().into_iter().map(|(k, _)| k).collect()
    }
}

impl<K: Ord + AsRef<str>> SmallSet<K> {
    /// The values in order, joined by `separator`.
    pub fn joined(&self, separator: &str) -> String {
        let parts: Vec<&str> = self.sorted().into_iter().map(AsRef::as_ref).collect();
        parts.join(separator)
    }
}

impl<K: Ord> Extend<K> for SmallSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        iter.into_iter().for_each(|k| self.insert(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_sets_read_in_order() {
        let mut m: SmallMap<String, u64> = SmallMap::default();
        for k in ["b", "a", "b", "c", "a", "b"] {
            *m.slot(k.to_string(), || 0) += 1;
        }
        assert_eq!(
            m.into_sorted(),
            vec![("a".into(), 2), ("b".into(), 3), ("c".into(), 1)]
        );
        let mut s: SmallSet<u32> = SmallSet::default();
        s.extend([3, 1, 3, 2, 1]);
        assert_eq!(s.sorted(), vec![&1, &2, &3]);
        assert_eq!(s.into_sorted(), vec![1, 2, 3]);
    }
}
