//! Namespaces of other installed embedding models than the node's: which model each is embedded with (chosen at
//! creation, or moved to with `cairn migrate`), the migration under way per namespace, and the vectors already made
//! with the new model (so an interrupted migration resumes where it stopped).

use std::collections::{HashMap, HashSet};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{dberr, rows, PointRow, State, StoreError, MEMORIES};

/// namespace → the installed model (identity hash) its texts are embedded with, for owned namespaces moved off
/// the node's own model; absent for namespaces of the node's model or of an external model.
pub(super) const NS_MODELS: TableDefinition<&str, [u8; 32]> =
    TableDefinition::new("namespace_models");
/// namespace → the model a migration under way moves it to.
pub(super) const MIGRATIONS: TableDefinition<&str, [u8; 32]> = TableDefinition::new("migrations");
/// (namespace, memory id) → the memory's vector under the migration's model (f32 little-endian), made so far.
pub(super) const STAGED: TableDefinition<(&str, [u8; 32]), &[u8]> =
    TableDefinition::new("migration_vectors");

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(b: &[u8]) -> Result<Vec<f32>, StoreError> {
    if !b.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt(rows::CorruptRow("staged vector")));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Removes the staged vectors of `ids` (forgotten memories: nothing of theirs may stay behind).
pub(super) fn unstage_in(
    tx: &redb::WriteTransaction,
    ns: &str,
    ids: impl IntoIterator<Item = [u8; 32]>,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(STAGED).map_err(dberr)?;
    for id in ids {
        t.remove((ns, id)).map_err(dberr)?;
    }
    Ok(())
}

/// Drops everything this module holds for `ns` (a dropped replica).
pub(super) fn drop_in(tx: &redb::WriteTransaction, ns: &str) -> Result<(), StoreError> {
    tx.open_table(NS_MODELS)
        .map_err(dberr)?
        .remove(ns)
        .map_err(dberr)?;
    tx.open_table(MIGRATIONS)
        .map_err(dberr)?
        .remove(ns)
        .map_err(dberr)?;
    tx.open_table(STAGED)
        .map_err(dberr)?
        .retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
        .map_err(dberr)?;
    Ok(())
}

/// Namespaces embedded by another installed model than the node's, and migrations.
impl State {
    /// Every namespace embedded with an installed model other than the node's, with that model's hash.
    pub fn namespace_models(&self) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        self.model_table(NS_MODELS)
    }

    /// Every row of a namespace → model hash table.
    fn model_table(
        &self,
        def: TableDefinition<&str, [u8; 32]>,
    ) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(def).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Registers `ns` (which must not hold memories yet) as a namespace embedded with the installed model `model`.
    pub fn create_with_model(&self, ns: &str, model: [u8; 32]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            tx.open_table(NS_MODELS)
                .map_err(dberr)?
                .insert(ns, model)
                .map_err(dberr)?;
            let mut nst = tx.open_table(super::NAMESPACES).map_err(dberr)?;
            if nst.get(ns).map_err(dberr)?.is_none() {
                nst.insert(ns, 0u64).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Every migration under way: (namespace, target model).
    pub fn migrations(&self) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        self.model_table(MIGRATIONS)
    }

    /// Records a migration of `ns` to `target`. A migration to another target under way is replaced and its
    /// staged vectors dropped; one to the same target keeps them (it resumes). Returns how many are kept.
    pub fn start_migration(&self, ns: &str, target: [u8; 32]) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let kept;
        {
            let mut m = tx.open_table(MIGRATIONS).map_err(dberr)?;
            let same = m
                .get(ns)
                .map_err(dberr)?
                .is_some_and(|v| v.value() == target);
            let mut st = tx.open_table(STAGED).map_err(dberr)?;
            if !same {
                st.retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
                    .map_err(dberr)?;
                m.insert(ns, target).map_err(dberr)?;
            }
            kept = st
                .range((ns, [0u8; 32])..=(ns, [0xffu8; 32]))
                .map_err(dberr)?
                .count() as u64;
        }
        tx.commit().map_err(dberr)?;
        Ok(kept)
    }

    /// Drops the migration of `ns` under way, if any, with its staged vectors.
    pub fn cancel_migration(&self, ns: &str) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(MIGRATIONS)
            .map_err(dberr)?
            .remove(ns)
            .map_err(dberr)?;
        tx.open_table(STAGED)
            .map_err(dberr)?
            .retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Ids of `ns` whose new vector is staged.
    pub fn staged_ids(&self, ns: &str) -> Result<HashSet<[u8; 32]>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(STAGED).map_err(dberr)?;
        let mut out = HashSet::new();
        for item in t
            .range((ns, [0u8; 32])..=(ns, [0xffu8; 32]))
            .map_err(dberr)?
        {
            out.insert(item.map_err(dberr)?.0.value().1);
        }
        Ok(out)
    }

    /// Durably stages new vectors of live memories of `ns` (ids no longer live are skipped: a memory forgotten
    /// while it was being embedded leaves nothing behind). Returns how many were staged.
    pub fn stage(&self, ns: &str, vectors: &[([u8; 32], Vec<f32>)]) -> Result<usize, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let mut n = 0;
        {
            let mem = tx.open_table(MEMORIES).map_err(dberr)?;
            let mut t = tx.open_table(STAGED).map_err(dberr)?;
            for (id, v) in vectors {
                if mem.get((ns, *id)).map_err(dberr)?.is_some() {
                    t.insert((ns, *id), encode_vector(v).as_slice())
                        .map_err(dberr)?;
                    n += 1;
                }
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(n)
    }

    /// The staged vectors of `ns`, by id.
    pub fn staged(&self, ns: &str) -> Result<HashMap<[u8; 32], Vec<f32>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(STAGED).map_err(dberr)?;
        let mut out = HashMap::new();
        for item in t
            .range((ns, [0u8; 32])..=(ns, [0xffu8; 32]))
            .map_err(dberr)?
        {
            let (k, v) = item.map_err(dberr)?;
            out.insert(k.value().1, decode_vector(v.value())?);
        }
        Ok(out)
    }

    /// The durable half of finishing a migration, in ONE transaction: every point of `ns` replaced by `live`
    /// (the live rows with their new vectors, renumbered 0..), the namespace's model set (`None`: back to the
    /// node's own model), the staged vectors and the migration record dropped.
    pub fn finish_migration(
        &self,
        ns: &str,
        live: &[PointRow],
        model: Option<[u8; 32]>,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        super::rewrite_points_in(&tx, ns, live)?;
        {
            let mut models = tx.open_table(NS_MODELS).map_err(dberr)?;
            match model {
                Some(h) => models.insert(ns, h).map(|_| ()),
                None => models.remove(ns).map(|_| ()),
            }
            .map_err(dberr)?;
        }
        tx.open_table(MIGRATIONS)
            .map_err(dberr)?
            .remove(ns)
            .map_err(dberr)?;
        tx.open_table(STAGED)
            .map_err(dberr)?
            .retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_vectors_round_trip_and_damaged_ones_are_refused() {
        let v = vec![0.5f32, -0.25, 1.0];
        assert_eq!(decode_vector(&encode_vector(&v)).expect("decode"), v);
        assert!(decode_vector(&[1, 2, 3]).is_err());
    }
}
