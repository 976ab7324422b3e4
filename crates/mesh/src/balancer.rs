//! Which backend gets the next connection: least connections, ties broken round robin.
//!
//! Pure: the caller passes each backend's count of open connections and a rotating
//! cursor, and the backends it already failed to reach for this connection.

/// The index of the backend to try next: among those not in `exclude`, the one with the
/// fewest open connections; among equals, the first at or after `cursor` (cyclically), so
/// that idle backends take turns. `None` when every backend is excluded (or none exists).
pub fn pick(active: &[usize], cursor: usize, exclude: &[usize]) -> Option<usize> {
    let n = active.len();
    if n == 0 {
        return None;
    }
    (0..n)
        .map(|k| (cursor + k) % n)
        .filter(|i| !exclude.contains(i))
        .min_by_key(|i| active[*i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn idle_backends_take_turns() {
        let active = [0, 0, 0];
        let picks: Vec<usize> = (0..6).map(|c| pick(&active, c, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn the_least_loaded_backend_wins() {
        assert_eq!(pick(&[3, 1, 2], 0, &[]), Some(1));
        assert_eq!(pick(&[3, 1, 2], 2, &[]), Some(1));
        assert_eq!(pick(&[1, 0, 0], 0, &[]), Some(1));
        assert_eq!(pick(&[1, 0, 0], 2, &[]), Some(2));
    }

    #[test]
    fn failed_backends_are_skipped_until_none_is_left() {
        assert_eq!(pick(&[0, 5], 0, &[0]), Some(1));
        assert_eq!(pick(&[0, 5], 0, &[0, 1]), None);
        assert_eq!(pick(&[], 0, &[]), None);
    }

    proptest! {
        #[test]
        fn picks_a_minimal_allowed_backend(
            active in proptest::collection::vec(0usize..4, 0..8),
            cursor in 0usize..100,
            exclude in proptest::collection::vec(0usize..8, 0..4),
        ) {
            let allowed: Vec<usize> =
                (0..active.len()).filter(|i| !exclude.contains(i)).collect();
            match pick(&active, cursor, &exclude) {
                None => prop_assert!(allowed.is_empty()),
                Some(i) => {
                    prop_assert!(allowed.contains(&i));
                    let min = allowed.iter().map(|j| active[*j]).min().unwrap();
                    prop_assert_eq!(active[i], min);
                }
            }
        }

        #[test]
        fn equal_backends_are_used_evenly(n in 1usize..6, rounds in 1usize..5) {
            let active = vec![0; n];
            let mut hits = vec![0; n];
            for c in 0..n * rounds {
                hits[pick(&active, c, &[]).unwrap()] += 1;
            }
            prop_assert!(hits.iter().all(|h| *h == rounds));
        }
    }
}
