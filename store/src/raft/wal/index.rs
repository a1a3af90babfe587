//! Where each live entry of the log is: its segment and its record's place
//! there. Shared by the writer, which updates it once its writes are on
//! disk, and the readers, which look entries up and read them with `pread`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::sync::Arc;

/// An entry's record: the segment it is in and its byte range there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub seq: u64,
    pub offset: u64,
    pub size: u32,
}

/// The live entries, contiguous from `first`, and what is durable besides.
#[derive(Default)]
pub struct Durable {
    first: u64,
    places: VecDeque<Place>,
    /// Open segment files, for reading. A file removed from here stays
    /// readable by whoever still holds it.
    files: BTreeMap<u64, Arc<File>>,
    pub vote: Option<Vec<u8>>,
    /// The last purged entry's index, and its bincode `LogId`.
    pub last_purged: Option<(u64, Vec<u8>)>,
}

/// An entry's record, ready to be read.
pub struct Located {
    pub file: Arc<File>,
    pub offset: u64,
    pub size: u32,
}

/// Appending at `index` would leave a hole after the last entry.
#[derive(Debug)]
pub struct Gap {
    pub index: u64,
    pub next: u64,
}

impl Durable {
    pub fn add_file(&mut self, seq: u64, file: Arc<File>) {
        self.files.insert(seq, file);
    }

    pub fn remove_file(&mut self, seq: u64) {
        self.files.remove(&seq);
    }

    /// Index of the last entry.
    pub fn last(&self) -> Option<u64> {
        (!self.places.is_empty()).then(|| self.first + self.places.len() as u64 - 1)
    }

    /// The entry at `index`, replacing it and every later one.
    pub fn put(&mut self, index: u64, place: Place) -> Result<(), Gap> {
        if self.places.is_empty() {
            self.first = index;
        } else if index < self.first {
            self.places.clear();
            self.first = index;
        } else {
            let next = self.first + self.places.len() as u64;
            if index > next {
                return Err(Gap { index, next });
            }
            self.places.truncate((index - self.first) as usize);
        }
        self.places.push_back(place);
        Ok(())
    }

    /// Drops the entries at `from` and after.
    pub fn truncate(&mut self, from: u64) {
        let keep = from.saturating_sub(self.first).min(self.places.len() as u64);
        self.places.truncate(keep as usize);
    }

    /// Drops the entries up to `upto`.
    pub fn purge(&mut self, upto: u64) {
        while !self.places.is_empty() && self.first <= upto {
            self.places.pop_front();
            self.first += 1;
        }
        if self.places.is_empty() {
            self.first = upto + 1;
        }
    }

    /// The records of the entries in `[start, end)` that are here.
    pub fn locate(&self, start: u64, end: u64) -> Vec<Located> {
        let from = start.max(self.first);
        let to = end.min(self.first + self.places.len() as u64);
        (from..to)
            .filter_map(|index| {
                let place = self.places[(index - self.first) as usize];
                let file = self.files.get(&place.seq)?.clone();
                Some(Located { file, offset: place.offset, size: place.size })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(offset: u64) -> Place {
        Place { seq: 1, offset, size: 1 }
    }

    fn offsets(d: &Durable) -> Vec<u64> {
        d.places.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn puts_replace_the_tail_and_refuse_holes() {
        let mut d = Durable::default();
        for i in 5..10 {
            d.put(i, place(i)).expect("contiguous");
        }
        assert_eq!(d.last(), Some(9));
        d.put(7, place(70)).expect("replaces the tail");
        assert_eq!(offsets(&d), [5, 6, 70]);
        assert!(d.put(9, place(9)).is_err());
        d.truncate(6);
        assert_eq!(offsets(&d), [5]);
        d.purge(5);
        assert_eq!(d.last(), None);
        d.put(6, place(6)).expect("after a purge the log starts anywhere");
        d.purge(100);
        assert_eq!((d.last(), d.first), (None, 101));
    }
}
