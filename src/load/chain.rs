//! Layer chain IDs: how the engine's classic (graphdriver) store names a layer together with
//! every layer below it. `docker load` reads a layer's file only when the engine lacks that
//! chain, so a load stream (or a delta bundle) can leave out layers whose chain is present.

use std::collections::HashSet;

use offpack_bundle::Digest;

/// A chain ID: written like a digest, but it names a stack of layers, never a blob, so it is
/// kept apart from the diff IDs it is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainId(Digest);

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Chain IDs of each prefix of `diff_ids`, in order:
/// `chain(L0) = L0`, `chain(L0..Ln) = sha256(chain(L0..Ln-1) + " " + Ln)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<ChainId> {
    let mut chains: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(ChainId(parent)) => Digest::of_bytes(format!("{parent} {diff_id}").as_bytes()),
        };
        chains.push(ChainId(chain));
    }
    chains
}

/// Every chain ID the given images' layer lists make.
pub fn present_chains<'a>(images: impl IntoIterator<Item = &'a [Digest]>) -> HashSet<ChainId> {
    images.into_iter().flat_map(chain_ids).collect()
}

/// The layers of `images` the engine (holding `present` chains) does not need to receive:
/// those whose every use sits on a chain the engine already has.
pub fn layers_to_omit(images: &[&[Digest]], present: &HashSet<ChainId>) -> HashSet<Digest> {
    let mut needed = HashSet::new();
    let mut all = HashSet::new();
    for layers in images {
        for (layer, chain) in layers.iter().zip(chain_ids(layers)) {
            all.insert(layer.clone());
            if !present.contains(&chain) {
                needed.insert(layer.clone());
            }
        }
    }
    all.difference(&needed).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::from_hex(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn chain_of_one_layer_is_its_diff_id() {
        assert_eq!(chain_ids(&[d('a')]), vec![ChainId(d('a'))]);
    }

    #[test]
    fn chain_ids_follow_the_engine_formula() {
        use sha2::{Digest as _, Sha256};
        // The engine's own value for this pair (moby layer.CreateChainID).
        let chains = chain_ids(&[d('a'), d('b')]);
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{} {}", d('a'), d('b'))))
        );
        assert_eq!(chains[1].0.to_string(), expected);
        assert_ne!(chain_ids(&[d('b'), d('a')])[1], chains[1], "order matters");
    }

    #[test]
    fn omits_only_layers_on_present_chains() {
        let base = vec![d('a'), d('b')];
        let app = vec![d('a'), d('b'), d('c')];
        let present = present_chains([base.as_slice()]);
        let omit = layers_to_omit(&[app.as_slice()], &present);
        assert_eq!(omit, [d('a'), d('b')].into_iter().collect());
        // The same layer on another chain is still needed.
        let other = vec![d('f'), d('b')];
        let omit = layers_to_omit(&[app.as_slice(), other.as_slice()], &present);
        assert!(!omit.contains(&d('b')));
        assert!(omit.contains(&d('a')));
    }
}
