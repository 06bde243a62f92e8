//! What a sharded step costs: all-reduce payload per rank and memory per rank, from the same
//! arithmetic the implementation uses. A test checks [`step_traffic`] against the
//! [`Traffic`] a real step records.

use crate::collective::Traffic;
use crate::shard::ClassShard;

/// The shape of a sharded step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepShape {
    /// The number of ranks `W`.
    pub world_size: usize,
    /// Samples per rank `b`.
    pub batch: usize,
    /// Embedding width `D`.
    pub dim: usize,
    /// Classes of the classifier `C`.
    pub num_classes: usize,
    /// Partial FC sample rate (1 in the stable stage).
    pub sample_rate: f64,
    /// Whether the step is the stable stage with prototype logits (a second softmax).
    pub prototypes: bool,
    /// Whether the softmaxes shift by each row's all-reduced maximum (a scale above
    /// [`CONSTANT_SHIFT_LIMIT`](crate::CONSTANT_SHIFT_LIMIT), or CurricularFace).
    pub row_maximum: bool,
    /// Whether the loss is CurricularFace, whose step all-reduces every row's target cosine.
    pub curricular_face: bool,
}

/// The all-reduce payload of one [`PartialFc::step`](crate::PartialFc::step) on one rank:
/// batch sizes (`W`), embeddings (`W·b·D`), labels (`W·b`), with CurricularFace the target
/// cosines (`W·b`), with the row-maximum shift the maxima (an all-gather of `W·b` per softmax:
/// `W²·b`), denominators and target logits (`2·W·b` per softmax), embedding gradients
/// (`W·b·D`). The backbone's gradient exchange comes on top: one all-reduce of the parameter
/// count.
pub fn step_traffic(shape: StepShape) -> Traffic {
    let StepShape {
        world_size: w,
        batch: b,
        dim: d,
        prototypes,
        row_maximum,
        curricular_face,
        ..
    } = shape;
    let softmaxes = if prototypes { 2 } else { 1 };
    let n = w * b;
    let targets = Traffic {
        calls: curricular_face as u64,
        elements: if curricular_face { n as u64 } else { 0 },
    };
    if w == 1 {
        // A world of one calls the all-reduce primitive only for the softmax sums, the target
        // cosines and the embedding gradient; the gathers and the maximum return at once.
        return Traffic {
            calls: 2 + targets.calls,
            elements: (2 * softmaxes * b + b * d) as u64 + targets.elements,
        };
    }
    let maxima = if row_maximum { w * softmaxes * n } else { 0 };
    Traffic {
        calls: 5 + targets.calls + row_maximum as u64,
        elements: (w + n * d + n + maxima + 2 * softmaxes * n + n * d) as u64 + targets.elements,
    }
}

/// Bytes on the wire per rank for an all-reduce of `elements` f32 values with a ring over `W`
/// ranks: `2·(W-1)/W` of the payload is sent (reduce-scatter, then all-gather).
pub fn ring_bytes_sent(elements: u64, world_size: usize) -> u64 {
    if world_size <= 1 {
        return 0;
    }
    4 * 2 * elements * (world_size as u64 - 1) / world_size as u64
}

/// Memory of the classifier on the rank with the largest shard, in bytes (f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMemory {
    /// Classes on the largest shard.
    pub num_local: usize,
    /// Classes a step keeps on it: the sampling budget, or the expected number of distinct
    /// positives when labels are drawn uniformly, whichever is larger.
    pub num_sampled: usize,
    /// Centres, their gradient and AdamW's two moments: `4 · num_local · D`.
    pub parameters: u64,
    /// Prototype bank (stable stage): prototypes and the length estimate's class means and
    /// squared lengths, `num_local · (2·D + 1)`.
    pub bank: u64,
    /// Activations of one step: the gathered embeddings and their gradient (`2·W·b·D`), and
    /// the `[W·b, num_sampled]` cosine, logit and exponential matrices with the gradient of
    /// each (six of them).
    pub activations: u64,
}

impl ShardMemory {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.parameters + self.bank + self.activations
    }
}

/// The classifier's memory on the largest shard of `shape`.
pub fn shard_memory(shape: StepShape) -> ShardMemory {
    let shard = ClassShard::new(0, shape.world_size, shape.num_classes);
    let num_local = shard.num_local();
    let budget = (shape.sample_rate * num_local as f64) as usize;
    let gathered = (shape.batch * shape.world_size) as f64;
    let positives =
        num_local as f64 * (1.0 - (1.0 - 1.0 / shape.num_classes.max(1) as f64).powf(gathered));
    let num_sampled = if shape.sample_rate >= 1.0 {
        num_local
    } else {
        budget.max(positives.ceil() as usize).min(num_local)
    };
    let d = shape.dim as u64;
    let n = (shape.world_size * shape.batch) as u64;
    ShardMemory {
        num_local,
        num_sampled,
        parameters: 4 * 4 * num_local as u64 * d,
        bank: if shape.prototypes {
            4 * num_local as u64 * (2 * d + 1)
        } else {
            0
        },
        activations: 4 * (2 * n * d + 6 * n * num_sampled as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webface42m_on_64_ranks_matches_hand_arithmetic() {
        let shape = StepShape {
            world_size: 64,
            batch: 384,
            dim: 512,
            num_classes: 2_059_906,
            sample_rate: 0.3,
            prototypes: false,
            row_maximum: false,
            curricular_face: false,
        };
        let memory = shard_memory(shape);
        // 2_059_906 = 64 · 32_186 + 2: ranks 0 and 1 hold 32_187 classes.
        assert_eq!(memory.num_local, 32_187);
        // int(0.3 · 32_187); about 382 distinct positives land on a shard.
        assert_eq!(memory.num_sampled, 9_656);
        assert_eq!(memory.parameters, 16 * 32_187 * 512);
        let traffic = step_traffic(shape);
        let n = 64 * 384;
        assert_eq!(traffic.elements, (64 + 2 * n * 512 + 3 * n) as u64);
        assert_eq!(ring_bytes_sent(64, 64), 4 * 2 * 63);
    }
}
