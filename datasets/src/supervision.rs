//! Limited supervision: a seeded, stratified labelled subset with exactly `k` examples per
//! class (the rest of the split available as unlabelled data), and a seeded train/validation
//! split.
//!
//! Selection rule for [`stratified_indices`]: for each class `c`, the indices of class `c` in
//! dataset order are shuffled (Fisher–Yates) with `Rng::stream(seed, c)` and the first `k` are
//! taken. The result is sorted ascending, so it does not depend on the order classes are
//! visited in, and a different `k` with the same seed gives nested subsets.

use engine::Rng;

use crate::dataset::{Dataset, ImageSet};
use crate::error::{DataError, Result};

/// Indices of `k` examples of every class of `data` (sorted ascending) and of all other
/// examples (sorted ascending), chosen as described in the module docs.
///
/// # Errors
/// [`DataError::Insufficient`] if some class has fewer than `k` examples (the message names
/// the class and its count).
pub fn stratified_indices<D: Dataset + ?Sized>(data: &D, k: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); data.num_classes()];
    for i in 0..data.len() {
        by_class[data.label(i)].push(i);
    }
    let mut chosen = vec![false; data.len()];
    for (c, idx) in by_class.iter_mut().enumerate() {
        if idx.len() < k {
            return Err(DataError::Insufficient {
                what: format!(
                    "class {c} ({}) has {} examples, fewer than the {k} labelled examples per class requested",
                    data.class_names()[c],
                    idx.len()
                ),
            });
        }
        Rng::stream(seed, c as u64).shuffle(idx);
        for &i in &idx[..k] {
            chosen[i] = true;
        }
    }
    let labelled = (0..data.len()).filter(|&i| chosen[i]).collect();
    let unlabelled = (0..data.len()).filter(|&i| !chosen[i]).collect();
    Ok((labelled, unlabelled))
}

/// A training split divided into a small labelled part and the unlabelled rest.
#[derive(Clone, Debug)]
pub struct LimitedSupervision {
    /// Exactly `k` examples per class.
    pub labelled: ImageSet,
    /// Every other example of the split. Its labels are still readable (for evaluation);
    /// a semi-supervised method must not train on them.
    pub unlabelled: ImageSet,
}

/// Indices `0..n` split into `n_val` validation and `n − n_val` training indices, each sorted
/// ascending: the first `n_val` positions of a Fisher–Yates shuffle with `Rng::new(seed)`
/// form the validation part.
///
/// # Errors
/// [`DataError::Insufficient`] if `n_val > n`.
pub fn validation_indices(n: usize, n_val: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if n_val > n {
        return Err(DataError::Insufficient { what: format!("a validation split of {n_val} from {n} examples") });
    }
    let mut perm: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut perm);
    let mut val = perm[..n_val].to_vec();
    let mut train = perm[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

impl ImageSet {
    /// `k` labelled examples per class and the rest as unlabelled, by [`stratified_indices`].
    ///
    /// # Errors
    /// As [`stratified_indices`].
    pub fn limited(&self, k: usize, seed: u64) -> Result<LimitedSupervision> {
        let (l, u) = stratified_indices(self, k, seed)?;
        Ok(LimitedSupervision { labelled: self.subset(&l), unlabelled: self.subset(&u) })
    }

    /// `(train, validation)` subsets with `n_val` validation examples, by
    /// [`validation_indices`]. Both keep this set's normalisation statistics.
    ///
    /// # Errors
    /// As [`validation_indices`].
    pub fn split_validation(&self, n_val: usize, seed: u64) -> Result<(ImageSet, ImageSet)> {
        let (t, v) = validation_indices(self.len(), n_val, seed)?;
        Ok((self.subset(&t), self.subset(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 images, labels i % 3 for i < 45 and 2 for the rest: classes 0, 1 have 15, class 2 has 30.
    fn set() -> ImageSet {
        let labels: Vec<u8> = (0..60).map(|i| if i < 45 { (i % 3) as u8 } else { 2 }).collect();
        ImageSet::from_vec("s", (0..60).collect(), [1, 1, 1], labels, vec!["a".into(), "b".into(), "c".into()])
    }

    #[test]
    fn exactly_k_per_class_and_a_partition() {
        let s = set();
        let ls = s.limited(4, 11).unwrap();
        assert_eq!(ls.labelled.class_counts(), vec![4, 4, 4]);
        assert_eq!(ls.unlabelled.len(), 60 - 12);
        let mut all: Vec<usize> = (0..ls.labelled.len()).map(|i| ls.labelled.source_index(i)).collect();
        all.extend((0..ls.unlabelled.len()).map(|i| ls.unlabelled.source_index(i)));
        all.sort();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        // reproducible, seed-dependent and nested in k
        let (a, _) = stratified_indices(&s, 4, 11).unwrap();
        assert_eq!(a, stratified_indices(&s, 4, 11).unwrap().0);
        assert_ne!(a, stratified_indices(&s, 4, 12).unwrap().0);
        let (b, _) = stratified_indices(&s, 6, 11).unwrap();
        assert!(a.iter().all(|i| b.contains(i)));
    }

    #[test]
    fn too_few_examples_is_an_error_naming_the_class() {
        let e = set().limited(16, 0).unwrap_err().to_string();
        assert_eq!(e, "class 0 (a) has 15 examples, fewer than the 16 labelled examples per class requested");
    }

    #[test]
    fn validation_split_is_a_seeded_partition() {
        let s = set();
        let (t, v) = s.split_validation(10, 5).unwrap();
        assert_eq!((t.len(), v.len()), (50, 10));
        let (t2, v2) = validation_indices(60, 10, 5).unwrap();
        assert_eq!((0..10).map(|i| v.source_index(i)).collect::<Vec<_>>(), v2);
        assert!(t2.iter().all(|i| !v2.contains(i)));
        assert_ne!(v2, validation_indices(60, 10, 6).unwrap().1);
        assert!(s.split_validation(61, 0).is_err());
    }
}
