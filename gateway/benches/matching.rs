//! Per-update matching cost against the number of subscribers, with a fixed number of them
//! interested in the update's location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use busflow_gateway::{Bbox, Filter, SubscriptionIndex};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};

const INTERESTED: usize = 10;
const HOT: (f64, f64) = (-16.92, 145.775);

fn index_with(subscribers: usize) -> SubscriptionIndex<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut idx = SubscriptionIndex::new();
    for i in 0..INTERESTED {
        let d = 0.005 + i as f64 * 0.002;
        idx.insert(
            Filter::bbox(Bbox::new(HOT.1 - d, HOT.0 - d, HOT.1 + d, HOT.0 + d).unwrap()),
            (),
        );
    }
    // Everybody else watches a district-sized viewport somewhere in a 3°x3° region that
    // excludes the hot spot.
    while idx.len() < subscribers.max(INTERESTED) {
        let w = rng.random_range(146.0..149.0);
        let s = rng.random_range(-20.0..-17.0);
        let size = rng.random_range(0.01..0.08);
        idx.insert(Filter::bbox(Bbox::new(w, s, w + size, s + size).unwrap()), ());
    }
    idx
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_update");
    group.throughput(Throughput::Elements(1));
    for n in [100usize, 1_000, 10_000] {
        let idx = index_with(n);
        let mut out = Vec::with_capacity(64);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                out.clear();
                idx.candidates(HOT.0, HOT.1, &mut out);
                let hits = out
                    .iter()
                    .filter(|id| {
                        idx.get(**id).is_some_and(|s| s.filter.bbox.contains(HOT.0, HOT.1))
                    })
                    .count();
                assert_eq!(hits, INTERESTED);
                hits
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
