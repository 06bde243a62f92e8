//! [`ClassShard`]: which classes a rank owns, with insightface's arithmetic
//! (`partial_fc_v2.py`): the first `C % W` ranks hold one class more.

/// The contiguous range of classes held by one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassShard {
    /// The rank holding this shard.
    pub rank: usize,
    /// The number of ranks.
    pub world_size: usize,
    /// The number of classes of the whole classifier.
    pub num_classes: usize,
}

impl ClassShard {
    /// The shard of `rank` among `world_size` over `num_classes` classes.
    ///
    /// # Panics
    /// If `rank >= world_size`.
    pub fn new(rank: usize, world_size: usize, num_classes: usize) -> Self {
        assert!(
            rank < world_size,
            "rank {rank} outside a world of {world_size}"
        );
        Self {
            rank,
            world_size,
            num_classes,
        }
    }

    /// `C / W + (rank < C % W)`.
    pub fn num_local(&self) -> usize {
        let (base, rest) = self.split();
        base + usize::from(self.rank < rest)
    }

    /// `C / W · rank + min(rank, C % W)`.
    pub fn class_start(&self) -> usize {
        let (base, rest) = self.split();
        base * self.rank + self.rank.min(rest)
    }

    /// The global class ids of this shard.
    pub fn range(&self) -> std::ops::Range<usize> {
        let start = self.class_start();
        start..start + self.num_local()
    }

    /// A global label in this shard's numbering, or -1 when another rank owns it (or the label
    /// is already -1).
    pub fn local_label(&self, label: i64) -> i64 {
        let range = self.range();
        if label >= range.start as i64 && label < range.end as i64 {
            label - range.start as i64
        } else {
            -1
        }
    }

    /// Every shard of a world, in rank order.
    pub fn all(world_size: usize, num_classes: usize) -> Vec<ClassShard> {
        (0..world_size)
            .map(|rank| ClassShard::new(rank, world_size, num_classes))
            .collect()
    }

    fn split(&self) -> (usize, usize) {
        (
            self.num_classes / self.world_size,
            self.num_classes % self.world_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_classes_with_the_remainder_on_the_first_ranks() {
        let shards = ClassShard::all(4, 10);
        let sizes: Vec<usize> = shards.iter().map(ClassShard::num_local).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        let starts: Vec<usize> = shards.iter().map(ClassShard::class_start).collect();
        assert_eq!(starts, [0, 3, 6, 8]);
        for world in 1..=7 {
            for classes in [0, 1, 5, 13, 2_059_906] {
                let mut next = 0;
                for shard in ClassShard::all(world, classes) {
                    assert_eq!(shard.class_start(), next);
                    next += shard.num_local();
                }
                assert_eq!(next, classes);
            }
        }
    }

    #[test]
    fn labels_outside_the_shard_become_minus_one() {
        let shard = ClassShard::new(1, 3, 10); // classes 4..7
        assert_eq!(shard.range(), 4..7);
        let got: Vec<i64> = [-1, 0, 3, 4, 6, 7, 9]
            .iter()
            .map(|&y| shard.local_label(y))
            .collect();
        assert_eq!(got, [-1, -1, -1, 0, 2, -1, -1]);
    }
}
