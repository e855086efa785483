//! Maps keyed by task id, hashed by one multiply: ids are small and
//! sequential, and SipHash, built to resist chosen keys, cost the journal
//! writer about 4% of its time for keys no one chooses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Spreads an id over the hash's bits (Fibonacci hashing).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_land_in_distinct_buckets() {
        let mut map: IdMap<u64> = IdMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map[&id] == id * 2));
        // The top bits, which a table indexes by, differ for neighbours.
        let top = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57;
        let distinct: std::collections::HashSet<u64> = (0..128).map(top).collect();
        assert!(distinct.len() > 64, "{} distinct of 128", distinct.len());
    }
}
