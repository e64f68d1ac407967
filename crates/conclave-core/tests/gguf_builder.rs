//! Writes small, valid (or deliberately broken) GGUF files for the tests. Included by the
//! other test files with `#[path = "gguf_builder.rs"] mod gguf_builder;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

pub enum V {
    U32(u32),
    U64(u64),
    I32(i32),
    F32(f32),
    Bool(u8),
    Str(String),
    ArrStr(Vec<String>),
    ArrI32(Vec<i32>),
    /// Raw: type id then raw value bytes, for forging broken entries.
    Raw(u32, Vec<u8>),
}

pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Offset override; default = packed, aligned.
    pub offset: Option<u64>,
}

pub struct Builder {
    pub magic: [u8; 4],
    pub version: u32,
    pub kv: Vec<(String, V)>,
    pub tensors: Vec<Tensor>,
    pub tensor_count_override: Option<u64>,
    pub kv_count_override: Option<u64>,
    pub alignment: u64,
    /// Bytes of tensor data actually written (default: exactly what tensors need).
    pub data_len_override: Option<u64>,
}

pub fn s(x: &str) -> V {
    V::Str(x.to_string())
}

impl Builder {
    /// A tiny llama-architecture model: 2 F32 tensors.
    pub fn tiny() -> Self {
        Self {
            magic: *b"GGUF",
            version: 3,
            kv: vec![
                ("general.architecture".into(), s("llama")),
                ("general.name".into(), s("Tiny Test")),
                ("general.file_type".into(), V::U32(0)),
                ("llama.context_length".into(), V::U32(2048)),
                ("llama.block_count".into(), V::U32(2)),
                ("llama.embedding_length".into(), V::U32(64)),
                ("llama.attention.head_count".into(), V::U32(4)),
                ("llama.attention.head_count_kv".into(), V::U32(2)),
                (
                    "tokenizer.ggml.tokens".into(),
                    V::ArrStr(vec!["<s>".into(), "</s>".into(), "a".into()]),
                ),
                ("tokenizer.ggml.bos_token_id".into(), V::U32(0)),
            ],
            tensors: vec![
                Tensor {
                    name: "token_embd.weight".into(),
                    dims: vec![64, 3],
                    type_id: 0,
                    offset: None,
                },
                Tensor {
                    name: "output_norm.weight".into(),
                    dims: vec![64],
                    type_id: 0,
                    offset: None,
                },
            ],
            tensor_count_override: None,
            kv_count_override: None,
            alignment: 32,
            data_len_override: None,
        }
    }

    pub fn kv(mut self, key: &str, v: V) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.kv.push((key.to_string(), v));
        self
    }

    pub fn without(mut self, key: &str) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.magic);
        b.extend_from_slice(&self.version.to_le_bytes());
        let tc = self
            .tensor_count_override
            .unwrap_or(self.tensors.len() as u64);
        b.extend_from_slice(&tc.to_le_bytes());
        let kc = self.kv_count_override.unwrap_or(self.kv.len() as u64);
        b.extend_from_slice(&kc.to_le_bytes());
        let put_str = |b: &mut Vec<u8>, x: &str| {
            b.extend_from_slice(&(x.len() as u64).to_le_bytes());
            b.extend_from_slice(x.as_bytes());
        };
        for (k, v) in &self.kv {
            put_str(&mut b, k);
            match v {
                V::U32(x) => {
                    b.extend_from_slice(&4u32.to_le_bytes());
                    b.extend_from_slice(&x.to_le_bytes());
                }
                V::I32(x) => {
                    b.extend_from_slice(&5u32.to_le_bytes());
                    b.extend_from_slice(&x.to_le_bytes());
                }
                V::F32(x) => {
                    b.extend_from_slice(&6u32.to_le_bytes());
                    b.extend_from_slice(&x.to_le_bytes());
                }
                V::Bool(x) => {
                    b.extend_from_slice(&7u32.to_le_bytes());
                    b.push(*x);
                }
                V::U64(x) => {
                    b.extend_from_slice(&10u32.to_le_bytes());
                    b.extend_from_slice(&x.to_le_bytes());
                }
                V::Str(x) => {
                    b.extend_from_slice(&8u32.to_le_bytes());
                    put_str(&mut b, x);
                }
                V::ArrStr(items) => {
                    b.extend_from_slice(&9u32.to_le_bytes());
                    b.extend_from_slice(&8u32.to_le_bytes());
                    b.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for i in items {
                        put_str(&mut b, i);
                    }
                }
                V::ArrI32(items) => {
                    b.extend_from_slice(&9u32.to_le_bytes());
                    b.extend_from_slice(&5u32.to_le_bytes());
                    b.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for i in items {
                        b.extend_from_slice(&i.to_le_bytes());
                    }
                }
                V::Raw(t, raw) => {
                    b.extend_from_slice(&t.to_le_bytes());
                    b.extend_from_slice(raw);
                }
            }
        }
        let mut next = 0u64;
        let mut data_len = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.type_id.to_le_bytes());
            let off = t.offset.unwrap_or(next);
            b.extend_from_slice(&off.to_le_bytes());
            // F32 only in the builder's own layout maths.
            let n: u64 = t.dims.iter().fold(4u64, |a, d| a.wrapping_mul(*d));
            let end = off.wrapping_add(n).min(1 << 20);
            next = end.div_ceil(self.alignment) * self.alignment;
            data_len = data_len.max(end);
        }
        let pad = (b.len() as u64).div_ceil(self.alignment) * self.alignment;
        b.resize(pad as usize, 0);
        let data_len = self.data_len_override.unwrap_or(data_len);
        b.extend((0..data_len).map(|i| (i % 251) as u8));
        b
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}

/// The checkout's real test models, or `None` (with a message) when they were not fetched.
pub fn real_model(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is missing; run models/fetch to get the test models",
            p.display()
        );
        None
    }
}

pub const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
