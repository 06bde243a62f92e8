//! The seed streams of a run: every random draw of the backend derives from `run.seed` and a
//! stream number (the batch and rank, or the centre shard), so that a resumed run repeats an
//! uninterrupted one and in-process ranks draw what launched ones do.

/// The backend seed of stream `step`: SplitMix64 of the pair, so that masking and drop path of a
/// batch do not depend on how many batches this process ran before it.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeds the centre shards' streams apart from the backbone's.
pub(crate) const CENTRES_STREAM: u64 = 0x6365_6e74_7265_7300;
