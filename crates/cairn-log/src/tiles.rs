//! C2SP `tlog-tiles` coordinates, paths and contents.
//!
//! SPEC: c2sp.org/tlog-tiles — a tile at level L, index N holds up to 256
//! consecutive hashes of perfect subtrees of height 8·L; a full tile has
//! width 256; `N` is written in 3-digit groups, all but the last prefixed
//! with `x`; partial tiles append `.p/<W>`. Entry bundles live under
//! `tile/entries/` with each entry prefixed by a big-endian u16 length.

use std::collections::HashMap;

use crate::tree::{HashReader, NodeId, perfect_root};
use crate::{Error, Hash};

/// Levels of the tree per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// The width of a full tile, as stored in [`Tile::width`].
pub const FULL_WIDTH: u16 = 256;
/// Highest tile level accepted in paths.
pub const MAX_LEVEL: u8 = 63;

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// A hash tile at this level.
    Hashes {
        /// Tile level (hash height 8·level).
        level: u8,
    },
    /// An entry bundle.
    Entries,
}

/// A tile: kind, index and width (1..=256; 256 is a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Hashes or entries.
    pub kind: TileKind,
    /// Tile index `N`.
    pub index: u64,
    /// Number of hashes or entries (1..=256).
    pub width: u16,
}

fn write_index(out: &mut String, index: u64) {
    let digits = index.to_string();
    let padded = format!("{:0>width$}", digits, width = digits.len().div_ceil(3) * 3);
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    for (i, group) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            out.push('x');
        }
        out.push_str(group);
        if i + 1 < groups.len() {
            out.push('/');
        }
    }
}

impl Tile {
    /// Whether this is a full (immutable) tile.
    pub fn is_full(&self) -> bool {
        self.width == FULL_WIDTH
    }

    /// The path below the log prefix, e.g. `tile/0/x001/234.p/7`.
    pub fn path(&self) -> String {
        let mut out = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => out.push_str(&level.to_string()),
            TileKind::Entries => out.push_str("entries"),
        }
        out.push('/');
        write_index(&mut out, self.index);
        if !self.is_full() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses the part of a path after `tile/`.
    pub fn parse_path(rest: &str) -> Result<Self, Error> {
        let bad = || Error::malformed("tile path", rest.chars().take(80).collect::<String>());
        let (kind, rest) = rest.split_once('/').ok_or_else(bad)?;
        let kind = if kind == "entries" {
            TileKind::Entries
        } else {
            let level: u8 = parse_decimal(kind).ok_or_else(bad)?;
            if level > MAX_LEVEL {
                return Err(bad());
            }
            TileKind::Hashes { level }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index_part, width)) => {
                let width: u16 = parse_decimal(width).ok_or_else(bad)?;
                if width == 0 || width >= FULL_WIDTH {
                    return Err(bad());
                }
                (index_part, width)
            }
            None => (rest, FULL_WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group.strip_prefix('x').ok_or_else(bad)?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let value: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(value))
                .ok_or_else(bad)?;
        }
        let tile = Self { kind, index, width };
        if tile.path() != format!("tile/{rest_full}", rest_full = rest_with_kind(&tile, rest)) {
            return Err(bad());
        }
        Ok(tile)
    }

    /// The hashes a hash tile holds, as perfect subtrees.
    pub fn nodes(&self) -> Option<Vec<NodeId>> {
        let TileKind::Hashes { level } = self.kind else {
            return None;
        };
        let start = self.index * TILE_WIDTH;
        Some(
            (start..start + u64::from(self.width))
                .map(|index| NodeId {
                    height: level * TILE_HEIGHT,
                    index,
                })
                .collect(),
        )
    }
}

fn rest_with_kind(tile: &Tile, rest: &str) -> String {
    match tile.kind {
        TileKind::Hashes { level } => format!("{level}/{rest}"),
        TileKind::Entries => format!("entries/{rest}"),
    }
}

fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// How many hashes of height `8·level` exist in a tree of `size` leaves.
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0)
}

/// The widest tile `(kind, index)` that exists in a tree of `size`, if any.
pub fn tile_at(size: u64, kind: TileKind, index: u64) -> Option<Tile> {
    let available = match kind {
        TileKind::Hashes { level } => hashes_at_level(size, level),
        TileKind::Entries => size,
    };
    let start = index.checked_mul(TILE_WIDTH)?;
    if start >= available {
        return None;
    }
    let width = u16::try_from((available - start).min(TILE_WIDTH)).ok()?;
    Some(Tile { kind, index, width })
}

/// Whether `tile` can be served from a tree of `size` (its width is not
/// larger than what exists).
pub fn tile_exists(size: u64, tile: &Tile) -> bool {
    tile_at(size, tile.kind, tile.index).is_some_and(|widest| widest.width >= tile.width)
}

/// Concatenates 32-byte hashes into tile data.
pub fn encode_hash_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// Splits tile data into hashes.
pub fn decode_hash_tile(data: &[u8], width: u16) -> Result<Vec<Hash>, Error> {
    if data.len() != usize::from(width) * 32 {
        return Err(Error::malformed("tile", "wrong length"));
    }
    data.chunks_exact(32)
        .map(Hash::from_slice)
        .collect::<Result<_, _>>()
        .map_err(|_| Error::malformed("tile", "bad hash"))
}

/// Encodes an entry bundle: each entry is a big-endian u16 length and bytes.
pub fn encode_entries<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).map_err(|_| Error::TooLarge(entry.len() as u64))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes an entry bundle.
pub fn decode_entries(mut data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut entries = Vec::new();
    while !data.is_empty() {
        let (len, rest) = data
            .split_first_chunk::<2>()
            .ok_or_else(|| Error::malformed("entry bundle", "truncated length"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(Error::malformed("entry bundle", "truncated entry"));
        }
        entries.push(rest[..len].to_vec());
        data = &rest[len..];
    }
    Ok(entries)
}

/// Synchronous batched tile reads, e.g. from a tile cache or an HTTP client.
pub trait TileReader {
    /// The read error.
    type Error: From<Error>;
    /// Reads the data of `tiles`, in order.
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Self::Error>;
}

/// A [`HashReader`] that computes any perfect-subtree hash of a tree of a
/// given size from hash tiles: node `(h, i)` is the perfect root of the
/// `2^(h mod 8)` hashes below it in tile level `h / 8`.
pub struct TileHashReader<'a, R> {
    size: u64,
    reader: &'a R,
}

impl<'a, R: TileReader> TileHashReader<'a, R> {
    /// Reads tiles of the tree of `size` leaves through `reader`.
    pub fn new(size: u64, reader: &'a R) -> Self {
        Self { size, reader }
    }
}

/// Where a stored node's hash comes from: a tile, an offset into it and the
/// number of its hashes (a power of two) whose perfect root it is.
type Span = (Tile, usize, usize);

fn spans(size: u64, nodes: &[NodeId]) -> Result<Vec<Span>, Error> {
    nodes
        .iter()
        .map(|node| {
            if node.end_leaf() > size {
                return Err(Error::IndexOutOfRange {
                    index: node.first_leaf(),
                    size,
                });
            }
            let level = node.height / TILE_HEIGHT;
            let shift = node.height % TILE_HEIGHT;
            let first = node.index << shift;
            let tile = tile_at(size, TileKind::Hashes { level }, first / TILE_WIDTH)
                .ok_or_else(|| Error::MissingHash(format!("tile for {node:?}")))?;
            // Both are below 256.
            let offset = usize::from(u16::try_from(first % TILE_WIDTH).unwrap_or(0));
            Ok((tile, offset, 1usize << shift))
        })
        .collect()
}

/// The hash tiles of a tree of `size` leaves that hold `nodes`, without
/// duplicates: what a tile reader must fetch to compute them.
pub fn tiles_for_nodes(size: u64, nodes: &[NodeId]) -> Result<Vec<Tile>, Error> {
    let mut needed: Vec<Tile> = Vec::new();
    for (tile, _, _) in spans(size, nodes)? {
        if !needed.contains(&tile) {
            needed.push(tile);
        }
    }
    Ok(needed)
}

impl<R: TileReader> HashReader for TileHashReader<'_, R> {
    type Error = R::Error;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, R::Error> {
        let spans = spans(self.size, nodes)?;
        let needed = tiles_for_nodes(self.size, nodes)?;
        let data = self.reader.read_tiles(&needed)?;
        let mut tiles: HashMap<Tile, Vec<Hash>> = HashMap::new();
        for (tile, data) in needed.iter().zip(data) {
            tiles.insert(*tile, decode_hash_tile(&data, tile.width)?);
        }
        spans
            .into_iter()
            .map(|(tile, start, count)| {
                let hashes = tiles
                    .get(&tile)
                    .and_then(|h| h.get(start..start + count))
                    .ok_or_else(|| Error::MissingHash(format!("{tile:?}")))?;
                Ok(perfect_root(hashes).ok_or_else(|| Error::MissingHash(format!("{tile:?}")))?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{LogWriter, fetch, root, root_nodes};

    #[test]
    fn paths_follow_the_spec() {
        let tile = |level, index, width| Tile {
            kind: TileKind::Hashes { level },
            index,
            width,
        };
        assert_eq!(tile(0, 1234067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(tile(1, 0, 256).path(), "tile/1/000");
        assert_eq!(tile(2, 1000, 5).path(), "tile/2/x001/000.p/5");
        let entries = Tile {
            kind: TileKind::Entries,
            index: 48,
            width: 7,
        };
        assert_eq!(entries.path(), "tile/entries/048.p/7");
        for t in [
            tile(0, 1234067, 256),
            tile(2, 1000, 5),
            entries,
            tile(3, 999, 255),
        ] {
            let rest = t.path().strip_prefix("tile/").unwrap().to_owned();
            assert_eq!(Tile::parse_path(&rest).unwrap(), t);
        }
        for bad in [
            "0/1234067",
            "0/x001/234067",
            "0/01",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/07",
            "64/000",
            "01/000",
            "0/001/002",
            "entries/000.p/",
            "0/x1/000",
            "x/000",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad}");
        }
    }

    struct Memory(HashMap<NodeId, Hash>);

    impl TileReader for Memory {
        type Error = Error;
        fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error> {
            tiles
                .iter()
                .map(|t| {
                    let hashes = t
                        .nodes()
                        .unwrap()
                        .into_iter()
                        .map(|n| self.0.get(&n).copied().unwrap())
                        .collect::<Vec<_>>();
                    Ok(encode_hash_tile(&hashes))
                })
                .collect()
        }
    }

    #[test]
    fn tile_reader_computes_any_node() {
        let mut writer = LogWriter::new();
        let mut stored = HashMap::new();
        for i in 0..70_000u64 {
            stored.extend(writer.append(leaf_hash(&i.to_le_bytes())));
        }
        let memory = Memory(stored.clone());
        for size in [1u64, 255, 256, 257, 65_535, 65_536, 70_000] {
            let reader = TileHashReader::new(size, &memory);
            let fetched = fetch(&reader, &root_nodes(size)).unwrap();
            assert_eq!(root(&fetched, size).unwrap(), root(&stored, size).unwrap());
        }
    }

    #[test]
    fn entries_round_trip() {
        let data = encode_entries([&b"ab"[..], &b""[..], &b"xyz"[..]]).unwrap();
        assert_eq!(
            decode_entries(&data).unwrap(),
            vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]
        );
        assert!(decode_entries(&data[..data.len() - 1]).is_err());
        assert!(decode_entries(&[0]).is_err());
    }
}
