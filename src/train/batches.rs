//! From tokenized examples to micro-batches: optional packing, a seeded shuffle per epoch,
//! right padding with an attention mask.

use crate::data::Example;
use crate::data::IGNORE_INDEX;
use crate::sample::Rng;
use crate::train::Batch;

/// Concatenate examples (each already ends with EOS) and cut the stream into rows of
/// `seq_len` tokens; the first token of each row is not predicted.
pub fn pack(examples: &[Example], seq_len: usize) -> Vec<Example> {
    let ids: Vec<u32> = examples
        .iter()
        .flat_map(|e| e.ids.iter().copied())
        .collect();
    let labels: Vec<i32> = examples
        .iter()
        .flat_map(|e| e.labels.iter().copied())
        .collect();
    ids.chunks(seq_len)
        .zip(labels.chunks(seq_len))
        .filter(|(c, _)| c.len() > 1)
        .enumerate()
        .map(|(i, (c, l))| Example {
            ids: c.to_vec(),
            labels: l.to_vec(),
            line: i + 1,
        })
        .collect()
}

/// The order of examples in `epoch`: a Fisher–Yates shuffle seeded by (seed, epoch), or
/// file order. `epoch` is a u64 so that the page (wasm32, 32-bit usize) and the CLI draw
/// the same orders.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// A right-padded batch of `rows` (pad id `pad`, mask 0, no targets at padding).
pub fn make_batch(rows: &[&Example], pad: u32) -> Batch {
    let b = rows.len();
    let t = rows.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
    let (mut ids, mut mask, mut labels) = (
        vec![pad; b * t],
        vec![0u32; b * t],
        vec![IGNORE_INDEX; b * t],
    );
    for (i, e) in rows.iter().enumerate() {
        for (j, (&id, &l)) in e.ids.iter().zip(&e.labels).enumerate() {
            ids[i * t + j] = id;
            mask[i * t + j] = 1;
            labels[i * t + j] = l;
        }
    }
    Batch::from_labels(ids, mask, &labels, b, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32]) -> Example {
        Example {
            ids: ids.to_vec(),
            labels: ids.iter().map(|&i| i as i32).collect(),
            line: 1,
        }
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = epoch_order(100, 42, 0, true);
        assert_eq!(a, epoch_order(100, 42, 0, true));
        assert_ne!(a, epoch_order(100, 42, 1, true));
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 42, 3, false), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn packing_and_padding() {
        let p = pack(&[ex(&[1, 2, 3]), ex(&[4, 5]), ex(&[6])], 4);
        assert_eq!(
            p.iter().map(|e| e.ids.clone()).collect::<Vec<_>>(),
            vec![vec![1, 2, 3, 4], vec![5, 6]]
        );
        let (a, b) = (ex(&[1, 2, 3]), ex(&[4]));
        let batch = make_batch(&[&a, &b], 0);
        assert_eq!((batch.b, batch.t), (2, 3));
        assert_eq!(batch.mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.targets, vec![2, 3, -100, -100, -100, -100]);
    }
}
