//! Where each kind of entry lives on the remote, under its prefix. One
//! module so the layout is written down once (and pinned by a test: a
//! change would orphan every remote cache already written).

use object_store::path::Path;
use retort_cache::Hash;

/// Keys of one remote cache: everything under `prefix`.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (no surrounding `/`; empty for the bucket root).
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_matches('/').to_string() }
    }

    fn key(&self, rest: String) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The prefix itself (`None` for the bucket root).
    pub fn root(&self) -> Option<Path> {
        (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()))
    }

    /// A file object, or one file of a directory object: its bytes.
    pub fn object(&self, hash: &Hash) -> Path {
        self.key(format!("objects/{}", hash.to_hex()))
    }

    /// A directory object: its manifest, whose hash is the directory's name.
    pub fn tree(&self, hash: &Hash) -> Path {
        self.key(format!("trees/{}", hash.to_hex()))
    }

    /// The run record of a stage fingerprint.
    pub fn run(&self, fingerprint: &Hash) -> Path {
        self.key(format!("runs/{}", fingerprint.to_hex()))
    }

    /// The folder of an item namespace's log copies.
    pub fn items_dir(&self, ns: &Hash) -> Path {
        self.key(format!("items/{}", ns.to_hex()))
    }

    /// One copy of an item namespace's log, named by its bytes' hash.
    pub fn items(&self, ns: &Hash, copy: &Hash) -> Path {
        self.key(format!("items/{}/{}", ns.to_hex(), copy.to_hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_cache::hash_bytes;

    #[test]
    fn layout_is_pinned() {
        let h = hash_bytes(b"");
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(h.to_hex(), hex);
        let k = Keys::new("/team/cache/");
        assert_eq!(k.object(&h).as_ref(), format!("team/cache/objects/{hex}"));
        assert_eq!(k.tree(&h).as_ref(), format!("team/cache/trees/{hex}"));
        assert_eq!(k.run(&h).as_ref(), format!("team/cache/runs/{hex}"));
        assert_eq!(k.items(&h, &h).as_ref(), format!("team/cache/items/{hex}/{hex}"));
        assert_eq!(Keys::new("").object(&h).as_ref(), format!("objects/{hex}"));
    }
}
