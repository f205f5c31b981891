//! Subscriptions indexed by the H3 cells covering their viewports.
//!
//! Each subscription is indexed at one resolution chosen from its viewport size, so a street
//! view and a city view each cover a few dozen cells. Finding who is interested in a point costs
//! one cell lookup per resolution in use (at most seven) plus the interested subscriptions: it
//! does not grow with the number of subscribers elsewhere.

use std::collections::HashMap;

use h3o::{CellIndex, Resolution};

use crate::viewport::{Filter, MAX_INDEX_RES, cell_at};

/// Identifies a subscription within one index.
pub type SubId = u64;

/// One subscription: its filter, where it is indexed, and the caller's data.
#[derive(Debug)]
pub struct Subscription<T> {
    /// What it wants.
    pub filter: Filter,
    res: Resolution,
    cells: Vec<CellIndex>,
    /// Caller's data (the client's queue and counters in the gateway).
    pub data: T,
}

/// Subscriptions by H3 cell.
#[derive(Debug)]
pub struct SubscriptionIndex<T> {
    subs: HashMap<SubId, Subscription<T>>,
    by_cell: Vec<HashMap<CellIndex, Vec<SubId>>>,
    per_res: Vec<usize>,
    next: SubId,
}

impl<T> Default for SubscriptionIndex<T> {
    fn default() -> Self {
        let n = MAX_INDEX_RES as usize + 1;
        SubscriptionIndex {
            subs: HashMap::new(),
            by_cell: (0..n).map(|_| HashMap::new()).collect(),
            per_res: vec![0; n],
            next: 1,
        }
    }
}

impl<T> SubscriptionIndex<T> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Adds a subscription.
    pub fn insert(&mut self, filter: Filter, data: T) -> SubId {
        let id = self.next;
        self.next += 1;
        let res = filter.bbox.index_resolution();
        let cells = filter.bbox.cover(res);
        self.add_cells(id, res, &cells);
        self.subs.insert(id, Subscription { filter, res, cells, data });
        id
    }

    /// Changes a subscription's filter in place; returns the previous filter.
    pub fn update(&mut self, id: SubId, filter: Filter) -> Option<Filter> {
        let (old_res, old_cells) = {
            let sub = self.subs.get(&id)?;
            (sub.res, sub.cells.clone())
        };
        self.remove_cells(id, old_res, &old_cells);
        let res = filter.bbox.index_resolution();
        let cells = filter.bbox.cover(res);
        self.add_cells(id, res, &cells);
        let sub = self.subs.get_mut(&id)?;
        sub.res = res;
        sub.cells = cells;
        Some(std::mem::replace(&mut sub.filter, filter))
    }

    /// Removes a subscription, returning its data.
    pub fn remove(&mut self, id: SubId) -> Option<T> {
        let sub = self.subs.remove(&id)?;
        self.remove_cells(id, sub.res, &sub.cells);
        Some(sub.data)
    }

    fn add_cells(&mut self, id: SubId, res: Resolution, cells: &[CellIndex]) {
        let r = u8::from(res) as usize;
        for c in cells {
            self.by_cell[r].entry(*c).or_default().push(id);
        }
        self.per_res[r] += 1;
    }

    fn remove_cells(&mut self, id: SubId, res: Resolution, cells: &[CellIndex]) {
        let r = u8::from(res) as usize;
        for c in cells {
            if let Some(list) = self.by_cell[r].get_mut(c) {
                list.retain(|s| *s != id);
                if list.is_empty() {
                    self.by_cell[r].remove(c);
                }
            }
        }
        self.per_res[r] -= 1;
    }

    /// Appends the ids of subscriptions whose covering cells contain the point (a superset of
    /// those whose viewport does: check [`Filter::in_view`]). May append an id twice when
    /// called for several points.
    pub fn candidates(&self, lat: f64, lon: f64, out: &mut Vec<SubId>) {
        for (r, count) in self.per_res.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let Some(cell) = cell_at(lat, lon, crate::viewport::res(r as u8)) else { continue };
            if let Some(list) = self.by_cell[r].get(&cell) {
                out.extend_from_slice(list);
            }
        }
    }

    /// A subscription.
    pub fn get(&self, id: SubId) -> Option<&Subscription<T>> {
        self.subs.get(&id)
    }

    /// A subscription, mutably.
    pub fn get_mut(&mut self, id: SubId) -> Option<&mut Subscription<T>> {
        self.subs.get_mut(&id)
    }

    /// Every subscription.
    pub fn iter(&self) -> impl Iterator<Item = (SubId, &Subscription<T>)> {
        self.subs.iter().map(|(k, v)| (*k, v))
    }

    /// Every subscription, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SubId, &mut Subscription<T>)> {
        self.subs.iter_mut().map(|(k, v)| (*k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewport::Bbox;

    #[test]
    fn finds_interested_only() {
        let mut idx = SubscriptionIndex::new();
        let a = idx.insert(Filter::bbox(Bbox::new(145.70, -16.95, 145.75, -16.90).unwrap()), ());
        let b = idx.insert(Filter::bbox(Bbox::new(145.60, -17.20, 145.90, -16.70).unwrap()), ());
        let far = idx.insert(Filter::bbox(Bbox::new(150.0, -30.0, 150.1, -29.9).unwrap()), ());
        let mut out = Vec::new();
        idx.candidates(-16.92, 145.72, &mut out);
        out.sort();
        assert_eq!(out, vec![a, b]);
        out.clear();
        idx.candidates(-29.95, 150.05, &mut out);
        assert_eq!(out, vec![far]);

        idx.update(a, Filter::bbox(Bbox::new(150.0, -30.0, 150.1, -29.9).unwrap()));
        out.clear();
        idx.candidates(-16.92, 145.72, &mut out);
        assert_eq!(out, vec![b]);
        assert!(idx.remove(b).is_some());
        out.clear();
        idx.candidates(-16.92, 145.72, &mut out);
        assert!(out.is_empty());
        assert!(idx.by_cell.iter().all(|m| m.values().all(|l| !l.contains(&b))));
    }
}
