//! A pure-Rust GGUF header reader and validator. Every file goes through it before it is
//! handed to llama.cpp, so that a truncated download, a renamed HTML page or a hostile file
//! is refused with a clear reason instead of crashing (or worse) inside C++.
//!
//! Only the header is read: magic, version, counts, metadata key/values and tensor infos.
//! Every length read from the file is checked against the bytes that remain before anything
//! is allocated from it, so a forged length can never make us allocate more than the file.

mod tables;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

pub use tables::{ftype_name, ggml_type_info, swa_pattern, KNOWN_ARCHITECTURES};

/// GGUF's default tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays longer than this are summarised (type + length) rather than kept in memory:
/// tokenizer vocabularies run to hundreds of thousands of entries and nobody needs them here.
pub const MAX_STORED_ARRAY_LEN: u64 = 1000;
/// Beyond these a count or length is corrupt whatever the file size; below them but past
/// the end of the file, the file is truncated. Both are refused, with different messages.
const MAX_TENSORS: u64 = 1 << 20;
const MAX_KV: u64 = 1 << 20;
const MAX_STRING_LEN: u64 = 256 << 20;
const MAX_ARRAY_LEN: u64 = 1 << 32;
/// llama.cpp's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes), not a GGUF model")]
    Empty { path: PathBuf },
    #[error("{path}: not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\")")]
    NotGguf { path: PathBuf, found: Vec<u8> },
    #[error("{path}: truncated at byte {offset} while reading {what} (file is {file_size} bytes)")]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: String,
        file_size: u64,
    },
    #[error("{path}: unsupported GGUF version {version} (supported: 2, 3){hint}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },
    #[error("{path}: implausible {what} {value} at byte {offset}: {reason}")]
    Absurd {
        path: PathBuf,
        what: String,
        value: u64,
        offset: u64,
        reason: String,
    },
    #[error("{path}: unknown value type {type_id} for {what} at byte {offset}")]
    UnknownValueType {
        path: PathBuf,
        type_id: u32,
        what: String,
        offset: u64,
    },
    #[error("{path}: metadata {key}: {reason}")]
    BadMetadata {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{path}: unknown tensor type {type_id} for tensor {tensor}")]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
    },
    #[error("{path}: tensor {tensor}: {reason}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("{path}: tensor {tensor} data [{start}, {end}) lies outside the file ({file_size} bytes); the file is probably truncated")]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        start: u64,
        end: u64,
        file_size: u64,
    },
    #[error("{path}: no general.architecture in metadata; llama.cpp cannot load it")]
    MissingArchitecture { path: PathBuf },
    #[error("{path}: unknown architecture \"{arch}\" (not one llama.cpp knows)")]
    UnknownArchitecture { path: PathBuf, arch: String },
}

impl crate::error::ErrorCode for GgufError {
    fn code(&self) -> &'static str {
        match self {
            GgufError::Io { .. } => "gguf_io",
            GgufError::Empty { .. } => "gguf_empty",
            GgufError::NotGguf { .. } => "gguf_not_gguf",
            GgufError::Truncated { .. } => "gguf_truncated",
            GgufError::UnsupportedVersion { .. } => "gguf_unsupported_version",
            GgufError::Absurd { .. } => "gguf_absurd_value",
            GgufError::UnknownValueType { .. } => "gguf_unknown_value_type",
            GgufError::BadMetadata { .. } => "gguf_bad_metadata",
            GgufError::UnknownTensorType { .. } => "gguf_unknown_tensor_type",
            GgufError::BadTensor { .. } => "gguf_bad_tensor",
            GgufError::TensorOutOfBounds { .. } => "gguf_tensor_out_of_bounds",
            GgufError::MissingArchitecture { .. } => "gguf_missing_architecture",
            GgufError::UnknownArchitecture { .. } => "gguf_unknown_architecture",
        }
    }
}

/// The GGUF metadata value types (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GgufValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufValueType {
    fn from_u32(v: u32) -> Option<Self> {
        use GgufValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes one value takes on disk; for strings the minimum (the length prefix).
    fn min_size(self) -> u64 {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<GgufValue>),
    /// An array longer than [`MAX_STORED_ARRAY_LEN`]: validated, then skipped.
    ArraySummary {
        item_type: GgufValueType,
        len: u64,
    },
}

impl GgufValue {
    /// Any non-negative integer value as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Number of items if this is an array (stored or summarised).
    pub fn array_len(&self) -> Option<u64> {
        match self {
            GgufValue::Array(v) => Some(v.len() as u64),
            GgufValue::ArraySummary { len, .. } => Some(*len),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// `ggml_type` name (`"Q4_K"`, `"F32"`…).
    pub type_name: &'static str,
    /// Offset relative to [`GgufHeader::data_offset`].
    pub offset: u64,
    /// Bytes of tensor data, where the type's block layout is known.
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().copied().fold(1u64, u64::saturating_mul)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufHeader {
    pub path: PathBuf,
    pub version: u32,
    pub tensor_count: u64,
    pub kv: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset where tensor data begins.
    pub data_offset: u64,
    pub file_size: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.kv.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// `{arch}.{suffix}` as an integer; per-layer arrays (OpenELM, some hybrids) give their
    /// maximum, which is what memory estimates need.
    fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let key = format!("{}.{suffix}", self.architecture()?);
        match self.get(&key)? {
            GgufValue::Array(items) => items.iter().filter_map(GgufValue::as_u64).max(),
            v => v.as_u64(),
        }
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn name(&self) -> Option<&str> {
        self.get_str("general.name")
    }

    pub fn license(&self) -> Option<&str> {
        self.get_str("general.license")
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }

    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    pub fn block_count(&self) -> Option<u64> {
        self.arch_u64("block_count")
    }

    pub fn embedding_length(&self) -> Option<u64> {
        self.arch_u64("embedding_length")
    }

    pub fn head_count(&self) -> Option<u64> {
        self.arch_u64("attention.head_count")
    }

    /// KV heads; llama.cpp defaults it to the head count when absent (no GQA).
    pub fn head_count_kv(&self) -> Option<u64> {
        self.arch_u64("attention.head_count_kv")
            .or_else(|| self.head_count())
    }

    pub fn key_length(&self) -> Option<u64> {
        self.arch_u64("attention.key_length")
    }

    pub fn value_length(&self) -> Option<u64> {
        self.arch_u64("attention.value_length")
    }

    pub fn sliding_window(&self) -> Option<u64> {
        self.arch_u64("attention.sliding_window")
    }

    pub fn feed_forward_length(&self) -> Option<u64> {
        self.arch_u64("feed_forward_length")
    }

    /// `{arch}.vocab_size`, else the length of the tokenizer's token list.
    pub fn vocab_size(&self) -> Option<u64> {
        self.arch_u64("vocab_size").or_else(|| {
            self.get("tokenizer.ggml.tokens")
                .and_then(GgufValue::array_len)
        })
    }

    pub fn file_type_id(&self) -> Option<u32> {
        self.get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok())
    }

    /// The quantisation name (`"Q4_K_M"`), `"unknown(N)"` for a number we do not know.
    pub fn file_type(&self) -> Option<String> {
        let id = self.file_type_id()?;
        Some(match ftype_name(id) {
            Some(n) => n.to_string(),
            None => format!("unknown({id})"),
        })
    }

    /// Sum of all tensors' element counts (what llama.cpp prints as "model params").
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .map(TensorInfo::n_elements)
            .fold(0u64, u64::saturating_add)
    }

    /// Bytes of tensor data (the weights), summed over tensors whose layout is known.
    pub fn tensor_data_size(&self) -> u64 {
        self.tensors
            .iter()
            .filter_map(|t| t.n_bytes)
            .fold(0u64, u64::saturating_add)
    }

    pub fn bos_token_id(&self) -> Option<u64> {
        self.get_u64("tokenizer.ggml.bos_token_id")
    }

    pub fn eos_token_id(&self) -> Option<u64> {
        self.get_u64("tokenizer.ggml.eos_token_id")
    }

    /// `split.count` (>1 for a model split across several files by `gguf-split`).
    pub fn split_count(&self) -> Option<u64> {
        self.get_u64("split.count")
    }

    /// `split.no`, zero-based.
    pub fn split_no(&self) -> Option<u64> {
        self.get_u64("split.no")
    }

    pub fn is_split(&self) -> bool {
        self.split_count().is_some_and(|n| n > 1)
    }
}

/// `name-00001-of-00003.gguf` → `("name", 1, 3)`: gguf-split's naming convention.
pub fn parse_split_file_name(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = file_name
        .strip_suffix(".gguf")
        .or_else(|| file_name.strip_suffix(".GGUF"))?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    if no.len() != 5 || total.len() != 5 || prefix.is_empty() {
        return None;
    }
    let no: u32 = no.parse().ok()?;
    let total: u32 = total.parse().ok()?;
    (no >= 1 && no <= total).then_some((prefix, no, total))
}

/// The file name of part `no` (1-based) of a split model.
pub fn split_file_name(prefix: &str, no: u32, total: u32) -> String {
    format!("{prefix}-{no:05}-of-{total:05}.gguf")
}

/// Reads and validates the header of the GGUF file at `path`.
pub fn read_header(path: impl AsRef<Path>) -> Result<GgufHeader, GgufError> {
    let path = path.as_ref();
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let file_size = file.metadata().map_err(io)?.len();
    let mut r = Reader {
        inner: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
        file_size,
        path,
    };
    let header = parse(&mut r)?;
    tracing::debug!(
        path = %path.display(),
        version = header.version,
        tensors = header.tensor_count,
        kv = header.kv.len(),
        "gguf header read"
    );
    Ok(header)
}

struct Reader<'p> {
    inner: BufReader<File>,
    pos: u64,
    file_size: u64,
    path: &'p Path,
}

impl Reader<'_> {
    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.pos)
    }

    fn truncated(&self, what: &dyn std::fmt::Display) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            offset: self.pos,
            what: what.to_string(),
            file_size: self.file_size,
        }
    }

    fn absurd(&self, what: impl Into<String>, value: u64, reason: impl Into<String>) -> GgufError {
        GgufError::Absurd {
            path: self.path.to_path_buf(),
            what: what.into(),
            value,
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Checks that `n` more bytes exist before reading them, so a short file is reported as
    /// truncated at an exact offset rather than as a bare EOF.
    fn need(&self, n: u64, what: &dyn std::fmt::Display) -> Result<(), GgufError> {
        if n > self.remaining() {
            Err(self.truncated(what))
        } else {
            Ok(())
        }
    }

    fn bytes<const N: usize>(
        &mut self,
        what: &dyn std::fmt::Display,
    ) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &dyn std::fmt::Display) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &dyn std::fmt::Display) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn skip(&mut self, n: u64, what: &dyn std::fmt::Display) -> Result<(), GgufError> {
        self.need(n, what)?;
        let step = i64::try_from(n).map_err(|_| self.truncated(what))?;
        self.inner.seek_relative(step).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(())
    }

    /// Checks a count read from the file: `count` items of at least `item_size` bytes must
    /// fit in what is left (else truncated) and `count` must be at most `max` (else corrupt).
    /// Called before anything is allocated from `count`.
    fn check_len(
        &self,
        count: u64,
        item_size: u64,
        max: u64,
        what: &dyn std::fmt::Display,
    ) -> Result<(), GgufError> {
        if count > max {
            return Err(self.absurd(
                format!("{what} (count/length)"),
                count,
                format!("more than the sane maximum of {max}"),
            ));
        }
        match count.checked_mul(item_size) {
            Some(bytes) if bytes <= self.remaining() => Ok(()),
            _ => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                offset: self.file_size,
                what: format!(
                    "{what}: {count} × {item_size}+ bytes needed, {} left after byte {}",
                    self.remaining(),
                    self.pos
                ),
                file_size: self.file_size,
            }),
        }
    }

    /// Reads a length-prefixed string; the length is checked against the file before any
    /// allocation.
    fn string(&mut self, what: &dyn std::fmt::Display) -> Result<String, GgufError> {
        let len = self.u64(&format_args!("length of {what}"))?;
        self.check_len(len, 1, MAX_STRING_LEN, what)?;
        let n = usize::try_from(len).map_err(|_| self.truncated(what))?;
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += len;
        // llama.cpp does not require UTF-8 either; keep what we can rather than refuse.
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Skips a string, validating its length.
    fn skip_string(&mut self, what: &dyn std::fmt::Display) -> Result<(), GgufError> {
        let len = self.u64(&format_args!("length of {what}"))?;
        self.check_len(len, 1, MAX_STRING_LEN, what)?;
        self.skip(len, what)
    }

    fn value_type(&mut self, what: &dyn std::fmt::Display) -> Result<GgufValueType, GgufError> {
        let offset = self.pos;
        let id = self.u32(&format_args!("value type of {what}"))?;
        GgufValueType::from_u32(id).ok_or_else(|| GgufError::UnknownValueType {
            path: self.path.to_path_buf(),
            type_id: id,
            what: what.to_string(),
            offset,
        })
    }

    fn scalar(
        &mut self,
        t: GgufValueType,
        what: &dyn std::fmt::Display,
    ) -> Result<GgufValue, GgufError> {
        use GgufValueType as T;
        Ok(match t {
            T::U8 => GgufValue::U8(u8::from_le_bytes(self.bytes(what)?)),
            T::I8 => GgufValue::I8(i8::from_le_bytes(self.bytes(what)?)),
            T::U16 => GgufValue::U16(u16::from_le_bytes(self.bytes(what)?)),
            T::I16 => GgufValue::I16(i16::from_le_bytes(self.bytes(what)?)),
            T::U32 => GgufValue::U32(u32::from_le_bytes(self.bytes(what)?)),
            T::I32 => GgufValue::I32(i32::from_le_bytes(self.bytes(what)?)),
            T::F32 => GgufValue::F32(f32::from_le_bytes(self.bytes(what)?)),
            T::U64 => GgufValue::U64(u64::from_le_bytes(self.bytes(what)?)),
            T::I64 => GgufValue::I64(i64::from_le_bytes(self.bytes(what)?)),
            T::F64 => GgufValue::F64(f64::from_le_bytes(self.bytes(what)?)),
            T::Bool => {
                let offset = self.pos;
                let [b] = self.bytes::<1>(what)?;
                match b {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    other => {
                        return Err(GgufError::Absurd {
                            path: self.path.to_path_buf(),
                            what: format!("boolean {what}"),
                            value: other.into(),
                            offset,
                            reason: "a GGUF bool must be 0 or 1".into(),
                        })
                    }
                }
            }
            T::String => GgufValue::String(self.string(what)?),
            T::Array => {
                // `value` handles arrays before calling here; kept total rather than panicking.
                return Err(GgufError::BadMetadata {
                    path: self.path.to_path_buf(),
                    key: what.to_string(),
                    reason: "array where a single value was expected".into(),
                });
            }
        })
    }

    fn value(&mut self, t: GgufValueType, key: &str) -> Result<GgufValue, GgufError> {
        if t != GgufValueType::Array {
            return self.scalar(t, &format_args!("value of {key}"));
        }
        let item_type = self.value_type(&format_args!("items of array {key}"))?;
        if item_type == GgufValueType::Array {
            // llama.cpp's gguf loader rejects nested arrays; so do we, rather than accept a
            // file the engine will then refuse.
            return Err(GgufError::BadMetadata {
                path: self.path.to_path_buf(),
                key: key.to_string(),
                reason: "nested arrays are not supported".into(),
            });
        }
        let len = self.u64(&format_args!("length of array {key}"))?;
        let min = item_type.min_size();
        self.check_len(len, min, MAX_ARRAY_LEN, &format_args!("array {key}"))?;
        if len <= MAX_STORED_ARRAY_LEN {
            // `len` is bounded by the remaining file size, so this allocation is too.
            let mut items = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            for i in 0..len {
                items.push(self.scalar(item_type, &format_args!("item {i} of array {key}"))?);
            }
            return Ok(GgufValue::Array(items));
        }
        if item_type == GgufValueType::String {
            for i in 0..len {
                self.skip_string(&format_args!("item {i} of array {key}"))?;
            }
        } else if item_type == GgufValueType::Bool {
            // Bools are validated one by one (0/1) even when skipped: a flipped byte here is a
            // sign of a corrupt file.
            for i in 0..len {
                self.scalar(item_type, &format_args!("item {i} of array {key}"))?;
            }
        } else {
            self.skip(len * min, &format_args!("array {key}"))?;
        }
        Ok(GgufValue::ArraySummary { item_type, len })
    }
}

fn parse(r: &mut Reader<'_>) -> Result<GgufHeader, GgufError> {
    let path = r.path.to_path_buf();
    if r.file_size == 0 {
        return Err(GgufError::Empty { path });
    }
    if r.file_size < 4 {
        // A 1-3 byte prefix of "GGUF" is a cut-off GGUF; anything else is not one at all.
        let found = read_prefix(r)?;
        if b"GGUF".starts_with(&found) {
            return Err(r.truncated(&"magic"));
        }
        return Err(GgufError::NotGguf { path, found });
    }
    let magic = r.bytes::<4>(&"magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::NotGguf {
            path,
            found: magic.to_vec(),
        });
    }
    let version = r.u32(&"version")?;
    if version != 2 && version != 3 {
        let hint = match version {
            1 => " (GGUF v1 predates 2023-08; re-convert the model)",
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                " (this is a big-endian GGUF; only little-endian files are supported)"
            }
            _ => "",
        };
        return Err(GgufError::UnsupportedVersion {
            path,
            version,
            hint,
        });
    }
    let tensor_count = r.u64(&"tensor count")?;
    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    r.check_len(tensor_count, 24, MAX_TENSORS, &"tensor infos")?;
    let kv_count = r.u64(&"metadata key/value count")?;
    // A key/value takes at least 8 (key length) + 4 (type) + 1 (smallest value).
    r.check_len(kv_count, 13, MAX_KV, &"metadata key/values")?;

    let mut kv = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string(&format_args!("key of metadata entry {i}"))?;
        let t = r.value_type(&format_args!("metadata {key}"))?;
        let value = r.value(t, &key)?;
        if kv.insert(key.clone(), value).is_some() {
            return Err(GgufError::BadMetadata {
                path,
                key,
                reason: "duplicate key".into(),
            });
        }
    }

    let alignment = match kv.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
        Some(other) => {
            return Err(GgufError::BadMetadata {
                path,
                key: "general.alignment".into(),
                reason: format!("must be a non-zero power of two u32, found {other:?}"),
            })
        }
    };

    let mut tensors = Vec::with_capacity(usize::try_from(tensor_count).unwrap_or(0));
    let mut names = HashSet::new();
    for i in 0..tensor_count {
        let name = r.string(&format_args!("name of tensor {i}"))?;
        let n_dims = r.u32(&format_args!("dimension count of tensor {name}"))?;
        if n_dims > MAX_DIMS {
            return Err(r.absurd(
                format!("dimension count of tensor {name}"),
                n_dims.into(),
                format!("at most {MAX_DIMS} dimensions are supported"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let v = r.u64(&format_args!("dimension {d} of tensor {name}"))?;
            // llama.cpp keeps dims as int64_t.
            if i64::try_from(v).is_err() {
                return Err(r.absurd(format!("dimension {d} of tensor {name}"), v, "exceeds i64"));
            }
            dims.push(v);
        }
        let type_id = r.u32(&format_args!("type of tensor {name}"))?;
        let offset = r.u64(&format_args!("data offset of tensor {name}"))?;
        let Some((type_name, layout)) = ggml_type_info(type_id) else {
            return Err(GgufError::UnknownTensorType {
                path,
                tensor: name,
                type_id,
            });
        };
        let bad = |reason: String| GgufError::BadTensor {
            path: path.clone(),
            tensor: name.clone(),
            reason,
        };
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| bad(format!("element count overflows (dims {dims:?})")))?;
        let n_bytes = match layout {
            Some((block, type_size)) => {
                let row = dims.first().copied().unwrap_or(1);
                if row % block != 0 {
                    return Err(bad(format!(
                        "row length {row} is not a multiple of the {type_name} block size {block}"
                    )));
                }
                Some(
                    (n_elements / block)
                        .checked_mul(type_size)
                        .ok_or_else(|| bad("byte size overflows".into()))?,
                )
            }
            None => None,
        };
        if offset % alignment != 0 {
            return Err(bad(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(bad("duplicate tensor name".into()));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            type_id,
            type_name,
            offset,
            n_bytes,
        });
    }

    let data_offset = r.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes.unwrap_or(0)));
        match (start, end) {
            (Some(_), Some(end)) if end <= r.file_size => {}
            (start, end) => {
                return Err(GgufError::TensorOutOfBounds {
                    path,
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_size: r.file_size,
                })
            }
        }
    }

    let header = GgufHeader {
        path: path.clone(),
        version,
        tensor_count,
        kv,
        tensors,
        alignment,
        data_offset,
        file_size: r.file_size,
    };
    check_architecture(&header)?;
    Ok(header)
}

fn read_prefix(r: &mut Reader<'_>) -> Result<Vec<u8>, GgufError> {
    let mut buf = Vec::new();
    r.inner.rewind().map_err(|e| r.io(e))?;
    r.inner
        .by_ref()
        .take(4)
        .read_to_end(&mut buf)
        .map_err(|e| r.io(e))?;
    Ok(buf)
}

fn check_architecture(h: &GgufHeader) -> Result<(), GgufError> {
    match h.get("general.architecture") {
        Some(GgufValue::String(arch)) => {
            if KNOWN_ARCHITECTURES.contains(&arch.as_str()) {
                Ok(())
            } else {
                Err(GgufError::UnknownArchitecture {
                    path: h.path.clone(),
                    arch: arch.clone(),
                })
            }
        }
        Some(other) => Err(GgufError::BadMetadata {
            path: h.path.clone(),
            key: "general.architecture".into(),
            reason: format!("must be a string, found {other:?}"),
        }),
        // gguf-split writes the model metadata only into the first part.
        None if h.split_no().is_some_and(|n| n > 0) => Ok(()),
        None => Err(GgufError::MissingArchitecture {
            path: h.path.clone(),
        }),
    }
}
