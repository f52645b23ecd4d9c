//! Checkpoints as safetensors files (the format of Hugging Face's `safetensors`): an 8-byte
//! little-endian header length, a JSON header mapping every tensor name to its dtype, shape
//! and byte range (plus `__metadata__`, string → string), then the little-endian data.
//!
//! Only what the program writes is read: `F32` tensors. Files are written to a temporary
//! name and renamed, so an interrupted write never leaves a truncated checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use engine::Tensor;
use serde_json::{json, Map, Value};

/// A checkpoint's tensors (in file order) and its metadata.
#[derive(Debug)]
pub struct Checkpoint {
    pub tensors: Vec<(String, Tensor<f32>)>,
    pub metadata: BTreeMap<String, String>,
}

/// Writes `tensors` and `metadata` to `path` (atomically: a temporary file, then a rename).
///
/// # Errors
/// A message naming the file when it cannot be written.
pub fn save<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor<f32>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut header = Map::new();
    header.insert("__metadata__".to_string(), json!(metadata));
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let start = data.len();
        for x in t.to_vec() {
            data.extend_from_slice(&x.to_le_bytes());
        }
        header
            .insert(name.to_string(), json!({"dtype": "F32", "shape": t.shape(), "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("a JSON header");
    // The data starts on an 8-byte boundary, as the reference implementation writes it.
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + h.len() + data.len());
    bytes.extend_from_slice(&(h.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&data);
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the checkpoint at `path`.
///
/// # Errors
/// A message naming the file and what is wrong (size, header, dtype, byte range).
pub fn load(path: &Path) -> Result<Checkpoint, String> {
    let p = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{p}: {e}"))?;
    if bytes.len() < 8 {
        return Err(format!("{p}: {} bytes, too short for a safetensors file", bytes.len()));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let end =
        8u64.checked_add(n).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
            format!("{p}: the header length {n} runs past the end of the file ({} bytes)", bytes.len())
        })? as usize;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| format!("{p}: invalid JSON header: {e}"))?;
    let data = &bytes[end..];
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, v) in &header {
        if name == "__metadata__" {
            for (k, v) in v.as_object().ok_or_else(|| format!("{p}: __metadata__ is not an object"))? {
                metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
            continue;
        }
        let bad = |what: &str| format!("{p}: tensor '{name}': {what}");
        if v["dtype"] != "F32" {
            return Err(bad(&format!("dtype {} (only F32 is read)", v["dtype"])));
        }
        let shape: Vec<usize> = v["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("invalid shape"))?;
        let off = v["data_offsets"].as_array().ok_or_else(|| bad("no data_offsets"))?;
        let (a, b) = match (off.first().and_then(Value::as_u64), off.get(1).and_then(Value::as_u64)) {
            (Some(a), Some(b)) if a <= b && b <= data.len() as u64 => (a as usize, b as usize),
            _ => return Err(bad(&format!("data_offsets {off:?} outside the {} data bytes", data.len()))),
        };
        let numel: usize = shape.iter().product();
        if b - a != 4 * numel {
            return Err(bad(&format!("{} bytes for shape {shape:?}", b - a)));
        }
        let values = data[a..b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        tensors.push((a, name.clone(), Tensor::from_vec(values, &shape)));
    }
    tensors.sort_by_key(|t| t.0);
    Ok(Checkpoint { tensors: tensors.into_iter().map(|(_, n, t)| (n, t)).collect(), metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("sparsegrad-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.safetensors");
        let w = Tensor::from_vec(vec![1.0f32, 0.0, -2.5, 3.0, 0.0, 6.0], &[2, 3]);
        let b = Tensor::from_vec(vec![0.5f32], &[1]);
        let meta: BTreeMap<String, String> = [("net".to_string(), "lenet".to_string())].into();
        save(&f, [("0.weight", &w), ("0.bias", &b)], &meta).unwrap();
        let c = load(&f).unwrap();
        assert_eq!(c.metadata, meta);
        assert_eq!(c.tensors.len(), 2);
        assert_eq!((c.tensors[0].0.as_str(), c.tensors[0].1.shape()), ("0.weight", &[2usize, 3][..]));
        assert_eq!(c.tensors[0].1.to_vec(), w.to_vec());
        assert_eq!(c.tensors[1].1.to_vec(), vec![0.5]);
        let bytes = std::fs::read(&f).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
        std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
        assert!(load(&f).unwrap_err().contains("outside the"), "{}", load(&f).unwrap_err());
        std::fs::write(&f, [255u8; 12]).unwrap();
        assert!(load(&f).unwrap_err().contains("runs past the end"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
